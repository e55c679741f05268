"""The RNN layer: BPTT as derived by the engine, against central differences.

The reference is a plain NumPy loop over time written here, independent of
the generated kernels; the objective is sum(dY * H(X)), whose gradient with
respect to each input is what ``backward(dY)`` returns.
"""

import numpy as np
import pytest

from backprop_derived.layers import RNN


def reference_forward(X, W_ih, W_hh, b):
    h = np.zeros((X.shape[0], W_hh.shape[0]))
    out = []
    for t in range(X.shape[1]):
        h = np.tanh(X[:, t] @ W_ih.T + h @ W_hh.T + b)
        out.append(h)
    return np.stack(out, axis=1)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 4, 3, 5), (3, 7, 2, 4), (2, 1, 3, 2)])
def test_bptt_matches_central_differences(shape):
    batch, T, d_in, d_h = shape
    rng = np.random.default_rng(sum(shape))
    layer = RNN(d_in, d_h, seed=1)
    X = rng.normal(size=(batch, T, d_in))
    dY = rng.normal(size=(batch, T, d_h))
    H = layer.forward(X)
    p = {k: v.copy() for k, v in layer.params.items()}
    np.testing.assert_allclose(H, reference_forward(X, p["W_ih"], p["W_hh"], p["b"]),
                               rtol=1e-13, atol=1e-14)
    dX = layer.backward(dY)

    def objective(X_, params):
        return float((reference_forward(X_, params["W_ih"], params["W_hh"], params["b"])
                      * dY).sum())

    eps = 1e-6
    worst = 0.0
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
                fd = (objective(X, {**p, name: plus}) - objective(X, {**p, name: minus})) / (
                    2 * eps)
            worst = max(worst, abs(fd - got[idx]) / max(1.0, abs(fd)))
    # float64 central differences at eps = 1e-6 on values of order 1: ~1e-9
    assert worst < 1e-7, worst


def test_float32_stays_float32():
    layer = RNN(3, 4, dtype=np.float32, seed=0)
    X = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
    H = layer.forward(X)
    dX = layer.backward(np.ones_like(H))
    assert H.dtype == dX.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layer.grads.values())
    ref = RNN(3, 4, dtype=np.float64, seed=0)
    np.testing.assert_allclose(H, ref.forward(X.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_the_first_step_sees_no_previous_state():
    layer = RNN(2, 3, seed=0)
    X = np.random.default_rng(1).normal(size=(1, 3, 2))
    H = layer.forward(X)
    p = layer.params
    np.testing.assert_allclose(H[:, 0], np.tanh(X[:, 0] @ p["W_ih"].T + p["b"]))


@pytest.mark.parametrize("X, message", [
    (np.zeros((2, 3)), "3 dimensions"),
    (np.zeros((2, 3, 4)), "features"),
    (np.full((1, 2, 2), np.nan), "NaN"),
    (np.zeros((1, 0, 2)), "empty"),
])
def test_bad_input(X, message):
    with pytest.raises(ValueError, match=message):
        RNN(2, 3).forward(X)


def test_backward_needs_a_training_forward_and_the_right_shape():
    layer = RNN(2, 3)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 2, 3)))
    layer.forward(np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        layer.backward(np.zeros((1, 3, 3)))


@pytest.mark.parametrize("args", [(0, 3), (2, -1), (2.5, 3), (True, 3)])
def test_bad_sizes(args):
    with pytest.raises(ValueError):
        RNN(*args)
