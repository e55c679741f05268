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
# # Gated recurrence: GRU and LSTM
#
# A gated cell is a recurrence like the [tanh RNN](14_recurrence.py) whose
# step is a few more equations: gates between 0 and 1 decide how much of the
# previous state to keep and how much of the new candidate to let in. The
# catalog writes **one time step** of each cell, as PyTorch's `nn.GRU` and
# `nn.LSTM` define it, with the weights split by gate (PyTorch's
# `weight_ih_l0` stacks them: rows $0..d_h-1$ are the first gate's, and so on).
# The engine differentiates the step; every line below is proven by SymPy.
# Nothing on this page is typed by hand but the definitions.
#
# The logistic function is written $\sigma(a) = (1 + \tanh(a/2))/2$, which
# equals $1/(1 + e^{-a})$ and whose derivative, $(1 - \tanh^2(a/2))/4$, is
# finite for every $a$.

# %% tags=["hide-input"]
from backprop_derived.symbolic.catalog import GRU_CELL, LSTM_CELL
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.declared import declared_binding, declared_kernels
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/16_gated_recurrence.py"

# %% [markdown]
# ## The GRU step
#
# Reset gate $r$, update gate $z$, candidate $n$ (here `Nn`, so as not to
# clash with the example index $n$); $X$ is the step's input $x_t$ and $H_p$
# the previous output $h_{t-1}$. $G = h_{t-1} W_{hn}^\top + b_{hn}$ is its own
# node because the reset gate scales it, bias included, as PyTorch does.

# %%
for lhs, rhs in GRU_CELL.equations:
    show(Chain(lhs, rhs, "catalog definition"))
gru_chains, GRU_FORWARD, GRU_BACKWARD = declared_kernels(
    GRU_CELL, "recurrent", SOURCE, "One GRU step (PyTorch's gate order r, z, n)")
show(*gru_chains, caption="One GRU step backwards, node by node")

# %% [markdown]
# ## The LSTM step
#
# Input gate $i$, forget gate $f$, cell candidate $g$ (`Gc`), output gate $o$;
# the step reads two states, $h_{t-1}$ ($H_p$) and $c_{t-1}$ ($C_p$), and
# returns two, $h_t$ and $c_t$.

# %%
for lhs, rhs in LSTM_CELL.equations:
    show(Chain(lhs, rhs, "catalog definition"))
lstm_chains, LSTM_FORWARD, LSTM_BACKWARD = declared_kernels(
    LSTM_CELL, "recurrent", SOURCE, "One LSTM step (PyTorch's gate order i, f, g, o)")
show(*lstm_chains, caption="One LSTM step backwards, node by node")

# %% [markdown]
# ## Through time
#
# The declaration names each cell's *states*: the output of a step that is
# the next step's input ($H \to H_p$ for the GRU; $H \to H_p$ and $C \to C_p$
# for the LSTM). That is all the time loop needs, and one loop serves both
# cells (`layers/recurrent.py`):
#
# * forward, $t = 0, \dots, T-1$: run the step with the states of step
#   $t - 1$ (zeros before the first), keep what the declaration saves;
# * backward, $t = T-1, \dots, 0$: the gradient reaching a state of step $t$
#   is what the loss sends to it ($dY_t$ for $h_t$, nothing for $c_t$) plus
#   what step $t+1$'s backward returned for its previous state ($dH_p$,
#   $dC_p$) — the path from the future that the [tanh RNN's
#   page](14_recurrence.py#a-common-mistake) shows a per-step derivation
#   drops; the step's parameter gradients are summed over $t$, since every
#   step uses the same weights.
#
# This is the chain rule on the unrolled graph: step $t$'s inputs are read
# only by step $t$, so the gradients that arrive at them are exactly these
# two terms.

# %%
EXPORTS = [GRU_FORWARD, GRU_BACKWARD, LSTM_FORWARD, LSTM_BACKWARD,
           declared_binding(GRU_CELL, "recurrent", SOURCE),
           declared_binding(LSTM_CELL, "recurrent", SOURCE)]
