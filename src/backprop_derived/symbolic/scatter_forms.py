"""Gather and scatter: layers that read an array at an index held in another array.

An embedding reads row ``ids[s]`` of its table, ``Y[s, d] = E[ids[s], d]``:
an ``Indexed`` index. Differentiating it leaves ``KroneckerDelta(u, ids[s])``
under the sum over ``s``, which the engine's :func:`.engine.collapse` cannot
sum out (no value of ``s`` solves ``ids[s] = u``: several ids may be equal,
or none). This module finishes that case without changing the engine:

* :func:`gather_backward` applies the same chain rule as
  :func:`.engine.backward` (SymPy's ``diff`` and the engine's ``collapse``
  for every other delta) and returns the engine's :class:`.engine.Gradient`
  with the id delta left under its sum, together with a :class:`.checked.Chain`
  that proves it from the chain rule;
* :func:`gather_form` and :func:`scatter_form` recognize the forward gather
  and that gradient and return :class:`GatherRows` / :class:`ScatterAddRows`,
  nodes that the array printers print as ``numpy.take`` and as an
  accumulation: the product of the one-hot matrix ``[ids[s] = u]`` (a SciPy
  sparse matrix, one entry per id) with ``values``, which adds the rows of
  repeated ids as ``numpy.add.at`` does. :func:`scatter_form` first proves
  that the node's entry, ``sum_s [ids[s] = u] values[s, v]``, equals the
  gradient.

Both nodes are used in an ``"index"`` kernel as the whole right-hand side of
an assignment with no indices (they produce the whole array), so the
printers need no change.
"""

from __future__ import annotations

import sympy as sp
from sympy import Indexed, IndexedBase, KroneckerDelta, Sum

from .checked import Chain, StepNotVerified, prove_equal
from .engine import CHAIN_RULE, Gradient, collapse, gradient_name

__all__ = ["GatherRows", "ScatterAddRows", "gather_backward", "gather_form", "scatter_form"]


class GatherRows(sp.Function):
    """``table[ids[s], :]`` for every ``s``: the rows named by ``ids``."""

    nargs = 2

    def _numpycode(self, printer):
        table, ids = (printer._print(a) for a in self.args)
        return f"numpy.take({table}, {ids}, axis=0)"


class ScatterAddRows(sp.Function):
    """``out[u, v] = sum_s [ids[s] = u] values[s, v]`` for ``rows`` rows ``u``.

    That sum is the matrix product ``A @ values`` of the one-hot matrix
    ``A[u, s] = [ids[s] = u]`` (``rows`` by ``N``, one 1 per column) with
    ``values``. ``A`` is printed as a ``scipy.sparse.coo_array`` with the
    entries at ``(ids[s], s)``, so the product is one pass over the ``N``
    rows of ``values`` that adds each into row ``ids[s]`` of a zeroed result,
    in the order of ``s`` and in the dtype of ``values`` (float32 stays
    float32). The result is the only array of ``rows`` rows it allocates,
    and the COO constructor rejects an id outside ``[0, rows)``.

    Chosen by measurement against ``numpy.add.at``, ``numpy.bincount`` over
    the flat (row, column) positions (which sums in float64 and casts back),
    sort + ``numpy.add.reduceat``, and CSR and CSC forms of ``A`` (CSC is as
    fast, but its product does not check the ids), from 10 to 10**6 rows, 1
    to 512 columns and 10 to 10**5 ids (SciPy 1.17; from 1.15,
    scipy/scipy#21240, a COO array times a dense one is one compiled loop,
    before that the same sums one column at a time). float32 sums in
    float32: a float64 sum would cost the upcast and the cast back that made
    the ``bincount`` form slow.
    """

    nargs = 3

    def _numpycode(self, printer):
        values, ids, rows = (printer._print(a) for a in self.args)
        n = f"{ids}.shape[0]"
        return (f"(scipy.sparse.coo_array((numpy.ones({n}, {values}.dtype), "
                f"({ids}, numpy.arange({n}))), shape=({rows}, {n})) @ {values})")

    def _latex(self, printer):
        values, ids, rows = (printer._print(a) for a in self.args)
        return rf"\operatorname{{scatter\_add}}_{{{rows}}}\left({ids}, {values}\right)"


def _gather_parts(lhs: Indexed, rhs: sp.Expr):
    """``(table, ids, row index)`` of ``lhs = table[ids[s], rest...]``, else an error."""
    if not (isinstance(rhs, Indexed) and isinstance(rhs.indices[0], Indexed)):
        raise NotImplementedError(f"{lhs} = {rhs} is not a gather table[ids[s], ...]")
    ids = rhs.indices[0]
    s = lhs.indices[0]
    if (ids.indices != (s,) or tuple(rhs.indices[1:]) != tuple(lhs.indices[1:])
            or len(lhs.indices) != 2):
        raise NotImplementedError(f"{lhs} = {rhs}: expected Y[s, d] = E[ids[s], d]")
    return rhs.base, ids.base, s


