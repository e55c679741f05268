"""Exact output of the printers, as SymPy's own printing tests pin theirs."""

import numpy as np
import pytest
import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p

from backprop_derived.symbolic.checked import float_form_is_exact
from backprop_derived.symbolic.printers import (
    ArrayPrinter,
    RowMax,
    RowSum,
    UfuncPrinter,
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


def test_a_scalar_times_one_matrix_is_one_scaling():
    # the gradient of the L2 penalty, (lambda/m) W (derivations/08_regularization.py)
    lam, m = sp.symbols("lam m", positive=True)
    W = sp.MatrixSymbol("w", 3, 2)
    assert ufunc(lam / m * W)[0] == ["numpy.multiply(w, lam/m, out=out)"]


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



# -- textbook notation (docs/notation.md): limits, chain-rule order, ranges ----

i, r, j, w, u, v, t = sp.symbols("i r j w u v t", integer=True)
m, n, kk, L, T = sp.symbols("m n k L T", integer=True, positive=True)
X, W, Z, dZ = (sp.IndexedBase(name) for name in ("X", "W", "Z", "dZ"))


def test_a_finite_sum_shows_both_limits_counted_from_zero():
    # i runs over the m examples of a batch: 0, 1, ..., m - 1
    assert latex(sp.Sum(X[i, r], (i, 0, m - 1))) == r"\sum_{i=0}^{m - 1} X_{ir}"
    # two indices: one sum sign per index, outermost first
    assert latex(sp.Sum(X[i, r], (i, 0, m - 1), (r, 0, n - 1))) == (
        r"\sum_{i=0}^{m - 1} \sum_{r=0}^{n - 1} X_{ir}")
    # a summand that is a sum of terms is bracketed
    assert latex(sp.Sum(X[i, r] + 1, (i, 0, m - 1))) == (
        r"\sum_{i=0}^{m - 1} \left(X_{ir} + 1\right)")


def test_the_chain_rule_reads_local_derivative_times_upstream():
    term = sp.Sum(sp.Derivative(Z[i, r], W[u, v]) * dZ[i, r], (i, 0, m - 1))
    assert latex(term) == (
        r"\sum_{i=0}^{m - 1} \frac{\partial Z_{ir}}{\partial W_{uv}} \cdot dZ_{ir}")
    # a number stays in front of the derivative, the sign first
    assert latex(-2 * sp.Derivative(Z[i, r], W[u, v]) * dZ[i, r]) == (
        r"- 2 \frac{\partial Z_{ir}}{\partial W_{uv}} \cdot dZ_{ir}")
    # a scalar being differentiated: the partial fraction, not d/dW P
    assert latex(sp.Derivative(sp.Symbol("P"), W[u, v])) == r"\frac{\partial P}{\partial W_{uv}}"


def test_a_range_condition_is_an_iverson_bracket_over_one_index():
    # j - w <= 0 and L - k >= w - j together say k + w - L <= j <= w
    cond = sp.And(L - kk >= w - j, j - w <= 0)
    body = W[j] * X[w - j]
    assert latex(sp.Sum(sp.Piecewise((body, cond), (0, True)), (j, 0, kk - 1))) == (
        r"\sum_{j=0}^{k - 1} \left[k + w - L \leq j \leq w\right] W_{j} X_{w - j}")
    # one bound; a strict integer bound is written with <=: t < T - 1 is t <= T - 2
    assert latex(sp.Piecewise((X[t], t >= 1), (0, True))) == r"\left[t \geq 1\right] X_{t}"
    assert latex(sp.Piecewise((X[t], t < T - 1), (0, True))) == r"\left[t \leq T - 2\right] X_{t}"
    # in a product the bracket needs no parentheses of its own
    assert latex(X[v] * sp.Piecewise((1, t >= 1), (0, True))) == r"\left[t \geq 1\right] X_{v}"
    # a condition that is not an index range is left as SymPy writes it
    x = sp.Symbol("x", real=True)
    assert latex(sp.Piecewise((x, sp.Abs(x) < 1), (0, True))) == r"\left[\left|{x}\right| < 1\right] x"


def test_kronecker_delta_is_a_bracket_not_a_second_delta():
    p, k = sp.symbols("p k", integer=True)
    assert latex(sp.KroneckerDelta(p, k)) == r"\left[k = p\right]"


def test_lam_prints_as_lambda():
    lam = sp.Symbol("lam", positive=True)
    assert latex(lam / m * sp.MatrixSymbol("W", 3, 2)) == r"\frac{\lambda}{m} W"
    assert latex(lam * W[u, v] / m) == r"\frac{\lambda W_{uv}}{m}"


# -- the fused output pass: per-example (row) values in (m, 1) buffers --------

a_out = sp.Symbol("a_out", real=True)
KINDS = {"z": "full", "y": "full", "a_out": "full", "a": "full", "scale": "scalar",
         "m": "scalar"}


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


# -- no fixed limits, SciPy's erf, conditions and scalars of a fused pass -------

def run(lines, env, n_scratch, n_rows=0, shape=(5, 3)):
    """Execute printed statements on fresh NaN buffers; return ``out`` and the total."""
    env = dict(env, numpy=np, out=np.full(shape, np.nan),
               scratch=[np.full(shape, np.nan) for _ in range(n_scratch)],
               rows=[np.full((shape[0], 1), np.nan) for _ in range(n_rows)],
               units=np.ones((shape[1], 1)), transposed=np.full(shape[::-1], np.nan))
    import scipy.special

    env["scipy"] = scipy
    exec("def kernel():\n" + "".join(f"    {line}\n" for line in lines), env)  # noqa: S102
    total = env["kernel"]()
    return env["out"], total


def test_as_many_scratch_buffers_as_the_expression_needs():
    def tree(depth, i):  # every level holds one value while its other half is computed
        if depth == 0:
            return (i + 1) * a + z
        return sp.exp(-tree(depth - 1, 2 * i) ** 2) * sp.sin(tree(depth - 1, 2 * i + 1))

    e = tree(9, 0)
    printer = UfuncPrinter()
    lines = printer.statements(e, "out")
    assert printer.scratch_used > 8
    rng = np.random.default_rng(0)
    env = {"z": rng.normal(size=(5, 3)), "a": rng.normal(size=(5, 3))}
    out, _ = run(lines, env, printer.scratch_used)
    expected = eval(ArrayPrinter().doprint(e), {"numpy": np, **env})
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_erf_is_scipys_ufunc():
    assert ufunc(sp.erf(z / sp.sqrt(2)))[0] == [
        f"numpy.multiply(z, {float(1 / sp.sqrt(2))!r}, out=out)",
        "scipy.special.erf(out, out=out)",
    ]
    assert ArrayPrinter().doprint(sp.erf(z)) == "scipy.special.erf(z)"


def test_a_shared_condition_stays_a_mask():
    # Huber's delta: cse shares |a - y| < 1 between branches; a buffer of floats
    # cannot be a mask, so the condition is printed where it is used.
    r = a - y
    e = sp.Piecewise((r * scale, sp.Abs(r) < 1), (sp.sign(r) * scale, True)) + sp.Piecewise(
        (r**2, sp.Abs(r) < 1), (sp.Abs(r), True))
    printer = UfuncPrinter()
    lines = printer.statements(e, "out")
    rng = np.random.default_rng(1)
    env = {"a": rng.normal(scale=2, size=(5, 3)), "y": rng.normal(size=(5, 3)), "scale": 0.5}
    out, _ = run(lines, env, printer.scratch_used)
    expected = eval(ArrayPrinter().doprint(e), {"numpy": np, **env})
    np.testing.assert_allclose(out, expected, rtol=1e-13)


def test_a_scalar_factor_of_the_total_is_applied_once():
    m = sp.Symbol("m", integer=True, positive=True)  # the catalog's m: not a real symbol
    e = sp.exp(z - RowMax(z))
    lines, _, _ = fused((
        ("a_out", e / RowSum(e)),
        ("delta_out", (a_out - y) / m),
        ("return", (a_out - y) ** 2 / m),
    ))
    assert lines[-1].startswith("return numpy.add.reduce(scratch[")
    assert lines[-1].endswith("], axis=None) / m")
    assert any(line.startswith("numpy.divide(") and line.endswith(", m, out=delta_out)")
               for line in lines)
    assert not any("numpy.divide(1, m" in line for line in lines)  # no buffer of 1/m


@pytest.mark.parametrize("expr", [
    sp.Piecewise((-1, z < -1), (z, z < 1), (1, True)),  # three branches (hard tanh)
    sp.Piecewise((sp.exp(z), z < -1), (z**2, z < 1), (sp.sin(z), True)),
    sp.Max(z**2, sp.exp(-z), a),  # no leaf first, three arguments
    sp.Min(0, z) + sp.Min(sp.exp(z), a * z),
    da * sp.Heaviside(z, sp.Rational(1, 2)),  # another value at 0, stated in the expression
])
def test_in_place_forms_of_kinked_expressions(expr):
    printer = UfuncPrinter()
    lines = printer.statements(expr, "out")
    rng = np.random.default_rng(2)
    env = {"z": rng.normal(scale=2, size=(5, 3)), "a": rng.normal(size=(5, 3)),
           "da": rng.normal(size=(5, 3))}
    env["z"][0, :] = [-1.0, 0.0, 1.0]  # the kinks themselves
    out, _ = run(lines, env, printer.scratch_used)
    expected = eval(ArrayPrinter().doprint(expr), {"numpy": np, **env})
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), rtol=1e-14)


