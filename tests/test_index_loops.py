"""Loops of the index printer: hoisting, time-major storage, peeling, in-place steps.

Each recurrence is printed, run, and compared with a plain NumPy loop written
here step by step, on sizes that include one step (T = 1) and one example
(N = 1), where every peeled step and every guard is at its edge.
"""

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, Piecewise, Sum, tanh

from backprop_derived.symbolic import index_printer
from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter, Loop

N, T, D, E = sp.symbols("N T D E", integer=True, positive=True)
n, t, d, e, f = sp.symbols("n t d e f", integer=True)
X = IndexedBase("X", shape=(N, T, D), real=True)
W = IndexedBase("W", shape=(E, D), real=True)
U = IndexedBase("U", shape=(E, E), real=True)
C = IndexedBase("C", shape=(E,), real=True)
Y = IndexedBase("Y", shape=(N, T, E), real=True)
Z = IndexedBase("Z", shape=(N, T, E), real=True)
V = IndexedBase("V", shape=(N, T, E), real=True)
A = IndexedBase("A", shape=(N, T, E), real=True)
SIZES = [(1, 1, 1, 1), (1, 2, 3, 2), (2, 1, 2, 3), (3, 5, 2, 4)]
PRINTERS = ["einsum", "matmul"]  # contractions as einsum only, or the printer's own choice


def run(statements, returns, inputs, printer="matmul"):
    with pytest.MonkeyPatch.context() as patch:
        if printer == "einsum":
            patch.setattr(index_printer, "matmul_form", lambda operands, out: None)
        code = "\n".join(IndexPrinter().statements(statements, returns))
    env = {"numpy": np, **inputs}
    exec(code, env)  # noqa: S102
    return code, env


def data(sizes, seed=0):
    n_, t_, d_, e_ = sizes
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n_, t_, d_)), "w": rng.normal(size=(e_, d_)) / 2,
            "u": rng.normal(size=(e_, e_)) / 2, "c": rng.normal(size=e_),
            "v": rng.normal(size=(n_, t_, e_))}


def forward_loop():
    xw = Sum(X[n, t, d] * W[e, d], (d, 0, D - 1))
    back1 = Piecewise((Sum(Y[n, t - 1, f] * U[e, f], (f, 0, E - 1)), t >= 1), (0, True))
    back2 = Piecewise((Y[n, t - 2, e], t >= 2), (0, True))  # two steps are peeled
    body = (Assignment("A", (n, t, e), xw + C[e] + back1 + back2),
            Assignment("Y", (n, t, e), tanh(A[n, t, e])),
            Assignment("Z", (n, t, e), Y[n, t, e] * (C[e] ** 2 + 1)))  # an invariant factor
    return Loop(t, T, body, (("A", (N, T, E)), ("Y", (N, T, E)), ("Z", (N, T, E))))


def forward_reference(x, w, u, c, v):
    y, z = np.zeros((*x.shape[:2], len(c))), np.zeros((*x.shape[:2], len(c)))
    for s in range(x.shape[1]):
        a = x[:, s] @ w.T + c
        if s >= 1:
            a = a + y[:, s - 1] @ u.T
        if s >= 2:
            a = a + y[:, s - 2]
        y[:, s] = np.tanh(a)
        z[:, s] = y[:, s] * (c**2 + 1)
    return y, z


