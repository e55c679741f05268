"""Two-operand contractions with a batch index printed as ``numpy.matmul``.

The index printer (:mod:`.index_printer`) prints every sum over a product of
several arrays as ``numpy.einsum(..., optimize=True)``. For a contraction of
two operands that keeps a batch index (attention's
``S[n, t, s] = sum_h Q[n, t, h] K[n, s, h]``) einsum falls back to its own
loops, while ``numpy.matmul`` runs one BLAS GEMM per batch entry (or one GEMM
in all when the batch can be folded into the rows). :func:`matmul_code`
rewrites such a contraction:

* every index of the two operands is a *batch* index (in both operands and
  in the result), a *contracted* one (in both, not in the result) or a
  *free* one (in one operand and in the result);
* each operand is transposed (a view) so that its batch indices lead, then
  reshaped so that its free indices and its contracted indices make one axis
  each, and the last two axes are swapped where ``matmul`` wants the other
  order (a view: BLAS reads a transposed matrix directly);
* the product is reshaped back to one axis per index and transposed to the
  result's order.

Anything else (an operand with no free index, a contraction of more than two
operands, an operand that is an expression rather than an array name) is
left to einsum. :class:`BatchedIndexPrinter` is the index printer with this
rewrite; ``tests/test_batched_forms.py`` checks it numerically against the
einsum form.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .index_printer import IndexPrinter

__all__ = ["BatchedIndexPrinter", "matmul_code"]


def _size(name: str, axes: Sequence[str], group: Sequence[str]) -> str:
    return " * ".join(f"{name}.shape[{axes.index(a)}]" for a in group)


def _operand(name: str, axes: str, batch: list[str], free: list[str], contracted: list[str],
             free_first: bool) -> str:
    """``name`` as a stack of matrices (batch..., free, contracted) or (batch..., contracted, free)."""
    rest = [a for a in axes if a not in batch]
    # free and contracted groups in the order the operand stores them (a reshape is then a view)
    stored_free_first = rest.index(free[0]) < rest.index(contracted[0]) if rest else True
    groups = [free, contracted] if stored_free_first else [contracted, free]
    order = batch + groups[0] + groups[1]
    perm = [axes.index(a) for a in order]
    code = name
    if perm != list(range(len(axes))):
        code = f"{name}.T" if perm == [1, 0] else f"{name}.transpose{tuple(perm)}"
    if len(free) > 1 or len(contracted) > 1:
        shape = [_size(name, axes, [b]) for b in batch]
        shape += [_size(name, axes, g) for g in groups]
        code = f"{code}.reshape({', '.join(shape)})"
    if stored_free_first != free_first:
        code = f"{code}.swapaxes(-1, -2)" if batch else f"{code}.T"  # ndim len(batch) + 2
    return code


_SLICE = re.compile(r"^\([A-Za-z_]\w*\[[^\[\]()]*\]\)$")


def _is_view(name: str) -> bool:
    """A plain array name, or a parenthesized slice of one (``(h[:, t - 1])``): cheap to
    name several times in the printed code."""
    return name.isidentifier() or bool(_SLICE.match(name))


def matmul_code(spec: str, names: Sequence[str]) -> str | None:
    """``numpy.matmul`` code for ``numpy.einsum(spec, *names)``, or None if it has no such form.

    ``spec`` is an explicit einsum specification of two operands
    (``'abc,adc->adb'``) with distinct letters in each operand; ``names``
    are the two operands' array names (plain identifiers).
    """
    inputs, _, out = spec.partition("->")
    parts = inputs.split(",")
    if len(parts) != 2 or len(names) != 2 or not all(map(_is_view, names)):
        return None
    a, b = parts
    if any(len(set(x)) != len(x) for x in (a, b, out)):
        return None
    batch = [x for x in out if x in a and x in b]
    contracted = [x for x in a if x in b and x not in out]
    free_a = [x for x in a if x not in b]
    free_b = [x for x in b if x not in a]
    if any(x not in out for x in free_a + free_b) or set(out) - set(a) - set(b):
        return None
    if not (contracted and free_a and free_b):
        return None
    # the operand whose free indices come first in the result is the left factor
    if out.index(free_a[0]) > out.index(free_b[0]):
        a, b, free_a, free_b, names = b, a, free_b, free_a, names[::-1]
    # free indices in the order each operand stores them: a reshape of the operand is then a
    # view, and the product is transposed (a view) to the result's order instead
    free_a = [x for x in a if x in free_a]
    free_b = [x for x in b if x in free_b]
    contracted = [x for x in a if x in contracted]
    left = _operand(names[0], a, batch, free_a, contracted, free_first=True)
    right = _operand(names[1], b, batch, free_b, contracted, free_first=False)
    code = f"numpy.matmul({left}, {right})"
    natural = batch + free_a + free_b
    if len(free_a) > 1 or len(free_b) > 1:
        sizes = [_size(names[0], a, [x]) if x in a else _size(names[1], b, [x]) for x in natural]
        code = f"{code}.reshape({', '.join(sizes)})"
    if natural != list(out):
        perm = tuple(natural.index(x) for x in out)
        code = f"{code}.T" if perm == (1, 0) else f"{code}.transpose{perm}"
    return code


class BatchedIndexPrinter(IndexPrinter):
    """The index printer, with two-operand contractions as ``numpy.matmul`` where possible."""

    def _einsum(self, operands, summed, order):
        code, axes = super()._einsum(operands, summed, order)
        if len(operands) == 2:
            spec = code.split("'")[1]
            better = matmul_code(spec, [c if c.isidentifier() else f"({c})"
                                        for c, _ in operands])
            if better is not None:
                return better, axes
        return code, axes
