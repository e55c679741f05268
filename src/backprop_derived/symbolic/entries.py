"""From one catalog line to its kernels: what pages 01 and 07 export for an entry.

The Activations page calls :func:`activation_exports` for every elementwise
activation; the Losses × activations page calls :func:`chain_rule`,
:func:`derive_delta`, :func:`loss_value` and :func:`output_exports` for every
(output activation, loss) pair. Each takes the entry's *expression*, not its
name in the catalog, so a test can push an entry that is not in the catalog
through exactly the route ``regenerate`` takes (tests/test_one_line.py).

Where a search for a better form (a derivative through the output, an
overflow-free split, a cancellation) finds nothing, each function keeps the
plain result of the chain rule, which is proven like every other step.
"""

from __future__ import annotations

from functools import cache

import sympy as sp
from sympy import KroneckerDelta, Sum, oo

from .catalog import ACTIVATION_LAYER, L, a, fix_heaviside, m, z, zv
from .catalog import Z as Z_ARRAY
from .checked import Chain, StepNotVerified, assert_clean, expand_sums, float_form_is_exact
from .kernels import ActivationEntry, Kernel, OutputEntry
from .printers import RowMax, RowSum, latex, numeric_form
from .techniques import derive_activation, shift_exponentials, split_exponentials, to_batch

__all__ = [
    "activation_exports",
    "chain_rule",
    "cost_factor",
    "derive_delta",
    "is_elementwise_expr",
    "loss_value",
    "output_exports",
]

k = sp.Symbol("k", integer=True)
p, q = sp.symbols("p q", integer=True)
a_sym = sp.Symbol("a", real=True)
g_any = sp.Function("g", real=True)  # any elementwise activation
c = sp.Symbol("c", real=True)  # the row maximum of a shifted softmax
A, Y, Z = (sp.Symbol(n, real=True) for n in ("a", "y", "z"))
A_OUT = sp.Symbol("a_out", real=True)


def is_elementwise_expr(g: sp.Expr) -> bool:
    """An activation written in ``z`` alone; softmax is written in index form."""
    return not g.has(sp.Indexed)


# --- Activations (derivations/01_activations.py) -----------------------------

@cache
def _bp4() -> sp.Expr:
    """(V4) from the derivation engine, dZ = dA * g'(Z), for an undefined g."""
    from .engine import backward, to_elementwise

    bp4 = backward(ACTIVATION_LAYER, [Z_ARRAY])[Z_ARRAY]
    return to_elementwise(bp4, names={"dA": "da", "Z": "z"})


def bp4(derivative: sp.Expr) -> sp.Expr:
    """(V4) with this activation's g' in place of the undefined one."""
    return _bp4().subs(sp.Function("g'")(z), derivative)


def activation_exports(name: str, g: sp.Expr, source: str = "derivations/01_activations.py"):
    """``(chains, exports)`` of one elementwise activation: three kernels and its entry."""
    chains, forward, derivative = derive_activation(name, g, a_sym)
    exports = [
        Kernel("activations", name, ("z", "out", "scratch"), forward,
               f"a = {name}(z), elementwise, in a form that cannot overflow.",
               "Forward pass a = g(z)", source),
        Kernel("activations", f"{name}_derivative", ("a", "z", "out", "scratch"), derivative,
               f"g'(z) for {name}, written through a = g(z) where SymPy found such a form.",
               "Activation derivative", source),
        Kernel("activations", f"{name}_backward", ("da", "a", "z", "out", "scratch"),
               bp4(derivative),
               f"dZ = dA * g'(z) for {name}: the error at the layer's pre-activations.",
               "(V4), eq. (11) of the scalar derivation", source),
        ActivationEntry(name, name, f"{name}_derivative", f"{name}_backward",
                        needs_z=derivative.has(z), elementwise=True, latex=latex(g),
                        derivative_latex=latex(derivative)),
    ]
    return chains, exports


# --- Output deltas (derivations/07_losses_x_activations.py) ------------------

def activation_of(g: sp.Expr, index) -> sp.Expr:
    """a[index] as an expression of the pre-activations z[.]."""
    if is_elementwise_expr(g):
        return g.subs(z, zv[index])
    return g.subs({k: index})


def in_terms_of(g: sp.Expr):
    """The definition a_p = g(z_p), applied at every index of an expression."""
    return lambda e: e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                               lambda x: activation_of(g, x.indices[0]))


def of_any_g(e):
    """The definition a_q = g(z_q) for an arbitrary elementwise g."""
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                     lambda x: g_any(zv[x.indices[0]]))


