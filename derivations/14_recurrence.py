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
# # Recurrence: backpropagation through time
#
# A recurrent layer applies the same weights at every time step, and feeds
# each step's output back into the next step:
# $h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)$, with $h_{-1} = 0$,
# for every example of the batch. The layer returns every $h_t$, so the loss
# can depend on all of them.
#
# Backpropagation through time (BPTT) is nothing but the chain rule on this
# definition. What makes it look special is that $h_t$ is used twice: by the
# loss (directly) and by the next step $t + 1$. Its gradient therefore has two
# parts, and the second one comes from the *future*: the derivation runs
# backwards in time. That second part is the one a derivation that treats
# each step on its own drops ([A common mistake](#a-common-mistake) below
# shows what it costs); here the engine derives it from the catalog's
# definition and SymPy proves each line.

# %% tags=["hide-input"]
import numpy as np
import sympy as sp
from sympy import IndexedBase

from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.catalog import (
    RNN,
    RNN_A,
    RNN_B,
    RNN_HID,
    RNN_T,
    RNN_W_HH,
    RNN_W_IH,
    RNN_X,
)
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.declared import declared_binding, declared_kernels
from backprop_derived.symbolic.engine import backward, gradient_chain
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/14_recurrence.py"

# %% [markdown]
# ## The definition
#
# Two equations per step, as the catalog writes them: the pre-activation
# $A_{nte}$ of unit $e$ at time $t$ of example $n$, and its output
# $H_{nte}$. The previous step's output enters through the shifted index
# $t - 1$, and only from $t = 1$ on.

# %%
for (lhs, rhs), name in zip(RNN, ("The pre-activation of step t", "The output of step t"),
                            strict=True):
    show(Chain(lhs, rhs, "definition of the layer"), caption=name)

# %% [markdown]
# ## The engine's result
#
# The upstream gradient $dY_{nte} = \partial J/\partial H_{nte}$ is what the
# loss sends back to each returned output. The total gradient $dH$ adds what
# flows back from the next step, through $W_{hh}$; the engine finds both paths
# because $H$ appears on both sides of the definition. Each line is proven by
# SymPy differentiating the definition and summing the Kronecker deltas.

# %%
dY = IndexedBase("dY", shape=RNN_HID.shape, real=True)
grads = backward(RNN, [RNN_X, RNN_W_IH, RNN_W_HH, RNN_B], upstream={RNN_HID: dY})
UPSTREAM = {RNN_HID: dY}
NAMES = {RNN_HID: "the outputs h (total)", RNN_A: "the pre-activations", RNN_X: "the inputs",
         RNN_W_IH: "the input weights", RNN_W_HH: "the recurrent weights", RNN_B: "the biases"}
for x, name in NAMES.items():
    show(gradient_chain(grads[x], RNN, upstream=UPSTREAM), caption=f"Gradient with respect to {name}")

# %% [markdown]
# ## The BPTT recurrence
#
# Put the two together and write $\tanh'(A) = 1 - \tanh^2(A) = 1 - H^2$
# through the stored outputs. The error at the pre-activations of step $t$ is
# the error the loss sends to $h_t$ plus the error of step $t+1$ carried back
# through $W_{hh}$, scaled by the slope of step $t$:
#
# $$dA_t = \left(dY_t + [t + 1 < T]\; dA_{t+1} W_{hh}\right) \odot (1 - h_t^2).$$
#
# SymPy proves this compact form equal to the engine's two results:

# %%
dH, dA = grads[RNN_HID], grads[RNN_A]
u, v, w = dA.indices
e_ = sp.Symbol("e", integer=True)
dA_next = sp.Sum(dA.grad[u, v + 1, e_] * RNN_W_HH[e_, w], (e_, 0, catalog.RNN_H - 1))
compact = (dY[u, v, w] + sp.Piecewise((dA_next, v + 1 <= RNN_T - 1), (0, True))) * (
    1 - RNN_HID[u, v, w] ** 2)


def engine_results(e):
    """dH as the engine derived it, and H = tanh(A) (the definition)."""
    e = e.xreplace({dH.lhs: dH.expr})
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == RNN_HID,
                     lambda x: sp.tanh(RNN_A[x.indices]))


bptt = Chain(dA.lhs, dA.expr, "the engine's result", definitions=engine_results)
bptt.step(compact, r"$dH$ substituted, $\tanh' = 1 - h^2$")
show(bptt, caption="The BPTT recurrence")

# %% [markdown]
# ## A common mistake
#
# A derivation that treats each step on its own keeps only the loss's own
# error at each step, $dA_t = dY_t \odot (1 - h_t^2)$, and drops the error
# that comes back from step $t+1$. On a sequence of two steps with one unit,
# the input weight's gradient then misses the path from $w_{ih}$ through $h_0$
# into $h_1$. SymPy differentiates the two-step loss directly and shows the
# difference is that path, which is not zero:

