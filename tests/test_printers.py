"""Exact output of the printers, as SymPy's own printing tests pin theirs."""

import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from backprop_derived.symbolic.printers import (
    ArrayPrinter,
    RowMax,
    RowSum,
    UfuncPrinter,
    float_form_is_exact,
    latex,
    numeric_form,
)

a, da, z, y, scale = sp.symbols("a da z y scale", real=True)


def ufunc(expr):
    printer = UfuncPrinter()
    return printer.statements(expr, "out"), printer.scratch_used


def test_tanh_backward_is_three_in_place_calls():
    assert ufunc(da * (1 - a**2)) == ([
        "numpy.multiply(a, a, out=out)",
        "numpy.subtract(1, out, out=out)",
        "numpy.multiply(out, da, out=out)",
    ], 0)


def test_scaled_difference():
    assert ufunc(scale * (a - y)) == ([
        "numpy.subtract(a, y, out=out)",
        "numpy.multiply(out, scale, out=out)",
    ], 0)


def test_negation_and_expm1():
    assert ufunc(-expm1(-a)) == ([
        "numpy.negative(a, out=out)",
        "numpy.expm1(out, out=out)",
        "numpy.negative(out, out=out)",
    ], 0)


def test_piecewise_uses_copyto_where_and_scratch():
    t = sp.exp(-sp.Abs(z))
    lines, scratch = ufunc(sp.Piecewise((1 / (1 + t), z >= 0), (t / (1 + t), True)))
    assert lines[-1] == "numpy.copyto(out, scratch[1], where=numpy.greater_equal(z, 0))"
    assert scratch == 2


def test_heaviside_needs_its_value_at_zero():
    assert ufunc(da * sp.Heaviside(a, 0))[0] == [
        "numpy.greater(a, 0, out=out)",
        "numpy.multiply(out, da, out=out)",
    ]


def test_numeric_constants_are_weak_floats():
    assert ufunc(sp.sqrt(2 / sp.pi) * z)[0] == [
        f"numpy.multiply(z, {float(sp.sqrt(2 / sp.pi))!r}, out=out)"
    ]


def test_matrix_kernels_let_blas_take_the_transpose():
    m, n, p = sp.symbols("m n p", integer=True, positive=True)
    A, W, b = sp.MatrixSymbol("a_prev", m, n), sp.MatrixSymbol("w", p, n), sp.MatrixSymbol("b", p, 1)
    dz = sp.MatrixSymbol("dz", m, p)
    assert ufunc(A * W.T + sp.OneMatrix(m, 1) * b.T)[0] == [
        "numpy.matmul(a_prev, w.T, out=out)",
        "numpy.add(out, b, out=out)",
    ]
    assert ufunc(sp.OneMatrix(1, m) * dz)[0] == ["numpy.add.reduce(dz, axis=0, out=out)"]
    assert ufunc(sp.MatrixSymbol("ones", 1, m) * dz)[0] == ["numpy.matmul(ones, dz, out=out)"]


def test_array_printer_forms():
    p = ArrayPrinter()
    assert p.doprint(sp.Piecewise((z, z >= 0), (y, True))) == \
        "numpy.where(numpy.greater_equal(z, 0), z, y)"
    assert p.doprint(sp.Max(0, z)) == "numpy.maximum(0, z)"
    assert p.doprint(RowSum(sp.exp(z - RowMax(z)))) == (
        "numpy.add.reduce(numpy.exp(z - numpy.maximum.reduce(z, axis=1, keepdims=True)), "
        "axis=1, keepdims=True)")
    assert p.doprint(sp.Rational(1, 2) * z) == "(0.5)*z"
    c = sp.Symbol("c")
    assert p.doprint(sp.exp(-c + z)) == "numpy.exp(z - c)"  # one ufunc, not negate-then-add
    assert p.doprint(y - (a - z)) == "y + z - a"
    assert p.doprint(-a - y) == "-a - y"


def test_numeric_form_rules_and_their_check():
    t = sp.exp(-sp.Abs(z))
    assert numeric_form(sp.log(1 + t)) == log1p(t)  # not SymPy's overflowing factorization
    assert numeric_form(1 - sp.exp(-a)) == -expm1(-a)
    assert float_form_is_exact(sp.log(1 + t), numeric_form(sp.log(1 + t)))
    assert not float_form_is_exact(sp.log(1 + t), log1p(2 * t))


