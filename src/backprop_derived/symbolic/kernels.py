"""What a derivation hands to the code generator.

A derivation script ends with ``EXPORTS``: a list of :class:`Kernel` (one
generated NumPy function each) and of registry entries that tell the runtime
which kernels belong to which activation or (activation, loss) pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["ActivationEntry", "Agreement", "Binding", "Kernel", "OutputEntry"]


@dataclass(frozen=True)
class Kernel:
    """One generated function ``name(*params)``.

    ``style``:
      * ``"ufunc"``  elementwise; in-place ufunc calls into ``out`` using
        ``scratch`` buffers (no allocation);
      * ``"array"``  one array expression assigned into ``out`` (row reductions
        over the few output units, where a temporary costs nothing);
      * ``"scalar"`` returns the sum of the expression over the whole batch;
      * ``"matrix"`` BLAS products of the vectorized form, ``out=`` given;
      * ``"index"``  ``expr`` is a tuple of :class:`.index_printer.Assignment`,
        index-form equations of any rank printed with broadcasting, reductions
        and ``einsum``; the kernel returns the arrays named in ``returns``;
      * ``"fused"``  ``expr`` is ``((target, expression), ...)``: several results
        of one pass with shared subexpressions; a ``"return"`` target is summed
        over the batch and returned. In-place ufuncs like ``"ufunc"``, with
        ``(m, 1)`` buffers ``rows`` for per-example values, the ones vector
        ``units`` for row sums and a ``transposed`` buffer for row maxima.
    """

    module: str
    name: str
    params: tuple[str, ...]
    expr: sp.Basic
    doc: str
    equation: str
    source: str
    style: str = "ufunc"
    # "fused" only: the shape of each input, ((name, "full" | "row" | "scalar"), ...)
    kinds: tuple[tuple[str, str], ...] = ()
    # "index" only: the arrays the kernel returns, in order
    returns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Whatever the style, a formula only checked on an example never
        # reaches the generated code (the ufunc and array printers refuse it
        # too; this covers every other form, "index" kernels included).
        from .checked import assert_proven

        for e in _expressions(self.expr):
            assert_proven(e, f"kernel {self.name}")

    def symbols(self) -> dict[str, sp.Symbol]:
        return {s.name: s for s in self.expr.free_symbols if isinstance(s, sp.Symbol)}


@dataclass(frozen=True)
class ActivationEntry:
    name: str
    forward: str
    derivative: str | None
    backward: str | None
    needs_z: bool
    elementwise: bool
    latex: str = ""
    derivative_latex: str = ""


@dataclass(frozen=True)
class OutputEntry:
    activation: str
    loss: str
    value: str
    delta: str
    needs_z: bool
    latex: str = ""
    fused: str | None = None


@dataclass(frozen=True)
class Agreement:
    """A scalar derivation's result, proven equal to the formula a kernel runs.

    ``kernel`` is ``"module.name"`` of a generated function; the page named by
    ``source`` proved the agreement when it ran (a failed proof stops
    ``regenerate``), and the kernel's docstring names that page.
    """

    kernel: str
    source: str
    statement: str


@dataclass(frozen=True)
class Binding:
    """A declared layer's roles, as its kernels spell the names: a module constant.

    ``fields`` is ``((key, value), ...)``, each value a tuple of names (or of
    tuples of names); the generated module holds ``NAME = {key: value, ...}``
    (``NAME`` is ``name`` upper-cased), which the runtime layer reads instead
    of spelling a parameter, a saved array or a state a second time.
    """

    module: str
    name: str
    fields: tuple
    source: str


def _expressions(expr):
    """Every SymPy expression inside a kernel's ``expr``, whatever its style."""
    if isinstance(expr, sp.Basic):
        yield expr
    elif isinstance(expr, tuple | list):
        for item in expr:
            yield from _expressions(item)
    elif hasattr(expr, "expr") and hasattr(expr, "target"):  # an index Assignment
        yield expr.expr
    elif hasattr(expr, "body"):  # an index Loop
        yield from _expressions(expr.body)
