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

__all__ = ["Assignment", "IndexPrinter", "Loop"]


@dataclass(frozen=True)
class Assignment:
    """``target[indices] = expr`` (``indices`` empty for a scalar)."""

    target: str
    indices: tuple[sp.Symbol, ...]
    expr: sp.Expr


@dataclass(frozen=True)
class Loop:
    """A recurrence: ``body`` evaluated for each value of ``index`` in turn.

    ``index`` runs over ``0 .. size - 1`` (``reverse``: from the end), and
    may appear in the body's indices shifted by constants (``H[n, t - 1, f]``).
    Every target of the body is a full array of ``shapes[target]``, allocated
    before the loop with the dtype of the kernel's first array argument, and
    written one slice per step.
    """

    index: sp.Symbol
    size: sp.Expr
    body: tuple[Assignment, ...]
    shapes: tuple[tuple[str, tuple], ...]
    reverse: bool = False


class IndexPrinter:
    """Prints :class:`Assignment` lists as NumPy statements."""

    def __init__(self, names: Mapping[str, str] | None = None,
                 scalars: Mapping[str, str] | None = None) -> None:
        self.names = dict(names or {})
        self.scalars = dict(scalars or {})
        self._printer = ArrayPrinter()
        self._loop: sp.Symbol | None = None
        self._ranges: dict = {}

    # -- public --------------------------------------------------------------
    def statements(self, assignments: Sequence[Assignment | Loop]) -> list[str]:
        flat = [x for a in assignments for x in (a.body if isinstance(a, Loop) else (a,))]
        lines = self._sizes(flat, [a for a in assignments if isinstance(a, Loop)])
        first_input = self._first_input(flat)
        for a in assignments:
            if isinstance(a, Loop):
                lines += self._loop_lines(a, first_input)
            else:
                lines += self._accumulated(a) or [self._assignment(a)]
        return lines

    def _accumulated(self, a: Assignment) -> list[str] | None:
        """``y = t1 + t2 - t3`` as ``y = t1``, ``y += t2``, ``y -= t3``.

        Each binary operation of NumPy allocates its result; accumulating into
        the first term's (fresh) array saves one temporary per term. Only when
        a term that is not a plain array entry has every axis of the target in
        the target's order, so that its array is new and has the target's
        shape; otherwise None (the one-expression form).
        """
        terms = sp.Add.make_args(a.expr)
        if len(terms) < 2 or not all(t.has(Indexed) for t in terms):
            return None
        free = list(a.indices)
        self._ranges = self._index_ranges(a)
        compiled = [self._compile(t, list(free)) for t in terms]
        first = next((k for k, (t, (_, axes)) in enumerate(zip(terms, compiled, strict=True))
                      if not isinstance(t, Indexed) and tuple(axes) == tuple(free)), None)
        if first is None or any(set(axes) - set(free) for _, axes in compiled):
            return None
        target = self.array_name(a.target)
        lines = [f"{target} = {compiled[first][0]}"]
        for k, t in enumerate(terms):
            if k == first:
                continue
            negated = t.could_extract_minus_sign()
            code, axes = self._compile(-t, list(free)) if negated else compiled[k]
            lines.append(f"{target} {'-=' if negated else '+='} "
                         f"{self._align(code, axes, free)}")
        return lines

    def _assignment(self, a: Assignment) -> str:
        free = [s for s in a.indices if s != self._loop]
        self._ranges = self._index_ranges(a)
        code, axes = self._compile(a.expr, list(free))
        if set(axes) - set(free):
            raise ValueError(f"{a.target}: free indices {axes} beyond {a.indices}")
        if tuple(axes) != tuple(free):
            code = self._full(code, axes, tuple(free), a.expr)
        target = self.array_name(a.target)
        if self._loop is not None and self._loop in a.indices:
            where = ", ".join(self._print_scalar(s) if s == self._loop else ":"
                              for s in a.indices)
            target = f"{target}[{where}]"
        return f"{target} = {code}"

    def _loop_lines(self, loop: Loop, first_input: str) -> list[str]:
        lines = []
        for name, shape in loop.shapes:
            dims = ", ".join(self._print_scalar(d) for d in shape)
            lines.append(f"{self.array_name(name)} = numpy.empty(({dims},), "
                         f"dtype={first_input}.dtype)")
        size = self._print_scalar(loop.size)
        steps = f"range({size} - 1, -1, -1)" if loop.reverse else f"range({size})"
        lines.append(f"for {self._print_scalar(loop.index)} in {steps}:")
        self._loop = loop.index
        try:
            lines += ["    " + self._assignment(a) for a in loop.body]
        finally:
            self._loop = None
        return lines

    def _first_input(self, assignments) -> str:
        assigned = {a.target for a in assignments}
        for a in assignments:
            for x in sorted(a.expr.atoms(Indexed), key=str):
                if str(x.base.label) not in assigned:
                    return self.array_name(str(x.base.label))
        return "numpy.float64"

    @staticmethod
    def _index_ranges(a: Assignment) -> dict:
        """Each plain index's range, from the shapes of the arrays it indexes."""
        ranges = {}
        for x in a.expr.atoms(Indexed):
            if x.base.shape is None:
                continue
            for s, d in zip(x.indices, x.base.shape, strict=True):
                if isinstance(s, sp.Symbol):
                    ranges.setdefault(s, (sp.Integer(0), d - 1))
        return ranges

    def _sizes(self, assignments, loops=()) -> list[str]:
        """``m = x.shape[0]`` for every size that a formula, a range or a loop uses."""
        assigned = {a.target for a in assignments}
        used = set()
        for a in assignments:
            e = a.expr.replace(lambda x: isinstance(x, Indexed), lambda x: sp.Integer(1))
            used |= {s for s in e.free_symbols if s.is_integer and s.is_positive}
            for x in a.expr.atoms(Sum):
                for _, lo, hi in x.limits:
                    used |= {s for s in (lo.free_symbols | hi.free_symbols)
                             if s.is_integer and s.is_positive}
        for loop in loops:
            used |= {s for s in loop.size.free_symbols if s.is_integer and s.is_positive}
            for _, shape in loop.shapes:
                used |= {s for d in shape for s in sp.sympify(d).free_symbols
                         if s.is_integer and s.is_positive}
        lines = []
        for size in sorted(used, key=str):
            source = None
            for a in assignments:
                # sorted: the set's order follows the hash seed, the output must not
                for x in sorted(a.expr.atoms(Indexed), key=str):
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
        guarded = self._guarded(e, order)
        if guarded is not None:
            return guarded
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
        text = self._printer.doprint(self._weak_sizes(replaced.xreplace(subs)))
        return text, tuple(union)

    def _guarded(self, e, order):
        """``[cond] * rest`` with a condition on the loop index alone: ``(rest if cond else 0)``.

        Python's conditional, not ``numpy.where``: at the last step the
        guarded term reads one step past the end, and must not be evaluated.
        """
        if self._loop is None:
            return None
        if self._is_guard(e):
            inner, cond = e.args[0]
        elif isinstance(e, sp.Mul) and any(self._is_guard(f) for f in e.args):
            f = next(f for f in e.args if self._is_guard(f))
            rest = list(e.args)
            rest.remove(f)
            inner, cond = sp.Mul(*rest) * f.args[0].expr, f.args[0].cond
        else:
            return None
        code, axes = self._compile(inner, order)
        return f"({code} if {self._print_scalar(cond)} else 0)", axes

    def _is_guard(self, f) -> bool:
        """``Piecewise((x, cond), (0, True))`` with a condition on the loop index only."""
        return (isinstance(f, sp.Piecewise) and len(f.args) == 2
                and f.args[1].expr == 0 and f.args[1].cond is sp.true
                and not f.args[0].cond.atoms(Indexed)
                and self._loop in f.args[0].cond.free_symbols)

    def _is_guarded(self, x) -> bool:
        return self._loop is not None and (self._is_guard(x) or (
            isinstance(x, sp.Mul) and any(self._is_guard(f) for f in x.args)))

    def _operands(self, e) -> list:
        """The maximal array-valued subexpressions (arrays and sums) of ``e``."""
        found = []

        def walk(x):
            if isinstance(x, Indexed | Sum) or self._is_guarded(x):
                if x not in found:
                    found.append(x)
                return
            for arg in x.args:
                if arg.has(Indexed):
                    walk(arg)

        walk(e)
        return found

    def _leaf(self, x: Indexed) -> tuple[str, tuple]:
        """An array entry as a view: ``:`` for a plain index over the whole axis,
        a slice for an index shifted by a constant or summed over part of its
        range, the loop variable for the loop index."""
        name = self.array_name(str(x.base.label))
        parts, axes = [], []
        for pos, idx in enumerate(x.indices):
            if self._loop is not None and idx.has(self._loop):
                if (idx - self._loop).free_symbols:
                    raise NotImplementedError(f"{x}: the loop index mixed with another")
                parts.append(self._print_scalar(idx))
                continue
            s = next(iter(idx.free_symbols), None)
            shift = idx - s if s is not None else None
            if (s is None or len(idx.free_symbols) != 1 or not shift.is_integer
                    or not shift.is_number or s in axes):
                raise NotImplementedError(
                    f"{x}: an array indexed by {idx} has no broadcasting form "
                    "(use a dedicated form, e.g. sliding windows)")
            lo, hi = self._ranges.get(s, (None, None))
            full = x.base.shape is not None and lo == 0 and shift == 0 and (
                sp.simplify(hi - (x.base.shape[pos] - 1)) == 0)
            if full or lo is None:
                if shift != 0:
                    raise NotImplementedError(f"{x}: a shifted index of unknown range")
                parts.append(":")
            else:
                start, stop = self._print_scalar(lo + shift), self._print_scalar(hi + shift + 1)
                parts.append(f"{start}:{stop}")
            axes.append(s)
        if all(p == ":" for p in parts):
            return name, tuple(axes)
        while parts and parts[-1] == ":":
            parts.pop()
        return f"{name}[{', '.join(parts)}]", tuple(axes)

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
        body, limits = self._narrowed(e.function, list(e.limits))
        summed = [v for v, _, _ in limits]
        saved = dict(self._ranges)
        for v, lo, hi in limits:
            self._ranges[v] = (lo, hi)
        try:
            return self._sum_body(body, summed, order)
        finally:
            self._ranges = saved

    def _narrowed(self, body, limits):
        """``Sum(Piecewise((f, t >= 1), (0, True)), (t, 0, T-1))`` -> ``Sum(f, (t, 1, T-1))``."""
        if not (isinstance(body, sp.Piecewise) and len(body.args) == 2
                and body.args[1].expr == 0 and body.args[1].cond is sp.true):
            return body, limits
        inner, cond = body.args[0]
        for rel in sp.And.make_args(cond):
            if not isinstance(rel, sp.Ge | sp.Le | sp.Gt | sp.Lt):
                return body, limits
            target = [k for k, (v, _, _) in enumerate(limits) if rel.has(v)]
            if len(target) != 1:
                return body, limits
            k = target[0]
            v, lo, hi = limits[k]
            d = rel.lhs - rel.rhs
            coeff, rest = d.coeff(v), d - d.coeff(v) * v
            if coeff not in (1, -1) or rest.has(v):
                return body, limits
            strict = 1 if isinstance(rel, sp.Gt | sp.Lt) else 0
            positive = isinstance(rel, sp.Ge | sp.Gt)  # d >= 0 (or > 0)
            if (coeff == 1) == positive:  # v >= -rest*coeff (+1 if strict)
                lo = sp.Max(lo, -rest * coeff + strict)
            else:
                hi = sp.Min(hi, -rest * coeff - strict)
            limits[k] = (v, lo, hi)
        return inner, limits

    def _sum_body(self, body, summed, order) -> tuple[str, tuple]:
        inner_order = order + [v for v in summed if v not in order]
        factors = []
        for f in sp.Mul.make_args(body):
            # a square is a product of two equal factors: one einsum pass
            # ('ab,ab->b') rather than the squares as a temporary, then a reduce
            if f.is_Pow and f.exp == 2 and f.base.has(Indexed) and f.free_symbols & set(summed):
                factors += [f.base, f.base]
            else:
                factors.append(f)
        carrying = [f for f in factors if f.free_symbols & set(summed)]
        constant = sp.Mul(*[f for f in factors if f not in carrying])
        if len(carrying) >= 2:
            operands = [self._compile(f, inner_order) for f in carrying]
            code, axes = self._einsum(operands, summed, inner_order)
        else:
            code, axes = self._compile(sp.Mul(*carrying), inner_order)
            positions = tuple(axes.index(v) for v in summed if v in axes)
            code = self._reduction(code, positions, len(axes))
            axes = tuple(a for a in axes if a not in summed)
        if constant != 1:
            c_code, c_axes = self._compile(constant, order)
            union = self._ordered(set(axes) | set(c_axes), order)
            code = (f"{self._align(c_code, c_axes, union)} * "
                    f"{self._align(code, axes, union)}")
            axes = tuple(union)
        return f"({code})", axes

    @staticmethod
    def _reduction(code: str, positions: tuple, ndim: int) -> str:
        """The sum of ``code`` (``ndim`` axes) over the axes at ``positions``.

        A whole array summed over its last axis, or over the one before, is a
        product with a vector of ones: one BLAS GEMV, which measured 2-20x
        faster than ``numpy.add.reduce`` on (256, 512) to (65536, 8) arrays
        (~1 us slower on a 2 x 3 one). Summing all the leading axes is the same
        product after a reshape. Anything else (a slice, an expression, axes
        in the middle) is ``numpy.add.reduce``.
        """
        if code.isidentifier() and ndim >= 2:
            if positions == (ndim - 1,):
                return f"numpy.matmul({code}, numpy.ones({code}.shape[-1], {code}.dtype))"
            if positions == (ndim - 2,):
                return f"numpy.matmul(numpy.ones({code}.shape[-2], {code}.dtype), {code})"
            if ndim >= 3 and positions == tuple(range(ndim - 1)):
                return (f"numpy.matmul(numpy.ones({code}.size // {code}.shape[-1], {code}.dtype), "
                        f"{code}.reshape(-1, {code}.shape[-1]))")
        axis = positions[0] if len(positions) == 1 else positions
        return f"numpy.add.reduce({code}, axis={axis})"

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
        if all(set(axes) == set(operands[0][1]) for _, axes in operands):
            # a reduction of an elementwise product ('ab,ab->b'): no matrix
            # product to hand to BLAS, and optimize=True made it ~40x slower
            return f"numpy.einsum('{spec}', {args})", tuple(out)
        return f"numpy.einsum('{spec}', {args}, optimize=True)", tuple(out)

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

    def _weak_sizes(self, e):
        """``sqrt(d_head)`` -> ``d_head ** 0.5``: numpy.sqrt of a Python int is a
        float64 scalar, which would turn a float32 result into float64."""
        return e.replace(
            lambda x: isinstance(x, sp.Pow) and not x.exp.is_Integer and x.exp.is_Rational
            and x.base.free_symbols and all(s.is_integer for s in x.base.free_symbols)
            and not x.base.atoms(Indexed),
            lambda x: sp.Pow(x.base, sp.Float(float(x.exp)), evaluate=False))

    def _print_scalar(self, e) -> str:
        renamed = e.xreplace({s: sp.Symbol(self.scalars[s.name]) for s in e.free_symbols
                              if isinstance(s, sp.Symbol) and s.name in self.scalars})
        return self._printer.doprint(self._weak_sizes(renamed))