def _per_unit(E: sp.Expr) -> sp.Expr:
    return E.xreplace({k: q})  # free the letter k for the unit we differentiate by


@cache
def chain_rule(loss: str, E: sp.Expr) -> Chain:
    """delta_k = dE/da_k g'(z_k), proven once per loss for every elementwise g."""
    E = _per_unit(E)
    direct = assert_clean(expand_sums(sp.diff(of_any_g(E), zv[k]).doit()),
                          f"{loss}, direct route", abstract=True)
    dE_da = expand_sums(sp.diff(E, a[k]).doit())  # a function of a_k and y_k only
    chain = Chain(sp.Symbol(r"\delta_k"), direct,
                  r"direct: $\partial E/\partial z_k$ with $a_q = g(z_q)$ substituted",
                  definitions=of_any_g)
    return chain.step(dE_da * sp.Derivative(g_any(zv[k]), zv[k]),
                      r"chain rule through $a_k = g(z_k)$")


def latex_name(act: str) -> str:
    return rf"$\mathrm{{{act}}}$".replace("_", r"\_")


def derive_delta(act: str, g: sp.Expr, loss: str, E: sp.Expr) -> list[Chain]:
    """The output delta of one pair, as the chains that prove it (the last one gives it)."""
    if is_elementwise_expr(g):
        general = chain_rule(loss, E)
        g_prime_k = derive_activation(act, g, a_sym)[2].subs({a_sym: a[k], z: zv[k]})
        delta = general.result.subs(sp.Derivative(g_any(zv[k]), zv[k]), g_prime_k)
        chain = Chain(sp.Symbol(r"\delta_k"), delta, f"{latex_name(act)}' from the Activations page")
        simpler = sp.factor(sp.cancel(delta))
        if not g_prime_k.has(zv[k]) and simpler != delta:  # a g' in z is already stable
            try:
                chain.step(simpler, "common factors cancelled")
            except StepNotVerified:
                pass  # nothing cancels that SymPy can prove: keep the plain chain rule
        return [chain]
    E = _per_unit(E)
    direct = assert_clean(fix_heaviside(expand_sums(sp.diff(in_terms_of(g)(E), zv[k]).doit())),
                          f"{act}/{loss}, direct route")
    dE_da = expand_sums(sp.diff(E, a[p]).doit())  # a function of a_p and y_p only
    chain = Chain(sp.Symbol(r"\delta_k"), direct,
                  r"direct: $\partial E/\partial z_k$ with $a = g(z)$ substituted",
                  definitions=in_terms_of(g), variables=(zv[k],))
    jac = expand_sums(sp.diff(activation_of(g, p), zv[k]).doit())
    jac_a = a[p] * (KroneckerDelta(p, k) - a[k])
    jacobian = Chain(sp.Symbol(r"\partial a_p/\partial z_k"), jac, rf"{act} differentiated by $z_k$",
                     definitions=in_terms_of(g))
    jacobian.step(jac_a, "written through the outputs")
    chain.step(Sum(dE_da * jac_a, (p, -oo, oo)), "chain rule through the Jacobian")
    chain.then(lambda e: sp.factor_terms(expand_sums(e)), r"the bracket $[k = p]$ keeps the one term $p = k$")
    return [jacobian, chain]


def per_element(expr, index):
    """Drop the sums over the units: the loss kernels sum the terms over the whole batch.

    Right only for a linear combination of sums over ``index``; anything
    else (a log of a sum, a product of sums) fails here, loudly.
    """
    sums = sorted((s for s in expr.atoms(Sum) if list(s.variables) == [index]),
                  key=sp.default_sort_key)
    marks = sp.symbols(f"_u0:{len(sums)}")
    marked = expr.xreplace(dict(zip(sums, marks, strict=True)))
    linear = all(sp.diff(marked, u, v) == 0 for u in marks for v in marks)
    if not sums or not linear or marked.subs(dict.fromkeys(marks, 0)) != 0:
        raise StepNotVerified(f"not a sum over the units {index}: {expr}")
    return expr.replace(lambda e: isinstance(e, Sum) and list(e.variables) == [index],
                        lambda e: e.function)


