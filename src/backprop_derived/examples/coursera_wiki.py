"""The Coursera wiki's "Testing your linear NN" case, as printed there.

Seed 001, section "Bonus: NN for linear systems": 1 input, 4 tanh hidden
units, 1 identity output, squared error, lambda = 0.01, parameters unrolled
by Octave (column-major, bias as column 0 of each Theta). These are the
printed numbers, copied from the page, not computed by this package.
"""

import numpy as np

NN_PARAMS = np.array([31, 16, 15, -29, -13, -8, -7, 13, 54, -17, -11, -9, 16]) / 10
LAYER_SIZES = (1, 4, 1)
ACTIVATIONS = ("tanh", "identity")
LOSS = "squared_error"
LAMBDA = 0.01
X = np.array([[1.0], [2.0], [3.0]])
Y = np.array([[1.0], [4.0], [9.0]])

J_PRINTED = 0.020815  # printed to 6 decimals
GRAD_PRINTED = np.array([  # printed to 7 decimals, Octave order
    -0.0131002, -0.0110085, -0.0070569, 0.0189212, -0.0189639, -0.0192539, -0.0102291,
    0.0344732, 0.0024947, 0.0080624, 0.0021964, 0.0031675, -0.0064244,
])
J_TOLERANCE = 0.5e-6  # half a unit in the last printed digit
GRAD_TOLERANCE = 0.5e-7
