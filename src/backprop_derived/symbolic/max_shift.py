"""The max-shift pass: every ``exp`` under a normalising sum, shifted by its maximum.

``exp(800)`` is ``inf`` in float64, so a softmax or a log-sum-exp evaluated
as written returns ``nan`` for large logits. For any ``c`` that does not
depend on the summed index ``s``,

    exp(u_k) / sum_s exp(u_s) = exp(u_k - c) / sum_s exp(u_s - c),
    log(sum_s exp(u_s))       = c + log(sum_s exp(u_s - c)),

and with ``c`` the largest ``u_s`` no exponential exceeds 1 and the sum is at
least 1. :func:`max_shift` finds such sums in an index-form assignment,
rewrites them with ``c`` as a new array (:class:`MaxOver` of the exponent),
and proves the rewrite for every size with ``c`` an arbitrary array: the
proof does not rely on ``c`` being the maximum, only on it being free of
``s``. The pass leaves an expression alone where the factor ``e^c`` does not
cancel (an exponential that is summed but not normalised).
"""

from __future__ import annotations

import sympy as sp
from sympy import Indexed, IndexedBase, Sum, exp
from sympy.concrete.expr_with_limits import ExprWithLimits

from .checked import Chain

__all__ = ["FirstMax", "MaxOver", "max_shift", "max_shift_all"]


class MaxOver(ExprWithLimits):
    """``MaxOver(f, (s, lo, hi))``: the largest value of ``f`` for ``s`` in ``lo .. hi``."""

    __slots__ = ()

    def doit(self, **hints):
        (v, lo, hi), = self.limits
        if (hi - lo).is_Integer:
            return sp.Max(*[self.function.xreplace({v: lo + j}) for j in range(int(hi - lo) + 1)])
        return self


class FirstMax(sp.Function):
    """``FirstMax(f, (i, lo, hi), (j, lo, hi))``: 1 at the first ``(i, j)`` (row-major)
    where ``f`` is largest over the ranges, else 0 (the indices stay free).

    A selection: constant in the entries of ``f`` wherever their maximum is
    unique, so its derivative is taken to be 0 (the catalog's tie rule).
    """

    @property
    def taps(self):
        return tuple(tuple(t) for t in self.args[1:])

    def _eval_derivative(self, s):
        return sp.Integer(0)

    def _latex(self, printer):
        taps = ", ".join(printer._print(t[0]) for t in self.taps)
        inner = printer._print(self.args[0])
        return rf"\operatorname{{first\,argmax}}_{{{taps}}}\left({inner}\right)"


def _normalising_sums(expr):
    """Sums over one index whose summand has exponentials of that index, all of one exponent."""
    found = []
    for s in sorted(expr.atoms(Sum), key=sp.default_sort_key):
        if len(s.limits) != 1:
            continue
        v = s.limits[0][0]
        exponents = {e.args[0] for e in s.function.atoms(exp) if e.args[0].has(v)}
        if len(exponents) == 1 and not any(isinstance(x, Sum) for x in s.function.atoms(Sum)):
            found.append((s, exponents.pop()))
    return found


def max_shift(target: str, indices: tuple, expr: sp.Expr, lhs: sp.Basic | None = None):
    """``(maxima, shifted, chain)`` for ``target[indices] = expr``, or ``None`` if nothing to shift.

    ``maxima`` are ``(name, indices, MaxOver(...))`` assignments to evaluate
    first; ``chain`` proves ``shifted`` equal to ``expr`` for every size.
    """
    sums = _normalising_sums(expr)
    if not sums:
        return None
    K = sp.Dummy("K", positive=True)  # e^c, kept apart so that SymPy cannot merge it back
    maxima, shifted = [], expr
    for n, (s, u) in enumerate(sums):
        (v, lo, hi), = s.limits
        free = [x for x in indices if x in u.free_symbols]
        others = sorted((x for x in u.free_symbols - {v} - set(free)
                         if isinstance(x, sp.Symbol) and x.is_integer
                         and any(x in i.free_symbols for e in u.atoms(Indexed) for i in e.indices)),
                        key=str)
        if others:  # c would depend on an index that is neither free nor summed here
            return None
        name = f"{target}_max" + (str(n) if len(sums) > 1 else "")
        shapes = {}
        for e in u.atoms(Indexed):
            if e.base.shape is not None:
                for i, d in zip(e.indices, e.base.shape, strict=True):
                    shapes.setdefault(i, d)
        c = IndexedBase(name, shape=tuple(shapes.get(x) for x in free), real=True)
        c_entry = c[tuple(free)] if free else sp.Symbol(name, real=True)
        held = sp.Dummy("sum")
        body = s.function.replace(lambda e, v=v, u=u: isinstance(e, exp) and e.args[0] == u,
                                  lambda e, c_entry=c_entry: exp(e.args[0] - c_entry))
        outside = shifted.xreplace({s: held})

        def matches(e, u=u, v=v):
            # exp(u) at another value of s: u with s renamed (the softmax numerator)
            if not isinstance(e, exp):
                return False
            return any(e.args[0] == u.xreplace({v: x}) for x in e.args[0].free_symbols | {v})

        outside = outside.replace(matches, lambda e, c_entry=c_entry: K * exp(e.args[0] - c_entry))
        shifted = outside.xreplace({held: K * Sum(body, *s.limits)})
        shifted = sp.expand_log(shifted, force=True).xreplace({sp.log(K): c_entry})
        if shifted.has(K):
            shifted = sp.cancel(sp.together(shifted))
        if shifted.has(K):
            return None  # e^c does not cancel: not a normalising sum
        maxima.append((name, tuple(free), MaxOver(u, (v, lo, hi))))
    chain = Chain(lhs if lhs is not None else sp.Symbol(target), expr, "definition")
    chain.step(shifted, r"exponentials under a normalising sum shifted by their maximum $c$")
    return maxima, shifted, chain


def max_shift_all(assignments):
    """The pass over a kernel's index-form assignments (recurrence loops are left alone).

    Returns ``(assignments, chains)``: the maxima inserted just before the
    assignment that uses them, and the chain that proves each rewrite.
    """
    # index_printer's Assignment, known by its fields (index_printer imports
    # this module for MaxOver, so it cannot be imported back).
    out, chains = [], []
    for a in assignments:
        equation = all(hasattr(a, f) for f in ("target", "indices", "expr", "shape"))
        found = max_shift(a.target, a.indices, a.expr) if equation else None
        if found is None:
            out.append(a)
            continue
        maxima, shifted, chain = found
        make = type(a)
        out += [make(name, idx, value) for name, idx, value in maxima]
        out.append(make(a.target, a.indices, shifted, shape=a.shape))
        chains.append(chain)
    return tuple(out), chains
