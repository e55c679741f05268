"""Central differences and the comparison the layer tests share."""

import numpy as np

EPS = 1e-6


def central_differences(f, array, eps=EPS):
    """d f() / d array, entry by entry, by central differences in place."""
    grad = np.empty_like(array, dtype=np.float64)
    for idx in np.ndindex(array.shape):
        old = array[idx]
        array[idx] = old + eps
        plus = f()
        array[idx] = old - eps
        minus = f()
        array[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


def assert_close(name, got, expected, rtol=1e-6, atol=1e-8):
    assert got.shape == expected.shape, name
    err = np.max(np.abs(got - expected) / (atol + rtol * np.abs(expected)), initial=0.0)
    assert err <= 1.0, f"{name}: max |got - fd| = {np.max(np.abs(got - expected)):.3e}"
