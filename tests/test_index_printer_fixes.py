"""Regressions of the engine's raw results that the index printer could not print.

* the raw layer-norm input gradient (``dmu[u]/n`` broadcast along v) printed
  as ``dmu/n[:, None]``: ``.T`` and ``[:, None]`` now get a parenthesised operand;
* a constant gradient (``dL[u] = 1/m``) lacks the index it is assigned over:
  broadcast to the target's shape;
* a Kronecker delta with a coefficient (a stride, ``X[2p]``) is summed out with
  a divisibility condition instead of surviving the sums.

Each printed kernel is executed and compared with central differences (float64).
"""

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, KroneckerDelta, Sum

from backprop_derived.symbolic.catalog import LAYER_NORM, LN_BETA, LN_GAMMA, LN_X, NORM_EPS
from backprop_derived.symbolic.engine import backward, collapse
from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter, _is_primary

from _finite_differences import assert_close, central_differences


def run(assignments, returns, **inputs):
    code = "\n".join(IndexPrinter().statements(assignments, returns))
    env = {"numpy": np, **inputs}
    exec(code, env)  # noqa: S102
    return code, env


def equations(pairs):
    return [Assignment(str(lhs.base.label), lhs.indices, rhs) for lhs, rhs in pairs]


def gradients(result, order):
    return [Assignment(str(result[v].lhs.base.label), result[v].lhs.indices, result[v].expr,
                       shape=result[v].grad.shape) for v in order]


def test_the_raw_layer_norm_gradient_prints_and_is_right():
    ln = backward(LAYER_NORM, [LN_X, LN_GAMMA, LN_BETA])
    order = [v for v in ln if v not in (LN_X, LN_GAMMA, LN_BETA)] + [LN_X, LN_GAMMA, LN_BETA]
    kernel = equations(LAYER_NORM) + gradients(ln, order)
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.normal(size=(4, 5)), rng.normal(size=5), rng.normal(size=5)
    dy = rng.normal(size=(4, 5))
    eps = 1e-5
    code, env = run(kernel, ["dX", "dgamma", "dbeta"], x=x, gamma=gamma, beta=beta, dy=dy,
                    epsilon=eps)
    assert "(dmu/n)[:, None]" in code  # the operand the old printer left bare

    def loss():
        mu = x.mean(axis=1, keepdims=True)
        xhat = (x - mu) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
        return np.sum(dy * (gamma * xhat + beta))

    assert_close("dX", env["dx"], central_differences(loss, x))
    assert_close("dgamma", env["dgamma"], central_differences(loss, gamma))
    assert_close("dbeta", env["dbeta"], central_differences(loss, beta))
    assert NORM_EPS.name == "epsilon"  # the scalar the kernel reads


def test_a_constant_gradient_is_broadcast_to_its_target():
    """C = (1/m) sum_i L[i]: dL[u] = 1/m for every u, printed as a full (m,) array."""
    m = sp.Symbol("m", integer=True, positive=True)
    i = sp.Symbol("i", integer=True)
    L = IndexedBase("L", shape=(m,), real=True)
    C = sp.Symbol("C", real=True)
    result = backward([(C, Sum(L[i], (i, 0, m - 1)) / m)], [L], upstream={C: 1})
    assert result[L].expr == 1 / m  # no L left in it, nor the index u
    kernel = [Assignment("C", (), Sum(L[i], (i, 0, m - 1)) / m), *gradients(result, [L])]
    values = np.random.default_rng(1).normal(size=7)
    code, env = run(kernel, ["dL", "C"], l=values)
    assert env["dl"].shape == (7,)
    env["dl"] += 0  # writable, as every other result
    assert_close("dL", env["dl"], central_differences(lambda: values.mean(), values))


def test_a_strided_delta_is_summed_out_where_the_stride_divides():
    """Y[p] = X[2p] (stride 2): dX[u] = dY[u/2] where u is even (and u/2 in range)."""
    n = sp.Symbol("n", integer=True, positive=True)
    p, u = sp.symbols("p u", integer=True)
    dY = IndexedBase("dY", shape=(n,), real=True)
    expr = Sum(dY[p] * KroneckerDelta(2 * p, u), (p, 0, n - 1))
    got = collapse(expr, {u: (0, 2 * n - 1)})
    assert not got.has(KroneckerDelta, Sum), got
    values = np.random.default_rng(2).normal(size=4)
    for uu in range(8):
        concrete = got.subs({u: uu, n: 4})
        want = values[uu // 2] if uu % 2 == 0 else 0.0
        value = concrete.replace(lambda e: isinstance(e, sp.Indexed),
                                 lambda e: sp.Float(values[int(e.indices[0])]))
        assert float(value) == pytest.approx(want), (uu, concrete)


@pytest.mark.parametrize(("code", "primary"), [
    ("x", True), ("numpy.matmul(a, b)", True), ("x[0]", True), ("(a + b)", True),
    ("dmu/n", False), ("(a) + (b)", False), ("-x", False), ("f(a)[b] * c", False),
])
def test_what_counts_as_one_operand(code, primary):
    assert _is_primary(code) is primary
