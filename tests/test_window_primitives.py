"""The index printer's window primitives on a layer no catalog entry names.

``Y[n, p] = sum_j V[j] X[n, 2 p + j + 1]``: an integer stride, an offset, a
window weighted by a parameter. Declared here (not in the catalog), derived
by the engine, printed, executed, and compared with loops and central
differences: a new windowed layer needs no change to ``symbolic/``.
"""

import numpy as np
import sympy as sp
from sympy import IndexedBase, Sum

from backprop_derived.symbolic.catalog import LayerDeclaration
from backprop_derived.symbolic.codegen import render_kernel
from backprop_derived.symbolic.declared import declared_kernels

from _finite_differences import assert_close, central_differences

N, L, K, P = sp.symbols("N L K P", integer=True, positive=True)
n, p, j = sp.symbols("n p j", integer=True)
X = IndexedBase("X", shape=(N, L), real=True)
V = IndexedBase("V", shape=(K,), real=True)
Y = IndexedBase("Y", shape=(N, P), real=True)
LAYER = LayerDeclaration("windowed", ((Y[n, p], Sum(V[j] * X[n, 2 * p + j + 1], (j, 0, K - 1))),),
                         inputs=(X,), params=(V,), saved=(), outputs=(Y,))


def compiled():
    _, forward, backward = declared_kernels(LAYER, "test", "tests", "windowed")
    env = {"numpy": np}
    for kernel in (forward, backward):
        exec(render_kernel(kernel)[0], env)  # noqa: S102
    return env["windowed_forward"], env["windowed_backward"]


def loops(x, v):
    k, out = len(v), (x.shape[1] - 1 - len(v)) // 2 + 1
    return np.array([[v @ x[i, 2 * q + 1: 2 * q + 1 + k] for q in range(out)]
                     for i in range(x.shape[0])])


def test_a_strided_offset_window_goes_through():
    forward, backward = compiled()
    rng = np.random.default_rng(0)
    x, v = rng.normal(size=(2, 11)), rng.normal(size=3)  # windows at 1, 3, 5, 7: x[0], x[10] unread
    y = forward(x=x, v=v)
    np.testing.assert_allclose(y, loops(x, v), rtol=1e-13)
    dy = rng.normal(size=y.shape)
    names = backward.__code__.co_varnames[:backward.__code__.co_argcount]
    given = {"dy": dy, "x": x, "v": v, "L": x.shape[1], "P": y.shape[1], "K": len(v)}
    dx, dv = backward(**{k: given[k] for k in names})

    def value():
        return float(np.sum(dy * loops(x, v)))

    assert_close("dX", dx, central_differences(value, x))
    assert_close("dV", dv, central_differences(value, v))
    assert dx[:, 0].tolist() == [0.0, 0.0] and dx[:, -1].tolist() == [0.0, 0.0]  # read by none
