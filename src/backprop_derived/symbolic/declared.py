"""A declared layer (``catalog.LayerDeclaration``) -> its forward and backward kernels.

The forward kernel is the catalog's equations as written, returning the
outputs and the saved intermediates. The backward kernel is the engine's
result for every input and parameter, in the order the engine completed the
gradients, with no compact form typed anywhere: an intermediate the
gradients read but the declaration does not save is recomputed first, from
its own equation, and a saved node ``S = a + b u(A)`` (a tanh, a logistic)
is read back where the engine's result computes ``u(A)`` again (``1 -
tanh(A)^2`` becomes ``1 - S^2``), each such rewrite proven by substituting
the node's definition. Each kernel's parameters are the arrays and scalars its
equations read, found from the expressions and ordered by the declaration
(upstream gradients, inputs, index arrays, saved, parameters, scalars); the runtime calls
them by keyword, so a layer never depends on their order. Statements that read
what the kernel writes at a shifted index (a recurrence) run in a loop over that
index, forwards or backwards, scheduled from the dependency graph
(:mod:`.scheduling`).
"""

from __future__ import annotations

import sympy as sp
from sympy import Indexed, IndexedBase

from .catalog import LayerDeclaration
from .checked import Chain
from .engine import DELTAS_SUMMED, backward, gradient_chain
from .index_printer import Assignment, IndexPrinter
from .kernels import Binding, Kernel
from .scheduling import schedule
from .taint import StepNotVerified

__all__ = ["declared_binding", "declared_kernels"]


def _label(base) -> str:
    """An array's name, or a scalar parameter's (a Symbol: alpha)."""
    return base.name if isinstance(base, sp.Symbol) else str(base.label)


def _reads(assignments) -> list[str]:
    """Labels of the arrays the assignments read and do not write, first use first."""
    written, found = set(), []
    for a in assignments:
        for x in sorted(a.expr.atoms(Indexed), key=sp.default_sort_key):
            label = _label(x.base)
            if label not in written and label not in found:
                found.append(label)
        for x in sorted(a.expr.free_symbols, key=str):  # scalar parameters read
            if (isinstance(x, sp.Symbol) and not x.is_integer and x.name not in written
                    and x.name not in found):
                found.append(x.name)
        written.add(a.target)
    return [f for f in found if f not in written]


def _params(assignments, order: list[str], scalars) -> tuple[str, ...]:
    """The kernel's parameters: what it reads, in the declaration's order."""
    printer = IndexPrinter()
    reads = _reads(assignments)
    unknown = [r for r in reads if r not in order and r not in {s.name for s in scalars}]
    if unknown:
        raise ValueError(f"the equations read {unknown}, which the declaration does not name")
    used = {s for a in assignments for s in a.expr.free_symbols}
    names = [printer.array_name(label) for label in order if label in reads]
    names += [s.name for s in scalars if s in used and s.name not in names]
    # a size no array carries (a stride, a window length): the caller passes it
    return tuple(names + [s for s in printer.missing_sizes(assignments) if s not in names])


def _upstream(layer: LayerDeclaration) -> dict:
    """An output that later equations read too (an LSTM's c_t, read by h_t) gets an
    upstream of its own, ``d<name>_out``; its total gradient ``d<name>`` adds what flows
    back through those reads. Every other output's upstream is ``d<name>``."""
    return {x: IndexedBase(f"d{_label(x)}_out", shape=x.shape, real=True)
            for x in layer.outputs if any(rhs.has(x) for _, rhs in layer.equations)}


def _saved_reads(layer: LayerDeclaration) -> list:
    """``(pattern, value, lhs, rhs)``: a saved node ``S = a + b u`` with ``u`` its one elementwise
    function (tanh(A), a logistic's tanh(A/2)) lets the backward pass read ``u`` as
    ``(S - a)/b`` instead of computing it again; indices are wild."""
    saved, rules = set(layer.saved), []
    for lhs, rhs in layer.equations:
        functions = rhs.atoms(sp.Function)
        if lhs.base not in saved or rhs.has(sp.Sum) or len(functions) != 1:
            continue
        u, t = functions.pop(), sp.Dummy()
        linear = rhs.xreplace({u: t})
        if linear.has(Indexed) or sp.diff(linear, t, 2) != 0:
            continue
        a, b = linear.subs(t, 0), sp.diff(linear, t)
        wild = {i: sp.Wild(f"w{k}") for k, i in enumerate(lhs.indices)}
        rules.append((u.xreplace(wild), ((lhs - a) / b).xreplace(wild), lhs, rhs))
    return rules


def _read_saved(gradient, layer: LayerDeclaration, rules):
    """The gradient's expression with the saved nodes read back (``_saved_reads``),
    proven equal to the engine's by substituting the nodes' definitions."""
    expr = gradient.expr
    for pattern, value, _, _ in rules:
        expr = expr.replace(pattern, value)
    if expr == gradient.expr:
        return expr
    if not expr.has(sp.Sum):
        expr = sp.factor_terms(sp.expand(expr))  # 1/4 - (2R - 1)^2/4 = R (1 - R)
    defs = {lhs.base: (lhs, rhs) for _, _, lhs, rhs in rules}

    def definitions(e):  # S[u, v] -> its equation's right-hand side at (u, v)
        def at(x):
            lhs, rhs = defs[x.base]
            return rhs.xreplace(dict(zip(lhs.indices, x.indices, strict=True)))
        return e.replace(lambda x: isinstance(x, Indexed) and x.base in defs, at)

    chain = Chain(gradient.lhs, gradient.expr, "engine result", definitions=definitions)
    return chain.step(expr, "saved intermediates read back").result


