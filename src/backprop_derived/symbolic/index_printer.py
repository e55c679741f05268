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
* a sum over indices of a product is written by one writer
  (:meth:`IndexPrinter._contraction`), which chooses the form by the operands'
  axes: a contraction of two arrays that keeps a batch index is
  ``numpy.matmul`` (:func:`matmul_form`: one BLAS GEMM per batch entry, or
  one in all), a sum of a single array is a GEMV with a vector of ones or the
  ufunc's ``reduce``, anything else ``numpy.einsum(..., optimize=True)``.

Sliding windows (pooling, strided convolution) are two primitives:

* an entry read at an affine index ``X[n, a p + j + c]`` (``j`` over a window
  of K taps, the stride ``a`` a number or a symbol) is a
  ``sliding_window_view`` of ``x`` with K taps, sliced ``start:stop:a`` along
  the windows: the window axis ``j`` is appended after the array's axes;
* a gradient ``dX[w] = sum_p f(p, w) [lo <= w - a p <= hi]`` (the engine's
  result for such a read: a range condition tying a free index to a summed
  one) is a *tap scatter*: zeros, then for each tap ``j`` in ``lo .. hi`` the
  slice ``dx[j + a p_lo : ... : a]`` adds ``f(p, a p + j)``, an array over ``p``.

Gather and scatter-add (an embedding) are two more:

* an entry read at an index held in an integer array, ``E[ids[s], d]``, is
  ``numpy.take`` along that axis; the index array's axes take its place;
* a sum ``sum_s [u = ids[s]] V[s, v]`` (the engine's result for such a read:
  no value of ``s`` solves the delta, an id may occur several times or never)
  is a *scatter-add*, the product of the one-hot matrix ``[u = ids[s]]`` (a
  SciPy sparse matrix) with ``V``, which adds the rows of repeated ids.

A size that no array read by the assignments carries (a stride, a window
length, the input length in a backward pass) is taken as a parameter when it
is one of ``given``. Otherwise only plain symbols index an array: a diagonal
(``X[i, i]``) is refused with a clear message.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sympy as sp
from sympy import Indexed, IndexedBase, KroneckerDelta, Sum

from .max_shift import FirstMax, MaxOver
from .printers import ArrayPrinter

__all__ = ["Assignment", "IndexPrinter", "Loop", "matmul_form"]


@dataclass(frozen=True)
class Assignment:
    """``target[indices] = expr`` (``indices`` empty for a scalar)."""

    target: str
    indices: tuple[sp.Symbol, ...]
    expr: sp.Expr
    # the target's shape, needed only when ``expr`` lacks one of ``indices``
    # and no array in it gives that index's range (a constant gradient)
    shape: tuple | None = None


@dataclass(frozen=True)
class Loop:
    """A recurrence: ``body`` evaluated for each value of ``index`` in turn.

    ``index`` runs over ``0 .. size - 1`` (``reverse``: from the end), and
    may appear in the body's indices shifted by constants (``H[n, t - 1, f]``).
    Every target of the body is a full array of ``shapes[target]``, allocated
    before the loop with the dtype of the kernel's first array argument, and
    written one slice per step.

    How it is printed (the values are those of the body's expressions; only
    the order of evaluation differs):

    * *hoisting*: the terms of a sum, or the factors of a product, that read
      no array the loop writes (``x_t W_ih^T + b``) are one statement before
      the loop, for every step at once (a single GEMM instead of one per
      step), and the body reads their step's slice;
    * *time-major storage*: each target is stored with the loop's axis first,
      so that a step's slice is contiguous; the statements after the loop read
      it in that order, and a returned target is a view in its declared axis
      order (``numpy.moveaxis``); a target read only at the step that writes
      it, and not after the loop, is one step's buffer, reused;
    * *peeling*: a guard on the loop index alone (``[t >= 1]``) that is false
      only on the first steps run is resolved at print time: those steps are
      printed before the loop with the guarded term dropped, the loop runs
      the others with it kept, and no condition is evaluated per step;
    * *in place*: a body statement whose value is a sum, a product, a
      function of one argument or a contraction is evaluated into its target
      slice with ``out=`` (no temporary arrays).
    """

    index: sp.Symbol
    size: sp.Expr
    body: tuple[Assignment, ...]
    shapes: tuple[tuple[str, tuple], ...]
    reverse: bool = False


class _TargetRange(tuple):
    """An index's range known only from the target's shape (an output position)."""


@dataclass(frozen=True)
class _Hoisted(Assignment):
    """A loop-invariant part of a loop's body, computed before the loop; ``original``:
    its indices in the order of the statement it came from."""

    original: tuple[sp.Symbol, ...] = ()


def _interleave(parts, axes, step):
    """The axis of each part of an array entry (None for the loop's step)."""
    found = iter(axes)
    return [None if k == step else next(found) for k in range(len(parts))]


def _call_arguments(code: str, functions: Sequence[str]) -> tuple[str, str] | None:
    """``("numpy.matmul", "a, b")`` for ``code == "(numpy.matmul(a, b))"`` (one call, nothing
    after it; the outer parentheses optional), else None."""
    if code.startswith("(") and code.endswith(")"):
        code = code[1:-1]
    for f in functions:
        if not code.startswith(f + "("):
            continue
        depth = 0
        for i, ch in enumerate(code[len(f):], start=len(f)):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0:
                return (f, code[len(f) + 1:i]) if i == len(code) - 1 else None
    return None


def _is_primary(code: str) -> bool:
    """``code`` is a name, a call, a subscript or a parenthesised whole: one operand
    to which ``.T`` or ``[...]`` can be appended without changing what it applies to."""
    if re.fullmatch(r"[A-Za-z_][\w.]*", code):
        return True
    if not code or code[-1] not in ")]":
        return False
    depth = 0
    for pos in range(len(code) - 1, -1, -1):  # the bracket that the last one closes
        depth += {")": 1, "]": 1, "(": -1, "[": -1}.get(code[pos], 0)
        if depth == 0:
            head = code[:pos]
            return head == "" or _is_primary(head)
    return False


def _size(name: str, axes: Sequence, group: Sequence) -> str:
    return " * ".join(f"{name}.shape[{axes.index(a)}]" for a in group)


def _matrices(name: str, axes: tuple, batch: list, free: list, contracted: list,
              free_first: bool) -> str:
    """``name`` as a stack of matrices (batch..., free, contracted) or (batch..., contracted, free)."""
    rest = [a for a in axes if a not in batch]
    # free and contracted groups in the order the operand stores them (a reshape is then a view)
    stored_free_first = rest.index(free[0]) < rest.index(contracted[0])
    groups = [free, contracted] if stored_free_first else [contracted, free]
    perm = [axes.index(a) for a in batch + groups[0] + groups[1]]
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


