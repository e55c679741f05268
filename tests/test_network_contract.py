"""The runtime contract of the core issue: shapes, dtypes, errors, stability."""

import contextlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backprop_derived import Network

ELEMENTWISE = ["identity", "sigmoid", "tanh", "relu", "softplus", "swish"]
OUTPUTS = [("softmax", "cross_entropy"), ("sigmoid", "binary_cross_entropy"),
           ("identity", "squared_error"), ("tanh", "squared_error"),
           ("softmax", "squared_error")]


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 4))
    sizes = draw(st.lists(st.integers(1, 6), min_size=depth + 1, max_size=depth + 1))
    out_act, loss = draw(st.sampled_from(OUTPUTS))
    hidden = draw(st.lists(st.sampled_from(ELEMENTWISE), min_size=depth - 1, max_size=depth - 1))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    l2 = draw(st.sampled_from([0.0, 0.5]))
    return Network(sizes, [*hidden, out_act], loss=loss, l2=l2, dtype=dtype,
                   seed=draw(st.integers(0, 2**16)))


def targets(net, m, rng):
    K = net.layer_sizes[-1]
    if net.loss_name == "cross_entropy":
        return rng.integers(0, K, size=m)
    if net.loss_name == "binary_cross_entropy":
        return rng.integers(0, 2, size=(m, K)).astype(float)
    return rng.normal(size=(m, K))


@settings(max_examples=60, deadline=None)
@given(net=networks(), m=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_shapes_and_dtypes(net, m, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, net.layer_sizes[0]))
    Y = targets(net, m, rng)
    out = net.forward(X)
    assert out.shape == (m, net.layer_sizes[-1]) and out.dtype == net.dtype
    loss, dW, db = net.gradients(X, Y)
    assert isinstance(loss, float) and np.isfinite(loss)
    assert loss == pytest.approx(net.loss(X, Y), rel=1e-6 if net.dtype == np.float32 else 1e-15)
    for g, w in zip(dW, net.weights, strict=True):
        assert g.shape == w.shape and g.dtype == net.dtype and g is not w
    for g, b in zip(db, net.biases, strict=True):
        assert g.shape == b.shape and g.dtype == net.dtype
    # fresh gradient arrays per call, not views of the reused buffers
    _, dW2, _ = net.gradients(X, Y)
    assert all(g1 is not g2 for g1, g2 in zip(dW, dW2, strict=True))
    np.testing.assert_array_equal(dW[0], dW2[0])


def test_weights_are_assignable_in_place():
    net = Network([2, 3, 2], ["tanh", "softmax"], seed=0)
    assert net.weights[0].shape == (3, 2) and net.biases[0].shape == (3,)
    X = np.ones((1, 2))
    before = net.forward(X)
    net.weights[1][...] = 0
    net.biases[1][...] = 0
    np.testing.assert_allclose(net.forward(X), 0.5)
    assert not np.allclose(before, 0.5)


