"""A declared layer (``catalog.LayerDeclaration``) -> its forward and backward kernels.

The forward kernel is the catalog's equations as written, returning the
outputs and the saved intermediates. The backward kernel is the engine's
result for every input and parameter, in the order the engine completed the
gradients, with no compact form typed anywhere: an intermediate the
gradients read but the declaration does not save is recomputed first, from
its own equation. Each kernel's parameters are the arrays and scalars its
equations read, found from the expressions and ordered by the declaration
(upstream gradients, inputs, saved, parameters, scalars); the runtime calls
them by keyword, so a layer never depends on their order.
"""

from __future__ import annotations

import sympy as sp
from sympy import Indexed

from .catalog import LayerDeclaration
from .engine import DELTAS_SUMMED, backward, gradient_chain
from .index_printer import Assignment, IndexPrinter
from .kernels import Kernel
from .taint import StepNotVerified

__all__ = ["declared_kernels"]


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


def _proven(gradient, equations):
    """The gradient's chain, proven by SymPy's own summation of the deltas or, where that
    sums out another index than the engine did (a window: j instead of p), through
    canonical sums over all integers (conv_forms.canonical), which compares the terms."""
    try:
        return gradient_chain(gradient, equations)
    except StepNotVerified:
        # the one equation that reads the array (a parameter read by one equation)
        readers = [(lhs, rhs) for lhs, rhs in equations
                   if any(x.base == gradient.wrt for x in rhs.atoms(Indexed))]
        if len(readers) != 1:
            raise
    from .conv_forms import chain_rule_chain

    return chain_rule_chain(gradient, tuple(readers), gradient.wrt, DELTAS_SUMMED)


def declared_kernels(layer: LayerDeclaration, module: str, source: str, doc: str):
    """``(chains, forward, backward)``: the engine's proven gradient chains and both kernels."""
    eqs = layer.equations
    # selections first (saved, never differentiated: the engine sees them as inputs)
    forward = tuple(Assignment(_label(lhs.base), lhs.indices, rhs, shape=lhs.base.shape)
                    for lhs, rhs in (*layer.selections, *eqs))
    grads = backward(eqs, [*layer.inputs, *layer.params])
    chains = [_proven(g, eqs) for g in grads.values()]
    steps = [Assignment(_label(g.grad), g.indices, g.expr,
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
    upstream = [f"d{_label(x)}" for x in layer.outputs]
    order_f = [_label(x) for x in (*layer.inputs, *layer.constants, *layer.params)]
    order_b = upstream + [_label(x) for x in (*layer.inputs, *layer.constants, *layer.saved,
                                              *layer.params)]
    returns_b = tuple(f"d{_label(x)}" for x in (*layer.inputs, *layer.params))
    fwd = Kernel(module, f"{layer.name}_forward", _params(forward, order_f, layer.scalars),
                 forward, f"{doc}: the catalog's equations, returning the outputs and the "
                 "saved intermediates.", f"{layer.name} forward, catalog equations", source,
                 style="index",
                 returns=tuple(_label(x) for x in (*layer.outputs, *layer.saved)))
    bwd = Kernel(module, f"{layer.name}_backward", _params(body, order_b, layer.scalars),
                 body, f"{doc}: the gradients of the inputs and parameters, as the engine "
                 "derived them node by node.", f"{layer.name} backward, engine result", source,
                 style="index", returns=returns_b)
    return chains, fwd, bwd
