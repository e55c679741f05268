"""Sequential's L2 penalty and gradient checking, on any layer.

The expected L2 gradient is central differences of a cost the test writes
itself: the training cost of a twin model without L2, plus (lambda / 2R)
sum ||W||^2 over the arrays the penalty is documented to cover (Dense and
convolution ``W``; never ``b``, ``gamma``, ``beta``), R the rows of the loss.
"""

import numpy as np
import pytest

from _finite_differences import assert_close, central_differences
from backprop_derived import Network, load
from backprop_derived import layers as L
from backprop_derived.gradcheck import gradient_check
from layer_examples import EXAMPLES

LAM = 0.7


def conv_norm_model(l2):
    # (4, 2, 6) -> Conv1d -> (4, 3, 5) -> LayerNorm over 5 -> Dense 5 -> 4 -> softmax:
    # the loss sees 12 rows of 4 classes
    return L.Sequential([L.Conv1d(2, 3, 2, seed=0), L.LayerNorm(5), L.Activation("tanh"),
                         L.Dense(5, 4, seed=1), L.Activation("softmax")], l2=l2)


def dense_batchnorm_model(l2):
    return L.Sequential([L.Dense(3, 5, seed=0), L.BatchNorm(5), L.Activation("tanh"),
                         L.Residual(L.Dense(5, 5, seed=2), L.Activation("sigmoid")),
                         L.Dense(5, 4, seed=1), L.Activation("softmax")], l2=l2)