def _proven(gradient, equations, upstream=None):
    """The gradient's chain, proven by SymPy's own summation of the deltas or, where that
    sums out another index than the engine did (a window: j instead of p), through
    canonical sums over all integers (conv_forms.canonical), which compares the terms."""
    try:
        return gradient_chain(gradient, equations, upstream=upstream)
    except StepNotVerified:
        # the one equation that reads the array (a parameter read by one equation)
        readers = [(lhs, rhs) for lhs, rhs in equations
                   if any(x.base == gradient.wrt for x in rhs.atoms(Indexed))]
        if len(readers) != 1 or upstream:
            raise
    from .conv_forms import chain_rule_chain

    return chain_rule_chain(gradient, tuple(readers), gradient.wrt, DELTAS_SUMMED)


def declared_kernels(layer: LayerDeclaration, module: str, source: str, doc: str):
    """``(chains, forward, backward)``: the engine's proven gradient chains and both kernels."""
    eqs = layer.equations
    # selections first (saved, never differentiated: the engine sees them as inputs)
    forward = tuple(Assignment(_label(lhs.base), lhs.indices, rhs, shape=lhs.base.shape)
                    for lhs, rhs in (*layer.selections, *eqs))
    ups = _upstream(layer)
    grads = backward(eqs, [*layer.inputs, *layer.params], upstream=ups)
    chains = [_proven(g, eqs, ups) for g in grads.values()]
    rules = _saved_reads(layer)
    steps = [Assignment(_label(g.grad), g.indices, _read_saved(g, layer, rules),
                        shape=getattr(g.grad, "shape", None)) for g in grads.values()]
    saved = {_label(x) for x in layer.saved}
    defined = {_label(lhs.base): Assignment(_label(lhs.base), lhs.indices, rhs)
               for lhs, rhs in eqs}  # intermediates are arrays
    recomputed = []
    pending = [r for r in _reads(steps) if r in defined and r not in saved]
    while pending:  # an unsaved intermediate, and whatever unsaved ones it reads in turn
        label = pending.pop(0)
        if any(a.target == label for a in recomputed):
            continue
        recomputed.insert(0, defined[label])
        pending += [r for r in _reads([defined[label]]) if r in defined and r not in saved]
    body = tuple(sorted(recomputed, key=lambda a: list(defined).index(a.target))) + tuple(steps)
    upstream = [_label(ups[x]) if x in ups else f"d{_label(x)}" for x in layer.outputs]
    given = (*layer.inputs, *layer.indices, *layer.constants)  # the arrays passed in
    order_f = [_label(x) for x in (*given, *layer.params)]
    order_b = upstream + [_label(x) for x in (*given, *layer.saved, *layer.params)]
    returns_b = tuple(f"d{_label(x)}" for x in (*layer.inputs, *layer.params))
    # statements that carry a value from one step of an index to the next (an RNN's
    # H[t - 1]) are put in a loop over it, found from the equations (scheduling.py)
    fwd = Kernel(module, f"{layer.name}_forward", _params(forward, order_f, layer.scalars),
                 schedule(forward), f"{doc}: the catalog's equations, returning the outputs and the "
                 "saved intermediates.", f"{layer.name} forward, catalog equations", source,
                 style="index",
                 returns=_forward_returns(layer))
    bwd = Kernel(module, f"{layer.name}_backward", _params(body, order_b, layer.scalars),
                 schedule(body), f"{doc}: the gradients of the inputs and parameters, as the engine "
                 "derived them node by node.", f"{layer.name} backward, engine result", source,
                 style="index", returns=returns_b)
    return chains, fwd, bwd


def _forward_returns(layer: LayerDeclaration) -> tuple[str, ...]:
    """The outputs, then the saved intermediates that are not outputs already."""
    return tuple(dict.fromkeys(_label(x) for x in (*layer.outputs, *layer.saved)))


def declared_binding(layer: LayerDeclaration, module: str, source: str) -> Binding:
    """The declaration's roles as its kernels spell them, for the runtime layer: which
    arrays are inputs, parameters (with their catalog names, and how ``stacks`` groups
    them, with each part's shape), constants, saved, outputs (and the name of each
    one's upstream gradient), what each kernel returns, and which output is the next
    step's which input (``states``)."""
    name = IndexPrinter().array_name
    ups = _upstream(layer)

    def names(xs):
        return tuple(name(_label(x)) for x in xs)

    return Binding(module, layer.name, (
        ("kernels", (f"{layer.name}_forward", f"{layer.name}_backward")),
        ("inputs", names(layer.inputs)),
        ("params", names(layer.params)),
        # each parameter's catalog name (the runtime's params key), by kernel argument
        ("labels", tuple((name(_label(p)), _label(p)) for p in layer.params)),
        ("constants", names(layer.constants)),
        ("shapes", tuple((name(_label(p)), tuple(str(d) for d in p.shape))
                         for p in layer.params)),
        ("stacks", tuple((stack, names(parts)) for stack, parts in layer.stacks)),
        ("saved", names(layer.saved)),
        ("outputs", names(layer.outputs)),
        ("upstream", tuple(name(_label(ups[x])) if x in ups else name(f"d{_label(x)}")
                           for x in layer.outputs)),
        ("forward_returns", tuple(name(r) for r in _forward_returns(layer))),
        ("backward_returns", tuple(name(f"d{_label(x)}")
                                   for x in (*layer.inputs, *layer.params))),
        ("states", tuple((name(_label(a)), name(_label(b))) for a, b in layer.states)),
    ), source)
