"""The index printer's faster forms: sums as products with ones, sums of squares
as one einsum, and sums of terms accumulated in place.

Each printed statement list is executed and compared with a direct NumPy
evaluation of the same index equation; inputs must come out unchanged.
"""

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, Sum

from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter

a, b, c = sp.symbols("a b c", integer=True)
A, B, C = sp.symbols("A B C", integer=True, positive=True)


def run(assignments, **inputs):
    code = "\n".join(IndexPrinter().statements(assignments))
    env = {"numpy": np, **{k: v.copy() for k, v in inputs.items()}}
    exec(code, env)  # noqa: S102
    for name, value in inputs.items():
        np.testing.assert_array_equal(env[name], value, err_msg=f"{name} was overwritten")
    return code, env


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 4), (5, 1, 3), (64, 2, 8)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_over_each_set_of_axes(shape, dtype):
    """Every single axis and the leading pair, of a 3-d array, against numpy.sum."""
    x = IndexedBase("X", shape=(A, B, C), real=True)
    X = np.random.default_rng(0).normal(size=shape).astype(dtype)
    limits = {a: (a, 0, A - 1), b: (b, 0, B - 1), c: (c, 0, C - 1)}
    for summed in ((a,), (b,), (c,), (a, b)):
        free = tuple(s for s in (a, b, c) if s not in summed)
        target = Assignment("S", free, Sum(x[a, b, c], *(limits[s] for s in summed)))
        code, env = run([target], x=X)
        axes = tuple((a, b, c).index(s) for s in summed)
        assert env["s"].dtype == dtype, code
        np.testing.assert_allclose(env["s"], X.sum(axis=axes), rtol=1e-5, atol=1e-5,
                                   err_msg=code)
    assert "matmul" in code  # the leading pair: one GEMV after a reshape


def test_a_sum_of_squares_is_one_einsum():
    x = IndexedBase("X", shape=(A, B), real=True)
    X = np.random.default_rng(1).normal(size=(4, 3))
    code, env = run([Assignment("V", (b,), Sum(x[a, b] ** 2, (a, 0, A - 1)) / A)], x=X)
    assert "einsum('ab,ab->b', x, x)" in code
    np.testing.assert_allclose(env["v"], (X**2).mean(axis=0), rtol=1e-12)


def test_a_sum_of_terms_accumulates_into_a_new_array_only():
    """``2 X - b + X*Z`` accumulates into the first computed term; ``X + b``, whose
    terms are both inputs, stays one expression (an input is never written)."""
    x, z = (IndexedBase(n, shape=(A, B), real=True) for n in ("X", "Z"))
    bias = IndexedBase("bias", shape=(B,), real=True)
    rng = np.random.default_rng(2)
    X, Z, bv = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=4)
    code, env = run([Assignment("Y", (a, b), 2 * x[a, b] - bias[b] + x[a, b] * z[a, b])],
                    x=X, z=Z, bias=bv)
    assert "y -=" in code and "y +=" in code, code
    np.testing.assert_allclose(env["y"], 2 * X - bv + X * Z, rtol=1e-12)
    code, env = run([Assignment("Y", (a, b), x[a, b] + bias[b])], x=X, bias=bv)
    assert code.count("\n") == 0 and "+=" not in code, code
    np.testing.assert_allclose(env["y"], X + bv, rtol=1e-12)


def _pool_forward(layer):
    """The forward statements of a catalog pooling layer, as its kernel prints them."""
    from backprop_derived.symbolic.declared import _label, _params

    forward = [Assignment(_label(lhs.base), lhs.indices, rhs, shape=lhs.base.shape)
               for lhs, rhs in (*layer.selections, *layer.equations)]
    given = _params(forward, [_label(x) for x in layer.inputs], layer.scalars)
    return "\n".join(IndexPrinter(given=given).statements(forward, ("Y", "S")))


@pytest.mark.parametrize(("k", "stride"), [(2, 2), (3, 2), (3, 1)])
def test_max_pool2d_reads_its_windows_through_one_view(k, stride):
    """The one-hot of the first maximum prints its windows three times and the max reads
    them once more: one ``sliding_window_view``, bound to a temporary, serves all four.
    The result against a loop over the windows (first largest entry in row-major order)."""
    from backprop_derived.symbolic.catalog import MAX_POOL2D

    code = _pool_forward(MAX_POOL2D)
    assert code.count("sliding_window_view(") == 1, code
    X = np.random.default_rng(3).normal(size=(2, 3, 7, 8)).round(1)  # ties at 1 decimal
    P, Q = (7 - k) // stride + 1, (8 - k) // stride + 1
    env = {"numpy": np, "x": X.copy(), "stride": stride, "k": k, "P": P, "Q": Q}
    exec(code, env)  # noqa: S102
    np.testing.assert_array_equal(env["x"], X)
    want, onehot = np.empty((2, 3, P, Q)), np.zeros((2, 3, P, Q, k, k))
    for n, c, p, q in np.ndindex(2, 3, P, Q):
        window = X[n, c, stride * p:stride * p + k, stride * q:stride * q + k]
        want[n, c, p, q] = window.max()
        i, j = divmod(int(np.flatnonzero(window == window.max())[0]), k)
        onehot[n, c, p, q, i, j] = 1
    np.testing.assert_array_equal(env["y"], want)
    np.testing.assert_array_equal(env["s"], onehot)


def test_a_window_view_read_once_stays_inline():
    """Average pooling reads its windows once: no temporary."""
    from backprop_derived.symbolic.catalog import AVG_POOL2D

    code = _pool_forward(AVG_POOL2D)
    assert code.count("sliding_window_view(") == 1 and "_view0" not in code, code
