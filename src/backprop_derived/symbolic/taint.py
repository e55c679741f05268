"""The taint of a result only checked on an example, and the error of an unproven step.

Shared by checked.py (which makes the taint) and the code printers (which
refuse it); a module of its own so that the printers need not import
checked.py.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["CheckedOnExample", "StepNotVerified", "assert_proven"]


class StepNotVerified(AssertionError):
    """A derivation step that SymPy could not prove equal to the previous one."""


class CheckedOnExample(sp.Function):
    """An expression only checked on an example, never proven for every size.

    A taint: it survives ``subs``, ``to_batch`` and every rebuild of the
    expression tree, and the code printers refuse it, so an evidence-only
    result cannot reach a kernel by accident. LaTeX shows the argument.
    """

    nargs = 1


def assert_proven(expr: sp.Basic, what: str = "expression") -> sp.Basic:
    """Refuse an expression that carries a :class:`CheckedOnExample` taint."""
    if isinstance(expr, sp.Basic) and expr.has(CheckedOnExample):
        raise StepNotVerified(f"{what}: comes from a step only checked on an example, "
                              "which cannot feed a kernel")
    return expr
