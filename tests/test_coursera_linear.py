"""The Coursera wiki's "Testing your linear NN" case, to the printed digits.

Seed 001, section "Bonus: NN for linear systems": one input, 4 tanh hidden
units, one identity output, squared error, lambda = 0.01. Octave unrolls the
parameters column-major with the bias as column 0 of each Theta.
"""

import numpy as np

from backprop_derived import Network

NN_PARAMS = np.array([31, 16, 15, -29, -13, -8, -7, 13, 54, -17, -11, -9, 16]) / 10
X = np.array([[1.0], [2.0], [3.0]])
Y = np.array([[1.0], [4.0], [9.0]])
J_PRINTED = 0.020815
GRAD_PRINTED = np.array([
    -0.0131002, -0.0110085, -0.0070569, 0.0189212, -0.0189639, -0.0192539, -0.0102291,
    0.0344732, 0.0024947, 0.0080624, 0.0021964, 0.0031675, -0.0064244,
])


def octave_reshape(vector, rows, cols):
    return vector.reshape(cols, rows).T  # reshape(v, rows, cols) fills columns first


def test_linear_nn_case_reproduces_the_printed_cost_and_gradient():
    net = Network([1, 4, 1], ["tanh", "identity"], loss="squared_error", l2=0.01)
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
    # Printed to 6 (J) and 7 (gradient) decimals: agree within half a unit of the last digit.
    assert abs(J - J_PRINTED) <= 0.5e-6
    np.testing.assert_allclose(grad, GRAD_PRINTED, rtol=0, atol=0.5e-7)
    assert J == net.loss(X, Y)
