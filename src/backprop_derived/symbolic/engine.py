"""The derivation engine: reverse-mode differentiation of index-form layers.

A layer is written as a few equations, one per named node, in index form over
``IndexedBase`` objects that carry their shapes (batch norm would be
``mu[r] = ...``, ``var[r] = ...``, ``xhat[i, r] = ...``, ``y[i, r] = ...``):

    Z[i, r] = Sum(A[i, t] * W[r, t], (t, 0, n_in - 1)) + b[r]

:func:`backward` applies the chain rule node by node, last equation first, as
a textbook does. For every variable ``V`` on a right-hand side it forms

    dV[u, v] += Sum_{lhs indices} dLHS[lhs indices] * d(rhs)/d(V[u, v]),

differentiating with SymPy and collapsing the Kronecker deltas against the
sums, with the index ranges that the shapes give (``u`` ranges over the
same values as the summed index it replaces, so no range condition is left
behind). A variable used by several equations accumulates (``+=``): the
residual branch and repeated ids come out of this one rule. The 1/m of a mean
and the lambda of a penalty are factors of the definitions, so they come out
of the differentiation too. An output that an earlier equation reads through
a shifted index (``h[t - 1]`` in a recurrence) gets a total gradient of its
own, the upstream one plus what flows back from the next step: the BPTT
recurrence, which the index printer runs as a loop over time.

:func:`to_matrix` turns an index-form result into a matrix expression with
SymPy's ``convert_indexed_to_array`` / ``convert_array_to_matrix`` and then
*proves* the conversion: the generic entry of the matrix expression must be
equal to the index form, for symbolic sizes (:func:`.checked.prove_equal`,
index sums). :func:`to_elementwise` does the same for results that are
elementwise over their indices (V4), and :func:`to_total` for a full sum
(a penalty's value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sympy as sp
from sympy import Indexed, IndexedBase, KroneckerDelta, Sum
from sympy.matrices.expressions.matexpr import MatrixElement
from sympy.tensor.array.expressions import convert_indexed_to_array
from sympy.tensor.array.expressions.from_array_to_matrix import convert_array_to_matrix

from .checked import StepNotVerified, _derivatives_as_functions, prove_equal
from .printers import latex

__all__ = [
    "Gradient",
    "backward",
    "collapse",
    "gradient_name",
    "to_elementwise",
    "to_matrix",
    "to_total",
]

# Letters for the indices of a gradient dV[u, v, ...]: never used by a
# definition, so they cannot be captured by a sum.
_GRADIENT_INDICES = ("u", "v", "w", "x", "y", "q")


@dataclass(frozen=True)
class Gradient:
    """``grad[indices] = expr``: the derivative of the cost with respect to ``wrt``."""

    wrt: IndexedBase | sp.Symbol
    grad: IndexedBase | sp.Symbol
    indices: tuple[sp.Symbol, ...]
    expr: sp.Expr
    ranges: Mapping[sp.Symbol, tuple[sp.Expr, sp.Expr]] = field(default_factory=dict)

    @property
    def lhs(self) -> sp.Basic:
        return self.grad[self.indices] if self.indices else self.grad


def gradient_name(var: IndexedBase | sp.Symbol) -> str:
    return "d" + _label(var)


def _label(var) -> str:
    return str(var.label) if isinstance(var, IndexedBase) else str(var)


def _shape(var) -> tuple:
    if isinstance(var, sp.Symbol):
        return ()
    if var.shape is None:
        raise ValueError(f"{var} needs a shape: IndexedBase('{var}', shape=(...))")
    return tuple(var.shape)


def _gradient_base(var, shape) -> IndexedBase | sp.Symbol:
    name = gradient_name(var)
    if not shape:
        return sp.Symbol(name, real=True)
    return IndexedBase(name, shape=shape, real=True)


def _occurrences(expr, var) -> set:
    if isinstance(var, sp.Symbol):
        return {var} if expr.has(var) else set()
    return {x for x in expr.atoms(Indexed) if x.base == var}


def _fresh_indices(shape, taken: set) -> tuple[sp.Symbol, ...]:
    names = [n for n in _GRADIENT_INDICES if n not in {str(s) for s in taken}]
    if len(names) < len(shape):
        raise ValueError(f"no free letters left for an index of rank {len(shape)}")
    return tuple(sp.Symbol(n, integer=True) for n in names[: len(shape)])


def _derivative(expr: sp.Expr, var, idx: tuple) -> sp.Expr:
    """d(expr)/d(var[idx]) with Kronecker deltas, not yet collapsed.

    Indexed occurrences of ``var`` and sums containing it are the leaves: each
    is replaced by a dummy, SymPy differentiates the rest, and the chain rule
    multiplies by the leaf's own derivative (recursing into sums).
    """
    if not expr.has(var):
        return sp.Integer(0)
    if isinstance(var, sp.Symbol) and expr == var:
        return sp.Integer(1)
    if isinstance(expr, Indexed):
        if expr.base != var:
            return sp.Integer(0)
        return sp.Mul(*[KroneckerDelta(a, b) for a, b in zip(expr.indices, idx, strict=True)])
    if isinstance(expr, Sum):
        return Sum(_derivative(expr.function, var, idx), *expr.limits)
    leaves: dict = {}

    def collect(e):
        if not e.has(var):
            return
        if isinstance(e, Indexed | Sum) or e == var:
            leaves.setdefault(e, sp.Dummy("leaf", real=True))
            return
        for arg in e.args:
            collect(arg)

    collect(expr)
    inner = expr.xreplace(leaves)
    back = {d: leaf for leaf, d in leaves.items()}
    total = sp.Integer(0)
    for leaf, dummy in leaves.items():
        outer = _named_derivatives(sp.diff(inner, dummy)).xreplace(back)
        total += outer * _derivative(leaf, var, idx)
    return total


def _named_derivatives(e: sp.Expr) -> sp.Expr:
    """``Derivative(g(x), x)`` of an undefined ``g`` -> the function ``g'(x)``."""
    return e.replace(
        lambda x: isinstance(x, sp.Derivative) and len(x.variables) == 1
        and isinstance(x.expr, sp.core.function.AppliedUndef) and x.expr.args == x.variables,
        lambda x: sp.Function(f"{x.expr.func.__name__}'")(x.variables[0]),
    )


