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
# # Biases
#
# The Clever Machine derivation ([Sources](../../sources/#clever-machine))
# gets the bias gradients right, but its last section
# carries the wrong title and the wrong index (see *Errata*). Here are both
# bias gradients, each checked against the definitions.

# %%
import sympy as sp
from sympy import Sum, oo

from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.scalar_net import (
    a_out,
    b_hid,
    b_out,
    d,
    delta_hid,
    delta_out,
    error,
    expand_definitions,
    g_prime,
    j,
    k,
    t,
    w_out,
    z_hid,
    z_out,
)

E = error()

# %% [markdown]
# ## Output biases $b_k$ (eq. 6)

# %%
dE_dbk = Chain(sp.Symbol(r"\frac{\partial E}{\partial b_k}"), d(E, b_out[k]), "eq. (1)",
               definitions=expand_definitions)
dE_dbk.step((a_out[k] - t[k]) * g_prime(z_out[k]), r"only term $k$; $\partial z_k/\partial b_k = 1$")
dE_dbk.step(delta_out[k], "eq. (6)")
show(dE_dbk, caption="Output biases")

# %% [markdown]
# ## Hidden biases $b_j$ (eq. 12)
#
# The inner factor is $\partial z_k / \partial b_j = w_{jk}\, g'(z_j) \cdot 1$:
# the same as eq. (9), with $\partial z_j/\partial b_j = 1$ in place of $a_i$.

# %%
dzk_dbj = Chain(sp.Symbol(r"\frac{\partial z_k}{\partial b_j}"), d(z_out[k], b_hid[j]),
                "definition of z_k", definitions=expand_definitions)
dzk_dbj.step(w_out[j, k] * g_prime(z_hid[j]) * d(z_hid[j], b_hid[j]), "chain rule")
dzk_dbj.step(w_out[j, k] * g_prime(z_hid[j]), r"$\partial z_j/\partial b_j = 1$")
dE_dbj = Chain(sp.Symbol(r"\frac{\partial E}{\partial b_j}"), d(E, b_hid[j]), "eq. (1)",
               definitions=expand_definitions)
dE_dbj.step(Sum((a_out[k] - t[k]) * g_prime(z_out[k]) * w_out[j, k], (k, -oo, oo))
            * g_prime(z_hid[j]), "eq. (7) with the factor above")
dE_dbj.step(delta_hid[j], "eq. (12)")
show(dzk_dbj, dE_dbj, caption="Hidden biases")

# %% [markdown]
# In every layer the bias gradient is that layer's $\delta$. For a minibatch it
# is the sum of $\delta$ over the examples (V2); the generated
# `layers.bias_gradient` computes that sum as the product $\mathbf 1^\top dZ$
# with a vector of $m$ ones, one matrix-vector product.

# %% [markdown]
# ## The same result, vectorized
#
# The code runs the *Vectorized* page's (V2), which the derivation engine
# obtains from the catalog's dense layer. Read example $i$ of a batch,
# $\delta_k = m\,dZ_{ik}$ (the cost is the mean over the batch, so $dZ$
# carries a $1/m$). SymPy proves that the mean of this page's result over the
# batch is the engine's bias gradient, for any batch size and width:

# %%
from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.agreement import batch_mean
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.kernels import Agreement

db = backward(catalog.DENSE, [catalog.b])[catalog.b]
dZ = next(x.base for x in db.expr.atoms(sp.Indexed) if str(x.base.label) == "dZ")
show(batch_mean(sp.Symbol("db_k"), dE_dbk.result,
                {delta_out: lambda ex, unit: catalog.m * dZ[ex, unit]},
                db, (k,), "(V2) from the engine"), caption="The same gradient for a batch")
EXPORTS = [Agreement("layers.bias_gradient", "derivations/04_biases.py",
                     "the bias gradient of the scalar derivation")]

# %% [markdown]
# ## Exercises
#
# Write $a_k$, $t_k$, $a_j$, $w_{jk}$ as `a_k`, `t_k`, `a_j`, `w_jk`. The
# live engine proves your answer equal to the result derived above, or says
# what is off; the answer is one click away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, finite_sums, show_exercises, with_slope
from backprop_derived.symbolic.scalar_net import a_hid

out_bias = with_slope(dE_dbk.steps[1].expr, g_prime, "sigmoid", {z_out: a_out})
inner = with_slope(dzk_dbj.result, g_prime, "tanh", {z_hid: a_hid})
hidden_bias = with_slope(dE_dbj.steps[1].expr, g_prime, {z_out: "sigmoid", z_hid: "tanh"},
                         {z_out: a_out, z_hid: a_hid})
example = {a_hid[j]: 0.5, a_out[0]: 0.7, t[0]: 0, w_out[j, 0]: 2}
show_exercises(
    Exercise(r"\(\partial E/\partial b_k\) for a sigmoid output unit, in terms of \(a_k\) "
             r"and \(t_k\).", out_bias, indices=True, typed="(a_k - t_k)*a_k*(1 - a_k)"),
    Exercise(r"\(\partial z_k/\partial b_j\) when the hidden units are \(\tanh\), in terms of "
             r"\(w_{jk}\) and \(a_j\).", inner, indices=True, typed="w_jk*(1 - a_j**2)"),
    Exercise(r"\(\partial E/\partial b_j\) as a number: a \(\tanh\) hidden unit with "
             r"\(a_j = 0.5\) feeds one sigmoid output unit, \(a_0 = 0.7\), target \(t_0 = 0\), "
             r"through the weight \(w_{j0} = 2\).",
             float(finite_sums(hidden_bias, 1).subs(example)), tolerance=1e-9),
)