def matmul_form(operands: Sequence[tuple[str, tuple]], out: tuple) -> str | None:
    """``numpy.matmul`` code for the contraction of two arrays, or None if it has none.

    ``operands`` are two ``(name, axes)``: an array's code (a name, or a parenthesised
    slice, cheap to name several times) and the index of each of its axes; ``out`` the
    result's indices. Every index is a *batch* index (in both operands and in the
    result), a *contracted* one (in both, not in the result) or a *free* one (in one
    operand and in the result). Each operand is transposed (a view) so that its batch
    indices lead, reshaped so that its free and its contracted indices make one axis
    each, and its last two axes swapped where ``matmul`` wants the other order (a view:
    BLAS reads a transposed matrix directly); the product is reshaped back to one axis
    per index and transposed to ``out``'s order. Without a contracted index or a free
    index on each side (an elementwise product, a matrix-vector product) there is no
    such form: None.
    """
    (name_a, a), (name_b, b) = operands
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
        (name_a, a), (name_b, b), free_a, free_b = (name_b, b), (name_a, a), free_b, free_a
    contracted = [x for x in a if x in contracted]  # in the left factor's order
    left = _matrices(name_a, a, batch, free_a, contracted, free_first=True)
    right = _matrices(name_b, b, batch, free_b, contracted, free_first=False)
    code = f"numpy.matmul({left}, {right})"
    # free indices in the order each operand stores them: a reshape of the operand is a
    # view, and the product is transposed (a view) to the result's order instead
    natural = batch + free_a + free_b
    if len(free_a) > 1 or len(free_b) > 1:
        sizes = [_size(name_a, a, [x]) if x in a else _size(name_b, b, [x]) for x in natural]
        code = f"{code}.reshape({', '.join(sizes)})"
    if natural != list(out):
        perm = tuple(natural.index(x) for x in out)
        code = f"{code}.T" if perm == (1, 0) else f"{code}.transpose{perm}"
    return code


