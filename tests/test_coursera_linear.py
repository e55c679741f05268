"""The Coursera wiki's "Testing your linear NN" case, to the printed digits.

Seed 001, section "Bonus: NN for linear systems": one input, 4 tanh hidden
units, one identity output, squared error, lambda = 0.01. Octave unrolls the
parameters column-major with the bias as column 0 of each Theta.
"""

import numpy as np

from backprop_derived import Network
from backprop_derived.examples.coursera_wiki import (
    GRAD_PRINTED,
    GRAD_TOLERANCE,
    J_PRINTED,
    J_TOLERANCE,
    LAMBDA,
    NN_PARAMS,
    X,
    Y,
)


def octave_reshape(vector, rows, cols):
    return vector.reshape(cols, rows).T  # reshape(v, rows, cols) fills columns first


def test_linear_nn_case_reproduces_the_printed_cost_and_gradient():
    net = Network([1, 4, 1], ["tanh", "identity"], loss="squared_error", l2=LAMBDA)
    theta1 = octave_reshape(NN_PARAMS[:8], 4, 2)
    theta2 = octave_reshape(NN_PARAMS[8:], 1, 5)
    for layer, theta in enumerate((theta1, theta2)):
        net.biases[layer][...] = theta[:, 0]
        net.weights[layer][...] = theta[:, 1:]

    J, dW, db = net.gradients(X, Y)
    grad = np.concatenate([
        np.column_stack([db[layer], dW[layer]]).T.ravel()  # Theta(:) of [b | W]
        for layer in range(2)
    ])
    assert abs(J - J_PRINTED) <= J_TOLERANCE
    np.testing.assert_allclose(grad, GRAD_PRINTED, rtol=0, atol=GRAD_TOLERANCE)
    assert J == net.loss(X, Y)
