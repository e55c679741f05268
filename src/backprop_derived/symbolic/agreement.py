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


def batch_mean(lhs, scalar_result, mapping, gradient: Gradient, at: tuple, why: str) -> Chain:
    """``lhs = (1/m) sum_i (scalar result of example i) = engine gradient[at]``."""
    i, m = catalog.i, catalog.m
    chain = Chain(lhs, sp.Sum(scalar_result, (i, 0, m - 1)) / m,
                  r"the mean over the examples $i$ of the result above",
                  definitions=on_example(mapping))
    return chain.step(gradient.expr.xreplace(dict(zip(gradient.indices, at, strict=True))), why)