# %%
x0, x1, wih, whh, bb, g0, g1 = sp.symbols("x_0 x_1 w_ih w_hh b dY_0 dY_1", real=True)
h0 = sp.tanh(x0 * wih + bb)
h1 = sp.tanh(x1 * wih + whh * h0 + bb)
J = g0 * h0 + g1 * h1  # a loss whose upstream gradients are dY_0, dY_1
per_step = g0 * (1 - h0**2) * x0 + g1 * (1 - h1**2) * x1  # dA_0 x_0 + dA_1 x_1
through_time = g1 * (1 - h1**2) * whh * (1 - h0**2) * x0  # what BPTT adds to dA_0 x_0
mistake = Chain(sp.Symbol(r"\frac{\partial J}{\partial w_{ih}} - \text{(per step)}"),
                sp.diff(J, wih) - per_step, "the exact derivative minus the per-step one")
mistake.step(through_time, "the path through $h_0$ into $h_1$")
show(mistake, caption="What the per-step derivation drops")
point = {x0: 1, x1: -1, wih: sp.Rational(1, 2), whh: sp.Rational(3, 4), bb: 0, g0: 1, g1: 1}
print(f"At x = (1, -1), w_ih = 1/2, w_hh = 3/4, b = 0, dY = (1, 1) the per-step "
      f"gradient is off by {float(through_time.subs(point)):.4f}.")

# %% [markdown]
# With one step the two agree; with two or more, every step's error also
# reaches the earlier steps through $W_{hh}$, which is what the $dA_{t+1}$
# term of the recurrence carries.

# %% [markdown]
# ## The kernels
#
# The kernels are the catalog's layer declaration, `RNN_LAYER`, printed as
# the engine derived it: the forward kernel runs the two equations above, the
# backward kernel the engine's $dH$ and $dA$, then its gradients of $X$,
# $W_{ih}$, $W_{hh}$ and $b$. No loop is written on this page. Because $A_t$
# reads $H$ at $t - 1$, the two forward equations cannot be evaluated for
# every step at once; the scheduler finds that cycle in the equations and
# runs them in a loop over $t$. In the gradient the read looks ahead
# ($dH_t$ reads $dA_{t+1}$), so $dH$ and $dA$ run in a loop from the last
# step back; the parameter gradients read every $dA_t$ and come after it.
#
# Inside a loop the printer computes ahead of time what a step does not wait
# for: the input term $x_t W_{ih}^\top + b$ for every step at once, one
# matrix product before the forward loop, and $1 - h_t^2$ before the backward
# one. The first step, where $[t \ge 1]$ is false, is printed apart, so no
# condition is tested per step. Both loops store their arrays step by step
# (time first), so that each step reads and writes contiguous memory; the
# returned $h$ is a view of that array in (batch, time, unit) order.

# %% tags=["hide-input"]
# The kernels: the declaration's equations and the engine's gradients; the time
# loops come from the read of H at t - 1 (symbolic/scheduling.py). The binding
# gives the runtime layer its parameter and argument names.
rnn_chains, RNN_FORWARD, RNN_BACKWARD = declared_kernels(
    catalog.RNN_LAYER, "recurrent", SOURCE,
    "A tanh RNN, h_t = tanh(x_t W_ih^T + h_(t-1) W_hh^T + b), h_(-1) = 0")
EXPORTS = [RNN_FORWARD, RNN_BACKWARD, declared_binding(catalog.RNN_LAYER, "recurrent", SOURCE)]
assert np  # the page's numbers are SymPy's; NumPy runs in the tests

# %% [markdown]
# ## Exercises
#
# A one-unit RNN, $h_t = \tanh(x_t W_{ih} + h_{t-1} W_{hh} + b)$, over two
# steps: $x = (1, 2)$, $W_{ih} = 0.5$, $W_{hh} = -1$, $b = 0$, and the
# upstream gradient of the two outputs $dY = (1, 0.5)$. The numbers come from
# the runtime layer, which runs this page's generated kernels. Give six
# significant digits; the answers are one click away.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived.layers import RNN
    from backprop_derived.symbolic.exercises import Exercise, show_exercises

    rnn = RNN(1, 1)
    rnn.params["W_ih"][:] = 0.5
    rnn.params["W_hh"][:] = -1.0
    rnn.params["b"][:] = 0.0
    X_ex = np.array([[[1.0], [2.0]]])
    H_ex = rnn.forward(X_ex)
    dX_ex = rnn.backward(np.array([[[1.0], [0.5]]]))
    show_exercises(
        Exercise(r"The second output \(h_1\).", float(H_ex[0, 1, 0]), tolerance=1e-5),
        Exercise(r"\(\partial L/\partial W_{hh}\), summed over both steps (backpropagation "
                 r"through time).", float(rnn.grads["W_hh"][0, 0]), tolerance=1e-5),
        Exercise(r"\(\partial L/\partial x_0\): the first input reaches the loss directly and "
                 r"through \(h_1\).", float(dX_ex[0, 0, 0]), tolerance=1e-5),
    )
