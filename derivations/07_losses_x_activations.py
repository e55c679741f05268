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
# $a = g(z)$ substituted: for an elementwise output once per loss, for an
# arbitrary $g$, after which each activation's $g'$ (proven on the Activations
# page) is put in; for softmax with its Jacobian, with index sums that hold for
# any number of units.
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
from functools import cache

import sympy as sp
from sympy import KroneckerDelta, Sum, oo

from backprop_derived.symbolic.catalog import (
    ACTIVATIONS,
    COST,
    LOSSES,
    L,
    a,
    fix_heaviside,
    is_elementwise,
    m,
    output_pairs,
    y,
    z,
    zv,
)
from backprop_derived.symbolic.checked import Chain, StepNotVerified, assert_clean, expand_sums
from backprop_derived.symbolic.kernels import Kernel, OutputEntry
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.printers import (
    RowMax,
    RowSum,
    float_form_is_exact,
    latex,
    numeric_form,
)
from backprop_derived.symbolic.techniques import (
    derive_activation,
    shift_exponentials,
    split_exponentials,
    to_batch,
)

SOURCE = "derivations/07_losses_x_activations.py"
j, k, p, q = sp.symbols("j k p q", integer=True)
a_sym = sp.Symbol("a", real=True)


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


g_any = sp.Function("g", real=True)  # any elementwise activation


def of_any_g(e):
    """The definition a_q = g(z_q) for an arbitrary elementwise g."""
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                     lambda x: g_any(zv[x.indices[0]]))


@cache
def chain_rule(loss: str) -> Chain:
    """delta_k = dE/da_k g'(z_k), proven once per loss for every elementwise g."""
    E = LOSSES[loss].xreplace({k: q})
    direct = assert_clean(expand_sums(sp.diff(of_any_g(E), zv[k]).doit()),
                          f"{loss}, direct route", abstract=True)
    dE_da = expand_sums(sp.diff(E, a[k]).doit())  # a function of a_k and y_k only
    chain = Chain(sp.Symbol(r"\delta_k"), direct, r"direct: $\partial E/\partial z_k$ with $a_q = g(z_q)$ substituted",
                  definitions=of_any_g)
    return chain.step(dE_da * sp.Derivative(g_any(zv[k]), zv[k]),
                      r"chain rule through $a_k = g(z_k)$")


@cache
def activation_derivative(act: str):
    return derive_activation(act, ACTIVATIONS[act], a_sym)[2]


def derive_delta(act: str, loss: str) -> list[Chain]:
    """The output delta of one pair, as the chains that prove it (the last one gives it)."""
    E = LOSSES[loss].xreplace({k: q})  # free the letter k for the unit we differentiate by
    if is_elementwise(act):
        general = chain_rule(loss)
        g_prime_k = activation_derivative(act).subs({a_sym: a[k], z: zv[k]})
        delta = general.result.subs(sp.Derivative(g_any(zv[k]), zv[k]), g_prime_k)
        chain = Chain(sp.Symbol(r"\delta_k"), delta,
                      f"{latex_name(act)}' from the Activations page")
        simpler = sp.factor(sp.cancel(delta))
        if not g_prime_k.has(zv[k]) and simpler != delta:  # a g' in z is already stable
            chain.step(simpler, "cancel")
        return [chain]
    direct = assert_clean(fix_heaviside(expand_sums(sp.diff(in_terms_of_z(act)(E), zv[k]).doit())),
                          f"{act}/{loss}, direct route")
    dE_da = expand_sums(sp.diff(E, a[p]).doit())  # a function of a_p and y_p only
    chain = Chain(sp.Symbol(r"\delta_k"), direct, r"direct: $\partial E/\partial z_k$ with $a = g(z)$ substituted",
                  definitions=in_terms_of_z(act), variables=(zv[k],))
    jac = expand_sums(sp.diff(activation_of(act, p), zv[k]).doit())
    jac_a = a[p] * (KroneckerDelta(p, k) - a[k])
    jacobian = Chain(sp.Symbol(r"\partial a_p/\partial z_k"), jac, f"{act} Jacobian",
                     definitions=in_terms_of_z(act))
    jacobian.step(jac_a, "written through the outputs")
    chain.step(Sum(dE_da * jac_a, (p, -oo, oo)), "chain rule through the Jacobian")
    chain.then(lambda e: sp.factor_terms(expand_sums(e)), "sum the Kronecker delta")
    return [jacobian, chain]