# -- collapsing sums against Kronecker deltas ---------------------------------

def _terms(expr: sp.Expr) -> list[tuple[sp.Expr, list, list]]:
    """``expr`` as a sum of ``coeff * prod(factors)`` summed over ``limits``.

    Nested and multiplied sums are merged into one set of limits (their bound
    indices are distinct by construction), so each term is one flat sum.
    """
    out = []
    for term in sp.Add.make_args(sp.expand_mul(expr)):
        out.extend(_flatten_term(term))
    return out


def _flatten_term(term) -> list[tuple[sp.Expr, list, list]]:
    if isinstance(term, Sum):
        inner = []
        for coeff, factors, limits in _terms(term.function):
            inner.append((coeff, factors, list(term.limits) + limits))
        return inner
    if isinstance(term, sp.Mul):
        results = [(sp.Integer(1), [], [])]
        for factor in term.args:
            if isinstance(factor, Sum) or (isinstance(factor, sp.Add) and factor.has(Sum)):
                parts = _terms(factor)
                results = [_merge((c1, f1, l1), (c2, f2, l2), term)
                           for c1, f1, l1 in results for c2, f2, l2 in parts]
            elif factor.has(Indexed) or factor.has(KroneckerDelta):
                results = [(c, [*f, factor], lim) for c, f, lim in results]
            else:
                results = [(c * factor, f, lim) for c, f, lim in results]
        return results
    if term.has(Indexed) or term.has(KroneckerDelta):
        return [(sp.Integer(1), [term], [])]
    return [(term, [], [])]


def _merge(left, right, context):
    """The product of two flat sums; the right one's bound indices are renamed
    (with primes) where they would clash with anything on the left."""
    (c1, f1, l1), (c2, f2, l2) = left, right
    taken = {str(x) for x in context.free_symbols} | {str(v) for v, _, _ in l1}
    taken |= {str(x) for f in f1 for x in f.free_symbols}
    renames = {}
    for v, _, _ in l2:
        if str(v) in taken:
            name = str(v)
            while name in taken:
                name += "'"
            renames[v] = sp.Symbol(name, integer=True)
            taken.add(name)
    if renames:
        f2 = [f.subs(renames) for f in f2]
        l2 = [(renames.get(v, v), lo.subs(renames), hi.subs(renames)) for v, lo, hi in l2]
    return c1 * c2, f1 + f2, l1 + l2


def _solve_linear(expr: sp.Expr, var: sp.Symbol, unit: bool = True):
    """``(value, condition)``: ``var = value`` solves ``expr = 0``, where ``condition``.

    ``expr`` must be ``a*var + rest`` with an integer ``a``; else None. With
    ``a = ±1`` every ``rest`` has a solution (condition true); otherwise
    (``unit=False``, a stride: ``2p - u``) only where ``a`` divides ``rest``.
    """
    coeff = expr.coeff(var)
    if not (coeff.is_integer and coeff != 0) or (expr - coeff * var).has(var):
        return None
    rest = expr - coeff * var
    if coeff in (1, -1):
        return sp.expand(-rest / coeff), sp.true
    if unit:
        return None
    return sp.expand(-rest / coeff), sp.Eq(sp.Mod(rest, coeff), 0)


