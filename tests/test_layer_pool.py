"""AvgPool1d/2d and MaxPool1d/2d (declared in the catalog) against loops and central differences.

The references are plain Python loops over the windows, written from
PyTorch's documented definition (window p covers inputs s p .. s p + k - 1,
P = (L - k) // s + 1, no padding), independent of the generated kernels.
Gradients are checked in float64 against central differences of
``sum(dY * reference(X))``; a max pool's inputs are drawn without ties, so
that the maximum is differentiable there, and the tie rule (the first
largest entry takes the gradient, as in PyTorch) is pinned separately.
"""

import itertools

import numpy as np
import pytest

from backprop_derived.layers import (
    AvgPool1d,
    AvgPool2d,
    Conv1d,
    Conv2d,
    Dense,
    MaxPool1d,
    MaxPool2d,
    Sequential,
)

from _finite_differences import assert_close, central_differences


def reference(X, k, s, kind):
    """Pooling by loops over every window (1-d or 2-d, by X's rank)."""
    spatial = X.shape[2:]
    out = [(n - k) // s + 1 for n in spatial]
    Y = np.empty(X.shape[:2] + tuple(out))
    reduce = np.mean if kind == "avg" else np.max
    for n, c in itertools.product(range(X.shape[0]), range(X.shape[1])):
        for pos in itertools.product(*(range(o) for o in out)):
            window = tuple(slice(s * p, s * p + k) for p in pos)
            Y[(n, c, *pos)] = reduce(X[(n, c, *window)])
    return Y


CLASSES = {("avg", 1): AvgPool1d, ("avg", 2): AvgPool2d,
           ("max", 1): MaxPool1d, ("max", 2): MaxPool2d}
CASES = [  # (spatial shape, k, stride): tiled, untiled (odd), overlapping, gaps
    ((6,), 2, None), ((7,), 2, None), ((7,), 3, 1), ((9,), 2, 3), ((5,), 5, None),
    ((4, 6), 2, None), ((5, 7), 2, None), ((5, 6), 3, 1), ((7, 5), 2, 3),
]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize(("spatial", "k", "stride"), CASES)
def test_against_loops_and_central_differences(kind, spatial, k, stride):
    rng = np.random.default_rng(len(spatial) * 100 + sum(spatial) + k)
    shape = (2, 3, *spatial)
    # distinct values (a permutation): no ties in any window
    X = rng.permutation(np.prod(shape)).reshape(shape) * 0.1 + 0.01 * rng.normal(size=shape)
    layer = CLASSES[kind, len(spatial)](k, stride)
    s = k if stride is None else stride
    Y = layer.forward(X)
    np.testing.assert_allclose(Y, reference(X, k, s, kind), rtol=1e-13, atol=1e-13)
    assert Y.shape == (2, 3, *[(n - k) // s + 1 for n in spatial])
    dY = rng.normal(size=Y.shape)
    dX = layer.backward(dY)
    X = X.copy()
    assert_close("dX", dX, central_differences(
        lambda: float(np.sum(dY * reference(X, k, s, kind))), X))
    assert layer.grads == {} and layer.params == {}


def test_float32_stays_float32():
    X = np.random.default_rng(1).normal(size=(2, 2, 6, 6)).astype(np.float32)
    for cls in (AvgPool2d, MaxPool2d, AvgPool1d, MaxPool1d):
        layer = cls(2, dtype=np.float32)
        x = X if cls in (AvgPool2d, MaxPool2d) else X[:, :, 0]
        Y = layer.forward(x)
        assert Y.dtype == np.float32 and layer.backward(np.ones_like(Y)).dtype == np.float32


def test_tie_goes_to_the_first_largest_entry():
    """PyTorch: torch.nn.functional.max_pool1d(x, 2) backward puts the 1 on the first of two
    equal entries; max_pool2d on the first in row-major order."""
    layer = MaxPool1d(2)
    layer.forward(np.array([[[3.0, 3.0, -1.0, 2.0, 5.0, 5.0]]]))
    np.testing.assert_array_equal(layer.backward(np.array([[[1.0, 2.0, 4.0]]])),
                                  [[[1.0, 0.0, 0.0, 2.0, 4.0, 0.0]]])
    layer2 = MaxPool2d(2)
    layer2.forward(np.array([[[[0.0, 1.0], [1.0, 1.0]]]]))
    np.testing.assert_array_equal(layer2.backward(np.array([[[[7.0]]]])),
                                  [[[[0.0, 7.0], [0.0, 0.0]]]])
    # overlapping windows that share the maximum both send their gradient to it
    layer3 = MaxPool1d(2, stride=1)
    layer3.forward(np.array([[[0.0, 4.0, 1.0]]]))
    np.testing.assert_array_equal(layer3.backward(np.array([[[1.0, 10.0]]])), [[[0.0, 11.0, 0.0]]])


def test_pooling_trains_in_sequential():
    """Conv1d -> MaxPool1d -> AvgPool1d and Conv2d -> MaxPool2d -> AvgPool2d: every parameter's
    gradient through the pooling layers, by central differences."""
    rng = np.random.default_rng(5)
    for model, X, Y in (
        (Sequential([Conv1d(2, 3, 2, seed=1), MaxPool1d(2), AvgPool1d(2, stride=1)],
                    loss="squared_error"), rng.normal(size=(3, 2, 9)), rng.normal(size=(3, 3, 3))),
        (Sequential([Conv2d(2, 2, 2, 2, seed=2), MaxPool2d(2, stride=1), AvgPool2d(2)],
                    loss="squared_error"), rng.normal(size=(2, 2, 6, 5)),
         rng.normal(size=(2, 2, 2, 1))),
    ):
        _, grads = model.gradients(X, Y)
        for k, layer in enumerate(model.layers):
            for key, p in layer.params.items():
                assert_close(f"layer {k} {key}", grads[k][key],
                             central_differences(lambda m=model: m.loss(X, Y), p))
        before = model.loss(X, Y)
        model.fit(X, Y, epochs=10, batch_size=len(X), learning_rate=0.05)
        assert model.loss(X, Y) < before


@pytest.mark.parametrize(("make", "message"), [
    (lambda: AvgPool1d(0), "k must be a positive integer"),
    (lambda: MaxPool2d(2, stride=0), "stride must be a positive integer"),
    (lambda: MaxPool1d(2.5), "k must be a positive integer"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(("layer", "X", "message"), [
    (AvgPool1d(3), np.zeros((2, 3, 2)), "smaller than the window k = 3"),
    (MaxPool2d(2), np.zeros((1, 1, 4, 1)), "smaller than the window k = 2"),
    (MaxPool1d(2), np.zeros((2, 4)), "must have 3 dimensions"),
    (AvgPool2d(2), np.zeros((2, 3, 4)), "must have 4 dimensions"),
])
def test_bad_inputs_are_named(layer, X, message):
    with pytest.raises(ValueError, match=message):
        layer.forward(X)


def test_backward_checks_dy():
    layer = AvgPool1d(2)
    with pytest.raises(ValueError, match="forward"):
        layer.backward(np.zeros((1, 1, 1)))
    layer.forward(np.zeros((1, 1, 5)))
    with pytest.raises(ValueError, match=r"dY has shape \(1, 1, 3\)"):
        layer.backward(np.zeros((1, 1, 3)))
