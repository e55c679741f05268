"""Scalar derivations meet the vectorized code.

Pages 02–05 derive one example's gradients unit by unit, in the seed's
notation; the code runs the engine's matrix forms (page 06). A page links
the two with :func:`batch_mean`: its scalar result, read for example ``i`` of
a batch and averaged over the batch as the cost does, must be proven equal to
the engine's gradient. A false step on the page, or a changed definition in
the catalog that the page does not follow, then stops ``regenerate``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sympy as sp

from . import catalog
from .checked import Chain
from .engine import Gradient

__all__ = ["batch_mean", "on_example"]


def on_example(mapping: Mapping[sp.IndexedBase, Callable[..., sp.Expr]]):
    """A ``Chain`` definition: each scalar array's entry as a batch entry."""

    def rewrite(e):
        for base, entry in mapping.items():
            e = e.replace(lambda x, base=base: isinstance(x, sp.Indexed) and x.base == base,
                          lambda x, entry=entry: entry(*x.indices))
        return e

    return rewrite


def _unused(name: str, avoid: set) -> sp.Symbol:
    names = {str(s) for s in avoid}
    while name in names:
        name += "'"
    return sp.Symbol(name, integer=True)


def _rename_bound(expr: sp.Expr, avoid: set) -> sp.Expr:
    """Rename every summation index of ``expr`` that is in ``avoid`` (no capture)."""
    def rename(s: sp.Sum):
        new_limits, body = [], s.function
        for v, lo, hi in s.limits:
            if v in avoid:
                fresh = _unused(str(v), avoid | s.free_symbols | body.free_symbols)
                body = body.xreplace({v: fresh})
                v = fresh
            new_limits.append((v, lo, hi))
        return sp.Sum(body, *new_limits)

    return expr.replace(lambda x: isinstance(x, sp.Sum), rename)


def batch_mean(lhs, scalar_result, mapping, gradient: Gradient, at: tuple, why: str) -> Chain:
    """``lhs = (1/m) sum_i (scalar result of example i) = engine gradient[at]``.

    ``mapping`` gives each scalar array's entry as a function of its unit
    indices *and* the example index (its first argument).
    """
    m = catalog.m
    taken = scalar_result.free_symbols | set(at)
    example = _unused("i", taken)
    per_example = {base: (lambda *units, f=f: f(example, *units)) for base, f in mapping.items()}
    chain = Chain(lhs, sp.Sum(scalar_result, (example, 0, m - 1)) / m,
                  rf"the mean over the examples ${sp.latex(example)}$ of the result above",
                  definitions=on_example(per_example))
    engine = _rename_bound(gradient.expr, set(at))
    return chain.step(engine.xreplace(dict(zip(gradient.indices, at, strict=True))), why)
