"""SelfAttention against an independent NumPy forward and its central differences.

The reference forward below is written plainly (softmax with hidden keys set
to -inf), not from the catalog or the generated kernels. The gradient of
``sum(dY * Y)`` with respect to any input or parameter is, by definition, what
``backward(dY)`` returns for it; central differences of the reference give
it to about 1e-9 in float64.
"""

import numpy as np
import pytest

from backprop_derived.layers import SelfAttention


def reference_forward(X, Wq, Wk, Wv, Wo, causal):
    Q, K, V = X @ Wq.T, X @ Wk.T, X @ Wv.T
    S = Q @ np.swapaxes(K, 1, 2) / np.sqrt(Wq.shape[0])
    T = X.shape[1]
    if causal:
        S = np.where(np.arange(T)[None, :] > np.arange(T)[:, None], -np.inf, S)
    S = S - S.max(axis=2, keepdims=True)
    P = np.exp(S)
    P /= P.sum(axis=2, keepdims=True)
    return (P @ V) @ Wo.T


def central_differences(f, x, eps=1e-6):
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        plus = f()
        x[idx] = old - eps
        minus = f()
        x[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def relative_error(got, want):
    return np.abs(got - want).max() / max(1.0, np.abs(want).max())


CASES = [(seed, causal) for seed in range(4) for causal in (False, True)]


@pytest.mark.parametrize(("seed", "causal"), CASES)
def test_gradients_match_central_differences(seed, causal):
    rng = np.random.default_rng(seed)
    N, T, D, H = (int(x) for x in rng.integers(1, 5, size=4))
    T += 1  # at least two positions, so the softmax mixes
    layer = SelfAttention(D, H, causal=causal, dtype=np.float64, seed=seed)
    X = rng.normal(size=(N, T, D))
    dY = rng.normal(size=(N, T, D))
    Y = layer.forward(X)
    p = {k: v.copy() for k, v in layer.params.items()}
    np.testing.assert_allclose(Y, reference_forward(X, p["Wq"], p["Wk"], p["Wv"], p["Wo"],
                                                    causal), rtol=0, atol=1e-12)
    dX = layer.backward(dY)

    def objective():
        return float((reference_forward(X, p["Wq"], p["Wk"], p["Wv"], p["Wo"], causal)
                      * dY).sum())

    assert relative_error(dX, central_differences(objective, X)) < 1e-8
    assert set(layer.grads) == set(layer.params)
    for name in ("Wq", "Wk", "Wv", "Wo"):
        assert layer.grads[name].shape == layer.params[name].shape
        fd = central_differences(objective, p[name])
        assert relative_error(layer.grads[name], fd) < 1e-8, name


def test_causal_output_ignores_later_positions():
    rng = np.random.default_rng(7)
    layer = SelfAttention(4, 3, causal=True, seed=1)
    X = rng.normal(size=(2, 6, 4))
    Y = layer.forward(X)
    X2 = X.copy()
    X2[:, 3:] = rng.normal(size=(2, 3, 4))
    Y2 = layer.forward(X2)
    np.testing.assert_array_equal(Y[:, :3], Y2[:, :3])
    assert np.abs(Y[:, 3:] - Y2[:, 3:]).max() > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_large_scores_stay_finite(causal):
    """Scores in the thousands (with a mask: hidden keys far above the visible
    ones): no overflow, no NaN."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        layer = SelfAttention(3, 2, causal=causal, dtype=dtype, seed=2)
        X = (rng.normal(size=(2, 5, 3)) * 60).astype(dtype)
        X[:, 2:] *= 30  # later positions: scores in the thousands
        Y = layer.forward(X)
        dX = layer.backward(np.ones_like(Y))
        assert np.isfinite(Y).all() and np.isfinite(dX).all()
        assert all(np.isfinite(g).all() for g in layer.grads.values())
        p = {k: v.astype(np.float64) for k, v in layer.params.items()}
        want = reference_forward(X.astype(np.float64), *(p[k] for k in ("Wq", "Wk", "Wv", "Wo")),
                                 causal=causal)
        assert relative_error(Y, want) < (1e-4 if dtype == np.float32 else 1e-12)


def test_float32_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(5)
    X, dY = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    results = {}
    for dtype in (np.float32, np.float64):
        layer = SelfAttention(6, 4, causal=True, dtype=dtype, seed=9)
        Y = layer.forward(X.astype(dtype))
        dX = layer.backward(dY.astype(dtype))
        assert Y.dtype == dX.dtype == dtype
        assert all(v.dtype == dtype for v in (*layer.params.values(), *layer.grads.values()))
        results[dtype] = (Y, dX, layer.grads["Wq"], layer.grads["Wo"])
    for a, b in zip(results[np.float32], results[np.float64], strict=True):
        assert relative_error(a.astype(np.float64), b) < 1e-5


def test_parameters_are_updated_in_place_and_used():
    layer = SelfAttention(4, 2, seed=0)
    X = np.random.default_rng(0).normal(size=(1, 3, 4))
    Y = layer.forward(X)
    layer.backward(np.ones_like(Y))
    for name, W in layer.params.items():
        W -= 0.1 * layer.grads[name]
    assert np.abs(layer.forward(X) - Y).max() > 1e-6


@pytest.mark.parametrize(("X", "match"), [
    (np.zeros((3, 4)), "3 dimensions"),
    (np.zeros((2, 3, 5)), "expects 4"),
    (np.full((1, 2, 4), np.nan), "NaN or inf"),
    (np.full((1, 2, 4), np.inf), "NaN or inf"),
    (np.zeros((0, 2, 4)), "empty"),
    (np.array([[["a"] * 4]]), "numeric"),
])
def test_bad_inputs_are_named(X, match):
    with pytest.raises(ValueError, match=match):
        SelfAttention(4, 2).forward(X)


def test_bad_upstream_and_order():
    layer = SelfAttention(4, 2)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 4)))
    layer.forward(np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        layer.backward(np.full((1, 2, 4), np.nan))
    layer.forward(np.zeros((1, 2, 4)), train=False)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 4)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"d_model": 0, "d_head": 2}, "d_model"),
    ({"d_model": 4, "d_head": 2.5}, "d_head"),
    ({"d_model": 4, "d_head": 2, "causal": "yes"}, "causal"),
    ({"d_model": 4, "d_head": 2, "dtype": np.int32}, "dtype"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SelfAttention(**kwargs)
