# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Losses × activations
#
# The backward pass starts at the output layer with
# $\delta_k = \partial E / \partial z_k$, the error at the output
# pre-activations. This page derives it for **every** pair of output
# activation and loss that the runtime accepts, along two independent routes:
#
# * **direct**: substitute $a_p = g(z_p)$ into the loss and let SymPy
#   differentiate the whole thing with respect to $z_k$;
# * **chain rule**: $\delta_k = \sum_p \frac{\partial E}{\partial a_p}
#   \frac{\partial a_p}{\partial z_k}$. For an elementwise $g$ only $p = k$
#   survives, giving $\frac{\partial E}{\partial a_k}\, g'(z_k)$. For softmax every
#   $p$ contributes, through its Jacobian $a_p(\delta_{pk} - a_k)$.
#
# The chain-rule route is written through the outputs $a$, which is what
# the code has in hand. SymPy proves it equal to the direct route with
# $a = g(z)$ substituted.
#
# Readers of Nielsen's book keep asking why $g'$ disappears for some pairs.
# The chains below answer it, one captioned chain per pair, and the
# [Generated code](../../generated-code/) page collects the results in one
# table; the lesson [Why σ′ disappears](../../lessons/sigma_prime/) plots the
# consequence. For sigmoid with binary cross-entropy, and
# for softmax with cross-entropy, $\partial E/\partial a_k$ has exactly the
# denominator that $g'$ cancels, leaving $a_k - y_k$. Identity with
# squared error gives $a_k - y_k$ trivially. For every other pair, $g'$
# stays, and with it the slow learning of a saturated unit.

# %%
import sympy as sp
from sympy import KroneckerDelta, Sum, oo

from backprop_derived.symbolic.catalog import (
    ACTIVATIONS,
    LOSSES,
    a,
    fix_heaviside,
    is_elementwise,
    output_pairs,
    y,
    z,
    zv,
)
from backprop_derived.symbolic.checked import Chain, assert_clean, concretize
from backprop_derived.symbolic.kernels import Kernel, OutputEntry
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.printers import RowMax, RowSum, latex, numeric_form
from backprop_derived.symbolic.techniques import derive_activation, split_exponentials, to_batch

SOURCE = "derivations/07_losses_x_activations.py"
j, k, p, q = sp.symbols("j k p q", integer=True)
a_sym = sp.Symbol("a", real=True)
CONCRETE = concretize(3, free=(k,))  # a layer of 3 output units, every k


# %%
def activation_of(name: str, index) -> sp.Expr:
    """a[index] as an expression of the pre-activations z[.]."""
    g = ACTIVATIONS[name]
    if is_elementwise(name):
        return g.subs(z, zv[index])
    return g.subs({sp.Symbol("k", integer=True): index})


def in_terms_of_z(act: str):
    """The definition a_p = g(z_p), applied at every index of an expression."""
    return lambda e: e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                               lambda x: activation_of(act, x.indices[0]))


def derive_delta(act: str, loss: str) -> Chain:
    E = LOSSES[loss].xreplace({k: q})  # free the letter k for the unit we differentiate by
    direct = assert_clean(fix_heaviside(sp.diff(in_terms_of_z(act)(E), zv[k]).doit().doit()),
                          f"{act}/{loss}, direct route")
    dE_da = sp.diff(E, a[p]).doit()  # a function of a_p and y_p only
    chain = Chain(sp.Symbol(r"\delta_k"), direct, "direct: d/dz_k of the loss",
                  definitions=in_terms_of_z(act), variables=(zv[k],), instance=CONCRETE)
    if is_elementwise(act):
        _, _, g_prime = derive_activation(act, ACTIVATIONS[act], a_sym)
        g_prime_k = g_prime.subs({a_sym: a[k], z: zv[k]})
        chain.step(dE_da.subs(p, k) * g_prime_k, r"chain rule through $a_k = g(z_k)$")
        if not g_prime_k.has(zv[k]):  # a g' kept in z is already in its stable form
            chain.then(lambda e: sp.factor(sp.cancel(e)), "cancel")
    else:
        jac = sp.diff(activation_of(act, p), zv[k]).doit().doit()
        jac_a = a[p] * (KroneckerDelta(p, k) - a[k])
        jacobian = Chain(sp.Symbol(r"\partial a_p/\partial z_k"), jac, "softmax Jacobian",
                         definitions=in_terms_of_z(act), instance=concretize(3, free=(p, k)))
        jacobian.step(jac_a, "written through the outputs")
        show(jacobian)
        chain.step(Sum(dE_da * jac_a, (p, -oo, oo)), "chain rule through the Jacobian")
        chain.then(lambda e: sp.factor_terms(sp.expand(e.doit())), "sum the Kronecker delta")
    return chain


# %%
EXPORTS = []
DELTAS = {}
for act, loss in output_pairs():
    chain = derive_delta(act, loss)
    show(chain)
    DELTAS[act, loss] = chain.result

# %% [markdown]
# ### Softmax with cross-entropy: the assumption behind $a_k - y_k$
#
# The derived delta is $a_k \sum_p y_p - y_k$, not the familiar $a_k - y_k$.
# The two agree only when the targets of an example sum to one, as one-hot
# labels and probability vectors do. The generated code keeps the general
# form, so its gradient stays exact for any non-negative targets. The
# textbook form follows by substituting the assumption:

