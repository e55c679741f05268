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
# # Output layer
#
# We follow the scalar derivation of the Clever Machine tutorial (Dustin
# Stansbury, 2014; see [Sources](../../sources/#clever-machine), which lists
# its equations (1)–(12) as cited here). The network has one
# hidden layer. Inputs $a_i$ reach the hidden units through weights $w_{ij}$,
# giving $z_j = b_j + \sum_i a_i w_{ij}$ and $a_j = g(z_j)$. The hidden units
# reach the outputs through $w_{jk}$, giving $z_k = b_k + \sum_j a_j w_{jk}$
# and $a_k = g(z_k)$. The error is squared error against targets $t_k$ (its eq. 1):
#
# $$E = \frac12 \sum_{k} (a_k - t_k)^2 .$$
#
# Each line below rewrites the previous one. SymPy proves every rewrite by
# substituting all the definitions above (down to inputs, weights and biases)
# and showing that the difference is zero. The activation $g$ stays an
# undefined function, so the result holds for every differentiable $g$.
# A ✓ marks a proven step.

# %%
import sympy as sp

from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.scalar_net import (
    a_hid,
    a_out,
    b_out,
    d,
    delta_out,
    error,
    expand_definitions,
    g_prime,
    j,
    k,
    t,
    w_out,
    z_out,
)

E = error()

# %% [markdown]
# ## Weights into the output layer, $w_{jk}$
#
# Only the $k$-th term of the sum depends on $w_{jk}$, so the sum disappears
# (eq. 2). The target does not depend on the weight. Then the chain rule runs
# through $a_k = g(z_k)$ (eq. 3), and $\partial z_k / \partial w_{jk} = a_j$
# (eq. 4):

# %%
dE_dwjk = Chain(sp.Symbol(r"\frac{\partial E}{\partial w_{jk}}"), d(E, w_out[j, k]),
                "eq. (1)", definitions=expand_definitions)
dE_dwjk.step((a_out[k] - t[k]) * d(a_out[k], w_out[j, k]), r"eq. (2): only term $k$ survives")
dE_dwjk.step((a_out[k] - t[k]) * g_prime(z_out[k]) * d(z_out[k], w_out[j, k]),
             r"eq. (3): chain rule through $a_k = g(z_k)$")
dE_dwjk.step((a_out[k] - t[k]) * g_prime(z_out[k]) * a_hid[j], r"eq. (4): $\partial z_k/\partial w_{jk} = a_j$")
dE_dwjk.step(delta_out[k] * a_hid[j], r"eq. (5), with $\delta_k = (a_k - t_k)\, g'(z_k)$")
show(dE_dwjk, caption="Weights into the output layer")

# %% [markdown]
# $\delta_k$ collects every factor that carries the index $k$. It is the
# output error $a_k - t_k$ scaled by the slope $g'(z_k)$ of the output
# unit. Scaling by the slope is what "back-propagated through the activation"
# means: a unit in a flat part of $g$ passes back almost nothing. The weight's
# share of the blame is that signal times the activation $a_j$ that the
# weight multiplied on the way forward.
#
# ## Biases of the output layer, $b_k$
#
# The same chain, with $\partial z_k / \partial b_k = 1$ as the last factor (eq. 6):

# %%
dE_dbk = Chain(sp.Symbol(r"\frac{\partial E}{\partial b_{k}}"), d(E, b_out[k]), "eq. (1)",
               definitions=expand_definitions)
dE_dbk.step((a_out[k] - t[k]) * g_prime(z_out[k]) * d(z_out[k], b_out[k]),
            r"eq. (3) with $b_k$ in place of $w_{jk}$")
dE_dbk.step(delta_out[k], r"eq. (6): $\partial z_k/\partial b_k = 1$")
show(dE_dbk, caption="Output biases")

# %% [markdown]
# A bias is a weight on an input that is always 1, so its gradient is the
# error signal alone. The generated kernels compute these two results, for
# each (activation, loss) pair, on the *Losses × activations* page.

# %% [markdown]
# ## The same result, vectorized
#
# The code runs the *Vectorized* page's (V1) and (V2), which the derivation
# engine obtains from the catalog's dense layer. Read example $i$ of a batch:
# $\delta_k = m\,dZ_{ik}$ (the cost is the mean over the batch, so $dZ$
# carries a $1/m$), $a_j = A_{ij}$, and the weight $w_{jk}$ from unit $j$ to
# unit $k$ is the runtime's $W_{kj}$. SymPy proves that the mean of this
# page's results over the batch is the engine's gradient, for any batch size
# and width:

# %%
from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.agreement import batch_mean
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.kernels import Agreement

grads = backward(catalog.DENSE, [catalog.W, catalog.b])
dZ = next(x.base for x in grads[catalog.b].expr.atoms(sp.Indexed) if str(x.base.label) == "dZ")
example = {delta_out: lambda ex, unit: catalog.m * dZ[ex, unit],
           a_hid: lambda ex, unit: catalog.A[ex, unit]}
show(batch_mean(sp.Symbol("dW_{kj}"), dE_dwjk.result, example, grads[catalog.W], (k, j),
                "(V1) from the engine"),
     batch_mean(sp.Symbol("db_k"), dE_dbk.result, example, grads[catalog.b], (k,),
                "(V2) from the engine"),
     caption="The same gradients for a batch")
EXPORTS = [Agreement("layers.weight_gradient", "derivations/02_output_layer.py",
                     "the weight gradient of the scalar derivation"),
           Agreement("layers.bias_gradient", "derivations/02_output_layer.py",
                     "the bias gradient of the scalar derivation")]

# %% [markdown]
# ## Exercises
#
# Write $a_k$, $t_k$, $a_j$ as `a_k`, `t_k`, `a_j` (and $\delta_k$ as
# `delta_k`). The live engine proves your answer equal to the result derived
# above, or says what is off; the answer is one click away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, show_exercises, with_slope

sigmoid_out = with_slope(dE_dwjk.steps[3].expr, g_prime, "sigmoid", {z_out: a_out})
show_exercises(
    Exercise(r"\(\partial E/\partial w_{jk}\) when the output units are sigmoids, in terms "
             r"of \(a_k\), \(t_k\) and \(a_j\) only.", sigmoid_out, indices=True,
             typed="(a_k - t_k)*a_k*(1 - a_k)*a_j"),
    Exercise(r"The same gradient as a number: a sigmoid output unit with \(a_k = 0.8\) and "
             r"target \(t_k = 1\), fed by a hidden unit with \(a_j = 0.5\).",
             float(sigmoid_out.subs({a_out[k]: 0.8, t[k]: 1, a_hid[j]: 0.5})),
             tolerance=1e-9),
    Exercise(r"\(\partial E/\partial b_k\) of an output bias, in terms of \(\delta_k\).",
             dE_dbk.result, indices=True, rename=((r"\delta", "delta"),), typed="delta_k"),
)
