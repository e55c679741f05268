"""Index-form equations printed as NumPy: broadcasting, reductions and einsum.

The derivation engine returns each gradient as an index-form expression such
as ``dgamma[u] = Sum(dY[i, u] * xhat[i, u], (i, 0, m - 1))``. This printer
turns a list of such assignments into NumPy statements without going through
matrices, so it covers arrays of any rank (a batch of sequences, a batch of
images):

* an array entry ``X[i, r]`` is the array ``x`` with one axis per index;
  arrays with fewer indices broadcast against it (``mu[r]`` is ``mu``, and
  ``c[i]`` becomes ``c[:, None]`` when a later axis must follow it);
* elementwise operations are printed by :class:`.printers.ArrayPrinter`;
* a sum over indices of a product of several arrays is one
  ``numpy.einsum(..., optimize=True)`` (a BLAS call where one exists), a sum
  of a single array is the ufunc's ``reduce`` over those axes.

Only whole ranges are summed, and only plain symbols index an array: a
shifted index (``X[p + j]``, a convolution) or a diagonal (``X[i, i]``) is
refused with a clear message, for a dedicated form to handle.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp
from sympy import Indexed, Sum

from .printers import ArrayPrinter

__all__ = ["Assignment", "IndexPrinter"]


@dataclass(frozen=True)
class Assignment:
    """``target[indices] = expr`` (``indices`` empty for a scalar)."""

    target: str
    indices: tuple[sp.Symbol, ...]
    expr: sp.Expr


class IndexPrinter:
    """Prints :class:`Assignment` lists as NumPy statements."""

    def __init__(self, names: Mapping[str, str] | None = None,
                 scalars: Mapping[str, str] | None = None) -> None:
        self.names = dict(names or {})
        self.scalars = dict(scalars or {})
        self._printer = ArrayPrinter()

    # -- public --------------------------------------------------------------
    def statements(self, assignments: Sequence[Assignment]) -> list[str]:
        lines = self._sizes(assignments)
        for a in assignments:
            code, axes = self._compile(a.expr, list(a.indices))
            if set(axes) - set(a.indices):
                raise ValueError(f"{a.target}: free indices {axes} beyond {a.indices}")
            if tuple(axes) != tuple(a.indices):
                code = self._full(code, axes, a.indices, a.expr)
            lines.append(f"{self.array_name(a.target)} = {code}")
        return lines

    def _sizes(self, assignments) -> list[str]:
        """``m = x.shape[0]`` for every size that a formula uses as a number."""
        assigned = {a.target for a in assignments}
        used = set()
        for a in assignments:
            e = a.expr.replace(lambda x: isinstance(x, Indexed), lambda x: sp.Integer(1))
            e = e.replace(lambda x: isinstance(x, Sum), lambda x: x.function)
            used |= {s for s in e.free_symbols if s.is_integer and s.is_positive}
        lines = []
        for size in sorted(used, key=str):
            source = None
            for a in assignments:
                for x in a.expr.atoms(Indexed):
                    label = str(x.base.label)
                    if label in assigned or x.base.shape is None:
                        continue
                    for pos, d in enumerate(x.base.shape):
                        if d == size and source is None:
                            source = f"{self.array_name(label)}.shape[{pos}]"
            if source is None:
                raise ValueError(f"no input array has an axis of size {size}")
            lines.append(f"{self._print_scalar(size)} = {source}")
        return lines

    def array_name(self, label: str) -> str:
        return self.names.get(label, label.lower())

    # -- compiling --------------------------------------------------------------
    def _compile(self, e, order: list) -> tuple[str, tuple]:
        """``(code, axes)``: NumPy code for ``e`` and the index of each of its axes."""
        if isinstance(e, Indexed):
            return self._leaf(e)
        if isinstance(e, Sum):
            return self._sum(e, order)
        if not e.has(Indexed):
            return self._print_scalar(e), ()
        # elementwise: compile the children, align them, print the operation
        held, axes_of = {}, {}
        for child in self._operands(e):
            code, axes = self._compile(child, order)
            held[child] = sp.Symbol(f"_op{len(held)}")
            axes_of[held[child]] = (code, axes)
        union = self._ordered(set().union(*(ax for _, ax in axes_of.values())), order)
        replaced = e.xreplace(held)
        replaced = replaced.xreplace({s: sp.Symbol(self.scalars[s.name])
                                      for s in replaced.free_symbols
                                      if isinstance(s, sp.Symbol) and s.name in self.scalars})
        subs = {sym: sp.Symbol(self._align(code, axes, union))
                for sym, (code, axes) in axes_of.items()}
        text = self._printer.doprint(replaced.xreplace(subs))
        return text, tuple(union)

    def _operands(self, e) -> list:
        """The maximal array-valued subexpressions (arrays and sums) of ``e``."""
        found = []

        def walk(x):
            if isinstance(x, Indexed | Sum):
                if x not in found:
                    found.append(x)
                return
            for arg in x.args:
                if arg.has(Indexed):
                    walk(arg)

        walk(e)
        return found

    def _leaf(self, x: Indexed) -> tuple[str, tuple]:
        idx = x.indices
        if not all(isinstance(s, sp.Symbol) for s in idx) or len(set(idx)) != len(idx):
            raise NotImplementedError(
                f"{x}: an array indexed by an expression or a repeated index has no "
                "broadcasting form (use a dedicated form, e.g. sliding windows)")
        return self.array_name(str(x.base.label)), tuple(idx)

    def _sum(self, e: Sum, order: list) -> tuple[str, tuple]:
        count = sp.Integer(1)
        for v, lo, hi in e.limits:
            if v not in e.function.free_symbols:
                count *= hi - lo + 1  # nothing to sum: the range's length
        limits = [lim for lim in e.limits if lim[0] in e.function.free_symbols]
        if not limits:
            return self._compile(count * e.function, order)
        if count != 1:
            return self._compile(count * Sum(e.function, *limits), order)
        summed = [v for v, _, _ in e.limits]
        for v, lo, hi in e.limits:
            self._check_full_range(e.function, v, lo, hi)
        inner_order = order + [v for v in summed if v not in order]
        body = e.function
        factors = list(sp.Mul.make_args(body))
        carrying = [f for f in factors if f.free_symbols & set(summed)]
        constant = sp.Mul(*[f for f in factors if f not in carrying])
        if len(carrying) >= 2:
            operands = [self._compile(f, inner_order) for f in carrying]
            code, axes = self._einsum(operands, summed, inner_order)
        else:
            code, axes = self._compile(sp.Mul(*carrying), inner_order)
            positions = tuple(axes.index(v) for v in summed if v in axes)
            axis = positions[0] if len(positions) == 1 else positions
            code = f"numpy.add.reduce({code}, axis={axis})"
            axes = tuple(a for a in axes if a not in summed)
        if constant != 1:
            c_code, c_axes = self._compile(constant, order)
            union = self._ordered(set(axes) | set(c_axes), order)
            code = (f"{self._align(c_code, c_axes, union)} * "
                    f"{self._align(code, axes, union)}")
            axes = tuple(union)
        return f"({code})", axes

    def _einsum(self, operands, summed, order) -> tuple[str, tuple]:
        letters = iter(string.ascii_letters)
        label = {}
        for _, axes in operands:
            for a in axes:
                if a not in label:
                    label[a] = next(letters)
        out = self._ordered({a for _, axes in operands for a in axes} - set(summed), order)
        spec = ",".join("".join(label[a] for a in axes) for _, axes in operands)
        spec += "->" + "".join(label[a] for a in out)
        args = ", ".join(code for code, _ in operands)
        return f"numpy.einsum('{spec}', {args}, optimize=True)", tuple(out)

    def _check_full_range(self, body, v, lo, hi) -> None:
        for x in body.atoms(Indexed):
            for pos, s in enumerate(x.indices):
                if s == v and x.base.shape is not None:
                    if sp.simplify(lo) != 0 or sp.simplify(hi - (x.base.shape[pos] - 1)) != 0:
                        raise NotImplementedError(
                            f"the sum over {v} does not cover the whole axis {pos} of {x.base}")

    # -- alignment --------------------------------------------------------------
    @staticmethod
    def _ordered(axes: set, order: list) -> list:
        missing = [a for a in axes if a not in order]
        if missing:
            order.extend(sorted(missing, key=str))
        return [a for a in order if a in axes]

    @staticmethod
    def _align(code: str, axes: tuple, target: list) -> str:
        """``code`` (with ``axes``) as a view that broadcasts against ``target``."""
        axes = tuple(axes)
        if not axes:
            return code
        wanted = [a for a in target if a in axes]
        if list(axes) != wanted:
            perm = tuple(axes.index(a) for a in wanted)
            code = f"{code}.T" if len(axes) == 2 else f"numpy.transpose({code}, {perm})"
        first = target.index(wanted[0])
        pattern = [":" if a in axes else "None" for a in target[first:]]
        if "None" in pattern:
            while pattern and pattern[-1] == ":":
                pattern.pop()
            code = f"{code}[{', '.join(pattern)}]" if "None" in pattern else code
            if "None" in pattern:
                return code
        return code

    def _full(self, code, axes, indices, expr) -> str:
        """A result missing some of its indices (a broadcast): materialize it."""
        missing = [s for s in indices if s not in axes]
        if missing:
            raise NotImplementedError(f"{expr} does not depend on {missing}: no full array")
        return self._align(code, axes, list(indices))

    def _print_scalar(self, e) -> str:
        renamed = e.xreplace({s: sp.Symbol(self.scalars[s.name]) for s in e.free_symbols
                              if isinstance(s, sp.Symbol) and s.name in self.scalars})
        return self._printer.doprint(renamed)