# %%
general = DELTAS["softmax", "cross_entropy"]
sum_y = next(iter(general.atoms(Sum)))
assumed = Chain(sp.Symbol(r"\delta_k"), general.subs(sum_y, 1), r"with $\sum_p y_p = 1$")
assumed.step(a[k] - y[k], "the textbook output delta")
show(assumed)

# %% [markdown]
# ## Loss values that cannot overflow
#
# The loss is evaluated from whatever avoids $\log 0$ and $e^{1000}$.
# Squared error is evaluated from $a$. Binary cross-entropy with a sigmoid output
# is evaluated from $z$, with the exponentials split by the sign of $z$. It
# becomes $\max(z,0) - yz + \log(1 + e^{-|z|})$ in disguise. Cross-entropy with
# softmax is evaluated from $z$ through a log-sum-exp shifted by the row maximum $c$.

# %%
zs, ys, c = sp.Symbol("z", real=True), sp.Symbol("y", real=True), sp.Symbol("c", real=True)
bce = -(ys * sp.log(ACTIVATIONS["sigmoid"]) + (1 - ys) * sp.log(1 - ACTIVATIONS["sigmoid"]))
bce_stable = split_exponentials(bce, z, "E")
show(bce_stable)

ce = in_terms_of_z("softmax")(LOSSES["cross_entropy"].xreplace({k: q}))
lse = sp.log(Sum(sp.exp(zv[j]), (j, -oo, oo)))
ce_chain = Chain(sp.Symbol("E"), ce, "catalog definition", instance=concretize(3))
ce_chain.step(Sum(y[q] * (lse - zv[q]), (q, -oo, oo)), "log of a quotient")
shifted_lse = c + sp.log(Sum(sp.exp(zv[j] - c), (j, -oo, oo)))
ce_chain.step(Sum(y[q] * (shifted_lse - zv[q]), (q, -oo, oo)), "log-sum-exp shifted by c")
show(ce_chain)


# %%
def per_element(expr, index):
    """Drop the sum over the units: the scalar kernel sums over the whole batch."""
    return expr.replace(lambda e: isinstance(e, sp.Sum) and list(e.variables) == [index],
                        lambda e: e.function)


A, Y, Z, SCALE, A_OUT = (sp.Symbol(n, real=True) for n in ("a", "y", "z", "scale", "a_out"))
VALUES = {
    "squared_error": to_batch(per_element(LOSSES["squared_error"], k)),
    "binary_cross_entropy": numeric_form(bce_stable.result),
    "cross_entropy": to_batch(per_element(ce_chain.result, q)).subs(c, RowMax(Z)),
}

# %% [markdown]
# ## From these results to code
#
# Each pair gets a loss kernel and a delta kernel. A softmax output also gets
# one pass that computes $a$, the scaled delta and the summed loss together,
# sharing the exponentials and the row sums (the Generated code page shows it).
# In that pass a sum over the units of one example, $\sum_k x_k$, is the
# product $x\,\mathbf{1}$ with a ones vector over the units. That is the same
# device as $db = \mathbf{1}^\top dZ$ in (BP2), and BLAS does it as a
# matrix-vector product. The row maximum $c$ is taken over a transposed copy, so
# the reduction runs along the batch. Both replace NumPy reductions along rows
# of a few units, which cost more than the rest of the output layer (see the
# Performance page).

# %%
for (act, loss), delta in DELTAS.items():
    batch_delta = numeric_form(to_batch(delta))
    value = VALUES[loss]  # squared error: from a, whatever the activation
    name = f"{loss}__{act}"
    array_style = batch_delta.has(RowSum)
    fused = None
    if not is_elementwise(act):
        # One pass for the output layer: softmax, loss and delta share the
        # exponentials and row sums (a from the Activations page's batch form).
        shifted = ACTIVATIONS[act].replace(lambda e: isinstance(e, sp.exp),
                                           lambda e: sp.exp(e.args[0] - c))
        a_batch = to_batch(shifted).subs(c, RowMax(Z))  # shift proven on the Activations page
        fused = f"{name}_output"
        EXPORTS.append(Kernel(
            "losses", fused,
            ("z", "y", "scale", "a_out", "delta_out", "scratch", "rows", "units", "transposed"),
            # a is written first; the delta and the loss then read it back
            (("a_out", a_batch), ("delta_out", (SCALE * batch_delta).subs(A, A_OUT)),
             ("return", value.subs(A, A_OUT))),
            f"Output layer of {act} with {loss} in one pass: a, scale * delta, and the "
            "summed loss.", "Forward pass, loss value and output delta", SOURCE,
            style="fused",
            kinds=(("z", "full"), ("y", "full"), ("a_out", "full"), ("scale", "scalar"))))
    EXPORTS += [
        Kernel("losses", name, ("a", "z", "y"), value,
               f"Sum over the batch of the per-example {loss} (output activation {act}).",
               "Loss value", SOURCE, style="scalar"),
        Kernel("losses", f"{name}_delta", ("a", "z", "y", "scale", "out", "scratch"),
               SCALE * batch_delta,
               f"Output delta dE/dz for {act} with {loss}, times scale (= 1/m, folded in "
               "before the GEMMs).", "Output-layer delta, eq. (5)-(6)", SOURCE,
               style="array" if array_style else "ufunc"),
        OutputEntry(act, loss, name, f"{name}_delta",
                    needs_z=bool(batch_delta.has(Z) or value.has(Z)), latex=latex(delta),
                    fused=fused),
    ]