def latex_name(act: str) -> str:
    return rf"$\mathrm{{{act}}}$".replace("_", r"\_")


# %%
EXPORTS = []
DELTAS = {}
for loss in LOSSES:  # the chain rule through any elementwise g, once per loss
    show(chain_rule(loss), caption=f"{loss.replace('_', ' ')}, any elementwise output g")
for act, loss in output_pairs():
    chains = derive_delta(act, loss)
    show(*chains, caption=f"{act} output, {loss.replace('_', ' ')}")
    DELTAS[act, loss] = chains[-1].result

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
show(assumed, caption="Softmax with cross-entropy, targets summing to one")

# %% [markdown]
# ## Loss values that cannot overflow
#
# The loss is evaluated from whatever avoids $\log 0$ and $e^{1000}$. A loss
# without a logarithm (squared error, absolute error, Huber) is evaluated from
# $a$. A loss with one is evaluated from $z$: for an elementwise output, with
# the exponentials split by the sign of $z$ (binary cross-entropy with a sigmoid
# becomes $\max(z,0) - yz + \log(1 + e^{-|z|})$ in disguise); for softmax,
# through the log of a quotient and a log-sum-exp shifted by the row maximum $c$.

# %%
c = sp.Symbol("c", real=True)
A, Y, Z, A_OUT = (sp.Symbol(n, real=True) for n in ("a", "y", "z", "a_out"))


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


def loss_value(act: str, loss: str):
    """The per-unit terms of the loss in a form that cannot overflow, and its chains."""
    E = LOSSES[loss].xreplace({k: q})
    if not E.has(sp.log):
        return [], to_batch(per_element(E, q))
    if is_elementwise(act):
        term = per_element(E, q).replace(
            lambda e: isinstance(e, sp.Indexed),
            lambda e: ACTIVATIONS[act] if e.base == a else sp.Symbol(str(e.base.label), real=True))
        stable = split_exponentials(term, z, "E_k")
        value = numeric_form(stable.result)
        if not float_form_is_exact(stable.result, value):
            raise StepNotVerified(f"{loss}/{act}: floating-point rewrite changed the loss")
        return [stable], value
    chain = Chain(sp.Symbol("E"), in_terms_of_z(act)(E), "catalog definition, $a = g(z)$")
    chain.then(expand_sums, "log of a quotient")

    def shift(e):
        sums = {s: sp.exp(c) * s.replace(lambda x: isinstance(x, sp.exp),
                                          lambda x: sp.exp(x.args[0] - c))
                for s in e.atoms(Sum) if isinstance(s.function, sp.exp)}
        return sp.powsimp(expand_sums(e.xreplace(sums)), combine="exp", deep=True)

    chain.then(shift, "log-sum-exp shifted by $c$")
    per_unit = sp.factor_terms(per_element(chain.result, q))  # y (c + log s - z): one product
    return [chain], to_batch(per_unit).subs(c, RowMax(Z))


VALUES = {}
for act, loss in output_pairs():
    chains, VALUES[act, loss] = loss_value(act, loss)
    show(*chains, caption=f"The value of {loss.replace('_', ' ')} with a {act} output")

# %% [markdown]
# ## The cost: where $1/m$ comes from
#
# The network minimizes the cost $C$ of the catalog: the mean over the batch
# of the per-example losses $L_s$. Its derivative with respect to one
# example's loss is the factor that multiplies that example's output delta
# (the chain rule through $C$). $C$ is linear in the $L_s$, so the same
# factor turns the per-example losses into the cost's value.

