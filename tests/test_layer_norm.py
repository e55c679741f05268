"""BatchNorm and LayerNorm against plain NumPy and central differences.

The reference forward passes below are written directly from the definitions
(``X.mean``, ``X.var``), independent of the generated kernels. The gradients
are checked against central differences of ``sum(dY * forward(X))``, whose
gradient with respect to X is dX by definition.
"""

import numpy as np
import pytest

from backprop_derived.layers import BatchNorm, LayerNorm

EPS = 1e-5


def batch_norm_reference(X, gamma, beta, eps=EPS):
    return gamma * (X - X.mean(axis=0)) / np.sqrt(X.var(axis=0) + eps) + beta


def layer_norm_reference(X, gamma, beta, eps=EPS):
    mean = X.mean(axis=-1, keepdims=True)
    var = X.var(axis=-1, keepdims=True)
    return gamma * (X - mean) / np.sqrt(var + eps) + beta


def central_differences(f, x, h=1e-6):
    """Gradient of the scalar ``f()`` with respect to ``x``, perturbed in place."""
    grad = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        saved = x[idx]
        x[idx] = saved + h
        plus = f()
        x[idx] = saved - h
        minus = f()
        x[idx] = saved
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def assert_close(name, got, expected, tol=1e-7):
    error = np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected)))
    assert error <= tol, f"{name}: max relative error {error:.2e}"


def random_params(rng, n):
    return 1 + 0.5 * rng.normal(size=n), rng.normal(size=n)


def check_gradients(layer, reference, X, rng, train=True):
    """dX, dgamma and dbeta of ``layer`` against central differences of ``reference``."""
    gamma, beta = layer.params["gamma"], layer.params["beta"]
    Y = layer.forward(X, train=train)
    assert_close("Y", Y, reference(X, gamma, beta), tol=1e-12)
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)
    X = X.copy()
    for name, arr, got in (("dX", X, dX), ("dgamma", gamma, layer.grads["gamma"]),
                           ("dbeta", beta, layer.grads["beta"])):
        expected = central_differences(lambda: float(np.sum(dY * reference(X, gamma, beta))),
                                       arr)
        assert got.shape == arr.shape
        assert_close(name, got, expected)


@pytest.mark.parametrize("seed", range(6))
def test_batch_norm_gradients_match_central_differences(seed):
    rng = np.random.default_rng(seed)
    m, n = rng.integers(2, 8), rng.integers(1, 6)
    layer = BatchNorm(n)
    layer.params["gamma"][:], layer.params["beta"][:] = random_params(rng, n)
    X = rng.normal(loc=rng.normal(size=n), scale=rng.uniform(0.5, 2, size=n), size=(m, n))
    check_gradients(layer, batch_norm_reference, X, rng)


@pytest.mark.parametrize("seed", range(6))
def test_layer_norm_gradients_match_central_differences(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 6))
    leading = tuple(int(d) for d in rng.integers(1, 4, size=seed % 3 + 1))
    layer = LayerNorm(n)
    layer.params["gamma"][:], layer.params["beta"][:] = random_params(rng, n)
    X = rng.normal(size=(*leading, n)) * rng.uniform(0.5, 2)
    check_gradients(layer, layer_norm_reference, X, rng)


def test_layer_norm_on_a_single_vector():
    rng = np.random.default_rng(7)
    layer = LayerNorm(4)
    layer.params["gamma"][:], layer.params["beta"][:] = random_params(rng, 4)
    check_gradients(layer, layer_norm_reference, rng.normal(size=4), rng)


def test_batch_norm_compact_gradient_sums_to_zero_over_the_batch():
    # Y does not change when a constant is added to a feature, so neither may the cost.
    rng = np.random.default_rng(3)
    layer = BatchNorm(5)
    layer.forward(rng.normal(size=(9, 5)))
    dX = layer.backward(rng.normal(size=(9, 5)))
    assert np.abs(dX.sum(axis=0)).max() < 1e-12


def test_running_statistics_follow_pytorch():
    rng = np.random.default_rng(1)
    layer = BatchNorm(3, momentum=0.25)
    mean, var = np.zeros(3), np.ones(3)
    for m in (4, 7):
        X = rng.normal(loc=2.0, scale=3.0, size=(m, 3))
        layer.forward(X)
        mean = 0.75 * mean + 0.25 * X.mean(axis=0)
        var = 0.75 * var + 0.25 * X.var(axis=0, ddof=1)  # unbiased in the running average
        np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-13)
        np.testing.assert_allclose(layer.running_var, var, rtol=1e-13)


