"""MultiHeadAttention against an independent NumPy forward and its central differences.

The reference is written from PyTorch's documented definition of
``nn.MultiheadAttention`` (bias=False, batch_first=True, query = key = value = X),
head by head in a Python loop: ``q = X Wq^T``, head ``h`` takes the features
``h * d_head : (h + 1) * d_head`` of q, k and v; ``softmax(q_h k_h^T / sqrt(d_head)
+ mask) v_h``; the heads concatenated in order; ``Y = concat Wo^T``. It uses neither
the catalog nor the generated kernels. The gradient of ``sum(dY * Y)`` with respect
to any input or parameter is what ``backward(dY)`` returns for it; central differences
of the reference give it to about 1e-9 in float64.
"""

import numpy as np
import pytest

from backprop_derived.layers import MultiHeadAttention, SelfAttention


def reference_forward(X, Wq, Wk, Wv, Wo, heads, causal):
    N, T, D = X.shape
    dh = D // heads
    q, k, v = X @ Wq.T, X @ Wk.T, X @ Wv.T
    hidden = np.arange(T)[None, :] > np.arange(T)[:, None]  # key s after query t
    concat = np.zeros((N, T, D))
    for h in range(heads):
        cols = slice(h * dh, (h + 1) * dh)
        scores = q[:, :, cols] @ np.swapaxes(k[:, :, cols], 1, 2) / np.sqrt(dh)
        if causal:
            scores = np.where(hidden, -np.inf, scores)
        scores = scores - scores.max(axis=2, keepdims=True)
        weights = np.exp(scores)
        weights /= weights.sum(axis=2, keepdims=True)
        concat[:, :, cols] = weights @ v[:, :, cols]
    return concat @ Wo.T


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


def weights(layer):
    return tuple(layer.params[k].astype(np.float64) for k in ("Wq", "Wk", "Wv", "Wo"))


CASES = [(2, 3, 6, 3, False), (2, 3, 6, 3, True), (1, 4, 4, 2, False), (3, 2, 4, 4, True),
         (1, 3, 3, 1, True)]


@pytest.mark.parametrize(("N", "T", "D", "heads", "causal"), CASES)
def test_forward_and_gradients_match_reference(N, T, D, heads, causal):
    rng = np.random.default_rng(D * 10 + heads)
    layer = MultiHeadAttention(D, heads, causal=causal, seed=heads)
    X = rng.normal(size=(N, T, D))
    dY = rng.normal(size=(N, T, D))
    Y = layer.forward(X)
    p = {k: v.copy() for k, v in layer.params.items()}

    def args():
        return (X, p["Wq"], p["Wk"], p["Wv"], p["Wo"], heads, causal)

    np.testing.assert_allclose(Y, reference_forward(*args()), rtol=0, atol=1e-12)
    dX = layer.backward(dY)

    def objective():
        return float((reference_forward(*args()) * dY).sum())

    assert relative_error(dX, central_differences(objective, X)) < 1e-8
    assert set(layer.grads) == {"Wq", "Wk", "Wv", "Wo"} == set(layer.params)
    for name in ("Wq", "Wk", "Wv", "Wo"):
        assert layer.grads[name].shape == layer.params[name].shape == (D, D)
        fd = central_differences(objective, p[name])
        assert relative_error(layer.grads[name], fd) < 1e-8, name


def test_heads_use_contiguous_rows():
    """Zeroing rows 2..3 of Wv (head 1 of 2, d_head = 2) silences columns 2..3 of Wo only."""
    rng = np.random.default_rng(1)
    layer = MultiHeadAttention(4, 2, seed=0)
    X = rng.normal(size=(2, 3, 4))
    layer.params["Wv"][2:] = 0.0
    Y = layer.forward(X)
    layer.params["Wo"][:, 2:] = rng.normal(size=(4, 2))  # what head 1 would feed
    np.testing.assert_allclose(layer.forward(X), Y, rtol=0, atol=1e-14)
    layer.params["Wo"][:, :2] += 1.0  # head 0's columns do matter
    assert np.abs(layer.forward(X) - Y).max() > 1e-3


