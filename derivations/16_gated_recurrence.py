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
# `weight_ih_l0` stacks them: rows $0, \dots, d_h - 1$ are the first gate's, and so on).
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
# $C$ is both an output of the step (the next step's $c_{t-1}$) and read by
# $H$: its gradient $dC$ is the upstream $dC_{out}$ that the next step sends
# back plus what flows back from $H$. The engine adds the two, as it adds
# the contributions of any node read twice; the declaration names the
# upstream (`dc_out`) because the kernel takes it.
#
# The backward kernels do not compute a gate again: where the engine's
# result has $1 - \tanh^2(A_n)$ or $(1 - \tanh^2(A_r/2))/4$, the kernel
# reads the saved node instead, $1 - N_n^2$ and $R(1 - R)$ (the saved node
# $S = a + b\,u$ gives $u = (S - a)/b$; each rewrite is proven by
# substituting the node's definition). That is why the declarations save
# the gates, $G$ and $\tanh(c_t)$ ($T_c$), and not the pre-activations.
#
# ## Through time
#
# The declaration names each cell's *states*: the output of a step that is
# the next step's input ($H \to H_p$ for the GRU; $H \to H_p$ and $C \to C_p$
# for the LSTM). That is all the time loop needs, and one loop serves both
# cells (`layers/recurrent.py`, which reads the declaration's roles from the
# constants `GRU_CELL` and `LSTM_CELL` that `regenerate` prints next to the
# kernels):
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

# %% [markdown]
# ## In the runtime
#
# `GRU(input_size, hidden_size)` and `LSTM(input_size, hidden_size)` take a
# batch of sequences $(N, T, d_{in})$ and return every $h_t$, $(N, T, d_h)$;
# their parameters are PyTorch's `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
# `bias_hh_l0`, here `W_ih`, `W_hh`, `b_ih`, `b_hh`, each gate's rows a view
# the kernels read. They compose in `Sequential` like any layer:

# %%
# `regenerate` runs the page to write the kernels, so it skips the cells that use them.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived.layers import GRU, LSTM, Dense, Sequential

    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 6, 2))
    Y = np.cumsum(X[..., :1], axis=1) / 3  # a running sum: the state must carry it
    for cell in (GRU, LSTM):
        model = Sequential([cell(2, 8, seed=0), Dense(8, 1, seed=0)], loss="squared_error")
        before = model.loss(X, Y)
        model.fit(X, Y, optimizer="adam", lr=0.02, epochs=40, batch_size=8, seed=0,
                  progress=False)
        print(f"{cell.__name__}: W_ih {model.layers[0].params['W_ih'].shape}, "
              f"loss {before:.4f} -> {model.loss(X, Y):.4f}")

# %% [markdown]
# ## Exercises
#
# One example, one input and one hidden unit ($d_{in} = d_h = 1$). Every
# weight and bias is zero except the input weight of one gate, so the gates
# are $\sigma(0) = 1/2$. The numbers come from the runtime's layers, which
# run the kernels this page exports.

# %%
if __name__ != "__derivation__":
    from backprop_derived.symbolic.exercises import Exercise, show_exercises

    def single(cell, gate_row):
        layer = cell(1, 1)
        layer.params = {k: np.zeros_like(v) for k, v in layer.params.items()}
        layer.params["W_ih"][gate_row] = 1.0  # the candidate's input weight
        return layer

    gru = single(GRU, 2)  # rows r, z, n: n's
    h_gru = gru.forward(np.array([[[1.0]]]))
    lstm = single(LSTM, 2)  # rows i, f, g, o: g's
    x_two = np.array([[[1.0], [1.0]]])
    h_lstm = lstm.forward(x_two)
    dx_lstm = lstm.backward(np.array([[[0.0], [1.0]]]))
    show_exercises(
        Exercise(r"A GRU whose only nonzero parameter is \(W_{in} = 1\) reads \(x_0 = 1\) "
                 r"from \(h_{-1} = 0\). What is \(h_0\)? (\(r = z = 1/2\).)",
                 float(h_gru[0, 0, 0]), tolerance=1e-12),
        Exercise(r"An LSTM whose only nonzero parameter is \(W_{ig} = 1\) reads "
                 r"\(x = (1, 1)\). What is \(h_1\)? (\(c_0 = g_0/2\), then "
                 r"\(c_1 = c_0/2 + g_1/2\).)", float(h_lstm[0, 1, 0]), tolerance=1e-12),
        Exercise(r"The same LSTM receives \(dY = (0, 1)\): the loss reads only \(h_1\). "
                 r"What is \(dX_0\)? It arrives only through the state \(c_0\), halved by "
                 r"\(f_1 = 1/2\).", float(dx_lstm[0, 0, 0]), tolerance=1e-12),
    )