class IndexPrinter:
    """Prints :class:`Assignment` lists as NumPy statements."""

    def __init__(self, names: Mapping[str, str] | None = None,
                 scalars: Mapping[str, str] | None = None, given: Sequence[str] = ()) -> None:
        self.names = dict(names or {})
        self.given = set(given)  # sizes passed to the kernel, not read off a shape
        self._taps: set = set()  # the indices of a tap scatter's loops (scalars)
        self._summing: set = set()  # indices summed where an expression is compiled
        self.scalars = dict(scalars or {})
        self._printer = ArrayPrinter()
        self._loop: sp.Symbol | None = None
        self._ranges: dict = {}
        self._stored: dict[str, int] = {}  # loop targets stored with the loop's axis (at
        # this position of their indices) first, for the rest of the statements
        self._at = None  # the loop index's value, on a peeled step
        self._scratch: set[str] = set()  # loop targets kept for one step only
        # sliding-window views shared by a kernel's statements (see _shared): None prints
        # each inline; else the pass ("count" or "bind") and its bookkeeping
        self._share: str | None = None
        self._version: dict[str, int] = {}  # times each array was assigned so far
        self._calls: list = []  # counting pass: the view (key) of each marker handed out
        self._repeated: set = set()  # binding pass: the views printed more than once
        self._bound: dict = {}  # binding pass: view -> its temporary's name
        self._pending: list[str] = []  # bindings for the statement being printed

    # -- public --------------------------------------------------------------
    def statements(self, assignments: Sequence[Assignment | Loop],
                   returns: Sequence[str] | None = None) -> list[str]:
        """The statements; ``returns``: the targets used after them (None: all of them).

        A sliding-window view that the statements outside loops print more than once
        (a one-hot of the first maximum reads its windows three times, the next
        statement once more) is bound to a temporary, ``_view0 = ...``, before the
        first statement that reads it, and read from there; a view printed once stays
        inline. The views are found by printing twice: first with a marker in place of
        each view, counting the markers the printed statements keep (a form tried and
        dropped leaves none), then with the repeated views bound.
        """
        windowed = any(self._windowed(x) for a in assignments if not isinstance(a, Loop)
                       for x in a.expr.atoms(Indexed))
        if not windowed:
            return self._printed(assignments, returns, None)
        self._printed(assignments, returns, "count")
        return self._printed(assignments, returns, "bind")

    def _printed(self, assignments, returns, share: str | None) -> list[str]:
        """The statements, with the window views shared as ``share`` says (see _shared)."""
        self._share, self._version, self._pending = share, {}, []
        if share == "count":
            self._calls, counts = [], {}
        elif share == "bind":
            self._bound = {}
        try:
            return self._printed_statements(assignments, returns, counts if share == "count"
                                            else None)
        finally:
            self._share, self._pending = None, []

    def _printed_statements(self, assignments, returns, counts) -> list[str]:
        flat = [x for a in assignments for x in (a.body if isinstance(a, Loop) else (a,))]
        lines = self._sizes(flat, [a for a in assignments if isinstance(a, Loop)])
        first_input = self._first_input(flat)
        self._stored = {}
        for k, a in enumerate(assignments):
            if isinstance(a, Loop):
                later = [x for b in assignments[k + 1:]
                         for x in (b.body if isinstance(b, Loop) else (b,))]
                read = {str(x.base.label) for b in later for x in b.expr.atoms(Indexed)}
                needed = None if returns is None else read | set(returns)
                share, self._share = self._share, None  # views in a loop stay inline
                try:
                    lines += self._loop_lines(a, first_input, needed)
                finally:
                    self._share = share
                written = {b.target for b in a.body}
            else:
                start = len(self._calls)
                printed = (self._scattered(a, first_input) or self._accumulated(a)
                           or [self._assignment(a)])
                if counts is not None:  # the markers this statement's printed form kept
                    text = "\n".join(printed)
                    for k, key in enumerate(self._calls[start:], start=start):
                        counts[key] = counts.get(key, 0) + text.count(f"_view{k}_")
                lines += self._pending + printed
                self._pending = []
                written = {a.target}
            for target in written:  # a view of the array before this no longer holds
                self._version[target] = self._version.get(target, 0) + 1
        if counts is not None:
            self._repeated = {key for key, n in counts.items() if n > 1}
        for label in returns if returns is not None else list(self._stored):
            if self._stored.get(label, 0) and label not in self._scratch:
                n = self.array_name(label)  # the declared axis order, as a view
                lines.append(f"{n} = numpy.moveaxis({n}, 0, {self._stored[label]})")
        self._stored = {}
        return lines

    @staticmethod
    def _scatter_plan(a: Assignment):
        """``(coeff, sum, inner, taps)`` where ``a`` is one tap scatter, else None.

        ``a.expr`` is ``coeff * Sum(Piecewise((inner, cond), (0, True)), ...)``;
        every relation of ``cond`` bounds ``w - a p`` for one free index ``w``
        (coefficient +-1) and one summed index ``p``; ``taps`` maps each such
        ``w`` to ``(p, a, lo, hi)``, the tap ``w - a p`` running over ``lo .. hi``.
        """
        if a.shape is None:
            return None
        coeff, total = a.expr.as_independent(Sum, as_Add=False)
        if not isinstance(total, Sum) or coeff.has(Indexed):
            return None
        body = total.function
        if not (isinstance(body, sp.Piecewise) and len(body.args) == 2
                and body.args[1].expr == 0 and body.args[1].cond is sp.true):
            return None
        inner, cond = body.args[0]
        summed = [v for v, _, _ in total.limits]
        bounds: dict = {}
        for rel in sp.And.make_args(cond):
            if not isinstance(rel, sp.Ge | sp.Gt | sp.Le | sp.Lt):
                return None
            d = rel.lhs - rel.rhs if isinstance(rel, sp.Ge | sp.Gt) else rel.rhs - rel.lhs
            d = d - 1 if isinstance(rel, sp.Gt | sp.Lt) else d  # d >= 0, integers
            ws = [x for x in a.indices if d.has(x)]
            ps = [v for v in summed if d.has(v)]
            if len(ws) != 1 or len(ps) != 1:
                return None
            (w,), (p,) = ws, ps
            cw, cp = d.coeff(w), d.coeff(p)
            rest = sp.expand(d - cw * w - cp * p)
            if cw not in (1, -1) or rest.has(w) or rest.has(p) or cp.has(w) or cp.has(p):
                return None
            stride = sp.expand(-cp / cw)  # d = cw (w - stride p) + rest
            entry = bounds.setdefault(w, [p, stride, None, None])
            if entry[0] != p or sp.expand(entry[1] - stride) != 0:
                return None
            if cw == 1:
                entry[2] = -rest if entry[2] is None else sp.Max(entry[2], -rest)
            else:
                entry[3] = rest if entry[3] is None else sp.Min(entry[3], rest)
        if not bounds or any(lo is None or hi is None for _, _, lo, hi in bounds.values()):
            return None
        return coeff, total, inner, {w: tuple(v) for w, v in bounds.items()}

    def _scattered(self, a: Assignment, first_input: str) -> list[str] | None:
        """A tap scatter (see the module's docstring): zeros, then one slice-add per tap."""
        if self._loop is not None:
            return None
        plan = self._scatter_plan(a)
        if plan is None:
            return None
        coeff, total, inner, taps = plan
        limits = {v: (lo, hi) for v, lo, hi in total.limits}
        names = {w: sp.Symbol(f"_j{k}", integer=True)
                 for k, w in enumerate(x for x in a.indices if x in taps)}
        value = inner.subs({w: st * p + names[w] for w, (p, st, _, _) in taps.items()})
        rest = [lim for lim in total.limits if lim[0] not in {p for p, *_ in taps.values()}]
        value = coeff * (Sum(value, *rest) if rest else value)
        order = [taps[x][0] if x in taps else x for x in a.indices]
        self._ranges = self._index_ranges(a)
        for p, *_ in taps.values():
            self._ranges[p] = limits[p]
        self._taps = set(names.values())
        try:
            code, axes = self._compile(value, list(order))
        finally:
            self._taps = set()
        if set(axes) - set(order):
            return None
        target = self.array_name(a.target)
        dims = ", ".join(self._print_scalar(sp.sympify(d)) for d in a.shape)
        lines = [f"{target} = numpy.zeros(({dims},), dtype={first_input}.dtype)"]
        where = []
        for x in a.indices:
            if x not in taps:
                where.append(":")
                continue
            p, st, _, _ = taps[x]
            lo_p, hi_p = limits[p]
            start = st * lo_p + names[x]
            stop = start + st * (hi_p - lo_p) + 1
            step = "" if st == 1 else f":{self._print_scalar(st)}"
            where.append(f"{self._print_scalar(start)}:{self._print_scalar(stop)}{step}")
        while where and where[-1] == ":":
            where.pop()
        indent = ""
        for x, j in names.items():
            _, _, lo, hi = taps[x]
            lines.append(f"{indent}for {j} in range({self._print_scalar(lo)}, "
                         f"{self._print_scalar(hi + 1)}):")
            indent += "    "
        lines.append(f"{indent}{target}[{', '.join(where)}] += {self._align(code, axes, order)}")
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
            shape = None if a.shape is None else tuple(
                d for s, d in zip(a.indices, a.shape, strict=True) if s != self._loop)
            code = self._full(code, axes, tuple(free), a.expr, shape)
        target = self._target(a)
        return f"{target}[...] = {code}" if a.target in self._scratch else f"{target} = {code}"

    def _target(self, a: Assignment) -> str:
        """The target, or inside a loop its step's slice (``h[t]``, time-major)."""
        target = self.array_name(a.target)
        if self._loop is None or self._loop not in a.indices or a.target in self._scratch:
            return target
        if self._stored.get(a.target) == a.indices.index(self._loop):
            return f"{target}[{self._step(self._loop)}]"
        where = ", ".join(self._step(s) if s == self._loop else ":" for s in a.indices)
        return f"{target}[{where}]"

    def _step(self, idx) -> str:
        """An index holding the loop index, printed (at the peeled step's value, if any)."""
        if self._at is not None:
            idx = idx.xreplace({self._loop: self._at})
        return self._print_scalar(idx)

    def _loop_lines(self, loop: Loop, first_input: str, needed=None) -> list[str]:
        body, hoisted = self._hoisted(loop)
        lines = []
        self._loop = loop.index
        try:
            for a in hoisted:  # before the loop: the loop index is an ordinary axis
                self._loop = None
                self._ranges = self._index_ranges(a)
                code, axes = self._compile(a.expr, list(a.indices))
                if tuple(axes) != a.indices:
                    code = self._full(code, axes, a.indices, a.expr)
                if loop.index in a.indices and a.indices[0] != a.original[0]:
                    code = f"numpy.ascontiguousarray({code})"  # the loop's axis first
                lines.append(f"{self.array_name(a.target)} = {code}")
            self._loop = loop.index
            positions = {}
            for a in body:
                if loop.index in a.indices:
                    positions[a.target] = a.indices.index(loop.index)
            # a target read only at the step that writes it, and not after the loop: one
            # step's buffer, reused
            reads = [x for a in body for x in a.expr.atoms(Indexed)]
            self._scratch = {name for name, p in positions.items()
                             if needed is not None and name not in needed
                             and all(x.indices[p] == loop.index for x in reads
                                     if str(x.base.label) == name)}
            for name, shape in loop.shapes:
                p = positions.get(name, 0)
                shape = ((*shape[:p], *shape[p + 1:]) if name in self._scratch
                         else (shape[p], *shape[:p], *shape[p + 1:]))
                dims = ", ".join(self._print_scalar(d) for d in shape)
                lines.append(f"{self.array_name(name)} = numpy.empty(({dims},), "
                             f"dtype={first_input}.dtype)")
            self._stored.update(positions)
            peeled, values, body = self._peeled(loop, body)
            for steps, value in zip(peeled, values, strict=True):
                need = sp.Ge(loop.size, (loop.size - 1 - value if loop.reverse else value) + 1)
                self._at = value
                try:
                    printed = [x for a in steps for x in self._loop_assignment(a)]
                finally:
                    self._at = None
                if need is not sp.true:  # the loop may have fewer steps than are peeled
                    lines.append(f"if {self._python_condition(need)}:")
                    printed = ["    " + x for x in printed]
                lines += printed
            size, k = self._print_scalar(loop.size), len(peeled)
            if loop.reverse:
                steps = f"range({self._print_scalar(loop.size - 1 - k)}, -1, -1)"
            else:
                steps = f"range({k}, {size})" if k else f"range({size})"
            lines.append(f"for {self._print_scalar(loop.index)} in {steps}:")
            lines += ["    " + x for a in body for x in self._loop_assignment(a)]
        finally:
            self._loop, self._at, self._scratch = None, None, set()
        return lines

    # -- loops: hoisting, peeling, in place ---------------------------------------
    def _hoisted(self, loop: Loop):
        """The body with its loop-invariant parts replaced by arrays, and those arrays."""
        written = {a.target for a in loop.body}
        hoisted: list[_Hoisted] = []

        def invariant(e) -> bool:
            if not e.has(Indexed) or e.has(sp.Piecewise):
                return False
            for x in e.atoms(Indexed):
                if str(x.base.label) in written:
                    return False
                if any(i.has(loop.index) and i != loop.index for i in x.indices):
                    return False  # a shifted step: not one slice of a full array
            plain = e.replace(lambda x: isinstance(x, Indexed), lambda x: sp.Integer(1))
            if loop.index in plain.free_symbols:
                return False  # the loop index as a value
            return all(not lim[1].has(loop.index) and not lim[2].has(loop.index)
                       for x in e.atoms(Sum) for lim in x.limits)

        def hoist(e, a: Assignment):
            if isinstance(e, Indexed):
                return e
            if invariant(e):
                used = [s for s in a.indices if s in e.free_symbols]
                order = [s for s in used if s == loop.index] + [s for s in used if s != loop.index]
                same = sum(h.target.startswith(f"{a.target}_invariant") for h in hoisted)
                name = f"{a.target}_invariant" + (f"{same}" if same else "")
                hoisted.append(_Hoisted(name, tuple(order), e, original=tuple(used)))
                ranges = self._index_ranges(a)
                shape = (tuple(ranges[s][1] + 1 for s in order)
                         if all(s in ranges for s in order) else None)
                return IndexedBase(name, shape=shape)[tuple(order)]
            if isinstance(e, sp.Add | sp.Mul):
                fixed = [x for x in e.args if invariant(x)]
                if fixed and len(fixed) < len(e.args):
                    group = e.func(*fixed)
                    rest = [hoist(x, a) for x in e.args if x not in fixed]
                    if not isinstance(group, Indexed):  # a lone array: nothing to save
                        group = hoist(group, a)
                    return e.func(group, *rest)
            if isinstance(e, sp.Add | sp.Mul | sp.Pow | sp.Function) and not isinstance(
                    e, sp.Piecewise):
                return e.func(*[hoist(x, a) for x in e.args])
            return e

        body = tuple(Assignment(a.target, a.indices, hoist(a.expr, a)) for a in loop.body)
        return body, hoisted

    def _peeled(self, loop: Loop, body):
        """``(steps, values, body)``: the first steps run, printed apart with their guards
        resolved, and the body of the remaining steps, where every guard holds."""
        guards = {g for a in body for g in a.expr.atoms(sp.Piecewise)
                  if self._is_guard(g, loop.index)}
        if not guards:
            return [], [], body
        k = 0
        for g in guards:
            first = self._first_true(g.args[0].cond, loop)
            if first is None:
                return [], [], body  # printed as a condition per step
            k = max(k, first)

        def resolved(value):
            def subs(g):
                if value is None:
                    return g.args[0].expr
                holds = g.args[0].cond.xreplace({loop.index: value})
                return g.args[0].expr if holds is sp.true else sp.Integer(0)
            return tuple(Assignment(a.target, a.indices,
                                    a.expr.replace(lambda x: x in guards, subs))
                         for a in body)

        values = [loop.size - 1 - j if loop.reverse else sp.Integer(j) for j in range(k)]
        return [resolved(v) for v in values], values, resolved(None)

    @staticmethod
    def _first_true(cond, loop: Loop, most: int = 4):
        """How many of the first steps run fail ``cond``, if it holds on every later one
        (it is monotone in the loop index, in the direction the loop runs); else None."""
        for rel in sp.And.make_args(cond):
            if not isinstance(rel, sp.Ge | sp.Gt | sp.Le | sp.Lt):
                return None
            d = rel.lhs - rel.rhs
            coeff = d.coeff(loop.index)
            if not coeff.is_number or coeff == 0 or (d - coeff * loop.index).has(loop.index):
                return None
            rising = (coeff > 0) == isinstance(rel, sp.Ge | sp.Gt)  # true from some t on
            if rising == loop.reverse:
                return None
        for j in range(most + 1):
            value = loop.size - 1 - j if loop.reverse else sp.Integer(j)
            holds = cond.xreplace({loop.index: value})
            if holds is sp.true:
                return j
            if holds is not sp.false:
                return None
        return None

    def _loop_assignment(self, a: Assignment) -> list[str]:
        """One body statement, evaluated into its slice where it can be."""
        free = [s for s in a.indices if s != self._loop]
        self._ranges = self._index_ranges(a)
        for x in a.expr.atoms(Indexed):
            if str(x.base.label) == a.target and self._loop in x.indices:
                return [self._assignment(a)]  # reads the slice it writes
        lines = self._into(self._target(a), a.expr, free)
        return lines if lines is not None else [self._assignment(a)]

    def _into(self, target: str, e, free: list) -> list[str] | None:
        """Statements that leave ``e`` in ``target`` without temporaries, or None."""
        if isinstance(e, sp.Add | sp.Mul):
            ufunc = "numpy.add" if isinstance(e, sp.Add) else "numpy.multiply"
            args = list(e.args)
            compiled = [self._compile(x, list(free)) for x in args]
            full = [i for i, (_, ax) in enumerate(compiled) if tuple(ax) == tuple(free)]
            if not full:
                return None
            lines, first = None, full[0]
            for i in full:
                lines = self._into(target, args[i], free)
                if lines is not None:
                    first = i
                    break
            # the other whole slices first: the first operation then reads two of them
            others = sorted((j for j in range(len(args)) if j != first),
                            key=lambda j: j not in full)
            rest = [self._align(*compiled[j], free) for j in others]
            if lines is None:  # the first operation writes the target
                lines = [f"{ufunc}({compiled[first][0]}, {rest.pop(0)}, out={target})"]
            return lines + [f"{ufunc}({target}, {c}, out={target})" for c in rest]
        if isinstance(e, sp.Function) and len(e.args) == 1 and not self._is_guard(e):
            call = re.fullmatch(r"(numpy\.\w+)\(_arg\)",
                                self._printer.doprint(e.func(sp.Symbol("_arg"))))
            if call is None:
                return None
            inner = self._into(target, e.args[0], free)  # the argument first, in place
            if inner is not None:
                return [*inner, f"{call.group(1)}({target}, out={target})"]
            code, axes = self._compile(e.args[0], list(free))
            if tuple(axes) != tuple(free):
                return None
            return [f"{call.group(1)}({code}, out={target})"]
        if isinstance(e, Sum):
            code, axes = self._compile(e, list(free))
            inner = _call_arguments(code, ("numpy.matmul", "numpy.einsum"))
            if inner is None or tuple(axes) != tuple(free):
                return None
            return [f"{inner[0]}({inner[1]}, out={target})"]
        return None

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
        known = a.shape is not None and len(a.shape) == len(a.indices)
        for s, d in zip(a.indices, a.shape if known else a.indices, strict=True):
            if not known:
                break
            if s not in ranges and any(s in i.free_symbols and i != s
                                       for x in a.expr.atoms(Indexed) for i in x.indices):
                # read at a window's index: a window over the target's range, if it is one
                ranges[s] = _TargetRange((sp.Integer(0), d - 1))
            elif s not in ranges and any(s in x.free_symbols
                                         for x in a.expr.atoms(KroneckerDelta)):
                ranges[s] = (sp.Integer(0), d - 1)  # the rows of a scatter-add
        return ranges

    def _sizes(self, assignments, loops=()) -> list[str]:
        """``m = x.shape[0]`` for every size that a formula, a range or a loop uses."""
        lines = []
        for size, source in self._size_sources(assignments, loops):
            if source is None and self._print_scalar(size) in self.given:
                continue  # a parameter of the kernel
            if source is None:
                raise ValueError(f"no input array has an axis of size {size}")
            lines.append(f"{self._print_scalar(size)} = {source}")
        return lines

    def missing_sizes(self, assignments) -> list[str]:
        """The sizes the assignments use that no array they read carries: parameters."""
        return [self._print_scalar(size)
                for size, source in self._size_sources(list(assignments)) if source is None]

    def _size_sources(self, assignments, loops=()) -> list[tuple]:
        """``(size, "x.shape[0]" or None)`` for every size used, sorted by name."""
        assigned = {a.target for a in assignments}
        used = set()
        for a in assignments:
            e = a.expr.replace(lambda x: isinstance(x, Indexed), lambda x: sp.Integer(1))
            used |= {s for s in e.free_symbols if s.is_integer and s.is_positive}
            for x in a.expr.atoms(Sum, MaxOver):
                for _, lo, hi in x.limits:
                    used |= {s for s in (lo.free_symbols | hi.free_symbols)
                             if s.is_integer and s.is_positive}
            for x in a.expr.atoms(FirstMax):
                used |= {s for t in x.taps for s in sp.Tuple(*t).free_symbols if s.is_positive}
            windowed = set()
            for x in a.expr.atoms(Indexed):  # strides and offsets of windows
                for idx in x.indices:
                    if len(self._index_symbols(idx)) > 1:
                        used |= {s for s in idx.free_symbols if s.is_integer and s.is_positive}
                        windowed |= set(self._index_symbols(idx))
            for x in a.expr.atoms(Indexed):  # the ranges of a window's indices
                for idx, d in zip(x.indices, x.base.shape or (), strict=False):
                    if idx in windowed:
                        used |= {s for s in sp.sympify(d).free_symbols if s.is_positive}
            if a.shape is not None and len(a.shape) == len(a.indices):  # a scatter's rows
                used |= {x for s, d in zip(a.indices, a.shape, strict=True)
                         if any(s in dl.free_symbols for dl in a.expr.atoms(KroneckerDelta))
                         for x in sp.sympify(d).free_symbols}
            plan = self._scatter_plan(a)
            if plan is not None:  # the zeros' shape, the taps' ranges
                used |= {s for d in a.shape for s in sp.sympify(d).free_symbols}
                used |= {s for t in plan[3].values() for s in sp.Tuple(*t).free_symbols
                         if s.is_integer and s.is_positive}
        for loop in loops:
            used |= {s for s in loop.size.free_symbols if s.is_integer and s.is_positive}
            for _, shape in loop.shapes:
                used |= {s for d in shape for s in sp.sympify(d).free_symbols
                         if s.is_integer and s.is_positive}
        found = []
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
            found.append((size, source))
        return found

    def array_name(self, label: str) -> str:
        return self.names.get(label, label.lower())

    # -- compiling --------------------------------------------------------------
    def _compile(self, e, order: list) -> tuple[str, tuple]:
        """``(code, axes)``: NumPy code for ``e`` and the index of each of its axes."""
        if isinstance(e, Indexed):
            return self._leaf(e)
        if isinstance(e, Sum):
            return self._sum(e, order)
        if isinstance(e, MaxOver):
            return self._maximum(e, order)
        if isinstance(e, FirstMax):
            return self._first_max(e, order)
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
        return f"({code} if {self._python_condition(cond)} else 0)", axes

    def _python_condition(self, cond) -> str:
        """A condition on integers as Python comparisons (no NumPy call per step)."""
        if self._at is not None:
            cond = cond.xreplace({self._loop: self._at})
        if cond in (sp.true, sp.false):
            return str(bool(cond))
        if isinstance(cond, sp.And):
            return " and ".join(f"({self._python_condition(c)})" for c in cond.args)
        if isinstance(cond, sp.Ge | sp.Gt | sp.Le | sp.Lt | sp.Eq | sp.Ne):
            op = {sp.Ge: ">=", sp.Gt: ">", sp.Le: "<=", sp.Lt: "<", sp.Eq: "==",
                  sp.Ne: "!="}[type(cond)]
            return f"{self._print_scalar(cond.lhs)} {op} {self._print_scalar(cond.rhs)}"
        return self._print_scalar(cond)

    def _is_guard(self, f, loop=None) -> bool:
        """``Piecewise((x, cond), (0, True))`` with a condition on the loop index only."""
        loop = self._loop if loop is None else loop
        return (isinstance(f, sp.Piecewise) and len(f.args) == 2
                and f.args[1].expr == 0 and f.args[1].cond is sp.true
                and not f.args[0].cond.atoms(Indexed)
                and loop in f.args[0].cond.free_symbols)

    def _is_guarded(self, x) -> bool:
        return self._loop is not None and (self._is_guard(x) or (
            isinstance(x, sp.Mul) and any(self._is_guard(f) for f in x.args)))

    def _operands(self, e) -> list:
        """The maximal array-valued subexpressions (arrays and sums) of ``e``."""
        found = []

        def walk(x):
            if isinstance(x, Indexed | Sum | MaxOver | FirstMax) or self._is_guarded(x):
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
        if any(isinstance(idx, Indexed) for idx in x.indices):
            return self._gather(x, name)
        if self._windowed(x):
            return self._window(x, name)
        parts, axes, step = [], [], None
        for pos, idx in enumerate(x.indices):
            if idx.free_symbols and idx.free_symbols <= self._taps:
                parts.append(self._print_scalar(idx))  # a tap of a scatter's loop
                continue
            if self._loop is not None and idx.has(self._loop):
                if (idx - self._loop).free_symbols:
                    raise NotImplementedError(f"{x}: the loop index mixed with another")
                step = len(parts)
                parts.append(self._step(idx))
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
        label = str(x.base.label)
        if step is not None and label in self._scratch:
            parts.pop(step)  # one step's buffer
        elif self._stored.get(label, 0):  # stored with its loop's axis first
            p = self._stored[label]
            axis = _interleave(parts, axes, step)
            parts.insert(0, parts.pop(p))
            axis.insert(0, axis.pop(p))
            axes = [ax for ax in axis if ax is not None]
        if all(p == ":" for p in parts):
            return name, tuple(axes)
        while parts and parts[-1] == ":":
            parts.pop()
        return f"{name}[{', '.join(parts)}]", tuple(axes)

    @staticmethod
    def _index_symbols(idx) -> list:
        """The indices in an array's index (integers that are not sizes), sorted; an index
        read from an array (``ids[s]``) contributes its own indices."""
        labels = {x.base.label for x in idx.atoms(Indexed)}
        return sorted((v for v in idx.free_symbols if isinstance(v, sp.Symbol)
                       and v.is_integer and not v.is_positive and v not in labels), key=str)

    def _window(self, x: Indexed, name: str) -> tuple[str, tuple]:
        """An entry read at affine indices ``a p + j + c``: a view of sliding windows.

        ``j`` (coefficient 1, a known range of K values, preferably summed here)
        runs along a window of K taps; ``p`` picks the windows ``a p + lo_j + c``,
        every ``a``-th from ``a lo_p + lo_j + c`` (all of them where ``p``'s range
        is not known: it is then an output position, from 0). The windows' axes
        follow the array's, in the order of the array's axes.
        """
        parts, axes, windows, taps = [], [], [], []
        for pos, idx in enumerate(x.indices):
            syms = self._index_symbols(idx)
            if idx.free_symbols and idx.free_symbols <= self._taps:
                parts.append(self._print_scalar(idx))
                continue
            if len(syms) == 1 and idx == syms[0] and syms[0] not in axes:
                parts.append(":")
                axes.append(syms[0])
                continue
            if len(syms) != 2 or not sp.Poly(idx, *syms).is_linear:
                raise NotImplementedError(f"{x}: the index {idx} is not a window a p + j + c")
            ones = [v for v in syms if idx.coeff(v) == 1 and v in self._ranges]
            if not ones:
                raise NotImplementedError(f"{x}: no index of {idx} runs over a known window")
            j = next((v for v in ones if v in self._summing), ones[-1])
            p = next(v for v in syms if v != j)
            a, c = idx.coeff(p), sp.expand(idx - idx.coeff(p) * p - j)
            if c.free_symbols & set(syms) or p in axes or j in taps:
                raise NotImplementedError(f"{x}: the index {idx} is not a window a p + j + c")
            lo_j, hi_j = self._ranges[j]
            lo_p, hi_p = self._ranges.get(p, (sp.Integer(0), None))
            if isinstance(self._ranges.get(p), _TargetRange):
                hi_p = None  # the output's positions: every window there is
            start = a * lo_p + lo_j + c
            stop = "" if hi_p is None else self._print_scalar(start + a * (hi_p - lo_p) + 1)
            step = "" if a == 1 else f":{self._print_scalar(a)}"
            parts.append(f"{self._print_scalar(start)}:{stop}{step}")
            axes.append(p)
            windows.append((pos, hi_j - lo_j + 1))
            taps.append(j)
        if any(t in axes for t in taps):
            raise NotImplementedError(f"{x}: a window index is also an axis")
        sizes = ", ".join(self._print_scalar(k) for _, k in windows)
        where = ", ".join(str(pos) for pos, _ in windows)
        view = self._shared(f"numpy.lib.stride_tricks.sliding_window_view({name}, ({sizes},), "
                            f"axis=({where},))", str(x.base.label))
        while parts and parts[-1] == ":":
            parts.pop()
        view = f"{view}[{', '.join(parts)}]" if parts else view
        return view, (*axes, *taps)

    def _shared(self, view: str, label: str) -> str:
        """``view`` (the windows of the array ``label``) as a kernel prints it: inline,
        a marker naming it (counting pass), or its temporary where it is printed more than
        once (binding pass; the binding goes before the statement). Keyed by the array's
        assignments so far: a view is never read past a new value of its array."""
        if self._share is None:
            return view
        key = (view, self._version.get(label, 0))
        if self._share == "count":
            self._calls.append(key)
            return f"_view{len(self._calls) - 1}_"
        if key not in self._repeated:
            return view
        if key not in self._bound:
            self._bound[key] = f"_view{len(self._bound)}"
            self._pending.append(f"{self._bound[key]} = {view}")
        return self._bound[key]

    def _first_max(self, e: FirstMax, order: list) -> tuple[str, tuple]:
        """The one-hot of the first largest entry over the taps (row-major): ``numpy.argmax``
        of the windows, flattened over the taps, read off the rows of an identity matrix."""
        taps = [t[0] for t in e.taps]
        saved = (dict(self._ranges), set(self._summing))
        for v, lo, hi in e.taps:
            self._ranges[v] = (lo, hi)
        self._summing |= set(taps)
        try:
            code, axes = self._compile(e.args[0], [*[o for o in order if o not in taps], *taps])
        finally:
            self._ranges, self._summing = saved
        rest = [v for v in axes if v not in taps]
        code = self._align(code, axes, [*rest, *taps])
        size = self._print_scalar(sp.Mul(*[hi - lo + 1 for _, lo, hi in e.taps]))
        first = next(iter(sorted(e.args[0].atoms(Indexed), key=str)))
        dtype = f"{self.array_name(str(first.base.label))}.dtype"
        if len(taps) == 1:
            flat = code
        else:
            flat = f"{code}.reshape(*{code}.shape[:{len(rest)}], {size})"
        onehot = f"numpy.eye({size}, dtype={dtype})[numpy.argmax({flat}, axis=-1)]"
        if len(taps) > 1:
            onehot = f"{onehot}.reshape({code}.shape)"
        return onehot, (*rest, *taps)

    def _gather(self, x: Indexed, name: str) -> tuple[str, tuple]:
        """An entry read at an index held in an integer array (``E[ids[s], d]``): the
        array's entries along that axis at the ids, ``numpy.take``; the index array's axes
        take that axis's place (``(s, d)``). The other axes are read whole."""
        gathered = [pos for pos, idx in enumerate(x.indices) if isinstance(idx, Indexed)]
        if len(gathered) != 1:
            raise NotImplementedError(f"{x}: more than one index read from an array")
        pos, = gathered
        rest = [idx for k, idx in enumerate(x.indices) if k != pos]
        shape = x.base.shape
        for k, idx in enumerate(x.indices):
            if k == pos:
                continue
            lo, hi = self._ranges.get(idx, (sp.Integer(0), None))
            whole = hi is None or (shape is not None and sp.simplify(hi - shape[k] + 1) == 0)
            if not isinstance(idx, sp.Symbol) or lo != 0 or not whole or idx == self._loop:
                raise NotImplementedError(
                    f"{x}: an array read at ids is read whole along its other axes")
        ids, ids_axes = self._leaf(x.indices[pos])
        if set(ids_axes) & set(rest):
            raise NotImplementedError(f"{x}: an index of the ids is also an axis of the array")
        return f"numpy.take({name}, {ids}, axis={pos})", (*rest[:pos], *ids_axes, *rest[pos:])

    @staticmethod
    def _id_delta(body, summed):
        """``(delta, u, ids[s])`` for the factor ``[u = ids[s]]`` of ``body`` (``u`` free,
        ``ids[s]`` an array entry over summed indices), else None."""
        for f in sp.Mul.make_args(body):
            if not isinstance(f, KroneckerDelta):
                continue
            for u, ids in (f.args, f.args[::-1]):
                if (isinstance(ids, Indexed) and isinstance(u, sp.Symbol)
                        and u not in summed and set(ids.indices) & set(summed)):
                    return f, u, ids
        return None

    def _scatter_add(self, e: Sum, order: list) -> tuple[str, tuple]:
        """``out[u, v] = sum_s [u = ids[s]] values[s, v]``: the values' rows added into the
        rows their ids name (the gradient of a gather; repeated ids add up).

        That sum is the product ``A @ values`` of the one-hot matrix ``A[u, s] =
        [u = ids[s]]`` (``U`` rows, one 1 per column), printed as a
        ``scipy.sparse.coo_array`` with its entries at ``(ids[s], s)``: one pass over
        the rows of ``values`` that adds each into row ``ids[s]`` of a zeroed result, in
        the order of ``s`` and in the dtype of ``values`` (float32 stays float32); the
        COO constructor rejects an id outside ``[0, U)``. Chosen by measurement against
        ``numpy.add.at``, ``numpy.bincount`` over the flat (row, column) positions (which
        sums in float64 and casts back), sort + ``numpy.add.reduceat``, and CSR and CSC
        forms of ``A`` (CSC is as fast, but its product does not check the ids), from 10
        to 10**6 rows, 1 to 512 columns and 10 to 10**5 ids (SciPy 1.17; from 1.15,
        scipy/scipy#21240, a COO array times a dense one is one compiled loop).
        """
        summed = [v for v, _, _ in e.limits]
        delta, u, ids = self._id_delta(e.function, summed)
        if len(summed) != 1 or ids.indices != (summed[0],):
            raise NotImplementedError(f"{e}: a scatter-add over one index, [u = ids[s]]")
        s_, = summed
        values = e.function / delta
        if u in values.free_symbols or not values.has(Indexed):
            raise NotImplementedError(f"{e}: the values of a scatter-add do not depend on u")
        lo_u, hi_u = self._ranges.get(u, (None, None))
        if lo_u != 0:
            raise NotImplementedError(f"{e}: the range of {u} is unknown: give the target "
                                      "its shape")
        saved = (dict(self._ranges), set(self._summing))
        self._ranges[s_] = tuple(e.limits[0][1:])
        self._summing.add(s_)
        try:
            ids_code, _ = self._leaf(ids)
            code, axes = self._compile(values, [s_, *(o for o in order if o != s_)])
        finally:
            self._ranges, self._summing = saved
        rest = [a for a in axes if a != s_]
        if s_ not in axes or len(rest) > 1:
            raise NotImplementedError(f"{e}: a scatter-add of rows (values[s] or values[s, v])")
        code = self._align(code, axes, [s_, *rest])
        if not _is_primary(code):
            code = f"({code})"
        first = sorted(values.atoms(Indexed), key=str)[0]
        dtype = f"{self.array_name(str(first.base.label))}.dtype"
        lo_s, hi_s = e.limits[0][1:]
        n = self._print_scalar(hi_s - lo_s + 1)
        rows = self._print_scalar(hi_u + 1)
        return (f"(scipy.sparse.coo_array((numpy.ones({n}, {dtype}), ({ids_code}, "
                f"numpy.arange({n}))), shape=({rows}, {n})) @ {code})", (u, *rest))

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
        if self._id_delta(e.function, [v for v, _, _ in limits]) is not None:
            return self._scatter_add(e, order)
        body, limits = self._narrowed(e.function, list(e.limits))
        summed = [v for v, _, _ in limits]
        saved = (dict(self._ranges), set(self._summing))
        for v, lo, hi in limits:
            self._ranges[v] = (lo, hi)
        self._summing |= set(summed)
        try:
            return self._sum_body(body, summed, order)
        finally:
            self._ranges, self._summing = saved

    def _maximum(self, e: MaxOver, order: list) -> tuple[str, tuple]:
        """The largest value over one index: the ufunc's reduce along its axis."""
        (v, lo, hi), = e.limits
        saved = dict(self._ranges)
        self._ranges[v] = (lo, hi)
        try:
            code, axes = self._compile(e.function, [*order, v] if v not in order else list(order))
        finally:
            self._ranges = saved
        if v not in axes:
            return code, axes
        return (f"numpy.maximum.reduce({code}, axis={axes.index(v)})",
                tuple(a for a in axes if a != v))

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
            operands = [(self._compile(f, inner_order), isinstance(f, Indexed)
                         and not self._windowed(f)) for f in carrying]
        else:
            operands = [(self._compile(sp.Mul(*carrying), inner_order), False)]
        code, axes = self._contraction(operands, summed, inner_order)
        if constant != 1:
            c_code, c_axes = self._compile(constant, order)
            union = self._ordered(set(axes) | set(c_axes), order)
            code = (f"{self._align(c_code, c_axes, union)} * "
                    f"{self._align(code, axes, union)}")
            axes = tuple(union)
        return f"({code})", axes

    def _contraction(self, operands, summed, order) -> tuple[str, tuple]:
        """The one writer of a sum of a product: ``numpy.matmul``, a GEMV or ``numpy.einsum``.

        ``operands`` are ``((code, axes), view)`` for each factor carrying a summed
        index, ``view`` telling that its code is an array entry (a name or a slice,
        cheap to name several times). The form is chosen by the operands' axes:

        * one operand: a sum over axes (:meth:`_reduction`, a GEMV where it can be);
        * two views, each with a free axis, sharing a contracted one: ``numpy.matmul``
          (:func:`matmul_form`), one BLAS GEMM per batch entry or one in all;
        * an elementwise product reduced (``'ab,ab->b'``): ``numpy.einsum`` without
          ``optimize`` (there is no matrix product to hand to BLAS, and
          ``optimize=True`` measured ~40x slower);
        * anything else: ``numpy.einsum(..., optimize=True)``.
        """
        if len(operands) == 1:
            ((code, axes), _), = operands
            positions = tuple(axes.index(v) for v in summed if v in axes)
            return (self._reduction(code, positions, len(axes)),
                    tuple(a for a in axes if a not in summed))
        out = self._ordered({a for (_, axes), _ in operands for a in axes} - set(summed), order)
        if len(operands) == 2 and all(view for _, view in operands):
            code = matmul_form([(c if c.isidentifier() else f"({c})", tuple(axes))
                                for (c, axes), _ in operands], tuple(out))
            if code is not None:
                return code, tuple(out)
        letters = iter(string.ascii_letters)
        label = {}
        for (_, axes), _ in operands:
            for a in axes:
                if a not in label:
                    label[a] = next(letters)
        spec = ",".join("".join(label[a] for a in axes) for (_, axes), _ in operands)
        spec += "->" + "".join(label[a] for a in out)
        args = ", ".join(code for (code, _), _ in operands)
        first = set(operands[0][0][1])
        if all(set(axes) == first for (_, axes), _ in operands):
            return f"numpy.einsum('{spec}', {args})", tuple(out)
        return f"numpy.einsum('{spec}', {args}, optimize=True)", tuple(out)

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
        positions = tuple(sorted(positions))
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

    def _windowed(self, x: Indexed) -> bool:
        """An entry read at a window's index (a ``sliding_window_view``, not a plain view)."""
        return any(len(self._index_symbols(idx)) > 1 for idx in x.indices)

    # -- alignment --------------------------------------------------------------
    @staticmethod
    def _ordered(axes: set, order: list) -> list:
        missing = [a for a in axes if a not in order]
        if missing:
            order.extend(sorted(missing, key=str))
        return [a for a in order if a in axes]

    @staticmethod
    def _align(code: str, axes: tuple, target: list) -> str:
        """``code`` (with ``axes``) as a view that broadcasts against ``target``.

        ``.T`` and ``[:, None]`` bind tighter than any operator, so an
        expression (``dmu/n``) is parenthesised before either is appended.
        """
        axes = tuple(axes)
        if not axes:
            return code
        wanted = [a for a in target if a in axes]
        first = target.index(wanted[0])
        reshaped = list(axes) != wanted or "None" in [
            ":" if a in axes else "None" for a in target[first:]]
        if reshaped and not _is_primary(code):
            code = f"({code})"
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

    def _full(self, code, axes, indices, expr, shape=None) -> str:
        """A result missing some of its indices (a constant along them): broadcast it.

        The missing axes take their lengths from the ranges of the indices
        (``shape``: the target's declared shape, where no array gives them);
        the broadcast is copied, so the result is a writable array like any other.
        """
        missing = [s for s in indices if s not in axes]
        if not missing:
            return self._align(code, axes, list(indices))
        dims = []
        for pos, s in enumerate(indices):
            if s in self._ranges:
                lo, hi = self._ranges[s]
                dims.append(self._print_scalar(hi - lo + 1))
            elif shape is not None:
                dims.append(self._print_scalar(sp.sympify(shape[pos])))
            else:
                raise NotImplementedError(
                    f"{expr} does not depend on {missing} and their range is unknown: "
                    "give the assignment its shape")
        aligned = self._align(code, axes, list(indices)) if axes else code
        return f"numpy.broadcast_to({aligned}, ({', '.join(dims)},)).copy()"

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
