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
# # Hidden layer
#
# A hidden weight $w_{ij}$ changes the error only through every output it
# feeds, so this time the sum over $k$ stays (eq. 7). The notation is that of
# the *Output layer* page. SymPy proves each line by expanding every
# definition, with $g$ kept as an arbitrary function.

# %%
import sympy as sp
from sympy import Sum, oo

from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.scalar_net import (
    a_hid,
    a_in,
    a_out,
    d,
    delta_hid,
    delta_out,
    error,
    expand_definitions,
    g_prime,
    i,
    j,
    k,
    t,
    w_in,
    w_out,
    z_hid,
    z_out,
)


def over_k(term):
    return Sum(term, (k, -oo, oo))


E = error()

# %% [markdown]
# ## The inner step: $\partial z_k / \partial w_{ij}$ (eq. 9)
#
# $z_k$ depends on $w_{ij}$ only through $a_j$: $z_k = b_k + \sum_j a_j w_{jk}$
# and $a_j = g(z_j)$ with $z_j = b_j + \sum_i a_i w_{ij}$ (eq. 8, corrected:
# see *Errata*).

# %%
dzk_dwij = Chain(sp.Symbol(r"\frac{\partial z_k}{\partial w_{ij}}"), d(z_out[k], w_in[i, j]),
                 "eq. (8)", definitions=expand_definitions)
dzk_dwij.step(w_out[j, k] * d(a_hid[j], w_in[i, j]), r"only $a_j$ depends on $w_{ij}$")
dzk_dwij.step(w_out[j, k] * g_prime(z_hid[j]) * d(z_hid[j], w_in[i, j]), "chain rule")
dzk_dwij.step(w_out[j, k] * g_prime(z_hid[j]) * a_in[i], "eq. (9)")
show(dzk_dwij, caption="The inner step, eq. (9)")

# %% [markdown]
# ## Weights into the hidden layer, $w_{ij}$ (eq. 7–11)

# %%
dE_dwij = Chain(sp.Symbol(r"\frac{\partial E}{\partial w_{ij}}"), d(E, w_in[i, j]), "eq. (1)",
                definitions=expand_definitions)
dE_dwij.step(over_k((a_out[k] - t[k]) * d(a_out[k], w_in[i, j])), r"every output depends on $w_{ij}$")
dE_dwij.step(over_k((a_out[k] - t[k]) * g_prime(z_out[k]) * d(z_out[k], w_in[i, j])),
             r"eq. (7): chain rule through $a_k = g(z_k)$")
dE_dwij.step(over_k((a_out[k] - t[k]) * g_prime(z_out[k]) * w_out[j, k] * g_prime(z_hid[j])
                    * a_in[i]), "eq. (10): eq. (9) substituted")
dE_dwij.step(a_in[i] * g_prime(z_hid[j]) * over_k(delta_out[k] * w_out[j, k]),
             r"eq. (10): factors free of $k$ leave the sum")
dE_dwij.step(delta_hid[j] * a_in[i], r"eq. (11), with $\delta_j = g'(z_j) \sum_k \delta_k w_{jk}$")
show(dE_dwij, caption="Weights into the hidden layer")

# %% [markdown]
# The recurrence
#
# $$\delta_j = g'(z_j) \sum_k \delta_k\, w_{jk}$$
#
# is backpropagation itself. Each output error $\delta_k$ travels back along
# the weight $w_{jk}$ that carried the signal forward. The hidden unit adds up
# what reaches it and scales that by its own slope $g'(z_j)$. Written for a
# whole layer, the sum over $k$ is a product with the weight matrix
# transposed. The *Vectorized* page explains why; the *Any depth* page proves
# that the same step works between any two layers.
#
# As code, this is (V3) followed by (V4) in the generated `layers.backpropagate`
# and `activations.<g>_backward`.

# %% [markdown]
# ## The same result, vectorized
#
# A hidden layer is a dense layer like any other, so its weight gradient is
# again the engine's (V1), now with the inputs $a_i$ of the network as the
# previous layer's outputs: example $i'$ of the batch reads
# $\delta_j = m\,dZ_{i'j}$ and $a_i = A_{i'i}$, and the weight $w_{ij}$ from
# input $i$ to unit $j$ is the runtime's $W_{ji}$. SymPy proves that the mean
# of this page's result over the batch is the engine's gradient:

# %%
from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.agreement import batch_mean
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.kernels import Agreement

dW = backward(catalog.DENSE, [catalog.W])[catalog.W]
dZ = next(x.base for x in dW.expr.atoms(sp.Indexed) if str(x.base.label) == "dZ")
example = {delta_hid: lambda ex, unit: catalog.m * dZ[ex, unit],
           a_in: lambda ex, unit: catalog.A[ex, unit]}
show(batch_mean(sp.Symbol("dW_{ji}"), dE_dwij.result, example, dW, (j, i),
                "(V1) from the engine"), caption="The same gradient for a batch")
EXPORTS = [Agreement("layers.weight_gradient", "derivations/03_hidden_layer.py",
                     "the hidden-layer weight gradient of the scalar derivation")]

# %% [markdown]
# ## Exercises
#
# Write $w_{jk}$, $a_j$, $a_i$, $\delta_j$ as `w_jk`, `a_j`, `a_i`,
# `delta_j`. The live engine proves your answer equal to the result derived
# above, or says what is off; the answer is one click away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, finite_sums, show_exercises, with_slope

hidden_sigmoid = with_slope(dzk_dwij.result, g_prime, "sigmoid", {z_hid: a_hid})
# delta_j of eq. (11) for sigmoid units, from the chain above (divided by its a_i)
delta_j = with_slope(dE_dwij.steps[4].expr / a_in[i], g_prime, "sigmoid", {z_hid: a_hid})
example = {a_hid[j]: 0.6, delta_out[0]: 0.1, delta_out[1]: -0.2,
           w_out[j, 0]: 0.5, w_out[j, 1]: 1.5}
show_exercises(
    Exercise(r"\(\partial z_k/\partial w_{ij}\) (eq. 9) when the hidden units are sigmoids, "
             r"in terms of \(w_{jk}\), \(a_j\) and \(a_i\).", hidden_sigmoid, indices=True,
             typed="w_jk*a_j*(1 - a_j)*a_i"),
    Exercise(r"\(\partial E/\partial w_{ij}\) in terms of \(\delta_j\) and \(a_i\).",
             dE_dwij.result, indices=True, rename=((r"\delta", "delta"),),
             typed="delta_j*a_i"),
    Exercise(r"\(\delta_j\) as a number: a sigmoid hidden unit with \(a_j = 0.6\) feeds two "
             r"output units with \(\delta_0 = 0.1\), \(\delta_1 = -0.2\) through the weights "
             r"\(w_{j0} = 0.5\), \(w_{j1} = 1.5\).",
             float(finite_sums(delta_j, 2).subs(example)), tolerance=1e-9),
)
