"""Derivations as chains of checked steps.

A :class:`Chain` starts from an expression and grows one step at a time. Each
new expression must be proven equal to the previous one by SymPy before it is
accepted; a step that cannot be proven raises :class:`StepNotVerified`, which
fails the page build and ``backprop-derived regenerate``. Every step records
*how* it was proven in :attr:`Step.proof`, so the rendered page can say so.

Proof labels (:data:`PROOFS`; the site renders them, keep them stable):

``given``           the chain's first expression: a premise (a catalog
                    definition, a ``sympy.diff`` result), not proven here;
``structural``      the difference is identically 0 as written;
``index sums``      the difference contains index sums and is 0 for *every*
                    number of units: sums are split over their terms, factors
                    free of the summation index are pulled out
                    (``exp(x - c) = exp(x) exp(-c)`` first), ``KroneckerDelta``
                    sums collapse, bound indices get canonical names; then
                    each sum is one symbol (positive when its terms are) and
                    the rest is ``expand`` (logs of positive products split);
``expand``          ``expand`` of the difference is 0;
``by sign``         expressions with ``Max``/``Abs``/``Heaviside``/``Piecewise``/``sign``
                    in a real variable are proven separately for a positive and a
                    negative variable, and at 0 (each case by ``expand`` or ``simplify``);
``simplify``        ``simplify`` of the difference (after rewriting to ``exp``) is 0;
``checked on n = N``  **not a proof**: exact equality on one concrete layer of N
                    units (every free index value). Only when a chain is given an
                    ``instance`` (:func:`concretize`). The step is shown with this
                    label, its expression is wrapped in :class:`CheckedOnExample`
                    (which no code printer accepts) and :attr:`Chain.result`
                    refuses such a chain, so it can never feed a kernel.

Premises are ``given``; every other label except ``checked on n = N`` is a
proof for every size.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy import KroneckerDelta, Piecewise, Subs, Sum
from sympy.codegen.cfunctions import expm1, log1p

# The taint and the error live in taint.py, which the printers import too (so
# that printers.py need not import this module, which imports display.py).
from .taint import CheckedOnExample, StepNotVerified, assert_proven

__all__ = [
    "PROOFS",
    "Chain",
    "CheckedOnExample",
    "Step",
    "StepNotVerified",
    "assert_clean",
    "assert_proven",
    "concretize",
    "expand_sums",
    "float_form_is_exact",
    "is_evidence_only",
    "prove_equal",
]

# Every label a Step's ``proof`` can take; ``checked on n = N`` has N filled in.
PROOFS = ("given", "structural", "index sums", "expand", "simplify", "by sign",
          "checked on n = N")
EVIDENCE_PREFIX = "checked on n = "


def is_evidence_only(proof: str) -> bool:
    """True for the label of a step only checked on an example."""
    return proof.startswith(EVIDENCE_PREFIX)


def _untaint(expr):
    if isinstance(expr, sp.Basic) and expr.has(CheckedOnExample):
        return expr.replace(lambda e: isinstance(e, CheckedOnExample), lambda e: e.args[0])
    return expr


@dataclass(frozen=True)
class Step:
    expr: sp.Expr
    why: str
    proof: str  # how it was proven equal to the previous step; one of PROOFS

    @property
    def evidence_only(self) -> bool:
        return is_evidence_only(self.proof)


@dataclass
class Chain:
    """``lhs = e0 = e1 = ... = en`` where every ``=`` is proven by SymPy.

    ``variables`` lists the real symbols a ``by sign`` proof may split on.
    ``instance`` (from :func:`concretize`) allows steps only checked on an
    example; such a chain can be shown but its :attr:`result` is refused.
    ``ranges`` maps a free index to the ``(lo, hi)`` of the sums it runs
    over (``{j: (0, m - 1)}``: example j is one of the batch), so
    ``sum_i delta_ij f_i`` collapses to ``f_j`` on finite ranges too.
    ``definitions`` (e.g. ``{a: g(z)}``, or a function that rewrites an
    expression) are substituted before a proof, so a step may be written
    through defined quantities.
    """

    lhs: sp.Basic
    start: sp.Basic
    why: str = "definition"
    variables: tuple[sp.Symbol, ...] = ()
    instance: Callable[[sp.Basic], Iterable[sp.Basic]] | None = None
    definitions: dict | Callable[[sp.Basic], sp.Basic] = field(default_factory=dict)
    ranges: dict = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps.append(Step(self.start, self.why, "given"))

    @property
    def evidence_only(self) -> bool:
        """Some step was only checked on an example."""
        return any(s.evidence_only for s in self.steps)

    @property
    def result(self) -> sp.Basic:
        """The last expression; refused when any step is only checked on an example."""
        if self.evidence_only:
            step = next(s for s in self.steps if s.evidence_only)
            raise StepNotVerified(
                f"{self.lhs}: the step '{step.why}' was only {step.proof}; "
                "its result cannot feed a kernel")
        return self.steps[-1].expr

    def _current(self) -> sp.Basic:
        return _untaint(self.steps[-1].expr)

    def step(self, expr: sp.Basic, why: str) -> Chain:
        """Append ``expr`` after proving it equals the current result."""
        expr = _untaint(expr)
        proof = prove_equal(
            self._expand_definitions(self._current()),
            self._expand_definitions(expr),
            variables=self.variables,
            instance=self.instance,
            ranges=self.ranges,
        )
        if proof is None:
            raise StepNotVerified(
                f"{self.lhs}: could not prove the step '{why}':\n"
                f"  {self._current()}\n  = {expr}"
            )
        if self.evidence_only or is_evidence_only(proof):
            # everything after an unproven step is unproven too
            proof = proof if is_evidence_only(proof) else next(
                s.proof for s in self.steps if s.evidence_only)
            expr = CheckedOnExample(expr)
        self.steps.append(Step(expr, why, proof))
        return self

    def _expand_definitions(self, expr):
        defs = self.definitions
        if not defs:
            return expr
        if callable(defs):
            return defs(expr)
        return expr.subs(defs)

    def then(self, transform: Callable[[sp.Basic], sp.Basic], why: str) -> Chain:
        """Apply ``transform`` to the current result and check the outcome."""
        return self.step(transform(self._current()), why)


def _difference(lhs: sp.Basic, rhs: sp.Basic) -> sp.Basic:
    if isinstance(lhs, sp.MatrixBase) or isinstance(rhs, sp.MatrixBase):
        return sp.Matrix(lhs) - sp.Matrix(rhs)
    return lhs - rhs


def _is_zero(expr: sp.Basic) -> bool:
    if isinstance(expr, sp.MatrixBase):
        return all(_is_zero(e) for e in expr)
    return expr == 0


def _map(expr: sp.Basic, f: Callable[[sp.Basic], sp.Basic]) -> sp.Basic:
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(f)
    return f(expr)


def _has_kinks(expr: sp.Basic) -> bool:
    return expr.has(sp.Max, sp.Min, sp.Abs, sp.Heaviside, Piecewise, sp.sign)


def _canonical_odd(e: sp.Basic) -> sp.Basic:
    """``sign(-u)`` -> ``-sign(u)``, ``Abs(-u)`` -> ``Abs(u)`` for one chosen sign of ``u``."""
    def canon(f):
        x = sp.expand(f.args[0])
        if sp.default_sort_key(-x) < sp.default_sort_key(x):
            return -sp.sign(-x) if isinstance(f, sp.sign) else sp.Abs(-x)
        return f.func(x)

    return e.replace(lambda x: isinstance(x, sp.sign | sp.Abs), canon)


def _expand(e: sp.Basic) -> sp.Basic:
    # `doit` twice: the first evaluates derivatives, the second the
    # KroneckerDelta sums they leave behind (the Subs-leak pitfall).
    e = e.doit().doit()
    if e.has(Piecewise):  # one Piecewise whose branches are compared one by one
        e = sp.piecewise_fold(e)
    if e.has(sp.sign, sp.Abs):
        e = _canonical_odd(sp.expand(e))
    return sp.expand(e)


def _simplify(e: sp.Basic) -> sp.Basic:
    return sp.simplify(e.doit().doit().rewrite(sp.exp))


def _derivatives_as_functions(e: sp.Basic) -> sp.Basic:
    """``Subs(Derivative(g(xi), xi), xi, X)`` -> ``g'(X)``, an undefined function.

    ``diff`` of ``g(<expression>)`` leaves this ``Subs`` with a fresh dummy
    each time; naming the derivative makes equal terms structurally equal.
    """

    def named(sub):
        expr, (var,), (point,) = sub.args
        if (isinstance(expr, sp.Derivative) and expr.variables == (var,)
                and isinstance(expr.expr, sp.core.function.AppliedUndef)
                and expr.expr.args == (var,)):
            return sp.Function(f"{expr.expr.func.__name__}'")(point)
        return sub

    e = e.replace(lambda x: isinstance(x, Subs), named)
    return e.replace(
        lambda x: isinstance(x, sp.Derivative) and len(x.variables) == 1
        and isinstance(x.expr, sp.core.function.AppliedUndef) and x.expr.args == x.variables,
        lambda x: sp.Function(f"{x.expr.func.__name__}'")(x.variables[0]),
    )


def _sums_zero(e: sp.Basic) -> bool:
    """Prove a difference of formal index sums is 0.

    Every term's outside factors are moved into its sum, bound indices are
    renamed to one canonical index, sums with equal limits are merged, and
    the merged summand must expand to 0.
    """
    e = _derivatives_as_functions(sp.expand(e.doit().doit()))
    canon = sp.Symbol("_n", integer=True)
    grouped: dict = {}
    rest = []
    for term in sp.Add.make_args(sp.expand(e)):
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, Sum)]
        if len(sums) != 1 or len(sums[0].limits) != 1:
            rest.append(term)
            continue
        s = sums[0]
        others = sp.Mul(*[f for f in sp.Mul.make_args(term) if f is not s])
        (v, lo, hi), = s.limits
        grouped.setdefault((lo, hi), []).append(s.function.xreplace({v: canon}) * others)
    if sp.expand(sp.Add(*rest)) != 0:
        return False
    return all(sp.expand(sp.Add(*fs)) == 0 for fs in grouped.values())


def prove_equal(
    lhs: sp.Basic,
    rhs: sp.Basic,
    *,
    variables: tuple[sp.Symbol, ...] = (),
    instance: Callable[[sp.Basic], Iterable[sp.Basic]] | None = None,
    ranges: dict | None = None,
) -> str | None:
    """Label of the first strategy that proves ``lhs == rhs`` (see :data:`PROOFS`), else ``None``."""
    diff = _difference(_untaint(lhs), _untaint(rhs))
    if _is_zero(diff):
        return "structural"
    has_sums = not isinstance(diff, sp.MatrixBase) and diff.has(Sum)
    # Index sums first when there are any: it does the work of `expand` too.
    if has_sums and (_holds(_sums_zero, diff) or _holds(_index_sums_zero, diff, ranges or {})):
        return "index sums"
    if _holds(lambda d: _is_zero(_map(d, _expand)), diff):
        return "expand"
    # by sign before simplify: each sign's case is far cheaper than simplify of the
    # whole; it splits on one unit's variable, which says nothing about a sum over all
    kinked = variables and not has_sums and _has_kinks(diff)
    if kinked and _holds(_prove_by_sign, diff, variables):
        return "by sign"
    if not has_sums and _holds(lambda d: _is_zero(_map(d, _simplify)), diff):
        return "simplify"
    if instance is not None:
        concrete = list(instance(diff))
        if concrete and all(
            _holds(lambda c: _is_zero(_map(c, _expand)), c)
            or _holds(lambda c: _is_zero(_map(c, _simplify)), c)
            or (variables and _has_kinks(c) and _holds(_prove_by_sign, c, variables))
            for c in concrete
        ):
            return getattr(instance, "label", EVIDENCE_PREFIX + "an example")
    return None


def _holds(strategy, *args) -> bool:
    """Run one strategy; SymPy giving up on the way (it can raise) proves nothing."""
    try:
        return bool(strategy(*args))
    except (StopIteration, NotImplementedError, TypeError, ValueError, AttributeError,
            RecursionError, sp.PolynomialError):
        return False


# -- index sums, for every number of units -----------------------------------
#
# A formal sum over (-oo, oo) stands for the sum over all units of a layer;
# a finite one, like (0, m - 1), for its stated range. Every rewrite below
# holds for any number of terms: linearity, factors free of the index moved
# out, a Kronecker delta picking one term of a sum over a range that holds
# its other index, renaming a bound index, and sums of positive terms being
# positive (and the all-units range being non-empty).

def _canonical_index(depth: int) -> sp.Symbol:
    return sp.Symbol(f"_s{depth}", integer=True)


def _sum_depth(e: sp.Basic) -> int:
    inner = max((_sum_depth(x) for x in e.args), default=0)
    return inner + 1 if isinstance(e, Sum) else inner


def _nonempty(lo, hi) -> bool:
    if (lo, hi) == (-sp.oo, sp.oo):
        return True
    return bool((hi - lo).is_nonnegative)


def _mask(e: sp.Basic, table: dict) -> sp.Basic:
    """Each outermost ``Sum`` -> one symbol per distinct sum, with its sign."""
    if isinstance(e, Sum):
        if e not in table:
            f = e.function
            nonempty = all(_nonempty(lo, hi) for _, lo, hi in e.limits)
            if nonempty and f.is_positive:
                table[e] = sp.Dummy("S", positive=True)
            elif f.is_nonnegative:
                table[e] = sp.Dummy("S", nonnegative=True)
            elif f.is_extended_real:
                table[e] = sp.Dummy("S", real=True)
            else:
                table[e] = sp.Dummy("S")
        return table[e]
    if not e.args or not e.has(Sum):
        return e
    return e.func(*[_mask(x, table) for x in e.args])


def _unmask(e: sp.Basic, table: dict) -> sp.Basic:
    return e.xreplace({d: s for s, d in table.items()})


def _deltas_out_of_piecewise(e: sp.Basic) -> sp.Basic:
    """``Piecewise((d*f + u, c), (d*g + v, True))`` -> ``d*Piecewise((f, c), (g, True)) + Piecewise((u, c), (v, True))``.

    A kinked loss differentiated under a sum leaves the Kronecker delta
    inside the branches; out there it can pick its term of the sum.
    """
    def pull(pw):
        branches = [(sp.expand(ec.expr), ec.cond) for ec in pw.args]
        deltas = sorted(set().union(*(b.atoms(KroneckerDelta) for b, _ in branches)),
                        key=sp.default_sort_key)
        if not deltas:
            return pw
        parts: dict = {d: [] for d in deltas}
        rest = []
        for b, cond in branches:
            coeffs: dict = {d: [] for d in deltas}
            others = []
            for term in sp.Add.make_args(b):
                ds = [f for f in sp.Mul.make_args(term) if isinstance(f, KroneckerDelta)]
                if len(ds) == 1:
                    coeffs[ds[0]].append(term / ds[0])
                else:
                    others.append(term)
            for d in deltas:
                parts[d].append((sp.Add(*coeffs[d]), cond))
            rest.append((sp.Add(*others), cond))
        return sp.Add(*[d * Piecewise(*parts[d]) for d in deltas]) + Piecewise(*rest)

    return e.replace(lambda x: isinstance(x, Piecewise), pull)


def _common_out_of_piecewise(e: sp.Basic) -> sp.Basic:
    """``Piecewise((x*f, c), (x*g, True))`` -> ``x*Piecewise((f, c), (g, True))``."""
    def pull(pw):
        branches = [sp.factor_terms(ec.expr) for ec in pw.args]
        common = set.intersection(*(set(sp.Mul.make_args(b)) for b in branches))
        common = {f for f in common if not f.is_Number}
        if not common:
            return pw
        x = sp.Mul(*common)
        return x * Piecewise(*[(b / x, ec.cond) for b, ec in zip(branches, pw.args, strict=True)])

    return e.replace(lambda x: isinstance(x, Piecewise), pull)


def _expand_terms(e: sp.Basic, power_exp: bool = True) -> sp.Basic:
    """Expand products, ``exp`` of sums and ``log`` of positive products; sums stay whole."""
    table: dict = {}
    masked = _deltas_out_of_piecewise(_mask(e, table))
    masked = sp.expand(masked, power_exp=power_exp, log=True, deep=True)
    return _unmask(_common_out_of_piecewise(masked), table)


def _delta_pick(factor, v):
    """``x`` if ``factor`` is ``KroneckerDelta(v, x)`` with ``x`` free of ``v``."""
    if not isinstance(factor, KroneckerDelta):
        return None
    i, j = factor.args
    if i == v and not j.has(v):
        return j
    if j == v and not i.has(v):
        return i
    return None


def _one_sum(body, limit, ranges, canonical):
    v, lo, hi = limit
    body = _normal_sums(body, ranges, canonical)
    body = _expand_terms(body, power_exp=canonical)  # for display, exp(z - c) stays whole
    kept: dict = {}  # factor free of v -> the terms it multiplies
    out = []
    for term in sp.Add.make_args(body):
        indep, dep = term.as_independent(v, as_Add=False)
        picked = None
        for f in sp.Mul.make_args(dep):
            x = _delta_pick(f, v)
            if x is not None and ((lo, hi) == (-sp.oo, sp.oo) or ranges.get(x) == (lo, hi)):
                picked = (f, x)
                break
        if picked is not None:
            f, x = picked
            out.append(indep * _normal_sums((dep / f).xreplace({v: x}), ranges, canonical))
        elif not canonical:
            kept.setdefault(indep, []).append(dep)
        elif dep == 1:
            count = hi - lo + 1 if (lo, hi) != (-sp.oo, sp.oo) else Sum(
                1, (_canonical_index(0), lo, hi))
            out.append(indep * count)
        else:
            idx = _canonical_index(_sum_depth(dep))
            out.append(indep * Sum(dep.xreplace({v: idx}), (idx, lo, hi)))
    for indep, deps in kept.items():
        out.append(indep * Sum(sp.Add(*deps), limit) if deps != [1] else indep * Sum(1, limit))
    return sp.Add(*out)


def _normal_sums(e: sp.Basic, ranges: dict, canonical: bool = True) -> sp.Basic:
    if not e.args or not e.has(Sum):
        return e
    if isinstance(e, Sum):
        body = e.function
        for limit in e.limits:  # innermost first
            body = _one_sum(body, limit, ranges, canonical)
        return body
    return e.func(*[_normal_sums(x, ranges, canonical) for x in e.args])


def expand_sums(expr: sp.Basic, ranges: dict | None = None) -> sp.Basic:
    """Expand inside the index sums of ``expr`` and sum out every ``KroneckerDelta``.

    Summands and the whole are expanded (products, ``log`` of positive
    products: a sum of exponentials is positive), factors free of a sum's
    index come out of it; ``sum_p d_pk f_p = f_k``
    over all units, or over a range that ``ranges`` says holds ``k``, also
    when the delta sits in the branches of a ``Piecewise`` (a kinked loss).
    Sums keep their index names, for display. Each rewrite holds for every
    number of units.
    """
    return _expand_terms(_normal_sums(expr, ranges or {}, canonical=False), power_exp=False)


def _index_sums_zero(diff: sp.Basic, ranges: dict) -> bool:
    """``diff == 0`` for every number of units, by the rewrites above."""
    e = diff.replace(lambda x: isinstance(x, sp.Derivative | Subs), lambda x: x.doit())
    e = _derivatives_as_functions(e)
    e = _normal_sums(e, ranges)
    table: dict = {}
    masked = sp.expand(_deltas_out_of_piecewise(_mask(e, table)), power_exp=True, log=True,
                       deep=True)
    if masked == 0:
        return True
    if masked.has(Piecewise, sp.Abs, sp.sign, sp.Heaviside, sp.Max, sp.Min):
        return False
    return sp.cancel(sp.together(masked)) == 0 or sp.simplify(masked) == 0


def _prove_by_sign(diff: sp.Basic, variables: tuple[sp.Symbol, ...]) -> bool:
    """Prove ``diff == 0`` on every sign pattern of ``variables`` (and at 0).

    Heaviside's value at 0 is part of the expression (SymPy's default is 1/2;
    the catalog picks 0, the subgradient PyTorch uses), so the point 0 is
    checked as written rather than assumed.
    """
    for signs in itertools.product((1, -1, 0), repeat=len(variables)):
        subs = {}
        for v, s in zip(variables, signs, strict=True):
            if s == 0:
                subs[v] = sp.Integer(0)
            else:
                subs[v] = sp.Dummy(v.name, positive=True) * s
        e = _map(diff, lambda x, subs=subs: x.subs(subs))
        if not (_is_zero(_map(e, _expand)) or _is_zero(_map(e, _simplify))):
            return False
    return True


def concretize(
    size: int, free: Iterable[sp.Symbol] = ()
) -> Callable[[sp.Basic], Iterable[sp.Basic]]:
    """An ``instance`` for :func:`prove_equal`: index range ``0 .. size-1``.

    Every infinite-limit ``Sum`` becomes a finite one over ``size`` terms and
    every free index in ``free`` takes each value in the range in turn. This
    is evidence, not proof: a step it checks is labelled ``checked on n =
    size`` and its chain can never feed a kernel.
    """
    free = tuple(free)

    def instances(expr: sp.Basic) -> Iterable[sp.Basic]:
        def finite(s: Sum) -> sp.Basic:
            limits = [
                (v, 0, size - 1) if (lo, hi) == (-sp.oo, sp.oo) else (v, lo, hi)
                for v, lo, hi in s.limits
            ]
            return Sum(s.function, *limits)

        e = expr.replace(lambda x: isinstance(x, Sum), finite)
        for values in itertools.product(range(size), repeat=len(free)):
            yield e.subs(dict(zip(free, values, strict=True))).doit().doit()

    instances.label = f"{EVIDENCE_PREFIX}{size}"
    return instances


def assert_clean(expr: sp.Basic, what: str, *, abstract: bool = False) -> sp.Basic:
    """Reject the silent failure modes of index-form differentiation.

    The issue found that MatrixSymbol differentiation returns 0, and that
    finite-limit index sums leave ``Piecewise``/``Subs``/``KroneckerDelta``
    behind; any of these in a derived result means the derivation went wrong.
    ``abstract`` allows ``Derivative`` of an undefined activation ``g``.
    """
    if expr == 0:
        raise StepNotVerified(f"{what}: the derivative came out as 0")
    leftovers = (Subs, KroneckerDelta) if abstract else (Subs, KroneckerDelta, sp.Derivative)
    for bad in leftovers:
        if expr.has(bad):
            raise StepNotVerified(f"{what}: leftover {bad.__name__} in {expr}")
    for pw in expr.atoms(Piecewise):  # a kink (z[k] > 0) is fine, an index range is not
        for rel in pw.atoms(sp.core.relational.Relational):
            if (rel.lhs - rel.rhs).is_integer:
                raise StepNotVerified(f"{what}: index-range Piecewise left in {expr}")
    return expr


def float_form_is_exact(expr: sp.Expr, numeric: sp.Expr) -> bool:
    """The rewrite of :func:`printers.numeric_form` changed nothing mathematically."""
    def back(e):
        e = e.replace(lambda x: isinstance(x, log1p), lambda x: sp.log(1 + x.args[0]))
        return e.replace(lambda x: isinstance(x, expm1), lambda x: sp.exp(x.args[0]) - 1)

    return prove_equal(back(expr), back(numeric), variables=tuple(
        sorted(expr.free_symbols, key=str))) is not None