class Indicator(sp.Function):
    """``[cond]``: 1 where ``cond`` holds, else 0 (a Piecewise kept as a factor).

    Inside :func:`collapse` a range condition must stay a *factor* of its
    term, so that the term's sums and deltas can still be flattened; SymPy's
    ``expand`` would fold the whole term into a ``Piecewise`` instead.
    """

    nargs = 1

    def _eval_rewrite_as_Piecewise(self, cond, **kwargs):
        return sp.Piecewise((1, cond), (0, True))


def _as_indicators(expr):
    return expr.replace(
        lambda x: isinstance(x, sp.Piecewise) and len(x.args) == 2
        and x.args[1].expr == 0 and x.args[1].cond is sp.true,
        lambda x: x.args[0].expr * Indicator(x.args[0].cond))


def _from_indicators(expr):
    return expr.replace(lambda x: isinstance(x, Indicator),
                        lambda x: sp.Piecewise((1, x.args[0]), (0, True)))


def _bound(d, ranges, lowest: bool):
    """The least (or greatest) value of ``d`` over the ranges of its indices, or None."""
    indices = [s for s in d.free_symbols if s in ranges]
    value = d
    for s in indices:
        coeff = value.coeff(s)
        if not coeff.is_number or (value - coeff * s).has(s):
            return None
        lo, hi = ranges[s]
        value = value.subs(s, lo if (coeff > 0) == lowest else hi)
    return sp.simplify(value)


def _simplify_condition(cond, ranges):
    """Drop the parts of a range condition that the indices' own ranges imply."""
    def atom(rel):
        if not isinstance(rel, sp.Ge | sp.Gt | sp.Le | sp.Lt):
            return rel
        d = rel.lhs - rel.rhs if isinstance(rel, sp.Ge | sp.Gt) else rel.rhs - rel.lhs
        strict = isinstance(rel, sp.Gt | sp.Lt)
        low, high = _bound(d, ranges, True), _bound(d, ranges, False)
        if low is not None and ((low > 0) if strict else (low >= 0)) is sp.true:
            return sp.true
        if high is not None and ((high <= 0) if strict else (high < 0)) is sp.true:
            return sp.false
        return rel

    return cond.replace(lambda x: isinstance(x, sp.Ge | sp.Gt | sp.Le | sp.Lt), atom)


def collapse(expr: sp.Expr, ranges: Mapping[sp.Symbol, tuple]) -> sp.Expr:
    """Sum out every Kronecker delta that meets a summed index.

    ``ranges`` gives each free index its range ``(lo, hi)``. A delta
    ``δ(s + c, u)`` under a sum over ``s`` sets ``s = u - c``; when that value
    is a free index with the same range as ``s`` (or a bound index of another
    sum with the same range) the sum simply disappears, otherwise the range
    condition is kept as a ``Piecewise`` (a shifted index: convolution).
    """
    result = sp.Integer(0)
    for coeff, factors, limits in _terms(_as_indicators(expr)):
        factors, limits = list(factors), list(limits)
        changed = True
        while changed:
            changed = False
            # a delta with a unit coefficient first (p + j - u: j = u - p), then a
            # strided one (2p - u: p = u/2 where u is even)
            for unit, (n, f), (k, (s, lo, hi)) in (
                    (unit, nf, kl) for unit in (True, False)
                    for nf in enumerate(factors) for kl in enumerate(limits)):
                if not isinstance(f, KroneckerDelta):
                    continue
                solved = _solve_linear(f.args[0] - f.args[1], s, unit)
                if solved is None:
                    continue
                value, divides = solved
                rest = factors[:n] + factors[n + 1:]
                # subs, not xreplace: a sum inside a factor may bind its own `s`
                factors = [x.subs(s, value) for x in rest]
                coeff = coeff.subs(s, value)
                del limits[k]
                limits = [(v, a.subs(s, value), b.subs(s, value)) for v, a, b in limits]
                if divides is not sp.true:
                    factors.append(Indicator(divides))
                if not _within(value, lo, hi, ranges, limits):
                    factors.append(Indicator((value >= lo) & (value <= hi)))
                changed = True
                break
        known = {**ranges, **{v: (lo, hi) for v, lo, hi in limits}}
        conditions = [_simplify_condition(f.args[0], known) for f in factors
                      if isinstance(f, Indicator)]
        coeff_conditions = [_simplify_condition(x.args[0], known)
                            for x in sp.Mul.make_args(coeff) if isinstance(x, Indicator)]
        if any(c is sp.false for c in conditions + coeff_conditions):
            continue  # the term is zero everywhere in range
        factors = [Indicator(c) if isinstance(f, Indicator) else f
                   for f, c in zip(factors, _pad(factors, conditions), strict=True)]
        factors = [f for f in factors if not (isinstance(f, Indicator) and f.args[0] is sp.true)]
        coeff = sp.Mul(*[Indicator(_simplify_condition(x.args[0], known))
                         if isinstance(x, Indicator) else x for x in sp.Mul.make_args(coeff)])
        coeff = coeff.replace(lambda x: isinstance(x, Indicator) and x.args[0] is sp.true,
                              lambda x: sp.Integer(1))
        body = coeff * sp.Mul(*factors)
        result += Sum(body, *limits) if limits else body
    return _from_indicators(result)


