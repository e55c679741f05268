"""unroll / roll: exact round trips in both orders, Octave's layout, the wiki's test case."""

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backprop_derived import Network
from backprop_derived.examples import coursera_wiki as wiki
from backprop_derived.unrolling import (
    get_parameters,
    n_parameters,
    roll,
    set_parameters,
    to_theta,
    unroll,
)

layer_sizes = st.lists(st.integers(1, 6), min_size=2, max_size=5)


def random_layers(sizes, seed=0):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(n_out, n_in)) for n_in, n_out in pairwise(sizes)]
    biases = [rng.normal(size=n_out) for n_out in sizes[1:]]
    return weights, biases


@pytest.mark.parametrize("order", ["ours", "octave"])
@settings(max_examples=50, deadline=None)
@given(sizes=layer_sizes, seed=st.integers(0, 2**32 - 1))
def test_round_trips_exactly(order, sizes, seed):
    weights, biases = random_layers(sizes, seed)
    vector = unroll(weights, biases, order=order)
    assert vector.shape == (n_parameters(sizes),)
    weights2, biases2 = roll(vector, sizes, order=order)
    for W, W2, b, b2 in zip(weights, weights2, biases, biases2, strict=True):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
    assert np.array_equal(unroll(weights2, biases2, order=order), vector)


def test_our_order_by_hand():
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([5.0, 6.0])
    # W row by row, then b
    assert unroll([W], [b]).tolist() == [1, 2, 3, 4, 5, 6]


def test_octave_order_by_hand():
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([5.0, 6.0])
    # Theta = [5 1 2; 6 3 4]; Theta(:) walks down the columns
    assert to_theta(W, b).tolist() == [[5, 1, 2], [6, 3, 4]]
    assert unroll([W], [b], order="octave").tolist() == [5, 6, 1, 3, 2, 4]


def test_notes_reshape_example():
    # The notes: Theta1 = reshape(thetaVector(1:110), 10, 11), Theta2 from 111:220,
    # Theta3 = reshape(thetaVector(221:231), 1, 11)
    vector = np.arange(1.0, 232.0)
    weights, biases = roll(vector, [10, 10, 10, 1], order="octave")
    assert biases[0][:3].tolist() == [1, 2, 3]  # Theta1(1:3, 1), the bias column
    assert weights[0][0, 0] == 11  # Theta1(1, 2): first entry of the second column
    assert weights[0][9, 9] == 110  # Theta1(10, 11): last entry
    assert biases[1][0] == 111 and weights[1][9, 9] == 220
    assert biases[2].tolist() == [221] and weights[2].tolist() == [list(range(222, 232))]


@pytest.mark.parametrize("order", ["ours", "octave"])
def test_bad_input_raises(order):
    weights, biases = random_layers([2, 3, 1])
    with pytest.raises(ValueError, match="need 13"):
        roll(np.zeros(12), [2, 3, 1], order=order)
    with pytest.raises(ValueError, match="1-D"):
        roll(np.zeros((13, 1)), [2, 3, 1], order=order)
    with pytest.raises(ValueError, match="do not fit"):
        unroll(weights, [b[:-1] for b in biases], order=order)
    with pytest.raises(ValueError, match="unknown order"):
        unroll(weights, biases, order="fortran")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_parameters_round_trip_in_place(dtype):
    net = Network(layer_sizes=[3, 4, 2], activations=["tanh", "softmax"], dtype=dtype, seed=1)
    arrays = [*net.weights, *net.biases]
    vector = get_parameters(net, order="octave")
    set_parameters(net, 2 * vector, order="octave")
    assert all(
        a is b for a, b in zip(arrays, [*net.weights, *net.biases], strict=True)
    )  # written in place
    assert all(a.dtype == dtype for a in arrays)
    assert np.array_equal(get_parameters(net, order="octave"), (2 * vector).astype(dtype))


# The Coursera wiki's "Testing your linear NN" case, printed by Octave.
WIKI_PARAMS, WIKI_J, WIKI_GRAD = wiki.NN_PARAMS, wiki.J_PRINTED, wiki.GRAD_PRINTED


def wiki_network():
    net = Network(
        layer_sizes=[1, 4, 1], activations=["tanh", "identity"], loss="squared_error", l2=0.01
    )
    set_parameters(net, WIKI_PARAMS, order="octave")
    X = np.array([[1.0], [2.0], [3.0]])
    Y = np.array([[1.0], [4.0], [9.0]])
    return net, X, Y


def test_wiki_layout():
    net, _, _ = wiki_network()
    # Theta1 = reshape(nn_params(1:8), 4, 2): bias column [3.1 1.6 1.5 -2.9]
    assert np.allclose(net.biases[0], [3.1, 1.6, 1.5, -2.9], rtol=0, atol=1e-15)
    assert np.allclose(net.weights[0][:, 0], [-1.3, -0.8, -0.7, 1.3], rtol=0, atol=1e-15)
    assert np.allclose(net.biases[1], [5.4], rtol=0, atol=1e-15)
    assert np.allclose(net.weights[1][0], [-1.7, -1.1, -0.9, 1.6], rtol=0, atol=1e-15)


def test_wiki_linear_nn_case():
    net, X, Y = wiki_network()
    J, dW, db = net.gradients(X, Y)
    grad = unroll(dW, db, order="octave")
    # Half a unit in the last printed digit: 6 decimals for J, 7 for the gradient.
    assert abs(J - WIKI_J) <= 0.5e-6, J
    assert np.all(np.abs(grad - WIKI_GRAD) <= 0.5e-7), np.abs(grad - WIKI_GRAD).max()
