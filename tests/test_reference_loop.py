"""The notes' per-example loop (Delta accumulators) equals the vectorized Network.gradients."""

import numpy as np
import pytest

from backprop_derived import Network
from backprop_derived._generated import ACTIVATIONS, OUTPUTS
from backprop_derived.examples import coursera_wiki as wiki
from backprop_derived.reference_loop import reference_gradients
from backprop_derived.unrolling import set_parameters, unroll

# The whole catalog, read from the generated registry: an activation added to the
# derivation is tested here the day it is regenerated.
HIDDEN = sorted(name for name, kernels in ACTIVATIONS.items() if kernels.elementwise)
OUTPUTS = sorted(OUTPUTS)  # (output activation, loss) pairs


def cmp(name, got, ref, rtol=1e-10, atol=1e-12):
    """makemore's cmp: exact / approximate / largest difference, in the assertion message."""
    got, ref = np.asarray(got, float), np.asarray(ref, float)
    exact = np.array_equal(got, ref)
    close = np.allclose(got, ref, rtol=rtol, atol=atol)
    diff = float(np.max(np.abs(got - ref))) if got.size else 0.0
    assert close, f"{name:<12} exact: {exact!s:<5} approximate: {close!s:<5} maxdiff: {diff:.3g}"


def random_targets(loss, m, K, rng):
    if loss == "cross_entropy":
        return rng.integers(0, K, size=m)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, size=(m, K)).astype(float)
    return rng.normal(size=(m, K))


# depth 1 has no hidden layer, so the hidden activation only varies for depth >= 2
CASES = [(None, out, loss, 1) for out, loss in OUTPUTS] + [
    (hidden, out, loss, depth) for depth in (2, 3) for hidden in HIDDEN for out, loss in OUTPUTS
]


@pytest.mark.parametrize("hidden,output,loss,depth", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("l2", [0.0, 0.3])
@pytest.mark.parametrize("m", [1, 4])
def test_loop_equals_vectorized(hidden, output, loss, depth, l2, m):
    sizes = [*[3, 4, 5][:depth], 3]
    net = Network(
        layer_sizes=sizes,
        activations=[hidden] * (depth - 1) + [output],
        loss=loss,
        l2=l2,
        seed=depth,
    )
    rng = np.random.default_rng(m)
    X = rng.normal(size=(m, sizes[0]))
    Y = random_targets(loss, m, sizes[-1], rng)
    J, dW, db = net.gradients(X, Y)
    J_loop, dW_loop, db_loop = reference_gradients(net, X, Y)
    cmp("J", J_loop, J)
    for l in range(depth):
        cmp(f"dW[{l}]", dW_loop[l], dW[l])
        cmp(f"db[{l}]", db_loop[l], db[l])


def test_one_hot_and_labels_agree():
    net = Network(layer_sizes=[2, 3, 3], activations=["tanh", "softmax"], seed=0)
    X = np.array([[0.5, -1.0], [2.0, 0.1]])
    labels = np.array([2, 0])
    J1, dW1, db1 = reference_gradients(net, X, labels)
    J2, dW2, db2 = reference_gradients(net, X, np.eye(3)[labels])
    assert J1 == J2
    assert np.array_equal(unroll(dW1, db1), unroll(dW2, db2))


def test_wiki_linear_nn_case_by_the_loop():
    # Same case as test_unrolling, but through the notes' loop instead of the runtime.
    net = Network(layer_sizes=list(wiki.LAYER_SIZES), activations=list(wiki.ACTIVATIONS),
                  loss=wiki.LOSS, l2=wiki.LAMBDA)
    set_parameters(net, wiki.NN_PARAMS, order="octave")
    J, dW, db = reference_gradients(net, wiki.X, wiki.Y)
    assert abs(J - wiki.J_PRINTED) <= wiki.J_TOLERANCE
    assert np.all(np.abs(unroll(dW, db, order="octave") - wiki.GRAD_PRINTED)
                  <= wiki.GRAD_TOLERANCE)
