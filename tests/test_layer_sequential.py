"""Sequential: gradients against central differences of an independent forward.

The reference forward below is plain NumPy for the layers and the catalog's
own SymPy expressions (``symbolic/catalog.py``) for the activations and the
per-unit losses, lambdified, so it shares no code with the generated kernels
the layers run. The lists of activations and (output activation, loss) pairs
come from the generated registry: an entry added to the catalog is tested
here without an edit.
"""

import zlib
from functools import cache

import numpy as np
import pytest
import sympy as sp

from _finite_differences import assert_close, central_differences
from backprop_derived import Network
from backprop_derived._generated import ACTIVATIONS, LOSSES, OUTPUTS
from backprop_derived.layers import (
    Activation,
    Dense,
    Dropout,
    Embedding,
    Residual,
    Sequential,
)
from backprop_derived.symbolic import catalog
from backprop_derived.training import History, TrainingDivergedError

ELEMENTWISE = sorted(name for name, act in ACTIVATIONS.items() if act.elementwise)
PAIRS = sorted(OUTPUTS)
MODULES = ["scipy", "numpy"]


# -- the independent reference -------------------------------------------------
@cache
def activation_function(name):
    return sp.lambdify(catalog.z, catalog.ACTIVATIONS[name], MODULES)


@cache
def unit_loss_function(name):
    """The catalog loss's per-unit term f(a_k, y_k) (every catalog loss sums over units)."""
    expr = catalog.LOSSES[name]
    a_s, y_s = sp.symbols("a_s y_s", real=True)
    term = expr.replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function)
    term = term.replace(lambda e: isinstance(e, sp.Indexed) and e.base == catalog.a,
                        lambda e: a_s)
    term = term.replace(lambda e: isinstance(e, sp.Indexed) and e.base == catalog.y,
                        lambda e: y_s)
    assert not term.has(sp.Indexed), f"{name} is not a sum of per-unit terms"
    return sp.lambdify((a_s, y_s), term, MODULES)


def reference_forward(layers, X):
    for layer in layers:
        if isinstance(layer, Dense):
            X = X @ layer.params["W"].T + layer.params["b"]
        elif isinstance(layer, Activation):
            if layer.activation == "softmax":
                e = np.exp(X - X.max(axis=-1, keepdims=True))
                X = e / e.sum(axis=-1, keepdims=True)
            else:
                X = activation_function(layer.activation)(X) * np.ones_like(X)
        elif isinstance(layer, Embedding):
            X = layer.params["E"][X]
        elif isinstance(layer, Residual):
            X = X + reference_forward(layer.layers, X)
        elif isinstance(layer, Dropout):
            pass  # p = 0 in these tests
        else:
            raise TypeError(layer)
    return X