def test_evaluation_mode_uses_running_statistics_and_their_gradient():
    rng = np.random.default_rng(2)
    layer = BatchNorm(4)
    layer.params["gamma"][:], layer.params["beta"][:] = random_params(rng, 4)
    for _ in range(3):
        layer.forward(rng.normal(loc=1.0, size=(6, 4)))
    mean, var = layer.running_mean.copy(), layer.running_var.copy()

    def reference(X, gamma, beta):
        return gamma * (X - mean) / np.sqrt(var + EPS) + beta

    check_gradients(layer, reference, rng.normal(size=(5, 4)), rng, train=False)
    np.testing.assert_array_equal(layer.running_mean, mean)  # unchanged by evaluation
    np.testing.assert_array_equal(layer.running_var, var)
    one = rng.normal(size=(1, 4))  # a single example is fine in evaluation mode
    np.testing.assert_allclose(layer.forward(one, train=False),
                               reference(one, layer.params["gamma"], layer.params["beta"]))


@pytest.mark.parametrize("cls, shape", [(BatchNorm, (5, 3)), (LayerNorm, (2, 5, 3))])
@pytest.mark.parametrize("train", [True, False])
def test_float32_stays_float32(cls, shape, train):
    rng = np.random.default_rng(4)
    layer, wide = cls(3, dtype=np.float32), cls(3)
    gamma, beta = random_params(rng, 3)
    for net in (layer, wide):
        net.params["gamma"][:], net.params["beta"][:] = gamma, beta
    X, dY = rng.normal(size=shape), rng.normal(size=shape)
    Y = layer.forward(X.astype(np.float32), train=train)
    dX = layer.backward(dY.astype(np.float32))
    arrays = [Y, dX, *layer.params.values(), *layer.grads.values()]
    if cls is BatchNorm:
        arrays += [layer.running_mean, layer.running_var]
    assert all(a.dtype == np.float32 for a in arrays)
    np.testing.assert_allclose(Y, wide.forward(X, train=train), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dX, wide.backward(dY), rtol=1e-4, atol=1e-4)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(layer.grads[key], wide.grads[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("args, message", [
    (dict(n=0), "positive integer"),
    (dict(n=2.0), "positive integer"),
    (dict(n=3, eps=0.0), "eps"),
    (dict(n=3, eps=float("nan")), "eps"),
    (dict(n=3, eps="small"), "eps"),
    (dict(n=3, dtype=np.int32), "dtype"),
])
@pytest.mark.parametrize("cls", [BatchNorm, LayerNorm])
def test_bad_construction_is_refused(cls, args, message):
    with pytest.raises(ValueError, match=message):
        cls(**args)


@pytest.mark.parametrize("momentum", [-0.1, 1.5, "fast", True])
def test_bad_momentum_is_refused(momentum):
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(3, momentum=momentum)


@pytest.mark.parametrize("X, message", [
    (np.zeros((4, 2)), "features"),
    (np.zeros((2, 4, 3)), "dimensions"),
    (np.zeros(3), "dimensions"),
    (np.zeros((1, 3)), "at least 2 examples"),
    (np.full((4, 3), np.nan), "NaN"),
    (np.array([["a", "b", "c"]] * 2), "numeric"),
    (np.zeros((0, 3)), "empty"),
])
def test_batch_norm_bad_inputs(X, message):
    with pytest.raises(ValueError, match=message):
        BatchNorm(3).forward(X)


@pytest.mark.parametrize("X, message", [
    (np.zeros((4, 2)), "features"),
    (np.float64(1.0), "scalar"),
    (np.array([[1.0, np.inf, 0.0]]), "NaN or inf"),
    (np.zeros((0, 3)), "empty"),
])
def test_layer_norm_bad_inputs(X, message):
    with pytest.raises(ValueError, match=message):
        LayerNorm(3).forward(X)


@pytest.mark.parametrize("layer, shape", [(BatchNorm(3), (4, 3)), (LayerNorm(3), (2, 4, 3))])
def test_bad_upstream_gradients(layer, shape):
    with pytest.raises(ValueError, match="forward"):
        type(layer)(3).backward(np.zeros(shape))
    layer.forward(np.random.default_rng(0).normal(size=shape))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        layer.backward(np.full(shape, np.nan))