def _pad(factors, conditions):
    """``conditions`` aligned with ``factors`` (None where a factor is not an Indicator)."""
    it = iter(conditions)
    return [next(it) if isinstance(f, Indicator) else None for f in factors]


def _within(value, lo, hi, ranges, limits) -> bool:
    if value in ranges:
        vlo, vhi = ranges[value]
        return sp.simplify(vlo - lo) == 0 and sp.simplify(vhi - hi) == 0
    for v, a, b in limits:
        if v == value:
            return sp.simplify(a - lo) == 0 and sp.simplify(b - hi) == 0
    return False


# -- the chain rule over a list of equations --------------------------------

def backward(
    equations: Iterable[tuple[sp.Basic, sp.Expr]],
    wrt: Iterable[IndexedBase | sp.Symbol],
    upstream: Mapping | None = None,
) -> dict:
    """Gradients of every variable in ``wrt``, by the chain rule node by node.

    ``equations`` are ``(lhs, rhs)`` in forward order: ``lhs`` an ``Indexed``
    with distinct symbol indices (or a ``Symbol`` for a scalar). ``upstream``
    maps an output variable to its given gradient (an ``IndexedBase`` of the
    same shape, or ``1`` for a scalar cost); by default every output ``Y``
    (a left-hand side used by no later equation) gets ``dY``. Intermediates
    (left-hand sides used later) get gradients too, returned alongside; one
    given an upstream adds it to what flows back through its reads.

    Returns ``{variable: Gradient}`` for every variable in ``wrt`` and every
    intermediate, in the order they were completed (the backward order).
    """
    equations = list(equations)
    wrt = list(wrt)
    if not equations:
        raise ValueError("a layer needs at least one equation")
    lhs_vars = []
    for lhs, _ in equations:
        var = lhs.base if isinstance(lhs, Indexed) else lhs
        if not isinstance(lhs, Indexed | sp.Symbol):
            raise ValueError(f"left-hand side must be X[i, ...] or a symbol, got {lhs}")
        if isinstance(lhs, Indexed) and len(set(lhs.indices)) != len(lhs.indices):
            raise ValueError(f"left-hand side indices must be distinct symbols: {lhs}")
        if var in lhs_vars:
            raise ValueError(f"{var} is defined twice")
        lhs_vars.append(var)
    used_later = {v for n, v in enumerate(lhs_vars)
                  if any(_occurrences(rhs, v) for _, rhs in equations[n + 1:])}
    outputs = [v for v in lhs_vars if v not in used_later]
    # An output that an earlier equation reads (h_{t-1} in a recurrence) has a
    # total gradient of its own: the upstream one plus what flows back
    # through those reads. Its upstream then needs a name of its own.
    recurrent = [v for v in outputs if any(_occurrences(rhs, v) for _, rhs in equations)]
    upstream = dict(upstream or {})
    # An intermediate given an upstream gradient is an output too (an LSTM's c_t,
    # which h_t reads and the next step receives): its total gradient is that
    # upstream plus what flows back through the later equations' reads.
    given = [v for v in used_later if v in upstream]
    for v in recurrent:
        if v not in upstream:
            raise ValueError(f"{v} feeds an earlier equation (a recurrence): name its "
                             "upstream gradient, e.g. upstream={H: dY}")
    for v in outputs:
        upstream.setdefault(v, _gradient_base(v, _shape(v)))
    for v in wrt:
        if v in lhs_vars:
            raise ValueError(f"{v} is defined by an equation; ask for an input or parameter")
        if not any(_occurrences(rhs, v) for _, rhs in equations):
            raise ValueError(f"{v} does not occur in the equations")

    taken = set()
    for lhs, rhs in equations:
        taken |= lhs.free_symbols | rhs.free_symbols
        taken |= {s for s in sp.preorder_traversal(rhs) if isinstance(s, sp.Symbol)}
    # contributions[var] accumulates sum over consumers (the += of the chain rule)
    contributions: dict = {v: [] for v in list(used_later) + recurrent + wrt}
    indices: dict = {}
    for v in contributions:
        indices[v] = _fresh_indices(_shape(v), taken)
    for v in recurrent + given:
        outer = upstream[v]
        contributions[v].append(outer[indices[v]] if indices[v] else outer)
    results: dict = {}
    for lhs, rhs in reversed(equations):
        var = lhs.base if isinstance(lhs, Indexed) else lhs
        grad = (_gradient_base(var, _shape(var)) if var in recurrent
                else None if var in used_later else upstream.get(var))
        if grad is None:  # an intermediate: its gradient is complete now
            g = _finish(var, indices[var], contributions[var])
            results[var] = g
            grad = g.grad
        lhs_idx = lhs.indices if isinstance(lhs, Indexed) else ()
        lhs_limits = [(s, 0, d - 1) for s, d in zip(lhs_idx, _shape(var), strict=True)]
        seed = grad[lhs_idx] if lhs_idx else grad
        for v, parts in contributions.items():
            if not _occurrences(rhs, v):
                continue
            local = _derivative(rhs, v, indices[v])
            parts.append(Sum(seed * local, *lhs_limits) if lhs_limits else seed * local)
    for v in recurrent + wrt:
        results[v] = _finish(v, indices[v], contributions[v])
    return results