def reference_cost(model, X, Y_dense):
    A = reference_forward(model.layers, X)
    K = A.shape[-1]
    per_unit = unit_loss_function(model.loss_name)(A.reshape(-1, K), Y_dense.reshape(-1, K))
    return float(np.sum(per_unit) / (A.size // K))  # the mean over rows


def check_against_fd(model, X, Y, Y_dense):
    loss, grads = model.gradients(X, Y)
    assert loss == pytest.approx(reference_cost(model, X, Y_dense), rel=1e-10, abs=1e-12)
    for k, layer in enumerate(model.layers):
        assert sorted(grads[k]) == sorted(layer.params)
        for key, p in layer.params.items():
            assert grads[k][key].shape == p.shape and grads[k][key].dtype == p.dtype
            fd = central_differences(lambda: reference_cost(model, X, Y_dense), p)
            assert_close(f"layer {k} {key}", grads[k][key], fd)
    return loss, grads


def targets(loss, shape, rng):
    """Targets a loss accepts: one-hot rows for cross_entropy, (0, 1) for binary."""
    if loss == "cross_entropy":
        labels = rng.integers(0, shape[-1], size=shape[:-1])
        return labels, np.eye(shape[-1])[labels]
    if loss == "binary_cross_entropy":
        Y = rng.uniform(0.05, 0.95, size=shape)
        return Y, Y
    Y = rng.normal(size=shape)
    return Y, Y


# -- central differences --------------------------------------------------------
@pytest.mark.parametrize("hidden", ELEMENTWISE)
def test_every_hidden_activation(hidden):
    rng = np.random.default_rng(zlib.crc32(hidden.encode()))
    model = Sequential([Dense(4, 5, seed=1), Activation(hidden), Dense(5, 3, seed=2)],
                       loss="squared_error")
    X = rng.normal(size=(6, 4))
    Y, Y_dense = targets("squared_error", (6, 3), rng)
    check_against_fd(model, X, Y, Y_dense)


@pytest.mark.parametrize(("output", "loss"), PAIRS)
def test_every_output_pair(output, loss):
    rng = np.random.default_rng(len(output) * 31 + len(loss))
    model = Sequential([Dense(4, 5, seed=3), Activation("tanh"), Dense(5, 3, seed=4),
                        Activation(output)], loss=loss)
    X = rng.normal(size=(6, 4))
    Y, Y_dense = targets(loss, (6, 3), rng)
    check_against_fd(model, X, Y, Y_dense)


def test_every_loss_is_covered():
    assert {loss for _, loss in PAIRS} == set(LOSSES) == set(catalog.LOSSES)


def test_sequences_are_rows_of_the_loss():
    """(batch, T, K) outputs: the cost is the mean over all batch * T rows."""
    rng = np.random.default_rng(5)
    model = Sequential([Dense(4, 6, seed=5), Activation("swish"), Dense(6, 3, seed=6),
                        Activation("softmax")], loss="cross_entropy")
    X = rng.normal(size=(2, 5, 4))
    labels = rng.integers(0, 3, size=(2, 5))
    loss, _ = check_against_fd(model, X, labels, np.eye(3)[labels])
    flat = Sequential([Dense(4, 6), Activation("swish"), Dense(6, 3), Activation("softmax")])
    for src, dst in zip(model.layers, flat.layers, strict=True):
        for key in src.params:
            dst.params[key][...] = src.params[key]
    assert flat.gradients(X.reshape(10, 4), labels.ravel())[0] == pytest.approx(loss, rel=1e-12)


def test_embedding_residual_composition():
    rng = np.random.default_rng(6)
    model = Sequential([Embedding(7, 4, seed=7),
                        Residual(Dense(4, 4, seed=8), Activation("tanh")),
                        Dropout(0.0, seed=1), Dense(4, 3, seed=9),
                        Activation("sigmoid")], loss="binary_cross_entropy")
    ids = np.array([[1, 3, 1, 0], [3, 3, 6, 1]])  # repeated ids
    Y, Y_dense = targets("binary_cross_entropy", (2, 4, 3), rng)
    _, grads = check_against_fd(model, ids, Y, Y_dense)
    assert sorted(grads[1]) == ["0.W", "0.b"] and grads[2] == {} and grads[4] == {}


def test_same_gradients_as_network():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(9, 4))
    for hidden, output, loss in (("tanh", "softmax", "cross_entropy"),
                                 ("relu", "sigmoid", "binary_cross_entropy"),
                                 ("swish", "identity", "squared_error"),
                                 ("sigmoid", "softmax", "squared_error")):
        net = Network([4, 6, 3], [hidden, output], loss=loss, seed=2)
        dense = [Dense(4, 6), Dense(6, 3)]
        for layer, W, b in zip(dense, net.weights, net.biases, strict=True):
            layer.params["W"][...] = W
            layer.params["b"][...] = b
        model = Sequential([dense[0], Activation(hidden), dense[1], Activation(output)],
                           loss=loss)
        Y, _ = targets(loss, (9, 3), rng)
        loss_net, dW, db = net.gradients(X, Y)
        loss_seq, grads = model.gradients(X, Y)
        assert loss_seq == pytest.approx(loss_net, rel=1e-12)
        for k, layer in ((0, 0), (1, 2)):
            np.testing.assert_allclose(grads[layer]["W"], dW[k], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(grads[layer]["b"], db[k], rtol=1e-12, atol=1e-15)


def test_dense_seed_draws_like_a_one_layer_network():
    net = Network([3, 2], ["identity"], loss="squared_error", seed=11)
    layer = Dense(3, 2, seed=11)
    np.testing.assert_array_equal(layer.params["W"], net.weights[0])
    np.testing.assert_array_equal(layer.params["b"], net.biases[0])


# -- float32 -------------------------------------------------------------------
def test_float32_is_kept_everywhere():
    rng = np.random.default_rng(9)
    model = Sequential([Dense(4, 5, dtype=np.float32, seed=1), Activation("relu"),
                        Dropout(0.2, seed=0), Dense(5, 3, dtype=np.float32, seed=2),
                        Activation("softmax")])
    assert model.dtype == np.float32
    assert all(layer.dtype == np.float32 for layer in model.layers)
    X = rng.normal(size=(8, 4))  # float64 data is converted
    labels = rng.integers(0, 3, size=8)
    loss, grads = model.gradients(X, labels)
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for d in grads for g in d.values())
    assert model.forward(X).dtype == np.float32
    model.fit(X, labels, epochs=2, batch_size=4, seed=0)
    assert all(p.dtype == np.float32 for d in model.params for p in d.values())


def test_embedding_model_in_float32():
    model = Sequential([Embedding(5, 3, dtype=np.float32, seed=0), Dense(3, 2, dtype=np.float32),
                        Activation("softmax")])
    _, grads = model.gradients(np.array([[0, 4, 4]]), np.array([[1, 0, 1]]))
    assert grads[0]["E"].dtype == np.float32


# -- training workflow -------------------------------------------------------------
def blobs(rng, n=60):
    labels = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.5]])
    return centers[labels] + 0.3 * rng.normal(size=(n, 2)), labels