def loss_value(act: str, g: sp.Expr, loss: str, E: sp.Expr):
    """The per-unit terms of the loss in a form that cannot overflow, and its chains.

    A loss with a logarithm is evaluated from ``z`` where the exponentials
    of ``g`` can be split by the sign of ``z``; where they cannot (the split
    leaves an exponential that may overflow, or its proof fails), from
    ``a`` as every other loss is.
    """
    E = _per_unit(E)
    plain = to_batch(per_element(E, q))
    if not E.has(sp.log):
        return [], plain
    if is_elementwise_expr(g):
        term = per_element(E, q).replace(
            lambda e: isinstance(e, sp.Indexed),
            lambda e: g if e.base == a else sp.Symbol(str(e.base.label), real=True))
        try:
            stable = split_exponentials(term, z, "E_k")
        except StepNotVerified:
            return [], plain
        value = numeric_form(stable.result)
        if not float_form_is_exact(stable.result, value):
            raise StepNotVerified(f"{loss}/{act}: floating-point rewrite changed the loss")
        return [stable], value
    chain = Chain(sp.Symbol("E"), in_terms_of(g)(E), "definition of the loss, with $a = g(z)$")
    chain.then(expand_sums, "log of a quotient")

    def shift(e):
        sums = {s: sp.exp(c) * s.replace(lambda x: isinstance(x, sp.exp),
                                          lambda x: sp.exp(x.args[0] - c))
                for s in e.atoms(Sum) if isinstance(s.function, sp.exp)}
        return sp.powsimp(expand_sums(e.xreplace(sums)), combine="exp", deep=True)

    chain.then(shift, "log-sum-exp shifted by $c$")
    per_unit = sp.factor_terms(per_element(chain.result, q))  # y (c + log s - z): one product
    return [chain], to_batch(per_unit).subs(c, RowMax(Z))


def cost_factor(cost: sp.Expr | None = None) -> Chain:
    """dC/dL_s: the factor the cost puts on every example's loss (1/m for the mean).

    ``cost`` defaults to the catalog's ``COST`` as it is when called.
    """
    if cost is None:
        from . import catalog

        cost = catalog.COST
    s_ = sp.Symbol("s", integer=True)  # one example of the batch
    in_batch = {s_: (0, m - 1)}
    chain = Chain(sp.Symbol(r"\partial C/\partial L_s"), sp.diff(cost, L[s_]),
                  "derivative of the cost", ranges=in_batch)
    chain.then(lambda e: expand_sums(e, in_batch), r"the delta picks example $s$ of the batch")
    if chain.result.has(s_, L) or sp.diff(cost, L[s_], 2).doit() != 0:
        raise StepNotVerified(f"the cost must weigh every example's loss alike: {cost}")
    return chain


def output_exports(act: str, g: sp.Expr, loss: str, delta: sp.Expr, value: sp.Expr,
                   per_example: sp.Expr, source: str = "derivations/07_losses_x_activations.py"):
    """The loss and delta kernels of one pair (and a fused pass for softmax), and its entry."""
    batch_delta = numeric_form(to_batch(delta))
    name = f"{loss}__{act}"
    exports = []
    fused = None
    if not is_elementwise_expr(g):
        # One pass for the output layer: softmax, loss and delta share the
        # exponentials and row sums (a from the Activations page's batch form).
        shifted = shift_exponentials(g, c, sp.Symbol("a_k")).result
        a_batch = to_batch(shifted).subs(c, RowMax(Z))
        fused = f"{name}_output"
        exports.append(Kernel(
            "losses", fused,
            ("z", "y", "m", "a_out", "delta_out", "scratch", "rows", "units", "transposed"),
            # a is written first; the delta and the loss then read it back
            (("a_out", a_batch), ("delta_out", (per_example * batch_delta).subs(A, A_OUT)),
             ("return", (per_example * value).subs(A, A_OUT))),
            f"Output layer of {act} with {loss} in one pass: a, the delta of the cost, and "
            "the cost's data term.", "Forward pass, loss value and output delta", source,
            style="fused",
            kinds=(("z", "full"), ("y", "full"), ("a_out", "full"), ("m", "scalar"))))
    exports += [
        Kernel("losses", name, ("a", "z", "y", "m"), per_example * value,
               f"The cost's data term: the mean over the batch of the per-example {loss} "
               f"(output activation {act}).", "Loss value", source, style="scalar"),
        Kernel("losses", f"{name}_delta", ("a", "z", "y", "m", "out", "scratch"),
               per_example * batch_delta,
               f"Output delta of the cost, dC/dL * dE/dz, for {act} with {loss} (dC/dL "
               "from the catalog's COST, folded in before the GEMMs).",
               "Output-layer delta, eq. (5)-(6)", source,
               style="array" if batch_delta.has(RowSum) else "ufunc"),
        OutputEntry(act, loss, name, f"{name}_delta",
                    needs_z=bool(batch_delta.has(Z) or value.has(Z)), latex=latex(delta),
                    fused=fused),
    ]
    return exports