def test_seed_reproduces_and_init_follows_the_notes():
    a, b = Network([64, 25, 10], ["sigmoid", "softmax"], seed=3), Network(
        [64, 25, 10], ["sigmoid", "softmax"], seed=3)
    for w1, w2 in zip(a.weights + a.biases, b.weights + b.biases, strict=True):
        np.testing.assert_array_equal(w1, w2)
    eps = np.sqrt(6) / np.sqrt(64 + 25)
    assert np.abs(a.weights[0]).max() <= eps and np.abs(a.weights[0]).max() > 0.9 * eps


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(layer_sizes=[3], activations=[]), "at least an input and an output"),
    (dict(layer_sizes=[3, 0, 2], activations=["tanh", "softmax"]), "positive integers"),
    (dict(layer_sizes=[3, 4, 2], activations=["tanh"]), "expected 2 activations"),
    (dict(layer_sizes=[3, 4, 2], activations=["tahn", "softmax"]), "unknown activation 'tahn'"),
    (dict(layer_sizes=[3, 4, 2], activations=["softmax", "softmax"]), "only in the output layer"),
    (dict(layer_sizes=[3, 2], activations=["softmax"], loss="hinge"), "unknown loss 'hinge'"),
    (dict(layer_sizes=[3, 2], activations=["sigmoid"], loss="cross_entropy"), "needs a softmax"),
    (dict(layer_sizes=[3, 2], activations=["tanh"], loss="binary_cross_entropy"),
     "needs a sigmoid"),
    (dict(layer_sizes=[3, 2], activations=["softmax"], l2=-1.0), "l2 must be finite and >= 0"),
    (dict(layer_sizes=[3, 2], activations=["softmax"], dtype=np.int32), "float32 or float64"),
])
def test_bad_construction_names_the_problem(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Network(**kwargs)


def test_unknown_names_list_the_valid_ones():
    # The catalog grows; the message must list whatever the generated registry holds,
    # in alphabetical order, including the entries every version has had.
    from backprop_derived._generated import ACTIVATIONS, LOSSES

    activations = ", ".join(sorted(ACTIVATIONS))
    assert {"identity", "relu", "sigmoid", "softmax", "softplus", "swish", "tanh"} <= set(ACTIVATIONS)
    with pytest.raises(ValueError) as info:
        Network([2, 2], ["tahn"], loss="squared_error")
    assert f"unknown activation 'tahn'; valid names: {activations}" in str(info.value)
    losses = ", ".join(sorted(LOSSES))
    assert {"binary_cross_entropy", "cross_entropy", "squared_error"} <= set(LOSSES)
    with pytest.raises(ValueError) as info:
        Network([2, 2], ["softmax"], loss="nll")
    assert f"unknown loss 'nll'; valid names: {losses}" in str(info.value)


@pytest.mark.parametrize(("X", "Y", "message"), [
    (np.ones((4, 3)), np.zeros(3, dtype=int), "X has 4 rows but Y has 3 labels"),
    (np.ones((4, 2)), np.zeros(4, dtype=int), "X has 2 columns but the input layer has 3"),
    (np.ones(3), np.zeros(1, dtype=int), "X must be 2-D"),
    (np.ones((0, 3)), np.zeros(0, dtype=int), "no examples"),
    (np.ones((2, 3)), np.array([0, 5]), "label 5 out of range: 4 classes are 0..3"),
    (np.ones((2, 3)), np.array([0.0, 1.0]), "must be integers"),
    (np.ones((2, 3)), np.ones((2, 5)), "Y has 5 columns but the output layer has 4"),
    (np.ones((2, 3)), -np.ones((2, 4)), "non-negative"),
    (np.array([[1.0, np.nan, 0.0], [0, 0, 0]]), np.zeros(2, dtype=int), "X contains NaN or inf"),
    (np.ones((2, 3)), np.array([[np.inf, 0, 0, 0], [1, 0, 0, 0]]), "Y contains NaN or inf"),
])
def test_bad_input_names_the_problem(X, Y, message):
    net = Network([3, 5, 4], ["tanh", "softmax"], seed=0)
    with pytest.raises(ValueError, match=message):
        net.gradients(X, Y)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(("acts", "loss"), [
    (["tanh", "softmax"], "cross_entropy"),
    (["tanh", "softmax"], "squared_error"),
    (["tanh", "sigmoid"], "binary_cross_entropy"),
    (["tanh", "identity"], "squared_error"),
])
def test_non_finite_targets_are_named_by_every_loss(acts, loss, bad):
    # Y's finiteness is read off the loss; every loss must still name Y.
    net = Network([3, 5, 4], acts, loss=loss, seed=0)
    Y = np.full((3, 4), 0.25)
    Y[1, 2] = bad
    for call in (net.gradients, net.loss):
        with pytest.raises(ValueError, match="Y contains NaN or inf"):
            call(np.ones((3, 3)), Y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [(0, 0), (2, 1), (4, 2)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_inputs_anywhere_are_named(bad, where, dtype):
    # Only column 0 of z_1 is looked at; a bad value in any column of X must reach it.
    net = Network([3, 5, 4], ["tanh", "softmax"], dtype=dtype, seed=0)
    X = np.ones((5, 3), dtype)
    X[where] = bad
    for call in (lambda: net.gradients(X, np.zeros(5, dtype=int)), lambda: net.forward(X)):
        with pytest.raises(ValueError, match="X contains NaN or inf"):
            call()


def test_assigned_weights_of_the_wrong_shape_are_reported_at_the_assignment():
    net = Network([3, 5, 4], ["tanh", "softmax"], seed=0)
    before = net.weights[1]
    with pytest.raises(ValueError, match=r"weights\[1\] must be a float64 array of shape \(4, 5\)"):
        net.weights[1] = np.zeros((5, 4))
    assert net.weights[1] is before  # nothing was half-assigned
    with pytest.raises(ValueError, match=r"biases\[0\] must be a float64 array of shape \(5,\), "
                                         r"got float32"):
        net.biases[0] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"weights\[0\] must be a float64 array.*got <class 'list'>"):
        net.weights[-2] = [[0.0] * 3] * 5
    with pytest.raises(ValueError, match="expected 2 arrays"):
        net.weights = [np.zeros((5, 3))]
    with pytest.raises(ValueError, match=r"biases\[1\]"):
        net.biases = [np.zeros(5), np.zeros(5)]


def test_parameters_in_place_and_whole_list_assignment():
    net = Network([3, 5, 4], ["tanh", "softmax"], seed=0)
    net.weights[0] -= 0.5 * net.weights[0]  # in place, then re-set: checked and accepted
    net.weights = [np.zeros((5, 3)), np.ones((4, 5))]
    assert net.weights[1].sum() == 20 and net.gradients(np.ones((2, 3)), [0, 1])[0] > 0
    for bad in (lambda w: w.append(w[0]), lambda w: w.pop(), lambda w: w.reverse(),
                lambda w: w.__setitem__(slice(0, 1), [w[0]]), lambda w: w.__delitem__(0)):
        with pytest.raises(TypeError, match=r"fixed by layer_sizes|one layer at a time"):
            bad(net.weights)
    assert len(net.weights) == 2


def test_a_pickled_network_computes_the_same_and_still_checks():
    import pickle

    net = Network([3, 5, 4], ["tanh", "softmax"], dtype=np.float32, seed=0)
    X, y = np.arange(6, dtype=np.float32).reshape(2, 3), [3, 1]
    clone = pickle.loads(pickle.dumps(net))
    loss, dW, db = net.gradients(X, y)
    loss2, dW2, db2 = clone.gradients(X, y)
    assert loss == loss2 and all(np.array_equal(a, b) for a, b in zip(dW + db, dW2 + db2, strict=True))
    with pytest.raises(ValueError, match=r"weights\[0\] must be a float32 array"):
        clone.weights[0] = np.zeros((5, 3))


def test_binary_targets_must_be_probabilities():
    net = Network([2, 3], ["sigmoid"], loss="binary_cross_entropy", seed=0)
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        net.gradients(np.ones((2, 2)), 2 * np.ones((2, 3)))


def test_huge_finite_inputs_are_not_mistaken_for_inf():
    net = Network([2, 2], ["identity"], loss="squared_error", seed=0)
    net.weights[0][...] = 1.0
    X = np.full((2, 2), 1e308)  # each value finite, z = 2e308 overflows
    # NumPy's own overflow report, not "X contains NaN or inf"
    with pytest.warns(RuntimeWarning, match="overflow encountered in matmul"):
        out = net.forward(X)
    assert np.isposinf(out).all()
    with pytest.raises(RuntimeWarning, match="overflow"):  # warnings are errors here
        net.forward(X)


@pytest.mark.parametrize("mode", ["error", "default", "ignore", "seterr-raise"])
def test_inf_times_zero_inside_the_first_gemm_still_names_X(mode):
    # inf * 0 raises NumPy's invalid-value warning in the GEMM itself; however
    # warnings are configured, the caller learns that X was bad.
    net = Network([3, 5, 4], ["tanh", "softmax"], seed=0)
    net.weights[0][:, 1] = 0.0
    X = np.ones((4, 3))
    X[2, 1] = np.inf
    with warnings.catch_warnings(), np.errstate(all="raise" if mode == "seterr-raise" else "warn"):
        warnings.simplefilter("error" if mode == "seterr-raise" else mode)
        # shown, not raised, under the default filter; then the ValueError
        shown = (pytest.warns(RuntimeWarning, match="invalid value encountered in matmul")
                 if mode == "default" else contextlib.nullcontext())
        with pytest.raises(ValueError, match="X contains NaN or inf"), shown:
            net.gradients(X, [0, 1, 2, 3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("acts", "loss"), [
    (["sigmoid", "softmax"], "cross_entropy"),
    (["tanh", "sigmoid"], "binary_cross_entropy"),
    (["softplus", "swish"], "squared_error"),
    (["swish", "softmax"], "squared_error"),
    (["relu", "softplus"], "squared_error"),
])
def test_stable_at_pre_activations_of_magnitude_1000(acts, loss, dtype):
    net = Network([2, 3, 2], acts, loss=loss, dtype=dtype, seed=0)
    # |z| = 1000 in the hidden layer; bounded hidden outputs are scaled up so
    # that the output layer sees |z| of about 1000 too.
    net.weights[0][...] = [[1, -1], [-1, 1], [1, 1]]
    net.weights[1][...] = np.array([[1, -1, 1], [-1, 1, 1]]) * (
        1e3 if acts[0] in ("sigmoid", "tanh") else 1)
    for b in net.biases:
        b[...] = 0
    X = np.array([[1e3, 0], [-1e3, 0], [0, 1e3]], dtype=dtype)
    Y = np.array([0, 1, 1]) if loss == "cross_entropy" else np.array(
        [[0, 1], [1, 0], [1, 1]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (overflow, invalid) fails
        loss_value, dW, db = net.gradients(X, Y)
    assert np.isfinite(loss_value)
    assert all(np.isfinite(g).all() for g in dW + db)


def test_float32_stays_float32_inside():
    net = Network([4, 5, 3], ["swish", "softmax"], dtype=np.float32, seed=0)
    X = np.random.default_rng(0).normal(size=(6, 4))  # float64 input is converted once
    net.gradients(X, np.arange(6) % 3)
    ws = net._workspace
    for buf in ws.a + ws.z + ws.dz + ws.da + [s for layer in ws.scratch for s in layer]:
        assert buf.dtype == np.float32


def test_the_runtime_never_imports_sympy():
    code = ("import sys, numpy as np\n"
            "from backprop_derived import Network\n"
            "net = Network([2, 3, 2], ['tanh', 'softmax'], seed=0)\n"
            "net.gradients(np.ones((2, 2)), np.array([0, 1]))\n"
            "assert 'sympy' not in sys.modules, 'sympy was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters_are_refused_when_assigned(bad):
    net = Network([3, 5, 4], ["tanh", "softmax"], seed=0)
    W = np.zeros((4, 5))
    W[2, 3] = bad
    with pytest.raises(ValueError, match=r"weights\[1\] contains NaN or inf"):
        net.weights[1] = W
    with pytest.raises(ValueError, match=r"biases\[0\] contains NaN or inf"):
        net.biases = [np.full(5, bad), np.zeros(4)]
    assert all(np.isfinite(p).all() for p in [*net.weights, *net.biases])


@pytest.mark.parametrize(("kind", "layer"), [("weights", 0), ("biases", 0), ("weights", 2),
                                             ("biases", 2)])
def test_a_nan_written_in_place_is_named_by_the_next_call(kind, layer):
    net = Network([3, 5, 4, 2], ["tanh", "sigmoid", "softmax"], seed=0)
    X, y = np.ones((3, 3)), np.array([0, 1, 1])
    getattr(net, kind)[layer][-1] = np.nan  # in place: no assignment check sees it
    message = rf"{kind}\[{layer}\] contains NaN or inf \(written in place"
    for call in (lambda: net.gradients(X, y), lambda: net.loss(X, y), lambda: net.forward(X),
                 lambda: net.fit(X, y, epochs=1, progress=False)):
        with pytest.raises(ValueError, match=message):
            call()


def test_an_inf_written_in_place_is_named_where_it_reaches_the_loss():
    # +inf into a relu layer passes through to an identity output: the loss is inf.
    net = Network([2, 3, 1], ["relu", "identity"], loss="squared_error", seed=0)
    net.biases[0][1] = np.inf
    with pytest.raises(ValueError, match=r"biases\[0\] contains NaN or inf"):
        net.gradients(np.ones((2, 2)), np.zeros((2, 1)))