def test_fit_learns_and_reports_history():
    rng = np.random.default_rng(10)
    X, labels = blobs(rng)
    model = Sequential([Dense(2, 8, seed=0), Activation("tanh"), Dense(8, 3, seed=1),
                        Activation("softmax")], loss="cross_entropy")
    before = model.loss(X, labels)
    history = model.fit(X, labels, epochs=30, batch_size=10, learning_rate=0.5, seed=0,
                        validation_data=(X, labels))
    assert isinstance(history, History) and history.epochs == 30
    assert history.score_name == "accuracy"
    assert history.loss[-1] < 0.5 * before
    assert model.loss(X, labels) < 0.5 * before
    assert model.score(X, labels) > 0.9
    assert history.val_score[-1] == model.score(X, labels)
    assert model.predict(X).shape == (60,)


def test_fit_with_momentum_is_reproducible_with_a_seed():
    rng = np.random.default_rng(11)
    X, labels = blobs(rng)
    runs = []
    for _ in range(2):
        model = Sequential([Dense(2, 4, seed=0), Activation("sigmoid"), Dense(4, 3, seed=1),
                            Activation("softmax")])
        runs.append(model.fit(X, labels, epochs=5, batch_size=16, momentum=0.9,
                              learning_rate=0.2, seed=3).loss)
    assert runs[0] == runs[1]
    assert runs[0][-1] < runs[0][0]


def test_full_batch_history_starts_at_the_initial_cost():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(10, 3))
    Y = rng.normal(size=(10, 2))
    model = Sequential([Dense(3, 2, seed=0)], loss="squared_error")
    initial = model.loss(X, Y)
    history = model.fit(X, Y, epochs=2, batch_size=None, learning_rate=0.1)
    assert history.initial_loss == pytest.approx(initial, rel=1e-12)
    assert history.loss[0] == pytest.approx(initial, rel=1e-12)
    assert history.score_name == "mean_squared_error"


def test_divergence_restores_the_parameters():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(20, 3)) * 100
    Y = rng.normal(size=(20, 1)) * 100
    model = Sequential([Dense(3, 1, seed=0)], loss="squared_error")
    initial = model.params[0]["W"].copy()
    with pytest.raises(TrainingDivergedError, match="learning_rate") as info:
        model.fit(X, Y, epochs=50, batch_size=None, learning_rate=1e3)
    assert info.value.epoch >= 1
    if info.value.epoch == 1:
        np.testing.assert_array_equal(model.params[0]["W"], initial)
    assert np.isfinite(model.params[0]["W"]).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs"),
    ({"epochs": 2.5}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate": -1.0}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"validation_data": [1, 2, 3]}, "validation_data"),
])
def test_fit_arguments_are_checked(kwargs, message):
    model = Sequential([Dense(2, 3), Activation("softmax")])
    with pytest.raises(ValueError, match=message):
        model.fit(np.zeros((4, 2)), np.array([0, 1, 2, 0]), **kwargs)


def test_predict_and_score_per_loss():
    rng = np.random.default_rng(14)
    X = rng.normal(size=(5, 2))
    bce = Sequential([Dense(2, 2), Activation("sigmoid")], loss="binary_cross_entropy")
    pred = bce.predict(X)
    assert set(np.unique(pred)) <= {0, 1} and pred.shape == (5, 2)
    assert bce.score(X, pred) == 1.0
    reg = Sequential([Dense(2, 1)], loss="squared_error")
    out = reg.predict(X)
    assert reg.score(X, out[:, 0]) == 0.0
    assert reg.score(X, out + 1) == pytest.approx(1.0)


