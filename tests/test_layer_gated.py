"""The GRU and LSTM layers: the declared cell steps run through time.

The references are plain NumPy loops written here from PyTorch's documented
equations for ``nn.GRU`` and ``nn.LSTM`` (gates stacked r, z, n and i, f, g, o
in ``weight_ih_l0``), independent of the generated kernels. Gradients are
checked against central differences of ``sum(R * H(X))`` in float64, so a
missing path through time (a state's gradient from step t + 1) fails them.
"""

import numpy as np
import pytest

from backprop_derived.layers import GRU, LSTM, Dense, Sequential


def _sigmoid(a):
    return 1 / (1 + np.exp(-a))


def gru_reference(X, W_ih, W_hh, b_ih, b_hh):
    """PyTorch's nn.GRU: r, z, n = rows [0, H), [H, 2H), [2H, 3H) of the stacked weights."""
    N, T, _ = X.shape
    H = W_hh.shape[1]
    h, out = np.zeros((N, H)), []
    for t in range(T):
        gi = X[:, t] @ W_ih.T + b_ih
        gh = h @ W_hh.T + b_hh
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])  # r scales W_hn h + b_hn
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, axis=1)


def lstm_reference(X, W_ih, W_hh, b_ih, b_hh):
    """PyTorch's nn.LSTM: i, f, g, o = rows [0, H), ..., [3H, 4H)."""
    N, T, _ = X.shape
    H = W_hh.shape[1]
    h, c, out = np.zeros((N, H)), np.zeros((N, H)), []
    for t in range(T):
        a = X[:, t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh
        i, f = _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H])
        g, o = np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)


CELLS = [(GRU, gru_reference, 3), (LSTM, lstm_reference, 4)]
IDS = ["GRU", "LSTM"]


@pytest.mark.parametrize("cls, reference, gates", CELLS, ids=IDS)
def test_parameters_are_laid_out_and_initialised_as_pytorch(cls, reference, gates):
    layer = cls(3, 4, seed=0)
    shapes = {k: v.shape for k, v in layer.params.items()}
    assert shapes == {"W_ih": (gates * 4, 3), "W_hh": (gates * 4, 4),
                      "b_ih": (gates * 4,), "b_hh": (gates * 4,)}
    values = np.concatenate([v.ravel() for v in layer.params.values()])
    assert np.abs(values).max() <= 0.5  # U(-1/sqrt(H), 1/sqrt(H)), H = 4
    assert values.std() == pytest.approx(0.5 / np.sqrt(3), rel=0.2)
    assert not np.array_equal(cls(3, 4, seed=1).params["W_ih"], layer.params["W_ih"])