def _finish(var, idx, parts) -> Gradient:
    shape = _shape(var)
    ranges = {s: (sp.Integer(0), d - 1) for s, d in zip(idx, shape, strict=True)}
    expr = collapse(sp.Add(*parts), ranges)
    expr = _tidy(expr)
    # a delta on an array entry (``[u = ids[s]]``, a gather's gradient) has no value of ``s``
    # that solves it (an id may occur several times, or never): it stays under its sum, a
    # scatter-add, which the index printer prints as such; any other delta is an error
    if any(not d.atoms(Indexed) for d in expr.atoms(KroneckerDelta)):
        raise StepNotVerified(f"d{var}: a Kronecker delta survived the sums: {expr}")
    return Gradient(var, _gradient_base(var, shape), idx, expr, ranges)


def _tidy(expr: sp.Expr) -> sp.Expr:
    """Group terms with equal sums and pull constant factors out of them."""
    out = sp.Integer(0)
    for coeff, factors, limits in _terms(expr):
        body = sp.Mul(*factors)
        kept = []
        for v, lo, hi in limits:
            if body.has(v):
                kept.append((v, lo, hi))
            else:
                coeff *= hi - lo + 1  # a sum of a term free of its index
        out += coeff * (Sum(body, *kept) if kept else body)
    return out


# -- converting results to the forms the printers emit -----------------------

def _matrix_symbol(base: IndexedBase, names: Mapping[str, str]):
    shape = _shape(base)
    name = names.get(str(base.label), str(base.label))
    if len(shape) == 1:
        return sp.MatrixSymbol(name, shape[0], 1)
    if len(shape) == 2:
        return sp.MatrixSymbol(name, *shape)
    return None


def to_matrix(
    gradient_or_expr,
    indices: tuple[sp.Symbol, ...] | None = None,
    *,
    names: Mapping[str, str] | None = None,
    symbols: Mapping[str, str] | None = None,
) -> sp.MatrixExpr:
    """The matrix form of an index-form result, proven equal entry by entry.

    ``names`` renames arrays for the generated code (``{"W": "w"}``),
    ``symbols`` renames scalars (``{"lambda": "lam"}``). Sums over one index
    of a lone factor become a product with the row of ones ``ones`` (a GEMV);
    a term missing one of the result's indices is broadcast with a
    ``OneMatrix``. Scalar factors are kept out of SymPy's array conversion
    and multiplied back.
    """
    if isinstance(gradient_or_expr, Gradient):
        expr, indices = gradient_or_expr.expr, gradient_or_expr.indices
    else:
        expr = gradient_or_expr
    names = dict(names or {})
    indices = tuple(indices)
    if not 1 <= len(indices) <= 2:
        raise NotImplementedError(f"no matrix form for a rank-{len(indices)} result")
    bases = {x.base for x in expr.atoms(Indexed)}
    mats = {b: _matrix_symbol(b, names) for b in bases}
    if any(mat is None for mat in mats.values()):
        raise NotImplementedError(f"arrays of rank > 2 in {expr}: use an einsum form")
    ranges = _index_ranges(expr)
    for s, d in zip(indices, _result_shape(expr, indices), strict=True):
        ranges[s] = d

    def as_element(e):
        return e.replace(
            lambda x: isinstance(x, Indexed),
            lambda x: (mats[x.base][x.indices[0], 0] if len(x.indices) == 1
                       else mats[x.base][x.indices]),
        )

    terms = []
    for coeff, factors, limits in _terms(expr):
        body = sp.Mul(*[as_element(f) for f in factors])
        for s, _, hi in limits:
            if sum(1 for f in factors if f.has(s)) == 1 and len(factors) == 1:
                ones = sp.MatrixSymbol("ones", 1, hi + 1)
                body = body * ones[0, s]
        present = tuple(s for s in indices if body.has(s))
        if len(present) < len(indices):
            # broadcast along the missing index: 1 b^T (a row per example)
            if len(present) != 1:
                raise NotImplementedError(f"cannot broadcast {body} to {indices}")
            summed = Sum(sp.Mul(*factors), *limits) if limits else sp.Mul(*factors)
            row = to_matrix(coeff * summed, present, names=names, symbols=symbols)
            if indices.index(present[0]) == 1:
                terms.append(sp.OneMatrix(ranges[indices[0]], 1) * row)
            else:
                terms.append(sp.transpose(row) * sp.OneMatrix(1, ranges[indices[1]]))
            continue
        summed = Sum(body, *limits) if limits else body
        array = convert_indexed_to_array(summed, first_indices=list(indices))
        mat = convert_array_to_matrix(array)
        if len(indices) == 1 and isinstance(mat, MatrixElement):
            mat = mat.parent  # a vector comes back as entry [u, 0] of a column
        if not isinstance(mat, sp.MatrixExpr):
            raise NotImplementedError(f"no matrix form for {summed} (got {mat})")
        if len(indices) == 1 and mat.shape[0] != 1:
            mat = sp.transpose(mat).doit()  # a vector result is a row, (1, n)
        terms.append(_scalar_names(coeff, symbols) * mat if coeff != 1 else mat)
    result = sp.MatAdd(*terms) if len(terms) > 1 else terms[0]
    _prove_entries(expr, indices, result, mats, symbols)
    return result


