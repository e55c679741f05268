"""Conv1d / Conv2d with a stride and zero padding: loops and central differences (float64).

The reference pads X with zeros by hand and loops over the output positions
``p`` reading ``Xpad[..., stride p : stride p + k]``, PyTorch's definition,
independent of the generated kernels. Gradients are checked against central
differences of ``sum(dY * reference)``.
"""

import itertools

import numpy as np
import pytest

from backprop_derived.layers import Conv1d, Conv2d, MaxPool1d, Sequential

from _finite_differences import assert_close, central_differences


def reference(X, W, b, stride, padding):
    pad = [(0, 0), (0, 0)] + [(padding, padding)] * (X.ndim - 2)
    Xp = np.pad(X, pad)
    kernel = W.shape[2:]
    out = [(n - k) // stride + 1 for n, k in zip(Xp.shape[2:], kernel, strict=True)]
    Y = np.empty((X.shape[0], W.shape[0], *out))
    for n, o in itertools.product(range(X.shape[0]), range(W.shape[0])):
        for pos in itertools.product(*(range(m) for m in out)):
            window = tuple(slice(stride * p, stride * p + k)
                           for p, k in zip(pos, kernel, strict=True))
            Y[(n, o, *pos)] = b[o] + np.sum(Xp[(n, slice(None), *window)] * W[o])
    return Y


CASES = [  # (layer arguments, input shape, PyTorch's output shape)
    (lambda: Conv1d(2, 3, 3, stride=2), (2, 2, 7), (2, 3, 3)),
    (lambda: Conv1d(2, 3, 3, stride=2, padding=1), (2, 2, 8), (2, 3, 4)),
    (lambda: Conv1d(1, 2, 2, padding=2), (1, 1, 3), (1, 2, 6)),
    (lambda: Conv1d(2, 2, 4, stride=3, padding=1), (2, 2, 9), (2, 2, 3)),
    (lambda: Conv2d(2, 3, 3, 2, stride=2), (2, 2, 7, 6), (2, 3, 3, 3)),
    (lambda: Conv2d(2, 2, 3, 3, stride=2, padding=1), (1, 2, 5, 6), (1, 2, 3, 3)),
    (lambda: Conv2d(1, 2, 2, 3, padding=1), (2, 1, 3, 4), (2, 2, 4, 4)),
]


@pytest.mark.parametrize(("make", "shape", "out"), CASES)
def test_against_loops_and_central_differences(make, shape, out):
    rng = np.random.default_rng(sum(shape))
    layer = make()
    X = rng.normal(size=shape)
    Y = layer.forward(X)
    assert Y.shape == out
    W, b = layer.params["W"], layer.params["b"]
    np.testing.assert_allclose(Y, reference(X, W, b, layer.stride, layer.padding),
                               rtol=1e-12, atol=1e-12)
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)

    def value():
        return float(np.sum(dY * reference(X, W, b, layer.stride, layer.padding)))

    assert_close("dX", dX, central_differences(value, X))
    assert_close("dW", layer.grads["W"], central_differences(value, W))
    assert_close("db", layer.grads["b"], central_differences(value, b))


def test_in_sequential_with_pooling():
    rng = np.random.default_rng(3)
    model = Sequential([Conv1d(2, 3, 3, stride=2, padding=1, seed=1), MaxPool1d(2),
                        Conv1d(3, 1, 1, seed=2)], loss="squared_error")
    X, Y = rng.normal(size=(3, 2, 9)), rng.normal(size=(3, 1, 2))
    _, grads = model.gradients(X, Y)
    for k, layer in enumerate(model.layers):
        for key, p in layer.params.items():
            assert_close(f"layer {k} {key}", grads[k][key],
                         central_differences(lambda: model.loss(X, Y), p))


def test_float32():
    layer = Conv2d(2, 2, 2, 2, stride=2, padding=1, dtype=np.float32)
    Y = layer.forward(np.ones((1, 2, 3, 3), np.float32))
    assert Y.dtype == np.float32 and layer.backward(np.ones_like(Y)).dtype == np.float32


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Conv1d(2, 2, 2, stride=0), "stride must be a positive integer"),
    (lambda: Conv2d(2, 2, 2, 2, padding=-1), "padding must be a non-negative integer"),
    (lambda: Conv1d(2, 2, 2, padding=1.5), "padding must be a non-negative integer"),
])
def test_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_input_too_short_even_padded():
    with pytest.raises(ValueError, match="with padding 1"):
        Conv1d(1, 1, 5, padding=1).forward(np.zeros((1, 1, 2)))
    Conv1d(1, 1, 5, padding=1).forward(np.zeros((1, 1, 3)))  # 3 + 2 = 5: one output