# %%
s_ = sp.Symbol("s", integer=True)  # one example of the batch
in_batch = {s_: (0, m - 1)}
dC_dL = Chain(sp.Symbol(r"\partial C/\partial L_s"), sp.diff(COST, L[s_]),
              "derivative of the cost", ranges=in_batch)
dC_dL.then(lambda e: expand_sums(e, in_batch), r"the delta picks example $s$ of the batch")
show(dC_dL, caption="The cost: where 1/m comes from")
PER_EXAMPLE = dC_dL.result
if PER_EXAMPLE.has(s_, L) or sp.diff(COST, L[s_], 2).doit() != 0:
    raise StepNotVerified(f"the cost must weigh every example's loss alike: {COST}")

# %% [markdown]
# ## From these results to code
#
# Each pair gets a loss kernel and a delta kernel. A softmax output also gets
# one pass that computes $a$, the delta of the cost and its value together,
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
    value = VALUES[act, loss]
    name = f"{loss}__{act}"
    array_style = batch_delta.has(RowSum)
    fused = None
    if not is_elementwise(act):
        # One pass for the output layer: softmax, loss and delta share the
        # exponentials and row sums (a from the Activations page's batch form).
        shifted = shift_exponentials(ACTIVATIONS[act], c, sp.Symbol("a_k")).result
        a_batch = to_batch(shifted).subs(c, RowMax(Z))
        fused = f"{name}_output"
        EXPORTS.append(Kernel(
            "losses", fused,
            ("z", "y", "m", "a_out", "delta_out", "scratch", "rows", "units", "transposed"),
            # a is written first; the delta and the loss then read it back
            (("a_out", a_batch), ("delta_out", (PER_EXAMPLE * batch_delta).subs(A, A_OUT)),
             ("return", (PER_EXAMPLE * value).subs(A, A_OUT))),
            f"Output layer of {act} with {loss} in one pass: a, the delta of the cost, and "
            "the cost's data term.", "Forward pass, loss value and output delta", SOURCE,
            style="fused",
            kinds=(("z", "full"), ("y", "full"), ("a_out", "full"), ("m", "scalar"))))
    EXPORTS += [
        Kernel("losses", name, ("a", "z", "y", "m"), PER_EXAMPLE * value,
               f"The cost's data term: the mean over the batch of the per-example {loss} "
               f"(output activation {act}).", "Loss value", SOURCE, style="scalar"),
        Kernel("losses", f"{name}_delta", ("a", "z", "y", "m", "out", "scratch"),
               PER_EXAMPLE * batch_delta,
               f"Output delta of the cost, dC/dL * dE/dz, for {act} with {loss} (dC/dL "
               "from the catalog's COST, folded in before the GEMMs).",
               "Output-layer delta, eq. (5)-(6)", SOURCE,
               style="array" if array_style else "ufunc"),
        OutputEntry(act, loss, name, f"{name}_delta",
                    needs_z=bool(batch_delta.has(Z) or value.has(Z)), latex=latex(delta),
                    fused=fused),
    ]

# %% [markdown]
# ## Exercises
#
# The deltas are per unit: write $a$, $y$, $z$ for $a_k$, $y_k$, $z_k$. The
# live engine proves your answer equal to the delta derived above (case by
# case where there is a kink) or says what is off; the answer is one click
# away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, show_exercises

show_exercises(
    Exercise(r"\(\delta_k\) for a softplus output with squared error.",
             DELTAS["softplus", "squared_error"], typed="(a - y)*(1 - exp(-a))"),
    Exercise(r"\(\delta_k\) for a sigmoid output with binary cross-entropy.",
             DELTAS["sigmoid", "binary_cross_entropy"], typed="a - y"),
    Exercise(r"\(\delta_k\) for a tanh output with absolute error.",
             DELTAS["tanh", "absolute_error"], typed="sign(a - y)*(1 - a**2)"),
    Exercise(r"The factor \(\partial C/\partial L_s\) that multiplies every example's delta "
             r"in a batch of \(m = 32\) examples.", float(PER_EXAMPLE.subs(m, 32)),
             tolerance=1e-12),
)