def gather_form(equation, names: dict[str, str] | None = None) -> GatherRows:
    """The forward ``Y[s, d] = E[ids[s], d]`` as ``GatherRows(e, ids)``."""
    names = dict(names or {})
    table, ids, _ = _gather_parts(*equation)
    return GatherRows(*(sp.Symbol(names.get(str(b.label), str(b.label).lower()))
                        for b in (table, ids)))


def gather_backward(equations, wrt: IndexedBase) -> tuple[Gradient, Chain]:
    """``dE`` of a gather, by the chain rule; the id delta stays under its sum.

    ``dE[u, v] = sum_{s, d} dY[s, d] dY[s, d]/dE[u, v]``: SymPy differentiates,
    :func:`.engine.collapse` sums out the delta of the ordinary index ``d``,
    and ``KroneckerDelta(u, ids[s])`` remains. The returned chain shows and
    proves the two steps.
    """
    (lhs, rhs), = equations
    table, _, _ = _gather_parts(lhs, rhs)
    if table != wrt:
        raise ValueError(f"{wrt} is not the table of {lhs} = {rhs}")
    out = lhs.base
    taken = lhs.free_symbols | rhs.free_symbols
    names = [n for n in ("u", "v", "w", "q") if n not in {str(x) for x in taken}]
    idx = tuple(sp.Symbol(n, integer=True) for n in names[: len(wrt.shape)])
    ranges = {x: (sp.Integer(0), n - 1) for x, n in zip(idx, wrt.shape, strict=True)}
    d_out = IndexedBase(gradient_name(out), shape=out.shape, real=True)
    limits = [(x, 0, n - 1) for x, n in zip(lhs.indices, out.shape, strict=True)]
    seed = d_out[lhs.indices]
    local = sp.diff(rhs, wrt[idx])
    raw = Sum(seed * local, *limits)
    expr = collapse(raw, ranges)
    if not expr.has(KroneckerDelta):
        raise ValueError(f"{lhs} = {rhs}: no id delta left, use engine.backward")
    grad = Gradient(wrt, IndexedBase(gradient_name(wrt), shape=wrt.shape, real=True), idx,
                    expr, ranges)

    def evaluate_derivative(e):
        return e.replace(lambda x: isinstance(x, sp.Derivative) and x.expr == lhs,
                         lambda x: sp.diff(rhs, *x.variables))

    chain = Chain(grad.lhs, Sum(seed * sp.Derivative(lhs, wrt[idx]), *limits), CHAIN_RULE,
                  definitions=evaluate_derivative, ranges=ranges)
    chain.step(raw, "differentiate the definition")
    chain.step(expr, "the bracket over the columns keeps one term: the row\'s own column")
    return grad, chain


def scatter_form(gradient: Gradient, rows: sp.Symbol,
                 names: dict[str, str] | None = None) -> ScatterAddRows:
    """``sum_s KroneckerDelta(u, ids[s]) * V[s, v]`` as ``ScatterAddRows(v, ids, rows)``.

    The node's defining entry is proven equal to the gradient (index sums)
    before it is returned.
    """
    names = dict(names or {})
    u, v = gradient.indices
    expr = gradient.expr
    if not (isinstance(expr, Sum) and len(expr.limits) == 1):
        raise NotImplementedError(f"not a scatter sum: {expr}")
    (s, _, _), = expr.limits
    deltas = [f for f in sp.Mul.make_args(expr.function) if isinstance(f, KroneckerDelta)]
    values = [f for f in sp.Mul.make_args(expr.function) if isinstance(f, Indexed)]
    if len(deltas) != 1 or len(values) != 1 or len(sp.Mul.make_args(expr.function)) != 2:
        raise NotImplementedError(f"not a plain scatter sum: {expr}")
    ids = next(a for a in deltas[0].args if a != u)
    val = values[0]
    if not (isinstance(ids, Indexed) and ids.indices == (s,) and val.indices == (s, v)):
        raise NotImplementedError(f"not a scatter over rows: {expr}")
    entry = Sum(KroneckerDelta(ids, u) * val, (s, 0, ids.base.shape[0] - 1))
    if prove_equal(entry, expr, ranges=gradient.ranges) is None:
        raise StepNotVerified(f"scatter entry {entry} differs from {expr}")

    def name(base):
        return sp.Symbol(names.get(str(base.label), str(base.label).lower()))

    return ScatterAddRows(name(val.base), name(ids.base), rows)