def matrix_chain(lhs, expr, indices, mat, *, names=None, symbols=None, why="derived above"):
    """``lhs = expr = (matrix form)[indices]``, the last step proven entrywise."""
    from .checked import Chain

    bases = {x.base for x in expr.atoms(Indexed)}
    mats = {b: _matrix_symbol(b, dict(names or {})) for b in bases}
    chain = Chain(lhs, expr, why, definitions=_entry_as_index(mats, symbols))
    return chain.step(_entry(mat, indices), "entry of the matrix form")


def _scalar_names(coeff, symbols):
    if not symbols:
        return coeff
    return coeff.xreplace({s: sp.Symbol(symbols[s.name], **s.assumptions0)
                           for s in coeff.free_symbols if s.name in symbols})


def _index_ranges(expr) -> dict:
    ranges = {}
    for x in expr.atoms(Indexed):
        for s, d in zip(x.indices, _shape(x.base), strict=True):
            if isinstance(s, sp.Symbol):
                ranges[s] = d
    return ranges


def _result_shape(expr, indices):
    ranges = _index_ranges(expr)
    missing = [s for s in indices if s not in ranges]
    if missing:
        raise ValueError(f"cannot tell the range of {missing} in {expr}")
    return tuple(ranges[s] for s in indices)


def _entry(mat, indices):
    """The generic entry, unevaluated: it prints as ``(dZ^T A)_{uv}``."""
    return MatrixElement(mat, 0, indices[0]) if len(indices) == 1 else MatrixElement(mat, *indices)


def code_form(mat: sp.MatrixExpr, names: Mapping[str, str]) -> sp.MatrixExpr:
    """The matrix form with the arrays renamed as the generated code names them."""
    return mat.xreplace({x: sp.MatrixSymbol(names[x.name], *x.shape)
                         for x in mat.atoms(sp.MatrixSymbol) if x.name in names})


def _entry_as_index(mats, symbols):
    """Rewrite matrix entries back to the index form's arrays (a Chain definition)."""
    back = {m: base for base, m in mats.items()}
    renamed = {new: old for old, new in (symbols or {}).items()}

    def element(x):
        base = back[x.parent]
        return base[x.i] if len(_shape(base)) == 1 else base[x.i, x.j]

    def convert(e):
        e = e.doit() if isinstance(e, MatrixElement) else e
        e = e.replace(lambda x: isinstance(x, MatrixElement), lambda x: x.doit())
        e = e.replace(
            lambda x: isinstance(x, MatrixElement) and (
                isinstance(x.parent, sp.OneMatrix) or getattr(x.parent, "name", "") == "ones"),
            lambda x: sp.Integer(1))
        e = e.replace(lambda x: isinstance(x, MatrixElement) and x.parent in back, element)
        return e.xreplace({s: sp.Symbol(renamed[s.name], **s.assumptions0)
                           for s in e.free_symbols if s.name in renamed})

    return convert


