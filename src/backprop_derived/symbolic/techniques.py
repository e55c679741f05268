"""Reusable derivation techniques: each returns a checked :class:`Chain`.

These are *search* procedures (find a form, then prove it), not known answers:
nothing here names a particular activation.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy import Piecewise, exp

from .catalog import fix_heaviside
from .checked import Chain, StepNotVerified, float_form_is_exact, prove_equal

__all__ = [
    "derive_activation",
    "overflowing_exponentials",
    "shift_exponentials",
    "split_exponentials",
    "through_output",
    "to_batch",
]


def _verified(candidate, expr, g, z, a) -> bool:
    """``candidate(a)`` equals ``expr(z)`` for every z, given ``a = g(z)``."""
    return prove_equal(candidate.subs(a, g), expr, variables=(z,)) is not None


def _inverse_candidates(expr, g, z, a):
    """Invert ``a = g(z)`` with ``solve`` and substitute ``z = g^-1(a)``.

    Only tried when ``z`` occurs once in ``g``: then the inverse follows by
    peeling off one function at a time. With several occurrences (swish,
    gelu) no elementary inverse is to be expected, and ``solve`` can run for
    minutes trying to factor its way to one.
    """
    if sum(1 for node in sp.preorder_traversal(g) if node == z) != 1:
        return
    try:
        inverses = sp.solve(sp.Eq(a, g), z)
    except (NotImplementedError, ValueError):
        return
    for inv in inverses:
        yield sp.simplify(expr.subs(z, inv))


def _elimination_candidates(expr, g, z, a):
    """Eliminate ``u = exp(z)`` between ``a = g(u)`` and ``d = expr(u)``.

    Works where ``solve`` returns an inverse that ``simplify`` cannot push
    through (tanh: ``log(sqrt((1+a)/(1-a)))`` inside ``cosh``): both sides are
    rational in ``u``, so their resultant in ``u`` is a polynomial relation
    between ``a`` and ``d`` that can be solved for ``d``.
    """
    u = sp.Symbol("u", positive=True)
    d = sp.Symbol("d")

    def in_u(e):
        return sp.cancel(sp.powsimp(e.rewrite(exp)).subs(exp(z), u).subs(exp(-z), 1 / u))

    g_u, e_u = in_u(g), in_u(expr)
    if not (g_u.is_rational_function(u) and e_u.is_rational_function(u)):
        return
    ng, dg = sp.fraction(sp.together(g_u))
    ne, de = sp.fraction(sp.together(e_u))
    relation = sp.resultant(sp.expand(a * dg - ng), sp.expand(d * de - ne), u)
    if relation == 0 or not relation.has(d):
        return
    for cand in sp.solve(relation, d):
        yield sp.factor(cand)


def through_output(
    expr: sp.Expr, g: sp.Expr, z: sp.Symbol, a: sp.Symbol, name: str
) -> Chain | None:
    """Find and prove a form of ``expr(z)`` written through ``a = g(z)`` only.

    Every verified candidate of both searches is collected and the one with
    the fewest operations wins (``solve`` gives tanh' as a ``cosh`` of a
    ``log``, elimination gives ``1 - a**2``). Returns ``None`` when no z-free,
    elementary form exists (swish's inverse needs LambertW and is rejected).
    """
    found = []
    for search in (_inverse_candidates, _elimination_candidates):
        for cand in search(expr, g, z, a):
            cand = fix_heaviside(cand)
            if cand.has(z, sp.LambertW, sp.I, sp.Abs, sp.sign):
                continue
            if _verified(cand, expr, g, z, a):
                found.extend({cand, sp.expand(cand), sp.factor(cand)})
    if not found:
        return None
    best = min(found, key=lambda c: (sp.count_ops(c), sp.default_sort_key(c)))
    chain = Chain(
        sp.Symbol(f"{name}'"), expr, "the definition differentiated by SymPy",
        variables=(z,), definitions={a: g},
    )
    return chain.step(best, r"written through the output $a = g(z)$")


def overflowing_exponentials(expr: sp.Expr) -> set[sp.Expr]:
    """The ``exp(u)`` in ``expr`` whose exponent is not known to be <= 0.

    ``exp(-z**2/2)`` (gelu's derivative) is at most 1 for every real z and
    needs no rewriting; ``exp(z)`` and ``exp(-z)`` overflow on one side.
    """
    return {e for e in expr.atoms(exp) if not e.args[0].is_nonpositive}


def split_exponentials(expr: sp.Expr, z: sp.Symbol, name: str) -> Chain:
    """Rewrite ``expr`` so that no ``exp`` can overflow, as a checked chain.

    On ``z > 0`` every ``exp(z)`` is written as ``1/t`` with ``t = exp(-z)``;
    on ``z < 0`` every ``exp(-z)`` as ``1/t`` with ``t = exp(z)``. Each branch
    is cancelled to a rational function of ``t`` (``log`` of products is
    expanded, ``log(t)`` becomes the exponent again). Both branches then use
    ``t = exp(-|z|)``, which lies in (0, 1] for every real ``z``. The point
    ``z = 0`` goes to whichever branch takes the definition's value there (a
    ``Piecewise`` that jumps at 0 takes its own side).

    Raises :class:`StepNotVerified` when a branch keeps an exponential that
    can overflow or when neither choice at 0 can be proven; the caller then
    keeps ``expr`` as it is.
    """
    t = sp.Symbol("t", positive=True)
    zp = sp.Symbol("z_+", positive=True)
    zn = sp.Symbol("z_-", negative=True)

    def branch(sign):
        zz = zp if sign > 0 else zn
        e = expr.rewrite(exp).subs(z, zz)
        # exp(±z) -> t or 1/t, with t = exp(-|z|)
        e = e.subs({exp(zz): t ** (-sign), exp(-zz): t ** sign})
        e = e.replace(sp.log, lambda arg: sp.log(sp.factor(sp.together(arg))))
        e = sp.expand_log(e, force=True).subs(sp.log(t), -sign * zz)
        logs = [term for term in sp.Add.make_args(sp.expand(e)) if term.has(sp.log)]
        rest = sp.expand(e) - sp.Add(*logs)
        e = sp.factor(sp.together(rest)) + sp.collect(sp.Add(*logs), sp.log(1 + t))
        if overflowing_exponentials(e):
            raise StepNotVerified(f"{name}: an exponential survived the split: {e}")
        return e.subs(zz, z)

    tabs = exp(-sp.Abs(z))
    pos, neg = branch(+1), branch(-1)
    why = r"exponentials split by the sign of $z$, $t = e^{-|z|} \le 1$"
    if pos == neg:
        candidates = [pos.subs(t, tabs)]
    else:
        candidates = [Piecewise((pos.subs(t, tabs), z >= 0), (neg.subs(t, tabs), True)),
                      Piecewise((pos.subs(t, tabs), z > 0), (neg.subs(t, tabs), True))]
    for stable in candidates:
        chain = Chain(sp.Symbol(name), expr, "definition", variables=(z,))
        try:
            return chain.step(stable, why)
        except StepNotVerified:
            continue
    raise StepNotVerified(f"{name}: could not prove the step '{why}' at z = 0 on either side")


def shift_exponentials(expr: sp.Expr, c: sp.Symbol, lhs: sp.Basic) -> Chain:
    """``expr`` with every ``exp(u)`` written ``exp(u - c)``, proven equal for every size.

    Holds for a ratio of exponentials and their index sums (softmax): the
    common factor ``exp(-c)`` cancels. With ``c`` the row maximum no
    exponential exceeds 1.
    """
    shifted = expr.replace(lambda e: isinstance(e, exp), lambda e: exp(e.args[0] - c))
    chain = Chain(lhs, expr, "definition")
    return chain.step(shifted, r"divide numerator and denominator by $e^{c}$")


def to_batch(expr: sp.Expr) -> sp.Expr:
    """Index form over the output units -> batch form over whole arrays.

    ``x[k]`` (any index) becomes the array ``x`` of shape (m, n) and a sum over
    an index becomes :class:`RowSum` of the summand: one row per example, one
    column per unit. Only sums over a single formal (infinite) index are
    accepted, which is what the catalog's index form produces.
    """
    from .printers import RowSum

    def convert(e):
        if isinstance(e, sp.Sum):
            (v, lo, hi), = e.limits
            if (lo, hi) != (-sp.oo, sp.oo):
                raise ValueError(f"not a formal sum over the units: {e}")
            other = [x for x in e.function.atoms(sp.Indexed) if x.indices != (v,)]
            if other:  # a_k inside sum_p: a row sum would multiply it unit by unit
                raise ValueError(f"{other[0]} inside a sum over {v}: take it out first: {e}")
            return RowSum(convert(e.function))
        if isinstance(e, sp.Indexed):
            return sp.Symbol(str(e.base.label), real=True)
        if not e.args:
            return e
        return e.func(*[convert(x) for x in e.args])

    return convert(expr)


def _split_or_none(expr, z, name) -> Chain | None:
    """The overflow-free split of ``expr``, or ``None`` where none is found.

    Without a split the definition (or the plain derivative) is what the
    kernel evaluates: correct, only not guarded against exp overflow at the
    far end of the range.
    """
    try:
        return split_exponentials(expr, z, name)
    except StepNotVerified:
        return None


@cache  # pages 01 and 07 both need it; regenerate runs them in one process
def derive_activation(name: str, g: sp.Expr, a: sp.Symbol):
    """Derivative of an elementwise activation, ready for code.

    Returns ``(chains, forward, derivative)``: the checked chains to show,
    the overflow-free forward form and the derivative (through ``a`` when a
    form was found, else a stable form in ``z``), both rewritten for floating
    point (``log1p``/``expm1``) and proven unchanged by that rewrite.
    """
    from .catalog import fix_heaviside, z
    from .printers import numeric_form

    g_prime = fix_heaviside(sp.diff(g, z))
    found = through_output(g_prime, g, z, a, name)
    chains = []
    if found is not None:
        chains.append(found)
        derivative = found.result
    else:
        # No elementary inverse (swish): keep g' in z, made stable where it can be.
        chains.append(Chain(sp.Symbol(f"{name}'"), g_prime, "the definition differentiated by SymPy"))
        derivative = g_prime
        if overflowing_exponentials(g_prime):
            stable_d = _split_or_none(g_prime, z, f"{name}'")
            if stable_d is not None:
                chains.append(stable_d)
                derivative = stable_d.result
    forward = g
    if overflowing_exponentials(g):
        stable = _split_or_none(g, z, name)
        if stable is not None:
            chains.append(stable)
            forward = stable.result
    numeric_forward, numeric_derivative = numeric_form(forward), numeric_form(derivative)
    for before, after in ((forward, numeric_forward), (derivative, numeric_derivative)):
        if not float_form_is_exact(before, after):
            raise StepNotVerified(f"{name}: floating-point rewrite changed {before}")
    return chains, numeric_forward, numeric_derivative