def test_signs_are_written_as_a_textbook_writes_them():
    av, yv = sp.symbols("a y", real=True)
    # sigma' through the output: -(a - 1) a is a (1 - a)
    assert latex(-(av - 1) * av) == r"a \left(1 - a\right)"
    # dE/da of binary cross-entropy, which SymPy holds as (y - a) / (a (a - 1))
    assert latex(-(av - yv) / ((av - 1) * av)) == r"\frac{a - y}{a \left(1 - a\right)}"
    # a fraction that would need a minus in front is left alone
    assert latex(1 / (av - 1)) == r"\frac{1}{a - 1}"
    # positive terms first
    assert latex(sp.exp(z - y)) == r"e^{z - y}"
    assert latex(yv - av) == r"y - a"


def test_a_negated_sum_prints_its_sign_outside():
    # textbook form: -sum_p a_p y_p, not sum_p -a_p y_p; an equality SymPy
    # would merge after the change (sum y - sum(-y)) is printed as it stands
    p = sp.Symbol("p", integer=True)
    a, y = sp.IndexedBase("a"), sp.IndexedBase("y")
    assert latex(sp.Sum(-a[p] * y[p], (p, 0, 3))) == r"- \sum_{p=0}^{3} a_{p} y_{p}"
    assert latex(sp.Sum(-2 * y[p], (p, 0, 3))) == r"- 2 \sum_{p=0}^{3} y_{p}"
    both = sp.Sum(y[p], (p, 0, 3)) - sp.Sum(-y[p], (p, 0, 3))
    assert latex(both).count(r"\sum") == 2


def test_an_array_named_with_a_tag_prints_tag_and_indices_in_one_subscript():
    # W_ih at (e, d) is the text's matrix W_{ih} at (e, d): W_{ih,\,ed}, not
    # {W_{ih}}_{ed}, which reads as one name "ihed"; a power of it is valid TeX.
    e, d = sp.symbols("e d", integer=True)
    W = sp.IndexedBase("W_ih")
    assert latex(W[e, d]) == r"W_{ih,\,ed}"
    assert latex(W[e, d] ** 2) == r"W_{ih,\,ed}^{2}"
    assert latex(sp.IndexedBase("X")[e, d]) == "X_{ed}"


def test_the_stride_prints_as_the_texts_s():
    p = sp.Symbol("p", integer=True)
    stride = sp.Symbol("stride", integer=True, positive=True)
    assert latex(stride * p) in ("p s", "s p")