def _prove_entries(expr, indices, mat, mats, symbols) -> None:
    """Entry ``[indices]`` of ``mat`` equals ``expr``, for every size."""
    entry = _entry_as_index(mats, symbols)(_entry(mat, indices))
    if prove_equal(expr, entry) is None:
        raise StepNotVerified(f"matrix form {mat} differs from the index form {expr}")


def to_elementwise(gradient: Gradient, names: Mapping[str, str] | None = None) -> sp.Expr:
    """An elementwise result as an expression in whole-array symbols.

    Every array in the result must be indexed by exactly the result's indices
    (or a trailing subset of them, broadcast): ``dA[u, v] * g'(Z[u, v])``
    becomes ``da * g'(z)``. Anything else (a sum, a shifted index) raises.
    """
    names = dict(names or {})
    if gradient.expr.has(Sum):
        raise NotImplementedError(f"not elementwise (it sums): {gradient.expr}")
    idx = gradient.indices

    def convert(x):
        if x.indices != idx[len(idx) - len(x.indices):]:
            raise NotImplementedError(f"{x} is not indexed elementwise by {idx}")
        label = str(x.base.label)
        return sp.Symbol(names.get(label, label.lower()), real=True)

    return gradient.expr.replace(lambda x: isinstance(x, Indexed), convert)


def to_total(expr: sp.Expr, names: Mapping[str, str] | None = None,
             symbols: Mapping[str, str] | None = None) -> sp.Expr:
    """``c * Sum(f(X[...]), over every index of X)`` -> ``c * f(x)``, summed by the kernel.

    The kernel style ``"scalar"`` returns the sum of its expression over the
    whole array, so the sum's limits must cover every index of every array in
    the summand, each over its full range.
    """
    names = dict(names or {})
    out = sp.Integer(0)
    for coeff, factors, limits in _terms(expr):
        body = sp.Mul(*factors)
        bound = {s: (lo, hi) for s, lo, hi in limits}
        for x in body.atoms(Indexed):
            for s, d in zip(x.indices, _shape(x.base), strict=True):
                if bound.get(s) != (0, d - 1):
                    raise NotImplementedError(f"{x} is not summed over its whole range")
        arrays = {x: sp.Symbol(names.get(str(x.base.label), str(x.base.label).lower()),
                               real=True) for x in body.atoms(Indexed)}
        out += _scalar_names(coeff, symbols) * body.xreplace(arrays)
    return out



# -- showing a derivation ------------------------------------------------------

def in_range(ranges: Mapping[sp.Symbol, tuple]):
    """A ``Chain`` definition: evaluate sums, knowing each free index's range.

    SymPy's own summation of a Kronecker delta over a finite range returns
    ``Piecewise((value, lo <= u <= hi), (0, True))``; an index ``u`` of a
    gradient ranges over exactly ``lo..hi``, so the condition is true. This
    is the premise the engine's :func:`collapse` uses, applied by SymPy.
    """
    facts = []
    for s, (lo, hi) in ranges.items():
        facts += [sp.Ge(s, lo), sp.Le(s, hi), sp.Ge(hi, s), sp.Le(lo, s)]

    def true_in_range(cond) -> bool:
        atoms = sp.And.make_args(cond)
        return all(a in facts or a.reversed in facts or a is sp.true for a in atoms)

    def deltas_first(x):
        # SymPy sums the first limit innermost: put the indices that meet a
        # Kronecker delta there, so that its delta summation applies (not an index read
        # only inside an array entry, [u = ids[s]]: no summation solves that one)
        inside = {s for d in x.function.atoms(KroneckerDelta)
                  for s in d.replace(lambda y: isinstance(y, Indexed),
                                     lambda y: sp.Integer(0)).free_symbols}
        limits = sorted(x.limits, key=lambda lim: lim[0] not in inside)
        return Sum(x.function, *limits)

    def settle(x):
        # conditions the indices' ranges imply go; the rest in one canonical form
        pieces = []
        for expr_, cond in x.args:
            cond = _canonical_condition(_simplify_condition(cond, ranges))
            if cond is sp.false:
                continue
            pieces.append((expr_, cond))
            if cond is sp.true:
                break
        return sp.Piecewise(*pieces) if pieces else sp.Integer(0)

    def indicator(x):
        cond = _simplify_condition(x.args[0], ranges)
        return sp.Integer(1) if cond is sp.true else sp.Integer(0) if cond is sp.false else (
            Indicator(cond))

    def resolve(e):
        for _ in range(8):
            before = e
            # derivatives first, then their range conditions as factors, so
            # that SymPy's delta summation substitutes into them too
            e = e.replace(lambda x: isinstance(x, sp.Derivative), lambda x: x.doit())
            e = _as_indicators(_derivatives_as_functions(e))
            e = e.replace(lambda x: isinstance(x, Sum), deltas_first).doit()
            e = e.replace(lambda x: isinstance(x, Indicator), indicator)
            e = _from_indicators(_derivatives_as_functions(e))
            e = e.replace(
                lambda x: isinstance(x, sp.Piecewise) and true_in_range(x.args[0].cond),
                lambda x: x.args[0].expr,
            )
            e = e.replace(lambda x: isinstance(x, sp.Piecewise), settle)
            if e == before:
                break
        return sp.piecewise_fold(e) if e.has(sp.Piecewise) else e

    return resolve