@pytest.mark.parametrize("printer", PRINTERS)
@pytest.mark.parametrize("sizes", SIZES)
def test_forward_loop_hoisted_and_peeled(sizes, printer):
    inputs = data(sizes)
    code, env = run([forward_loop()], ("Y", "Z"), inputs, printer)
    y, z = forward_reference(**inputs)
    np.testing.assert_allclose(env["y"], y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(env["z"], z, rtol=1e-12, atol=1e-12)
    assert env["y"].shape == y.shape
    # the input term is computed before the loop, and no condition runs per step
    assert "a_invariant = " in code and "z_invariant" in code
    assert "a = numpy.empty((N, E,)" in code  # read at its own step only: one step's buffer
    assert "for t in range(2, T):" in code and " if " not in code.split("for t")[1]
    assert "if T >= 2:" in code  # the second peeled step needs two steps
    assert "out=a)" in code and "out=y[t])" in code


def test_float32_stays_float32():
    inputs = {k: v.astype(np.float32) for k, v in data((2, 4, 3, 2)).items()}
    _, env = run([forward_loop()], ("Y", "Z"), inputs)
    assert env["y"].dtype == env["z"].dtype == np.float32
    y, _ = forward_reference(**{k: v.astype(np.float64) for k, v in inputs.items()})
    np.testing.assert_allclose(env["y"], y, rtol=1e-5, atol=1e-5)


def backward_loop():
    nxt = Piecewise((Sum(Y[n, t + 1, f] * U[f, e], (f, 0, E - 1)), t + 1 <= T - 1), (0, True))
    body = (Assignment("Y", (n, t, e), (V[n, t, e] + nxt) * (1 - C[e] * V[n, t, e] ** 2)),)
    return Loop(t, T, body, (("Y", (N, T, E)),), reverse=True)


@pytest.mark.parametrize("printer", PRINTERS)
@pytest.mark.parametrize("sizes", SIZES)
def test_reverse_loop_hoisted_and_peeled(sizes, printer):
    inputs = data(sizes, seed=1)
    x, u, c, v = inputs["x"], inputs["u"], inputs["c"], inputs["v"]
    code, env = run([backward_loop()], ("Y",), inputs, printer)
    y = np.zeros((*x.shape[:2], len(c)))
    for s in range(x.shape[1] - 1, -1, -1):
        g = v[:, s] + (y[:, s + 1] @ u if s + 1 <= x.shape[1] - 1 else 0)
        y[:, s] = g * (1 - c * v[:, s] ** 2)
    np.testing.assert_allclose(env["y"], y, rtol=1e-12, atol=1e-12)
    assert "for t in range(T - 2, -1, -1):" in code and "y_invariant" in code


@pytest.mark.parametrize("sizes", SIZES)
def test_a_guard_that_cannot_be_peeled_is_a_python_condition(sizes):
    """[t <= T - 2] in a forward loop is false at the end: kept, as a comparison of ints."""
    Yd = IndexedBase("Y", shape=(N, T, D), real=True)
    ahead = Piecewise((X[n, t + 1, d], t <= T - 2), (0, True))
    body = (Assignment("Y", (n, t, d), ahead + Piecewise((Yd[n, t - 1, d], t >= 1), (0, True))),)
    loop = Loop(t, T, body, (("Y", (N, T, D)),))
    inputs = data(sizes, seed=2)
    code, env = run([loop], ("Y",), inputs)
    x = inputs["x"]
    y = np.zeros_like(x)
    for s in range(x.shape[1]):
        y[:, s] = (x[:, s + 1] if s <= x.shape[1] - 2 else 0) + (y[:, s - 1] if s >= 1 else 0)
    np.testing.assert_allclose(env["y"], y, rtol=1e-12, atol=1e-12)
    assert "greater" not in code and "less" not in code


def test_returned_loop_targets_are_views_in_their_declared_order():
    code, _ = run([forward_loop()], ("Z",), data((2, 3, 2, 2)))
    assert "z = numpy.moveaxis(z, 0, 1)" in code and "y = numpy.moveaxis" not in code


@pytest.mark.parametrize("printer", PRINTERS)
@pytest.mark.parametrize("sizes", SIZES)
def test_statements_after_a_loop_read_its_time_major_targets(sizes, printer):
    """Contractions over the loop's axis, a reduction and a shifted slice after the loop."""
    after = (Assignment("G", (e, f), Sum(Y[n, t + 1, e] * V[n, t, f], (n, 0, N - 1),
                                         (t, 0, T - 2))),
             Assignment("S", (e,), Sum(Y[n, t, e], (n, 0, N - 1), (t, 0, T - 1))),
             Assignment("P", (n, t, d), Sum(Y[n, t, e] * W[e, d], (e, 0, E - 1))))
    inputs = data(sizes, seed=3)
    _, env = run([backward_loop(), *after], ("P", "G", "S"), inputs, printer)
    _, ref = run([backward_loop()], ("Y",), inputs, printer)
    y, v, w = ref["y"], inputs["v"], inputs["w"]
    np.testing.assert_allclose(env["g"], np.einsum("nte,ntf->ef", y[:, 1:], v[:, :-1]),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(env["s"], y.sum(axis=(0, 1)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(env["p"], y @ w, rtol=1e-12, atol=1e-12)