@pytest.mark.parametrize("causal", [False, True])
def test_one_head_is_self_attention(causal):
    """heads = 1, d_head = d_model: the same weights give SelfAttention's output and gradients."""
    rng = np.random.default_rng(2)
    multi = MultiHeadAttention(3, 1, causal=causal, seed=0)
    single = SelfAttention(3, 3, causal=causal, seed=5)
    for name in ("Wq", "Wk", "Wv", "Wo"):
        single.params[name][:] = multi.params[name]
    X, dY = rng.normal(size=(2, 4, 3)), rng.normal(size=(2, 4, 3))
    np.testing.assert_allclose(multi.forward(X), single.forward(X), rtol=0, atol=1e-13)
    np.testing.assert_allclose(multi.backward(dY), single.backward(dY), rtol=0, atol=1e-12)
    for name in ("Wq", "Wk", "Wv", "Wo"):
        np.testing.assert_allclose(multi.grads[name], single.grads[name], rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_large_scores_stay_finite(causal):
    """Scores near 800 and beyond (with a mask: hidden keys far above the visible ones)."""
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        layer = MultiHeadAttention(4, 2, causal=causal, dtype=dtype, seed=2)
        X = (rng.normal(size=(2, 5, 4)) * 30).astype(dtype)
        X[:, 2:] *= 20  # later positions: scores in the hundreds of thousands
        Y = layer.forward(X)
        S = layer._cache["s"]  # the saved scores, by the binding's name
        assert np.abs(S[np.isfinite(S)]).max() > 800  # the test reaches exp overflow
        dX = layer.backward(np.ones_like(Y))
        assert np.isfinite(Y).all() and np.isfinite(dX).all()
        assert all(np.isfinite(g).all() for g in layer.grads.values())
        want = reference_forward(X.astype(np.float64), *weights(layer), 2, causal)
        assert relative_error(Y, want) < (1e-4 if dtype == np.float32 else 1e-12)


def test_float32_stays_float32_and_agrees_with_float64():
    rng = np.random.default_rng(5)
    X, dY = rng.normal(size=(3, 4, 6)), rng.normal(size=(3, 4, 6))
    results = {}
    for dtype in (np.float32, np.float64):
        layer = MultiHeadAttention(6, 3, causal=True, dtype=dtype, seed=9)
        Y = layer.forward(X.astype(dtype))
        dX = layer.backward(dY.astype(dtype))
        assert Y.dtype == dX.dtype == dtype
        assert all(v.dtype == dtype for v in (*layer.params.values(), *layer.grads.values()))
        results[dtype] = (Y, dX, *layer.grads.values())
    for a, b in zip(results[np.float32], results[np.float64], strict=True):
        assert relative_error(a.astype(np.float64), b) < 1e-5


def test_init_is_pytorchs():
    """Xavier-uniform over the stacked (3 d, d) in-projection, Wo uniform in +-1/sqrt(d)."""
    d = 64
    layer = MultiHeadAttention(d, 4, seed=0)
    bound_in, bound_out = np.sqrt(6.0 / (4 * d)), 1 / np.sqrt(d)
    for name in ("Wq", "Wk", "Wv"):
        W = layer.params[name]
        assert np.abs(W).max() <= bound_in and np.abs(W).max() > 0.95 * bound_in
        assert abs(W.var() - bound_in**2 / 3) < 0.1 * bound_in**2 / 3
    assert np.abs(layer.params["Wo"]).max() <= bound_out
    assert not np.array_equal(layer.params["Wq"], layer.params["Wk"])
    same = MultiHeadAttention(d, 4, seed=0)
    assert all(np.array_equal(same.params[k], layer.params[k]) for k in layer.params)


def test_parameters_are_updated_in_place_and_used():
    layer = MultiHeadAttention(4, 2, seed=0)
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
    (np.zeros((0, 2, 4)), "empty"),
    (np.zeros((1, 0, 4)), "empty|positions"),
    (np.array([[["a"] * 4]]), "numeric"),
])
def test_bad_inputs_are_named(X, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(4, 2).forward(X)


def test_bad_upstream_and_order():
    layer = MultiHeadAttention(4, 2)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 4)))
    layer.forward(np.zeros((1, 2, 4)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 3, 4)))
    layer.forward(np.zeros((1, 2, 4)), train=False)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 4)))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"d_model": 6, "heads": 4}, "not divisible by heads"),
    ({"d_model": 0, "heads": 1}, "d_model"),
    ({"d_model": 4, "heads": 0}, "heads"),
    ({"d_model": 4, "heads": 2.0}, "heads"),
    ({"d_model": 4, "heads": 2, "causal": "yes"}, "causal"),
    ({"d_model": 4, "heads": 2, "dtype": np.int32}, "dtype"),
])
def test_bad_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


@pytest.mark.slow  # about 1.5 s idle; a SymPy proof fails before the one that holds
def test_an_affine_parameter_index_is_proven_and_printed():
    """Two equations, a parameter read at the affine row J g + j (a head split) by one of
    them: the engine's gradient chain cannot sum the bracket, so the declaration proves
    the gradient through that one equation (canonical sums; without that fallback
    declared_kernels raises), and the printed kernels agree with central differences.
    Nothing here is attention-specific."""
    import sympy as sp
    from sympy import IndexedBase, Sum

    from backprop_derived.symbolic.catalog import LayerDeclaration
    from backprop_derived.symbolic.codegen import render_kernel
    from backprop_derived.symbolic.declared import declared_kernels

    N, G, J = sp.symbols("N G J", integer=True, positive=True)
    n, g, j, c = sp.symbols("n g j c", integer=True)
    X = IndexedBase("X", shape=(N, G * J), real=True)
    W = IndexedBase("W", shape=(G * J, G * J), real=True)
    Q = IndexedBase("Q", shape=(N, G, J), real=True)
    Y = IndexedBase("Y", shape=(N, G, J), real=True)
    eqs = ((Q[n, g, j], Sum(X[n, c] * W[J * g + j, c], (c, 0, G * J - 1))),
           (Y[n, g, j], Q[n, g, j] ** 2))
    # X a constant: only W's chain is proven (the failing first attempt costs seconds)
    layer = LayerDeclaration("split", eqs, inputs=(), params=(W,), saved=(Q,), outputs=(Y,),
                             constants=(X,))
    _, forward, back = declared_kernels(layer, "test", "tests", "split")
    env = {"numpy": np}
    for kernel in (forward, back):
        exec(render_kernel(kernel)[0], env)  # noqa: S102
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(2, 6)), rng.normal(size=(6, 6))  # G = 3 groups of J = 2
    sizes = {"G": 3, "J": 2}

    def call(f, **arrays):
        names = f.__code__.co_varnames[:f.__code__.co_argcount]
        return f(**{k: {**arrays, **sizes}[k] for k in names})

    y, q = call(env["split_forward"], x=x, w=w)
    np.testing.assert_allclose(y, ((x @ w.T) ** 2).reshape(2, 3, 2), rtol=1e-13)
    dy = rng.normal(size=y.shape)
    dw = call(env["split_backward"], dy=dy, x=x, q=q, w=w)

    def value():
        return float(np.sum(dy * ((x @ w.T) ** 2).reshape(2, 3, 2)))

    assert relative_error(dw, central_differences(value, w)) < 1e-8