def _canonical_condition(cond):
    """Every integer inequality as ``expr >= 0`` (``x > c`` is ``x - c - 1 >= 0``)."""
    def atom(rel):
        if isinstance(rel, sp.Ge):
            d = rel.lhs - rel.rhs
        elif isinstance(rel, sp.Gt):
            d = rel.lhs - rel.rhs - 1
        elif isinstance(rel, sp.Le):
            d = rel.rhs - rel.lhs
        elif isinstance(rel, sp.Lt):
            d = rel.rhs - rel.lhs - 1
        else:
            return rel
        if not all(s.is_integer for s in d.free_symbols):
            return rel
        return sp.Ge(sp.expand(d), 0)

    return cond.replace(lambda x: isinstance(x, sp.Ge | sp.Gt | sp.Le | sp.Lt), atom)


# The reasons the pages show under the two steps of a gradient chain.
CHAIN_RULE = "chain rule: local derivative times upstream gradient, summed over every use"
DELTAS_SUMMED = r"local derivatives taken: a bracket such as $[i = u]$ keeps one term of each sum"


def gradient_chain(gradient: Gradient, equations, upstream: Mapping | None = None):
    """``dV = sum over the lhs of dY * dY/dV = collapsed result``, proven by SymPy.

    The first line is the chain rule (given: the definition of the gradient
    of the cost through this layer's outputs), with the local derivatives
    unevaluated; SymPy evaluates them and sums the Kronecker deltas to prove
    the engine's result.
    """
    from .checked import Chain

    upstream = dict(upstream or {})
    var = gradient.wrt
    parts = []
    for lhs, rhs in equations:
        if not _occurrences(rhs, var):
            continue
        out = lhs.base if isinstance(lhs, Indexed) else lhs
        reread = any(_occurrences(r, out) for _, r in equations)  # a recurrence's total
        grad = (_gradient_base(out, _shape(out)) if reread
                else upstream.get(out, _gradient_base(out, _shape(out))))
        idx = lhs.indices if isinstance(lhs, Indexed) else ()
        seed = grad[idx] if idx else grad
        local = sp.Derivative(lhs, _element(var, gradient.indices))
        limits = [(s, 0, d - 1) for s, d in zip(idx, _shape(out), strict=True)]
        term = seed * sp.Derivative(rhs, _element(var, gradient.indices))
        parts.append((Sum(seed * local, *limits) if limits else seed * local,
                      Sum(term, *limits) if limits else term))
    outer = upstream.get(var)
    if outer is not None and any(
            (lhs.base if isinstance(lhs, Indexed) else lhs) == var for lhs, _ in equations):
        # a recurrent output: the upstream gradient plus what flows back through its reads
        parts.insert(0, (_element(outer, gradient.indices), _element(outer, gradient.indices)))
    shown = sp.Add(*[p for p, _ in parts])
    defs = {p: t for p, t in parts}
    resolve = in_range(gradient.ranges)

    def definitions(e):
        return resolve(e.xreplace(defs))

    chain = Chain(gradient.lhs, shown, CHAIN_RULE, definitions=definitions)
    return chain.step(gradient.expr, deltas_summed_reason(equations, var, gradient.indices))


def deltas_summed_reason(equations, var, indices) -> str:
    """The second step's reason, naming the brackets it sums: ``[i = u]`` for each
    read ``var[..., i, ...]`` of an entry ``var[..., u, ...]`` with another index."""
    if not indices:
        return DELTAS_SUMMED
    brackets = []
    for _, rhs in equations:
        for read in sorted(_occurrences(rhs, var), key=sp.default_sort_key):
            if not isinstance(read, Indexed):
                continue
            for at, wrt in zip(read.indices, indices, strict=False):
                pair = rf"[{latex(at)} = {latex(wrt)}]"
                if at != wrt and pair not in brackets:
                    brackets.append(pair)
    if not brackets or len(brackets) > 3:
        return DELTAS_SUMMED
    if len(brackets) == 1:
        return rf"local derivatives taken: the bracket ${brackets[0]}$ keeps one term of its sum"
    shown = ", ".join(f"${b}$" for b in brackets)
    return f"local derivatives taken: the brackets {shown} each keep one term of a sum"


def _element(var, idx):
    return var[idx] if idx else var
