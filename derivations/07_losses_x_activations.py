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
import sympy as sp
from sympy import Sum

from backprop_derived.symbolic.catalog import ACTIVATIONS, LOSSES, a, output_pairs, y
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.entries import (
    chain_rule,
    cost_factor,
    derive_delta,
    loss_value,
    output_exports,
)
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/07_losses_x_activations.py"
k = sp.Symbol("k", integer=True)
# Both routes, and the loss values and kernels below, are functions of
# symbolic/entries.py that take a definition rather than its name in the
# catalog, so they take any one-line activation or loss the same way.


# %%
EXPORTS = []
DELTAS = {}
for loss, E in LOSSES.items():  # the chain rule through any elementwise g, once per loss
    show(chain_rule(loss, E), caption=f"{loss.replace('_', ' ')}, any elementwise output g")
for act, loss in output_pairs():
    chains = derive_delta(act, ACTIVATIONS[act], loss, LOSSES[loss])
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
VALUES = {}
for act, loss in output_pairs():
    chains, VALUES[act, loss] = loss_value(act, ACTIVATIONS[act], loss, LOSSES[loss])
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
dC_dL = cost_factor()
show(dC_dL, caption="The cost: where 1/m comes from")
PER_EXAMPLE = dC_dL.result

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
    EXPORTS += output_exports(act, ACTIVATIONS[act], loss, delta, VALUES[act, loss],
                              PER_EXAMPLE, SOURCE)
