"""Derivations as chains of checked steps.

A :class:`Chain` starts from an expression and grows one step at a time. Each
new expression must be proven equal to the previous one by SymPy before it is
accepted; a step that cannot be proven raises :class:`StepNotVerified`, which
fails the page build and ``backprop-derived regenerate``. Every accepted step
records *how* it was proven, so the rendered page can say so.

Proof strategies, cheapest first (the issue notes that ``simplify`` is far too
slow as a general equality test on whole networks, and wrong on some
finite-limit index sums, hence the explicit list):

1. ``structural``  the difference is identically 0 after ``doit``;
2. ``expand``      ``expand`` of the difference is 0;
3. ``simplify``    ``simplify`` of the difference (after rewriting to ``exp``) is 0;
4. ``by sign``     expressions with ``Max``/``Abs``/``Heaviside``/``Piecewise`` in a
                   real variable are proven separately for a positive and a
                   negative variable, and at 0;
5. ``index sums``  formal index sums: terms moved into their sums, bound indices
                   renamed alike, summands merged and expanded to 0;
6. ``instance``    index expressions that SymPy cannot simplify in general are
                   proven exactly on a concrete instance (finite index range,
                   every free index value), as the issue allows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import sympy as sp
from sympy import Indexed, KroneckerDelta, Piecewise, Subs, Sum

__all__ = [
    "Chain",
    "Step",
    "StepNotVerified",
    "assert_clean",
    "concretize",
    "prove_equal",
]


class StepNotVerified(AssertionError):
    """A derivation step that SymPy could not prove equal to the previous one."""


@dataclass(frozen=True)
class Step:
    expr: sp.Expr
    why: str
    proof: str  # which strategy proved it equal to the previous step


@dataclass
class Chain:
    """``lhs = e0 = e1 = ... = en`` where every ``=`` is proven by SymPy.

    ``variables`` lists the real symbols a ``by sign`` proof may split on.
    ``instance`` maps an expression to a concrete one for ``instance`` proofs.
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
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.steps.append(Step(self.start, self.why, "given"))

    @property
    def result(self) -> sp.Basic:
        return self.steps[-1].expr

    def step(self, expr: sp.Basic, why: str) -> Chain:
        """Append ``expr`` after proving it equals the current result."""
        proof = prove_equal(
            self._expand_definitions(self.result),
            self._expand_definitions(expr),
            variables=self.variables,
            instance=self.instance,
        )
        if proof is None:
            raise StepNotVerified(
                f"{self.lhs}: could not prove the step '{why}':\n"
                f"  {self.result}\n  = {expr}"
            )
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
        return self.step(transform(self.result), why)

    def _repr_latex_(self) -> str:
        from .display import chain_latex

        return "$$" + chain_latex(self) + "$$"


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


def _expand(e: sp.Basic) -> sp.Basic:
    # `doit` twice: the first evaluates derivatives, the second the
    # KroneckerDelta sums they leave behind (the Subs-leak pitfall).
    return sp.expand(e.doit().doit())


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
) -> str | None:
    """Name of the first strategy that proves ``lhs == rhs``, else ``None``."""
    diff = _difference(lhs, rhs)
    if _is_zero(diff):
        return "structural"
    has_sums = not isinstance(diff, sp.MatrixBase) and diff.has(Sum)
    # Index sums first when there are any: it does the work of `expand` too.
    if has_sums and _sums_zero(diff):
        return "index sums"
    if _is_zero(_map(diff, _expand)):
        return "expand"
    if not has_sums and _is_zero(_map(diff, _simplify)):
        return "simplify"
    if variables and _has_kinks(diff) and _prove_by_sign(diff, variables):
        return "by sign"
    if instance is not None:
        concrete = list(instance(diff))
        if concrete and all(
            _is_zero(_map(c, _expand))
            or _is_zero(_map(c, _simplify))
            or (variables and _has_kinks(c) and _prove_by_sign(c, variables))
            for c in concrete
        ):
            return "instance"
    return None


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
    every free index in ``free`` takes each value in the range in turn.
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
    if expr.has(Piecewise) and expr.has(Indexed):
        raise StepNotVerified(f"{what}: index-range Piecewise left in {expr}")
    return expr