@pytest.mark.parametrize("cls, reference, gates", CELLS, ids=IDS)
@pytest.mark.parametrize("T", [1, 3, 4])
def test_forward_matches_pytorchs_equations(cls, reference, gates, T):
    rng = np.random.default_rng(T)
    layer = cls(3, 4, seed=2)
    # larger weights than the default, so that every gate is far from 1/2
    layer.params = {k: 3 * v for k, v in layer.params.items()}
    X = rng.normal(size=(2, T, 3))
    np.testing.assert_allclose(layer.forward(X), reference(X, **layer.params),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("cls, reference, gates", CELLS, ids=IDS)
@pytest.mark.parametrize("T", [3, 4])
def test_gradients_match_central_differences(cls, reference, gates, T):
    rng = np.random.default_rng(10 + T)
    layer = cls(3, 4, seed=T)
    layer.params = {k: 2 * v for k, v in layer.params.items()}
    p = {k: v.copy() for k, v in layer.params.items()}
    X = rng.normal(size=(2, T, 3))
    R = rng.normal(size=(2, T, 4))
    layer.forward(X)
    dX = layer.backward(R)

    def objective(X_, params):
        return float((reference(X_, **params) * R).sum())

    eps, worst = 1e-6, 0.0
    for name, arr in [("X", X), *p.items()]:
        got = dX if name == "X" else layer.grads[name]
        assert got.shape == arr.shape
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            if name == "X":
                fd = (objective(plus, p) - objective(minus, p)) / (2 * eps)
            else:
                fd = (objective(X, {**p, name: plus})
                      - objective(X, {**p, name: minus})) / (2 * eps)
            worst = max(worst, abs(fd - got[idx]) / max(1.0, abs(fd)))
    # float64 central differences at eps = 1e-6 on values of order 1: ~1e-9
    assert worst < 1e-7, worst


@pytest.mark.parametrize("cls, reference, gates", CELLS, ids=IDS)
def test_float32_stays_float32(cls, reference, gates):
    X = np.random.default_rng(0).normal(size=(2, 4, 3))
    layer, ref = cls(3, 4, dtype=np.float32, seed=0), cls(3, 4, seed=0)
    H = layer.forward(X.astype(np.float32))
    dX = layer.backward(np.ones_like(H))
    assert H.dtype == dX.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())
    np.testing.assert_allclose(H, ref.forward(X), rtol=1e-5, atol=1e-6)
    dX64 = ref.backward(np.ones((2, 4, 4)))
    np.testing.assert_allclose(dX, dX64, rtol=1e-4, atol=1e-5)
    for k in ref.grads:
        np.testing.assert_allclose(layer.grads[k], ref.grads[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls", [GRU, LSTM], ids=IDS)
@pytest.mark.parametrize("X, message", [
    (np.zeros((2, 3)), "3 dimensions"),
    (np.zeros((2, 3, 4)), "features"),
    (np.full((1, 2, 2), np.nan), "NaN"),
    (np.zeros((1, 0, 2)), "empty"),
    (np.array([[["a", "b"]]]), "numeric"),
])
def test_bad_input(cls, X, message):
    with pytest.raises(ValueError, match=f"{cls.__name__}: .*{message}"):
        cls(2, 3).forward(X)


@pytest.mark.parametrize("cls", [GRU, LSTM], ids=IDS)
def test_backward_needs_a_training_forward_and_the_right_shape(cls):
    layer = cls(2, 3)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 3)))
    layer.forward(np.zeros((1, 2, 2)), train=False)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 3)))
    layer.forward(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 3, 3)))


@pytest.mark.parametrize("cls", [GRU, LSTM], ids=IDS)
@pytest.mark.parametrize("args, message", [((0, 3), "input_size"), ((2, -1), "hidden_size"),
                                           ((2.5, 3), "input_size"), ((True, 3), "input_size")])
def test_bad_sizes(cls, args, message):
    with pytest.raises(ValueError, match=message):
        cls(*args)


@pytest.mark.parametrize("cls", [GRU, LSTM], ids=IDS)
def test_bad_dtype(cls):
    with pytest.raises(ValueError, match="float32 or float64"):
        cls(2, 3, dtype=np.int32)


@pytest.mark.parametrize("cls", [GRU, LSTM], ids=IDS)
def test_trains_in_sequential(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 5, 3))
    Y = np.cumsum(X[..., :1], axis=1) / 3  # a running sum: needs the recurrence
    model = Sequential([cls(3, 8, seed=0), Dense(8, 1, seed=0)], loss="squared_error")
    before = model.loss(X, Y)
    model.fit(X, Y, optimizer="adam", lr=0.02, epochs=30, batch_size=8, seed=0, progress=False)
    assert model.loss(X, Y) < 0.5 * before


def test_an_intermediate_given_an_upstream_adds_it_to_its_reads():
    """The engine's rule the LSTM's c_t needs: C is read by H and is an output too."""
    import sympy as sp

    from backprop_derived.symbolic.engine import backward

    n = sp.Symbol("n", integer=True, positive=True)
    i = sp.Symbol("i", integer=True)
    X, W, C, H, dC_out = (sp.IndexedBase(s, shape=(n,), real=True)
                          for s in ("X", "W", "C", "H", "dC_out"))
    grads = backward([(C[i], X[i] * W[i]), (H[i], C[i] ** 2)], [X], upstream={C: dC_out})
    dC = grads[C]
    u = dC.indices[0]
    dH = sp.IndexedBase("dH", shape=(n,), real=True)
    # dC = dC_out + dH * dH/dC (the upstream plus the read by H), not dC_out alone
    assert sp.expand(dC.expr - (dC_out[u] + 2 * C[u] * dH[u])) == 0
    v = grads[X].indices[0]
    assert sp.expand(grads[X].expr - dC.grad[v] * W[v]) == 0