# -- bad input: ValueError naming the layer -------------------------------------------
def test_bad_models_are_refused():
    with pytest.raises(ValueError, match="layer 1, Activation\\('softmax'\\)"):
        Sequential([Dense(2, 3), Activation("softmax"), Dense(3, 2)], loss="squared_error")
    with pytest.raises(ValueError, match="cross_entropy needs a last layer Activation\\('softmax'\\)"):
        Sequential([Dense(2, 3), Activation("relu")], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"binary_cross_entropy.*Dense"):
        Sequential([Dense(2, 3)], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="unknown loss"):
        Sequential([Dense(2, 3)], loss="hinge")
    with pytest.raises(ValueError, match="layer 1 \\(Dense\\) is float32"):
        Sequential([Dense(2, 3), Dense(3, 2, dtype=np.float32)], loss="squared_error")
    with pytest.raises(ValueError, match="layer 1 is not a Layer"):
        Sequential([Dense(2, 3), "relu"], loss="squared_error")


def test_bad_data_names_the_layer():
    model = Sequential([Dense(4, 3), Activation("tanh"), Dense(3, 2), Activation("softmax")])
    with pytest.raises(ValueError, match="Sequential layer 0: Dense: X has 5 features"):
        model.gradients(np.zeros((2, 5)), np.array([0, 1]))
    with pytest.raises(ValueError, match="Dense: X contains NaN"):
        model.gradients(np.full((2, 4), np.nan), np.array([0, 1]))
    with pytest.raises(ValueError, match="label 2 out of range"):
        model.gradients(np.zeros((2, 4)), np.array([0, 2]))
    with pytest.raises(ValueError, match="Y has shape \\(2, 3\\)"):
        model.gradients(np.zeros((2, 4)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="training data: X has 2 examples but Y has 3"):
        model.fit(np.zeros((2, 4)), np.array([0, 1, 1]))
    emb = Sequential([Embedding(3, 2), Dense(2, 2), Activation("softmax")])
    with pytest.raises(ValueError, match="Sequential layer 0: Embedding: id 3 out of range"):
        emb.gradients(np.array([[0, 3]]), np.array([[0, 1]]))
    bce = Sequential([Dense(2, 1), Activation("sigmoid")], loss="binary_cross_entropy")
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        bce.gradients(np.zeros((2, 2)), np.array([0.5, 2.0]))


def test_nan_written_in_place_is_named():
    model = Sequential([Dense(2, 2), Activation("softmax")])
    model.params[0]["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match="layer 0 \\(Dense\\) parameter 'W'"):
        model.gradients(np.ones((2, 2)), np.array([0, 1]))


def test_every_layer_class_has_an_example():
    # tests/layer_examples.py feeds the tests that visit every layer; a new
    # class must add its example there.
    from layer_examples import example_classes, layer_classes
    missing = layer_classes() - example_classes()
    assert not missing, f"add an example of {sorted(missing)} to tests/layer_examples.py"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_network_to_sequential_is_the_same_model(dtype):
    rng = np.random.default_rng(12)
    X, labels = rng.normal(size=(10, 4)), rng.integers(0, 3, size=10)
    net = Network([4, 5, 6, 3], ["tanh", "relu", "softmax"], l2=0.3, dtype=dtype, seed=4)
    model = net.to_sequential()
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Activation"] * 3
    assert (model.loss_name, model.l2, model.dtype) == ("cross_entropy", 0.3, np.dtype(dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    loss_net, dW, db = net.gradients(X, labels)
    loss_seq, grads = model.gradients(X, labels)
    np.testing.assert_allclose(loss_seq, loss_net, **tol)
    for k in range(3):
        np.testing.assert_allclose(grads[2 * k]["W"], dW[k], **tol)
        np.testing.assert_allclose(grads[2 * k]["b"], db[k], **tol)
    np.testing.assert_array_equal(model.predict(X), net.predict(X))
    # copies: training one leaves the other as it was; the same run gives the same weights
    before = [W.copy() for W in net.weights]
    model.fit(X, labels, epochs=2, batch_size=4, lr=0.1, seed=1)
    for W, W0 in zip(net.weights, before, strict=True):
        np.testing.assert_array_equal(W, W0)
    net.fit(X, labels, epochs=2, batch_size=4, lr=0.1, seed=1)
    for k in range(3):
        np.testing.assert_allclose(model.layers[2 * k].params["W"], net.weights[k], **tol)