CASES = {
    "conv_layernorm": (conv_norm_model, (4, 2, 6), (4, 3),
                       [(0, "W"), (3, "W")]),
    "dense_batchnorm_residual": (dense_batchnorm_model, (6, 3), (6,),
                                 [(0, "W"), (3, "0.W"), (4, "W")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_l2_gradient_matches_central_differences(case):
    build, x_shape, y_shape, penalized = CASES[case]
    rng = np.random.default_rng(3)
    X = rng.normal(size=x_shape)
    Y = rng.integers(0, 4, size=y_shape)
    model, plain = build(LAM), build(0.0)
    rows = int(np.prod(y_shape))
    assert sorted((k, key) for k, layer in enumerate(model.layers)
                  for key in layer.weight_keys()) == penalized

    def cost():
        weights = [plain.layers[k].params[key] for k, key in penalized]
        return plain.gradients(X, Y)[0] + LAM / (2 * rows) * sum(np.sum(W**2) for W in weights)

    loss, grads = model.gradients(X, Y)
    assert loss == pytest.approx(cost(), rel=1e-12)
    assert loss > plain.gradients(X, Y)[0]  # the penalty is there
    for k, layer in enumerate(plain.layers):
        for key, array in layer.params.items():
            expected = central_differences(cost, array)
            assert_close(f"layer {k} {key}", grads[k][key], expected)


def test_the_penalty_leaves_vectors_alone():
    model = dense_batchnorm_model(LAM)
    X = np.random.default_rng(0).normal(size=(6, 3))
    Y = np.arange(6) % 4
    _, with_l2 = model.gradients(X, Y)
    model.l2 = 0.0
    _, without = model.gradients(X, Y)
    for k, layer in enumerate(model.layers):
        for key in layer.params:
            same = np.array_equal(with_l2[k][key], without[k][key])
            assert same == (key not in layer.weight_keys()), (k, key)


def test_fit_steps_on_the_penalized_gradient():
    model = conv_norm_model(LAM)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(4, 2, 6)), rng.integers(0, 4, size=(4, 3))
    _, grads = model.gradients(X, Y)
    expected = [{key: p - 0.1 * grads[k][key] for key, p in layer.params.items()}
                for k, layer in enumerate(model.layers)]
    model.fit(X, Y, optimizer="sgd", lr=0.1, epochs=1, batch_size=None)
    for k, layer in enumerate(model.layers):
        for key, p in layer.params.items():
            np.testing.assert_allclose(p, expected[k][key], rtol=1e-12, atol=1e-15)


def test_l2_is_saved_and_loaded(tmp_path):
    model = conv_norm_model(LAM)
    model.save(tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.l2 == LAM
    X = np.random.default_rng(0).normal(size=(4, 2, 6))
    assert np.array_equal(again.forward(X), model.forward(X))


@pytest.mark.parametrize("l2", ["a", -1.0, float("nan")])
def test_bad_l2_is_named(l2):
    with pytest.raises(ValueError, match="l2 must be"):
        L.Sequential([L.Dense(2, 2)], loss="squared_error", l2=l2)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_gradcheck_passes_on_every_layer(name):
    rng = np.random.default_rng(0)
    layer, X = EXAMPLES[name](rng)
    width = layer.forward(X, train=False).shape[-1]
    model = L.Sequential([layer, L.Dense(width, 2, seed=1)], loss="squared_error", l2=0.3)
    Y = rng.normal(size=(*model.forward(X).shape[:-1], 2))
    before = [{key: p.copy() for key, p in la.params.items()} for la in model.layers]
    state = [(la.rng.bit_generator.state, la.rng) for la in model.layers if hasattr(la, "rng")]
    buffers = {b: getattr(layer, b).copy() for b in layer.BUFFERS}
    report = model.gradcheck(X, Y)
    assert report.passed, str(report)
    assert report.max_relative_error < 1e-7, str(report)
    # every parameter array is a block of the report, and the model is as it was
    assert set(report.analytic) == {(k, key) for k, la in enumerate(model.layers)
                                    for key in la.params}
    for la, saved in zip(model.layers, before, strict=True):
        for key, p in la.params.items():
            assert np.array_equal(p, saved[key])
    for saved, rng_ in state:
        assert rng_.bit_generator.state == saved
    for b, saved in buffers.items():
        assert np.array_equal(getattr(layer, b), saved)


def test_gradcheck_finds_a_wrong_layer_gradient(monkeypatch):
    model = dense_batchnorm_model(0.0)  # without L2 the error is exactly 0.01 / 1.01
    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(6, 3)), rng.integers(0, 4, size=6)
    assert model.gradcheck(X, Y).passed
    dense = model.layers[4]
    correct = dense._backward_unchecked

    def one_percent_too_large(dY, input_grad=True):
        dX = correct(dY, input_grad)
        dense.grads["W"] = dense.grads["W"] * 1.01
        return dX

    monkeypatch.setattr(dense, "_backward_unchecked", one_percent_too_large)
    report = model.gradcheck(X, Y)
    assert not report.passed and "FAILED" in str(report)
    assert report.worst[:2] == (4, "W")
    assert report.by_layer[4]["W"] == pytest.approx(0.01 / 1.01, rel=1e-2)
    assert report.by_layer[4]["b"] < 1e-7
    assert report.by_kind["gamma"] < 1e-7


def test_gradcheck_sees_relu_kinks_in_a_sequential():
    model = L.Sequential([L.Dense(2, 2, seed=0), L.Activation("relu"), L.Dense(2, 1, seed=1)],
                         loss="squared_error")
    dense = model.layers[0]
    dense.params["W"][...] = [[1.0, -1.0], [0.5, 0.5]]
    dense.params["b"][...] = [1e-6, 0.2]  # unit 0 of example 0 sits at z = 1e-6
    X = np.array([[0.3, 0.3], [1.0, -1.0], [-0.5, 2.0]])
    Y = np.array([[1.0], [0.0], [2.0]])
    report = model.gradcheck(X, Y)
    assert report.kink_warnings and all(w.crossing[0] == 1 for w in report.kink_warnings)
    assert report.passed, str(report)


def test_network_gradcheck_is_gradient_check():
    net = Network([3, 4, 2], ["tanh", "softmax"], l2=0.5, seed=0)
    X = np.random.default_rng(0).normal(size=(5, 3))
    Y = np.arange(5) % 2
    report, reference = net.gradcheck(X, Y), gradient_check(net, X, Y)
    assert report.passed and str(report) == str(reference)


def test_both_models_add_the_generated_l2_gradient(monkeypatch):
    # One place for the penalty's gradient: Network and Sequential both call the
    # kernel derivations/08_regularization.py generates, once per weight array.
    from backprop_derived import regularization

    seen = []
    kernel = regularization.layers.l2_gradient

    def counting(W, lam, m, out):
        seen.append(W.shape)
        return kernel(W, lam, m, out)

    monkeypatch.setattr(regularization.layers, "l2_gradient", counting)
    X, y = np.random.default_rng(0).normal(size=(5, 3)), np.array([0, 1, 1, 0, 1])
    Network([3, 4, 2], ["tanh", "softmax"], l2=0.5, seed=0).gradients(X, y)
    assert seen == [(2, 4), (4, 3)]
    seen.clear()
    L.Sequential([L.Dense(3, 4, seed=0), L.Activation("tanh"), L.Dense(4, 2, seed=1),
                  L.Activation("softmax")], l2=0.5).gradients(X, y)
    assert sorted(seen) == [(2, 4), (4, 3)]
