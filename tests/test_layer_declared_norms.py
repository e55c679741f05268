"""RMSNorm and GroupNorm (declared in the catalog) against NumPy and central differences.

The reference forward passes are written from PyTorch's documented
definitions (``x / sqrt(mean(x**2) + eps) * weight``; group statistics over
the channels of a group and all positions, biased variance), independent of
the generated kernels. Gradients are checked in float64 against central
differences of ``sum(dY * reference(X))``, and both layers train inside
``Sequential`` with the gradients of the whole model checked the same way.
"""

import numpy as np
import pytest

from backprop_derived.layers import Dense, GroupNorm, RMSNorm, Sequential

from _finite_differences import assert_close, central_differences


def rms_reference(X, gamma, eps):
    return gamma * X / np.sqrt(np.mean(X**2, axis=-1, keepdims=True) + eps)


def group_reference(X, gamma, beta, groups, eps):
    N, C = X.shape[:2]
    g = X.reshape(N, groups, -1)
    mean = g.mean(axis=-1, keepdims=True)
    var = g.var(axis=-1, keepdims=True)
    xhat = ((g - mean) / np.sqrt(var + eps)).reshape(X.shape)
    channel = (1, C) + (1,) * (X.ndim - 2)
    return gamma.reshape(channel) * xhat + beta.reshape(channel)


def check(layer, reference, X, rng):
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, reference(X), rtol=1e-12, atol=1e-12)
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)
    X = X.copy()

    def value():
        return float(np.sum(dY * reference(X)))

    assert_close("dX", dX, central_differences(value, X))
    for key, p in layer.params.items():
        assert layer.grads[key].shape == p.shape
        assert_close(f"d{key}", layer.grads[key], central_differences(value, p))


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 6), (1, 1)])
def test_rms_norm(shape):
    rng = np.random.default_rng(sum(shape))
    layer = RMSNorm(shape[-1])
    layer.params["gamma"][:] = 1 + 0.5 * rng.normal(size=shape[-1])
    check(layer, lambda X: rms_reference(X, layer.params["gamma"], 1e-6),
          rng.normal(size=shape), rng)


@pytest.mark.parametrize(("groups", "shape"), [
    (2, (3, 4, 5)),        # (N, C, L): two groups of two channels
    (3, (2, 6, 2, 3)),     # (N, C, H, W)
    (1, (2, 4, 3)),        # one group: layer norm over channels and positions
    (4, (2, 4, 5)),        # a group per channel: instance norm
    (2, (3, 4)),           # no spatial axes
])
def test_group_norm(groups, shape):
    rng = np.random.default_rng(len(shape) * 10 + groups)
    C = shape[1]
    layer = GroupNorm(groups, C)
    layer.params["gamma"][:] = 1 + 0.5 * rng.normal(size=C)
    layer.params["beta"][:] = rng.normal(size=C)
    check(layer, lambda X: group_reference(X, layer.params["gamma"], layer.params["beta"],
                                           groups, 1e-5),
          rng.normal(size=shape), rng)


def test_both_train_in_sequential():
    """Dense -> RMSNorm -> Dense -> GroupNorm (on (N, C)) -> Dense: every gradient by FD."""
    rng = np.random.default_rng(11)
    model = Sequential([Dense(4, 6, seed=1), RMSNorm(6), Dense(6, 4, seed=2),
                        GroupNorm(2, 4), Dense(4, 3, seed=3)], loss="squared_error")
    for layer in model.layers:
        for p in layer.params.values():
            p += 0.1 * rng.normal(size=p.shape)
    X, Y = rng.normal(size=(5, 4)), rng.normal(size=(5, 3))
    loss, grads = model.gradients(X, Y)
    for k, layer in enumerate(model.layers):
        for key, p in layer.params.items():
            assert_close(f"layer {k} {key}", grads[k][key],
                         central_differences(lambda: model.loss(X, Y), p))
    before = model.loss(X, Y)
    model.fit(X, Y, epochs=20, batch_size=5, learning_rate=0.05)
    assert model.loss(X, Y) < before


@pytest.mark.parametrize(("make", "message"), [
    (lambda: GroupNorm(3, 4), "multiple of groups"),
    (lambda: GroupNorm(0, 4), "groups"),
    (lambda: RMSNorm(3, eps=-1.0), "eps"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_channels_are_named():
    with pytest.raises(ValueError, match="channels"):
        GroupNorm(2, 4).forward(np.ones((2, 6, 3)))
    with pytest.raises(ValueError, match="features"):
        RMSNorm(4).forward(np.ones((2, 3)))
