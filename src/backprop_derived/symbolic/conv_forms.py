"""Convolutions: shifted indices proven by reindexing, printed as sliding windows.

A convolution's forward map reads ``X[n, c, p + j]``: an array indexed by a
sum of two indices. Two things the rest of the engine does not do follow
from that, and both live here.

**Proofs.** The engine's input gradient keeps a range condition
(``Piecewise``) where it sums out the Kronecker delta ``δ(p + j, w)``, and
SymPy's own summation of the same delta keeps the *other* index. Those two
forms, and the textbook's full correlation of a zero-padded ``dY`` with the
flipped kernel, are the same sum over the same terms, reindexed.
:func:`canonical` writes a sum so that equal sums become the same
expression, by rewrites that hold for every size:

* every finite limit ``lo <= s <= hi`` becomes a condition on ``s``, which
  then ranges over all integers (a ``Piecewise`` whose other branch is 0 is a
  condition too);
* a Kronecker delta ``δ(±s + e, f)`` against a summed ``s`` sets ``s`` (a sum
  over all integers has exactly one such term);
* each summed index is renamed so that an array entry reads it plainly:
  ``s -> ±(q - e)`` where an entry had ``±s + e``, a bijection of the
  integers, so the sum has the same terms (the sum over ``p`` of
  ``W[o, v, w - p]`` becomes the sum over ``q`` of ``W[o, v, q]``);
* conditions become ``g >= 0`` with ``g`` expanded (``a < b`` is
  ``b - a - 1 >= 0`` for integers); those that the free indices' ranges or the
  sizes' positivity already give are dropped.

A ``Chain`` whose ``definitions`` apply :func:`canonical` to both sides proves a
reindexing step by structural equality of the canonical forms
(:func:`reindexed_definitions`, :func:`chain_rule_chain`). Finite limits are
taken as ranges ``lo..hi`` with ``hi >= lo - 1``, as array shapes give them
(SymPy's reversed-range convention for ``hi < lo - 1`` is not modelled).

**Kernels.** The index printer refuses shifted indices. :func:`lower` turns an
index-form assignment whose right-hand side is a contraction (with shifted
entries), a zero padding or a flipped array into SymPy nodes that print as
``numpy.lib.stride_tricks.sliding_window_view`` (a view, no copy),
``numpy.pad``, reversed slices and one ``numpy.tensordot``/``numpy.einsum``;
a sum over taps ``s`` of entries read at ``t - s`` under exactly their range
condition (the engine's input gradient) becomes a :class:`ShiftedAdd`. They
go to the generated module through the existing ``"array"`` kernel style;
wrapped in :class:`.conv_statements.IntoOut` they are printed as statements
that write into ``out`` (matmul, tap loops, im2col, col2im).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

import sympy as sp
from sympy import Indexed, KroneckerDelta, Piecewise, Sum
from sympy.core.symbol import Str

from .index_printer import Assignment

__all__ = [
    "Aligned",
    "Contraction",
    "Flip",
    "Pad",
    "Shape",
    "ShiftedAdd",
    "Windows",
    "canonical",
    "chain_rule_chain",
    "expand_definitions",
    "lower",
    "prove_reindexed",
    "reindexed_definitions",
]


# -- canonical sums -----------------------------------------------------------

def _conditions(cond) -> list[sp.Expr]:
    """``cond`` (an And of integer inequalities) as a list of ``g`` with ``g >= 0``."""
    out = []
    for rel in sp.And.make_args(cond):
        if rel is sp.true:
            continue
        if isinstance(rel, sp.GreaterThan):
            g = rel.lhs - rel.rhs
        elif isinstance(rel, sp.LessThan):
            g = rel.rhs - rel.lhs
        elif isinstance(rel, sp.StrictGreaterThan):
            g = rel.lhs - rel.rhs - 1
        elif isinstance(rel, sp.StrictLessThan):
            g = rel.rhs - rel.lhs - 1
        else:
            raise NotImplementedError(f"not an integer inequality: {rel}")
        out.append(sp.expand(g))
    return out


def _flatten(e) -> list[tuple]:
    """``e`` as terms ``(coeff, factors, conditions, bound)``: a sum over all
    integers of the bound indices of ``coeff * prod(factors)`` where every
    condition holds."""
    out = []
    for term in sp.Add.make_args(sp.expand(e)):
        out.extend(_flatten_term(term))
    return out


def _flatten_term(t) -> list[tuple]:
    if isinstance(t, Sum):
        body, limits = t.function, list(t.limits)
        conds, bound = [], []
        for n, (v, lo, hi) in enumerate(limits):
            d = sp.Dummy(str(v), integer=True)
            body = body.xreplace({v: d})
            limits[n + 1:] = [(x, a.xreplace({v: d}), b.xreplace({v: d}))
                              for x, a, b in limits[n + 1:]]
            conds += [sp.expand(d - lo), sp.expand(hi - d)]
            bound.append(d)
        return [(c, f, cs + conds, b + bound) for c, f, cs, b in _flatten(body)]
    if isinstance(t, Piecewise):
        if len(t.args) != 2 or t.args[1].cond is not sp.true or t.args[1].expr != 0:
            raise NotImplementedError(f"only Piecewise((f, condition), (0, True)): {t}")
        then, cond = t.args[0]
        return [(c, f, cs + _conditions(cond), b) for c, f, cs, b in _flatten(then)]
    if isinstance(t, sp.Mul):
        results = [(sp.Integer(1), [], [], [])]
        for factor in t.args:
            if factor.has(Sum, Piecewise) and not isinstance(factor, Indexed):
                parts = _flatten(factor)
            elif factor.has(Indexed) or factor.has(KroneckerDelta):
                parts = [(sp.Integer(1), [factor], [], [])]
            else:
                parts = [(factor, [], [], [])]
            results = [(c1 * c2, f1 + f2, s1 + s2, b1 + b2)
                       for c1, f1, s1, b1 in results for c2, f2, s2, b2 in parts]
        return results
    if t.has(Indexed) or t.has(KroneckerDelta):
        return [(sp.Integer(1), [t], [], [])]
    return [(t, [], [], [])]


def _unit_solution(expr, s):
    """``(a, rest)`` with ``expr = a*s + rest``, ``a = ±1``, ``rest`` free of ``s``; else None."""
    expr = sp.expand(expr)
    a = expr.coeff(s)
    rest = sp.expand(expr - a * s)
    if a not in (1, -1) or rest.has(s):
        return None
    return a, rest


def _substitute(term, s, value):
    coeff, factors, conds, bound = term
    return (coeff, [f.xreplace({s: value}) for f in factors],
            [sp.expand(g.xreplace({s: value})) for g in conds], [b for b in bound if b != s])


def _collapse_deltas(term):
    changed = True
    while changed:
        changed = False
        coeff, factors, conds, bound = term
        for f in factors:
            if not isinstance(f, KroneckerDelta):
                continue
            for s in bound:
                sol = _unit_solution(f.args[0] - f.args[1], s)
                if sol is None:
                    continue
                a, rest = sol
                rest_factors = list(factors)
                rest_factors.remove(f)
                term = _substitute((coeff, rest_factors, conds, bound), s, -rest / a)
                changed = True
                break
            if changed:
                break
    return term


def _facts(ranges: Mapping) -> set:
    facts = set()
    for s, (lo, hi) in ranges.items():
        facts |= {sp.expand(s - lo), sp.expand(hi - s)}
    return facts


def _canonical_term(term, ranges, facts):
    term = _collapse_deltas(term)
    if any(isinstance(f, KroneckerDelta) for f in term[1]):
        raise NotImplementedError(f"a Kronecker delta between free indices: {term[1]}")
    # rename summed indices to the order in which the arrays read them
    fixed = []
    for f in sorted(term[1], key=lambda x: sp.default_sort_key(getattr(x, "base", x))):
        if not isinstance(f, Indexed):
            continue
        for index in f.indices:
            for s in list(term[3]):
                if s in fixed or not index.has(s):
                    continue
                sol = _unit_solution(index, s)
                others = index.free_symbols & set(term[3]) - {s}
                if sol is None or others:
                    continue
                a, rest = sol
                q = sp.Symbol(f"_q{len(fixed)}", integer=True)
                term = _substitute(term, s, (q - rest) / a)
                term = (term[0], term[1], term[2], term[3] + [q])
                fixed.append(q)
                break
    coeff, factors, conds, bound = term
    if set(bound) - set(fixed):
        raise NotImplementedError(f"summed indices that no array reads: {set(bound) - set(fixed)}")
    kept = set()
    for g in conds:
        if g in facts or g.is_nonnegative:
            continue
        if g.is_negative:
            return None  # an empty sum
        kept.add(g)
    body = sp.Mul(*factors)
    cond = sp.And(*[sp.Ge(g, 0) for g in sorted(kept, key=sp.default_sort_key)])
    key = (body, cond, tuple(fixed))
    return coeff, key


def canonical(expr: sp.Expr, ranges: Mapping[sp.Symbol, tuple] | None = None) -> sp.Expr:
    """``expr`` with every index sum in the canonical form described above.

    ``ranges`` gives the free indices' ranges ``{u: (0, N - 1), ...}``.
    Derivatives are evaluated first (they leave Kronecker deltas).
    """
    ranges = dict(ranges or {})
    facts = _facts(ranges)
    expr = expr.replace(lambda x: isinstance(x, sp.Derivative), lambda x: x.doit())
    grouped: dict = {}
    for term in _flatten(expr):
        done = _canonical_term(term, ranges, facts)
        if done is None:
            continue
        coeff, key = done
        grouped[key] = grouped.get(key, 0) + coeff
    out = sp.Integer(0)
    for (body, cond, fixed), coeff in sorted(grouped.items(),
                                             key=lambda kv: sp.default_sort_key(kv[0][0])):
        coeff = sp.expand(coeff)
        if coeff == 0:
            continue
        inner = body if cond is sp.true else Piecewise((body, cond), (0, True))
        out += coeff * (Sum(inner, *[(q, -sp.oo, sp.oo) for q in fixed]) if fixed else inner)
    return out


def prove_reindexed(a: sp.Expr, b: sp.Expr, ranges: Mapping | None = None) -> bool:
    """``a == b`` for every size, by equal canonical forms."""
    return sp.expand(canonical(a, ranges) - canonical(b, ranges)) == 0


# -- printable nodes ------------------------------------------------------------

def _str(x) -> Str:
    return x if isinstance(x, Str) else Str(x)


class _Node(sp.Expr):
    """A printable piece of a kernel; ``func(*args)`` rebuilds it (``cse`` does)."""

    is_commutative = True

    def _latex(self, printer):
        return rf"\operatorname{{{type(self).__name__}}}"


class Shape(_Node):
    """``array.shape[axis]``."""

    def __new__(cls, array, axis):
        return super().__new__(cls, array, sp.Integer(axis))

    def _numpycode(self, printer):
        return f"{printer._print(self.args[0])}.shape[{int(self.args[1])}]"


class Windows(_Node):
    """``sliding_window_view(array, sizes, axis=axes)``: entry ``[..., p, ..., j]`` is
    ``array[..., p + j, ...]``, the window axes appended last (a view, no copy).

    ``kernel_windows`` says, per window axis, whether the appended window index
    is the kernel's (the *tap*, as in the forward map) rather than the one left
    at the axis (as in the weight gradient, whose windows are output-long); the
    statement printer (:mod:`.conv_statements`) loops over taps or copies the
    windows for one GEMM according to it.
    """

    def __new__(cls, array, axes, sizes, kernel_windows=None):
        if kernel_windows is None:
            kernel_windows = [True] * len(axes)
        return super().__new__(cls, array, sp.Tuple(*axes), sp.Tuple(*sizes),
                               sp.Tuple(*[sp.true if t else sp.false for t in kernel_windows]))

    def _numpycode(self, printer):
        array, axes, sizes, _ = self.args
        ax = tuple(int(a) for a in axes)
        shown_axes = ax[0] if len(ax) == 1 else ax
        shown_sizes = (printer._print(sizes[0]) if len(sizes) == 1
                       else "(" + ", ".join(printer._print(s) for s in sizes) + ")")
        return (f"numpy.lib.stride_tricks.sliding_window_view({printer._print(array)}, "
                f"{shown_sizes}, axis={shown_axes})")


class Flip(_Node):
    """``array`` reversed along ``axes`` (a view)."""

    def __new__(cls, array, ndim, axes):
        return super().__new__(cls, array, sp.Integer(ndim), sp.Tuple(*axes))

    def _numpycode(self, printer):
        array, _, axes = self.args
        flipped = {int(a) for a in axes}
        last = max(flipped)
        parts = ["::-1" if a in flipped else ":" for a in range(last + 1)]
        return f"{printer._print(array)}[{', '.join(parts)}]"


class Pad(_Node):
    """``numpy.pad(array, ((before, after), ...))`` with zeros."""

    def __new__(cls, array, pads):
        return super().__new__(cls, array, sp.Tuple(*[sp.Tuple(*p) for p in pads]))

    def _numpycode(self, printer):
        array, pads = self.args
        shown = ", ".join(f"({printer._print(a)}, {printer._print(b)})" for a, b in pads)
        return f"numpy.pad({printer._print(array)}, ({shown}))"


class Aligned(_Node):
    """``array`` with new axes so that it broadcasts: ``b[:, None]``."""

    def __new__(cls, array, pattern):
        return super().__new__(cls, array, _str(pattern))

    def _numpycode(self, printer):
        pattern = str(self.args[1])
        return printer._print(self.args[0]) + (f"[{pattern}]" if pattern else "")


class Contraction(_Node):
    """The sum of a product of operands over the indices missing from the output.

    ``spec`` is an einsum subscript (``"ocj,ncpj->nop"``). Printed as
    ``numpy.add.reduce`` for one operand, as ``numpy.tensordot`` (one GEMM)
    for two operands that share exactly the summed indices, else as
    ``numpy.einsum(..., optimize=True)``; measured on the convolution kernels,
    tensordot was 1.1-3x faster than einsum's own path. A result whose axes
    come out of order is a transposed view (the kernel's copy into ``out``
    makes it contiguous). That is the expression form; the generated kernels
    wrap it in :class:`.conv_statements.IntoOut`, which prints ``numpy.matmul``
    statements into ``out`` instead.
    """

    def __new__(cls, spec, *operands):
        return super().__new__(cls, _str(spec), *operands)

    def _numpycode(self, printer):
        spec = str(self.args[0])
        inputs, output = spec.split("->")
        inputs = inputs.split(",")
        ops = [printer._print(x) for x in self.args[1:]]
        summed = set("".join(inputs)) - set(output)
        if len(ops) == 1 and len(set(inputs[0])) == len(inputs[0]):
            axes = tuple(inputs[0].index(s) for s in inputs[0] if s in summed)
            code = f"numpy.add.reduce({ops[0]}, axis={axes[0] if len(axes) == 1 else axes})"
            return _transposed(code, [s for s in inputs[0] if s not in summed], output)
        if len(ops) == 2:
            a, b = inputs
            if (set(a) & set(b)) == summed and len(set(a)) == len(a) and len(set(b)) == len(b):
                order = [s for s in a if s in summed]
                axes_a = tuple(a.index(s) for s in order)
                axes_b = tuple(b.index(s) for s in order)
                code = f"numpy.tensordot({ops[0]}, {ops[1]}, axes=({axes_a}, {axes_b}))"
                kept = [s for s in a if s not in summed] + [s for s in b if s not in summed]
                return _transposed(code, kept, output)
        return f"numpy.einsum('{spec}', {', '.join(ops)}, optimize=True)"


class ShiftedAdd(_Node):
    """``out[..., t, ...] = sum over taps s of T[..., s, ..., t - s, ...]`` (zero elsewhere).

    ``contraction`` is ``T``, whose output letters are the plain indices, then
    the taps, then the positions; ``pattern`` names, per axis of ``out``, a
    letter of ``T`` or ``"tap+position"``. Printed only as statements (one
    strided slice-add into ``out`` per tap, :mod:`.conv_statements`): it has no
    expression form.
    """

    def __new__(cls, contraction, pattern):
        return super().__new__(cls, contraction, _str(pattern))

    def _numpycode(self, printer):
        raise NotImplementedError("a ShiftedAdd is printed as statements into out "
                                  "(conv_statements.IntoOut)")


def _transposed(code: str, axes: list, output: str) -> str:
    if "".join(axes) == output:
        return code
    return f"numpy.transpose({code}, {tuple(axes.index(s) for s in output)})"


# -- lowering index form to the nodes ---------------------------------------

class _Lowering:
    def __init__(self, definitions: Sequence[Assignment], names: Mapping[str, str]):
        self.defs = {a.target: a for a in definitions}
        self.names = dict(names)
        self.bases = {}
        for a in definitions:
            for x in a.expr.atoms(Indexed):
                self.bases.setdefault(str(x.base.label), x.base)

    def name(self, label: str) -> sp.Symbol:
        return sp.Symbol(self.names.get(label, label.lower()))

    def inputs(self, a: Assignment) -> list:
        """The input arrays (not intermediates) an assignment reads, recursively."""
        found = []
        for x in sorted(a.expr.atoms(Indexed), key=sp.default_sort_key):
            label = str(x.base.label)
            if label in self.defs:
                found += self.inputs(self.defs[label])
            elif x.base not in found:
                found.append(x.base)
        return found

    def sizes(self, expr, inputs) -> sp.Expr:
        """Replace every size symbol by ``array.shape[axis]`` of an input."""
        for base in inputs:
            for axis, d in enumerate(base.shape):
                if sp.expand(d - expr) == 0:
                    return Shape(self.name(str(base.label)), axis)
        subs = {}
        for s in expr.free_symbols:
            if not (s.is_integer and s.is_positive):
                continue
            for base in inputs:
                if s in tuple(base.shape):
                    subs[s] = Shape(self.name(str(base.label)), tuple(base.shape).index(s))
                    break
            else:
                raise ValueError(f"no input array has an axis of size {s}")
        return expr.xreplace(subs)

    # an operand: (node, axes) where axes names the index of each axis
    def operand(self, x: Indexed, ranges: Mapping, inputs) -> tuple:
        label = str(x.base.label)
        node = self.definition(self.defs[label], inputs) if label in self.defs else self.name(label)
        axes, win_axes, win_sizes, appended, kernel_windows = [], [], [], [], []
        for pos, index in enumerate(x.indices):
            if isinstance(index, sp.Symbol):
                axes.append(index)
                continue
            terms = sp.Add.make_args(index)
            if len(terms) != 2 or not all(isinstance(t, sp.Symbol) for t in terms):
                raise NotImplementedError(f"{x}: index {index} is not a sum of two indices")
            # the window runs over the index with the shorter (kernel) range,
            # if an input's shape gives its length
            candidates = sorted(terms, key=lambda t: (len(ranges[t][1].free_symbols), str(t)))
            for window in candidates:
                lo, hi = ranges[window]
                try:
                    size = self.sizes(hi + 1, inputs)
                except ValueError:
                    continue
                if lo == 0:
                    break
            else:
                raise NotImplementedError(f"{x}: no window length from the inputs' shapes")
            axes.append(next(t for t in terms if t != window))
            win_axes.append(pos)
            win_sizes.append(size)
            appended.append(window)
            kernel_windows.append(window == candidates[0])
        if win_axes:
            node = Windows(node, win_axes, win_sizes, kernel_windows)
        return node, axes + appended

    def definition(self, a: Assignment, inputs):
        """A zero padding or a flip of an input, as a node."""
        target = self.bases.get(a.target)
        expr = a.expr
        if isinstance(expr, Piecewise):  # zero padding
            (then, cond), (other, _) = expr.args
            if other != 0 or not isinstance(then, Indexed):
                raise NotImplementedError(f"{a.target}: not a zero padding: {expr}")
            shape = tuple(target.shape)
            src_shape = tuple(then.base.shape)
            wanted = set()
            pads = []
            for pos, (t, index) in enumerate(zip(a.indices, then.indices, strict=True)):
                before = sp.expand(t - index)
                after = sp.expand(shape[pos] - src_shape[pos] - before)
                pads.append((self.sizes(before, inputs), self.sizes(after, inputs)))
                if before != 0 or after != 0:
                    wanted |= {sp.expand(t - before), sp.expand(before + src_shape[pos] - 1 - t)}
            if set(_conditions(cond)) != wanted:
                raise NotImplementedError(f"{a.target}: the condition {cond} is not the padding")
            return Pad(self.name(str(then.base.label)), pads)
        if isinstance(expr, Indexed):  # a flip: W[o, c, k - 1 - j]
            flipped = []
            for pos, (t, index) in enumerate(zip(a.indices, expr.indices, strict=True)):
                if index == t:
                    continue
                if sp.expand(index + t - (expr.base.shape[pos] - 1)) != 0:
                    raise NotImplementedError(f"{a.target}: index {index} is not a reversal")
                flipped.append(pos)
            return Flip(self.name(str(expr.base.label)), len(a.indices), flipped)
        raise NotImplementedError(f"{a.target}: neither a padding nor a flip: {expr}")

    def assignment(self, a: Assignment, target_shape) -> sp.Expr:
        inputs = self.inputs(a)
        ranges = {t: (0, d - 1) for t, d in zip(a.indices, target_shape, strict=True)}
        out = sp.Integer(0)
        for term in sp.Add.make_args(a.expr):
            coeff, rest = term.as_coeff_Mul()
            if isinstance(rest, Indexed):
                if not set(rest.indices) <= set(a.indices):
                    raise NotImplementedError(f"{rest} is not broadcast over {a.indices}")
                first = a.indices.index(rest.indices[0])
                pattern = [":" if t in rest.indices else "None" for t in a.indices[first:]]
                while pattern and pattern[-1] == ":":
                    pattern.pop()
                out += coeff * Aligned(self.name(str(rest.base.label)), ", ".join(pattern))
                continue
            if not isinstance(rest, Sum):
                raise NotImplementedError(f"not a contraction: {term}")
            if isinstance(rest.function, Piecewise):
                out += coeff * self.shifted(a, rest, ranges, inputs)
                continue
            inner = dict(ranges)
            inner.update({v: (lo, hi) for v, lo, hi in rest.limits})
            scalar, contraction, _ = self.contraction(rest.function, inner, inputs, a.indices)
            out += coeff * scalar * contraction
        return out

    def contraction(self, body, ranges, inputs, output) -> tuple:
        """``(scalar, Contraction, letters)`` for the sum of ``body`` over what ``output`` lacks."""
        operands = [self.operand(x, ranges, inputs) for x in sp.Mul.make_args(body)
                    if isinstance(x, Indexed)]
        scalar = sp.Mul(*[x for x in sp.Mul.make_args(body) if not isinstance(x, Indexed)])
        letters = {}
        pool = iter(string.ascii_lowercase)
        for _, axes in operands:
            for s in axes:
                letters.setdefault(s, next(pool))
        for s in output:
            letters.setdefault(s, next(pool))
        spec = ",".join("".join(letters[s] for s in axes) for _, axes in operands)
        spec += "->" + "".join(letters[s] for s in output)
        return scalar, Contraction(spec, *[node for node, _ in operands]), letters

    def shifted(self, a: Assignment, rest: Sum, ranges, inputs) -> ShiftedAdd:
        """A sum over taps ``s`` of entries read at ``t - s`` where that index is in range.

        ``rest`` is ``Sum(Piecewise((body, condition), (0, True)), limits)`` whose
        condition is exactly ``0 <= t - s <= D - 1`` for each entry ``A[..., t - s,
        ...]`` (``D`` that axis's length) and whose taps ``s`` run over ``0..K - 1``
        with ``D + K - 1`` the length of ``t``: the engine's input gradient. The
        other summed indices become a :class:`Contraction` with a position index
        in place of ``t - s``; :class:`ShiftedAdd` adds it at each tap's offset.
        """
        (body, cond), (other, other_cond) = rest.function.args
        if other != 0 or other_cond is not sp.true:
            raise NotImplementedError(f"not a range condition: {rest.function}")
        limits = {v: (lo, hi) for v, lo, hi in rest.limits}
        target = dict(zip(a.indices, (hi + 1 for _, hi in (ranges[t] for t in a.indices)),
                          strict=True))
        shifts: dict = {}  # free index t -> (tap s, position index)
        wanted = set()
        replace = {}
        for x in sp.Mul.make_args(body):
            if not isinstance(x, Indexed):
                continue
            new_indices = list(x.indices)
            for axis, index in enumerate(x.indices):
                if isinstance(index, sp.Symbol):
                    continue
                found = [(t, s) for t in index.free_symbols & set(a.indices)
                         for s in index.free_symbols & set(limits)
                         if sp.expand(index - (t - s)) == 0]
                if len(found) != 1:
                    raise NotImplementedError(f"{x}: index {index} is not t - s")
                t, s = found[0]
                if t in shifts and shifts[t][0] != s:
                    raise NotImplementedError(f"{t} is shifted by two taps")
                lo, hi = limits[s]
                length = x.base.shape[axis]
                if lo != 0 or sp.expand(length + hi - target[t]) != 0:
                    raise NotImplementedError(
                        f"{x}: taps {s} = {lo}..{hi} and length {length} do not cover {t}")
                pos = shifts[t][1] if t in shifts else sp.Symbol(f"_p_{t}", integer=True)
                shifts[t] = (s, pos)
                new_indices[axis] = pos
                replace[x] = x.func(x.base, *new_indices)
                wanted |= {sp.expand(t - s), sp.expand(length - 1 - t + s)}
                ranges = {**ranges, pos: (0, length - 1)}
        if not shifts or set(_conditions(cond)) != wanted:
            raise NotImplementedError(f"the condition {cond} is not the shifted entries' range")
        # the tap-summed entry, for (plain free indices, taps, positions)
        output = ([t for t in a.indices if t not in shifts] + [shifts[t][0] for t in shifts]
                  + [shifts[t][1] for t in shifts])
        summed = [(v, lo, hi) for v, (lo, hi) in limits.items()
                  if v not in {s for s, _ in shifts.values()}]
        inner = {**ranges, **limits}
        new_body = body.xreplace(replace)
        scalar, contraction, letters = self.contraction(new_body, inner, inputs, output)
        if summed and not {v for v, _, _ in summed} <= set(letters):
            raise NotImplementedError(f"summed indices that no entry reads: {summed}")
        pattern = ",".join(f"{letters[shifts[t][0]]}+{letters[shifts[t][1]]}" if t in shifts
                           else letters[t] for t in a.indices)
        return scalar * ShiftedAdd(contraction, pattern)


def lower(assignment: Assignment, target_shape: tuple, definitions: Sequence[Assignment] = (),
          names: Mapping[str, str] | None = None) -> sp.Expr:
    """A printable expression (nodes above) for ``assignment``.

    ``definitions`` are the intermediate arrays it reads (a padded ``dY``, a
    flipped ``W``), each an :class:`Assignment` of a zero padding (a
    ``Piecewise`` whose condition is exactly the copied range) or a flip; they
    are inlined as views/pads. ``names`` renames arrays for the code.
    """
    return _Lowering((*definitions, assignment), names or {}).assignment(
        assignment, tuple(target_shape))


# -- chains for a page ------------------------------------------------------------

def expand_definitions(expr: sp.Expr, *assignments: Assignment) -> sp.Expr:
    """Every entry of an array defined by one of ``assignments`` replaced by its definition."""
    by_label = {a.target: a for a in assignments}

    def entry(x):
        a = by_label[str(x.base.label)]
        return a.expr.xreplace(dict(zip(a.indices, x.indices, strict=True)))

    return expr.replace(lambda x: isinstance(x, Indexed) and str(x.base.label) in by_label,
                        entry)


def reindexed_definitions(ranges: Mapping, *assignments: Assignment):
    """A ``Chain`` definition: defined arrays expanded, then :func:`canonical` sums.

    With it a step is proven when both sides are the same terms, for every
    size, whatever the names and offsets of their summed indices.
    """
    def definitions(expr):
        return canonical(expand_definitions(expr, *assignments), ranges)

    return definitions


def chain_rule_chain(gradient, equations, wrt, why: str):
    """``dV = sum over Y of dY * dY/dV = the engine's result``, proven through canonical sums.

    ``gradient`` is the engine's :class:`.engine.Gradient` of ``wrt`` for a
    layer of one equation. The first line is the chain rule with the local
    derivative unevaluated; SymPy differentiates (leaving Kronecker deltas) and
    the canonical form sums them out over all integers, the ranges becoming
    conditions, so the engine's ``Piecewise`` range is compared exactly.
    """
    from .checked import Chain
    from .engine import CHAIN_RULE

    (lhs, rhs), = equations
    out = lhs.base
    limits = [(s, 0, d - 1) for s, d in zip(lhs.indices, out.shape, strict=True)]
    element = wrt[gradient.indices]
    upstream = sp.IndexedBase("d" + str(out.label), shape=out.shape, real=True)
    shown = Sum(upstream[lhs.indices] * sp.Derivative(lhs, element), *limits)
    local = Sum(upstream[lhs.indices] * sp.Derivative(rhs, element), *limits)

    def definitions(expr):
        return canonical(expr.xreplace({shown: local}), gradient.ranges)

    return Chain(gradient.lhs, shown, CHAIN_RULE, definitions=definitions).step(
        gradient.expr, why)