def test_latex_of_index_forms():
    k = sp.Symbol("k", integer=True)
    yv = sp.IndexedBase("y")
    assert latex(sp.Sum(yv[k], (k, -sp.oo, sp.oo))) == r"\sum_{k} y_{k}"
    g = sp.Function("g")
    assert latex(sp.Derivative(g(z), z)) == r"g'\left(z\right)"
    assert latex(sp.Heaviside(z, 0)) == r"H\left(z\right)"


# -- the fused output pass: per-example (row) values in (m, 1) buffers --------

a_out = sp.Symbol("a_out", real=True)
KINDS = {"z": "full", "y": "full", "a_out": "full", "a": "full", "scale": "scalar"}


def fused(outputs):
    printer = UfuncPrinter()
    return printer.fused_statements(outputs, KINDS), printer.scratch_used, printer.rows_used


def test_fused_softmax_cross_entropy_pass():
    e = sp.exp(z - RowMax(z))
    lines, scratch, rows = fused((
        ("a_out", e / RowSum(e)),
        ("delta_out", scale * (a_out * RowSum(y) - y)),
        ("return", y * (RowMax(z) + sp.log(RowSum(e)) - z)),
    ))
    assert lines == [
        "numpy.copyto(transposed, z.T)",
        "numpy.maximum.reduce(transposed, axis=0, keepdims=True, out=rows[0].T)",
        "numpy.subtract(z, rows[0], out=scratch[0])",
        "numpy.exp(scratch[0], out=scratch[0])",
        "numpy.matmul(scratch[0], units, out=rows[1])",
        "numpy.divide(scratch[0], rows[1], out=a_out)",
        "numpy.matmul(y, units, out=rows[2])",
        "numpy.multiply(a_out, rows[2], out=delta_out)",
        "numpy.subtract(delta_out, y, out=delta_out)",
        "numpy.multiply(delta_out, scale, out=delta_out)",
        # c + log s is added once per example, then broadcast in one subtract
        "numpy.log(rows[1], out=rows[2])",
        "numpy.add(rows[2], rows[0], out=rows[2])",
        "numpy.subtract(rows[2], z, out=scratch[1])",
        "numpy.multiply(scratch[1], y, out=scratch[1])",
        "return numpy.add.reduce(scratch[1], axis=None)",
    ]
    assert (scratch, rows) == (2, 3)


@pytest.mark.parametrize("expr", [
    z - RowMax(z),
    a * RowSum(y) - y,
    z / RowSum(-z * a),
    -RowSum(a * y) * z + scale,
    1 / RowSum(sp.exp(z)) - a,
    scale * a * RowSum(y) * RowMax(z),
    sp.log(RowSum(sp.exp(z - RowMax(z)))) * RowSum(y) - y * z,
])
def test_fused_statements_compute_what_the_array_printer_prints(expr):
    rng = np.random.default_rng(3)
    env = {name: rng.normal(size=(5, 3)) for name in ("z", "y", "a")}
    env["scale"] = 0.25
    expected = eval(ArrayPrinter().doprint(expr), {"numpy": np, **env})
    printer = UfuncPrinter()
    lines = printer.fused_statements((("out", expr), ("return", expr)), KINDS)
    env.update(
        numpy=np, out=np.full((5, 3), np.nan),
        scratch=[np.full((5, 3), np.nan) for _ in range(printer.scratch_used)],
        rows=[np.full((5, 1), np.nan) for _ in range(printer.rows_used)],
        units=np.ones((3, 1)), transposed=np.full((3, 5), np.nan),
    )
    body = "def kernel():\n" + "".join(f"    {line}\n" for line in lines)
    exec(body, env)  # noqa: S102 -- running the printed statements is the test
    total = env["kernel"]()
    np.testing.assert_allclose(env["out"], np.broadcast_to(expected, (5, 3)), rtol=1e-13)
    assert total == pytest.approx(np.broadcast_to(expected, (5, 3)).sum(), rel=1e-12)
