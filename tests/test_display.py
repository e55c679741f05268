"""How a checked chain is laid out on a page (symbolic/display.py)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import sympy as sp

from backprop_derived.symbolic.display import (
    break_lines,
    chain_html,
    chain_latex,
    proof_mark,
    tex_width,
)


def _chain(lhs, *steps):
    return SimpleNamespace(
        lhs=lhs, steps=[SimpleNamespace(expr=e, why=w, proof=p) for e, w, p in steps])


x, y = sp.symbols("x y", real=True)


def test_every_step_gets_a_mark_with_its_strategy():
    chain = _chain(sp.Symbol("E"), (x**2 + 2 * x + 1, "definition", "given"),
                   ((x + 1) ** 2, "factor", "expand"),
                   ((x + 1) ** 2, "on $n = 3$", "checked on n = 3"))
    page = chain_html(chain, caption="A square")
    marks = re.findall(r'class="proof-mark proof-(\w+)" title="[^"]+">(.)'
                       r'<span class="proof-label">([^<]+)</span>', page)
    assert marks == [("premise", "▸", "start"), ("proof", "✓", "expand"),
                     ("evidence", "◇", "checked on n = 3")]
    assert page.count('class="chain-step') == 3
    assert '<figcaption class="chain-caption">A square</figcaption>' in page
    assert r"\(n = 3\)" in page  # math in a reason stays math


def test_evidence_is_never_shown_as_a_proof():
    assert proof_mark("instance").kind == "evidence"
    assert proof_mark("checked on n = 3").kind == "evidence"
    assert proof_mark("index sums").kind == "proof"
    assert proof_mark("some new strategy").kind == "proof"
    assert proof_mark("given").kind == "premise"
    assert proof_mark("instance").symbol != proof_mark("expand").symbol


def test_a_long_sum_is_broken_into_lines_that_fit():
    terms = sp.Add(*[sp.Symbol(f"w_{n}") * sp.tanh(x + n) for n in range(12)])
    lines = break_lines(terms, budget=20)
    assert len(lines) > 2
    assert all(tex_width(line) <= 20 for line in lines)
    # Nothing is lost: the lines together are the printed sum.
    joined = " ".join(lines).replace(" ", "")
    assert joined.count(r"\tanh") == 12


def test_a_short_result_stays_on_one_line():
    assert break_lines(x + y, budget=20) == [sp.latex(x + y)]


def test_too_wide_function_calls_are_named_in_a_where_line():
    inner = sp.tanh(sum(sp.Symbol(f"a_{n}") * sp.Symbol(f"w_{n}") for n in range(20)))
    expr = sum(sp.Symbol(f"v_{n}") * (1 - inner**2) * sp.Symbol(f"t_{n}") for n in range(3))
    page = chain_html(_chain(sp.Symbol("G"), (expr, "definition", "given")))
    assert "chain-where" in page and "u_{1}" in page


def test_latex_form_puts_the_reason_on_its_own_line():
    tex = chain_latex(_chain(sp.Symbol("E"), (x**2 + 2 * x + 1, "definition", "given"),
                             ((x + 1) ** 2, "factored", "expand")))
    assert tex.startswith(r"\begin{aligned}") and tex.endswith(r"\end{aligned}")
    assert tex.count(r"\checkmark") == 1 and r"\textsf{expand}" in tex


@pytest.mark.parametrize("why", ["unbalanced $x", "a $b$ $c"])
def test_unbalanced_dollars_in_a_reason_are_refused(why):
    with pytest.raises(ValueError, match="unbalanced"):
        chain_html(_chain(x, (x, why, "given")))


# -- a result with a common factor is shown factored, as one more proven step --

i, u, m = sp.symbols("i u m", integer=True)
X, dxhat, mu, s2 = (sp.IndexedBase(name) for name in ("X", "dxhat", "mu", "s2"))
eps = sp.Symbol("epsilon", positive=True)


def test_sums_over_one_range_are_combined_and_their_factor_taken_out():
    from backprop_derived.symbolic.display import factored

    scale = (eps + s2[u]) ** sp.Rational(3, 2)
    # the batch-norm d(sigma^2) as the engine leaves it: two sums over the examples
    split = (-sp.Sum(X[i, u] * dxhat[i, u] / scale, (i, 0, m - 1)) / 2
             + sp.Sum(dxhat[i, u] * mu[u] / scale, (i, 0, m - 1)) / 2)
    # = -1/(2 scale) * sum_i (X_iu - mu_u) dxhat_iu, the (X - mu) factor in view
    want = -sp.Sum((X[i, u] - mu[u]) * dxhat[i, u], (i, 0, m - 1)) / (2 * scale)
    got = factored(split)
    assert got == want
    # nothing to combine: left alone
    assert factored(x + y) == x + y


def test_the_factored_form_is_shown_after_the_result_with_its_proof():
    scale = (eps + s2[u]) ** sp.Rational(3, 2)
    split = (-sp.Sum(X[i, u] * dxhat[i, u] / scale, (i, 0, m - 1)) / 2
             + sp.Sum(dxhat[i, u] * mu[u] / scale, (i, 0, m - 1)) / 2)
    page = chain_html(_chain(sp.Symbol("G"), (split, "the engine's result", "given")))
    assert page.count('class="chain-step') == 2
    assert 'data-proof="index sums"' in page
    assert "common factors taken out" in page
    # a result already as narrow as it gets gets no extra step
    assert chain_html(_chain(sp.Symbol("G"), (x + y, "sum", "given"))).count(
        'class="chain-step') == 1


def test_a_long_bracketed_term_breaks_after_its_iverson_bracket():
    t = sp.Symbol("t", integer=True)
    long_sum = sum(sp.Symbol(f"h_{n}") * sp.Symbol(f"w_{n}") for n in range(14))
    lines = break_lines(sp.Piecewise((long_sum, t >= 1), (0, True)), budget=20)
    assert len(lines) > 1
    # the condition is read first, as a bracket, and the sum follows in brackets
    assert lines[0].startswith(r"\left[t \geq 1\right] \Bigl(")
    assert lines[-1].endswith(r"\Bigr)")


def test_a_proven_step_that_prints_the_same_is_shown_once():
    same = _chain(sp.Symbol("E"), ((x + 1) * x, "definition", "given"),
                  (x * (x + 1), "factored", "expand"), (x**2 + x, "expanded", "expand"))
    page = chain_html(same)
    # (x + 1) x and x (x + 1) are one expression: two steps are left
    assert page.count('class="chain-step') == 2
    assert "factored" not in page and "expanded" in page
