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
# # Every layer by hand: worked numbers
#
# The layer pages derive each backward pass for every size. This page runs
# each layer on an input small enough to follow with a pencil (two or three
# values per axis), in the style of [One pass by hand](../lessons/numeric_pass.py),
# and prints what goes in and what comes out: the input $X$, the upstream
# gradient $dY$ (the error arriving from the layer above, fixed here), the
# output $Y$, and the gradients that the generated backward kernel returns.
#
# Each gradient is then checked against **central differences** of the
# scalar $\ell = \sum dY \odot Y$, whose gradient is exactly what
# `backward(dY)` computes: one entry at a time, $\partial\ell/\partial x
# \approx (\ell(x + h) - \ell(x - h))/2h$ with $h = 10^{-6}$, in float64. The
# check is on these numbers only (an example, not a proof; the proofs are on
# the layer pages), and its largest relative error is printed beside each
# layer.

# %% tags=["hide-input"]
import numpy as np
from IPython.display import Markdown, Math, display

from backprop_derived.layers import (
    GRU,
    LSTM,
    RNN,
    Activation,
    AvgPool1d,
    AvgPool2d,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    GroupNorm,
    LayerNorm,
    MaxPool1d,
    MaxPool2d,
    MultiHeadAttention,
    Residual,
    RMSNorm,
    SelfAttention,
)

H_STEP = 1e-6
TOLERANCE = 1e-7  # central differences: error about h^2 f''' + eps/h, well below this here


def small(shape, seed):
    """Numbers a reader can copy: one decimal, between -1 and 1."""
    return np.round(np.random.default_rng(seed).uniform(-1, 1, shape), 1)


def matrix(array) -> str:
    """A LaTeX matrix of an array, leading axes of length 1 dropped."""
    a = np.asarray(array, dtype=float)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim > 2:  # several matrices side by side
        return r",\ ".join(matrix(part) for part in a)
    rows = [" & ".join(f"{v:.4f}".rstrip("0").rstrip(".") if v != 0 else "0" for v in row)
            for row in a]
    return r"\begin{bmatrix}" + r" \\ ".join(rows) + r"\end{bmatrix}"


def loss_of(make, X, dY, change=None):
    """The scalar sum(dY * Y) for a fresh layer, after `change(layer)` if given."""
    layer = make()
    if change is not None:
        change(layer)
    return float(np.sum(dY * layer.forward(X)))


def central_differences(make, X, dY, differentiate_input):
    """Numerical d(sum dY*Y)/d(every parameter), and /dX if the input is real."""
    found = {}
    for key, value in make().params.items():
        grad = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            def nudge(layer, step, key=key, idx=idx):
                layer.params[key][idx] += step
            up = loss_of(make, X, dY, lambda layer, n=nudge: n(layer, H_STEP))
            down = loss_of(make, X, dY, lambda layer, n=nudge: n(layer, -H_STEP))
            grad[idx] = (up - down) / (2 * H_STEP)
        found[key] = grad
    if differentiate_input:
        grad = np.zeros_like(X)
        for idx in np.ndindex(X.shape):
            Xp, Xm = X.copy(), X.copy()
            Xp[idx] += H_STEP
            Xm[idx] -= H_STEP
            grad[idx] = (loss_of(make, Xp, dY) - loss_of(make, Xm, dY)) / (2 * H_STEP)
        found["X"] = grad
    return found


def relative_error(a, b) -> float:
    scale = max(float(np.max(np.abs(b))), 1e-12)
    return float(np.max(np.abs(a - b))) / scale


def work(title, make, X, note=""):
    """Run one layer on X, print its numbers, and check them by central differences."""
    layer = make()
    Y = layer.forward(X)
    dY = small(Y.shape, seed=100 + len(checked))
    dX = layer.backward(dY)
    real_input = np.issubdtype(np.asarray(X).dtype, np.floating)
    numeric = central_differences(make, X, dY, real_input)
    analytic = dict(layer.grads)
    if real_input:
        analytic["X"] = dX
    worst = max(relative_error(analytic[k], numeric[k]) for k in numeric)
    assert worst < TOLERANCE, (title, worst)
    display(Markdown(f"### {title}\n\n{note}"))
    # One matrix per displayed line, so that none is wider than a phone's column.
    display(Math("X = " + matrix(X)))
    display(Math("dY = " + matrix(dY)))
    display(Math("Y = " + matrix(Y)))
    for key, value in layer.params.items():
        name = r"\text{" + key.replace("_", r"\_") + "}"
        display(Math(f"{name} = {matrix(value)}"))
        display(Math(f"\\frac{{\\partial \\ell}}{{\\partial\\, {name}}} = "
                     f"{matrix(analytic[key])}"))
    if real_input:
        display(Math(r"\frac{\partial \ell}{\partial X} = " + matrix(dX)))
    display(Markdown(f"Largest relative difference from central differences: **{worst:.1e}** "
                     f"(example check, $h = 10^{{-6}}$)."))
    return worst


checked = {}

# %% [markdown]
# ## Dense and activation
#
# A dense layer $Y = XW^\top + b$ with two inputs and two outputs, on a batch
# of two examples; then a sigmoid on its own.

# %% tags=["hide-input"]
checked["Dense"] = work("Dense(2, 2)", lambda: Dense(2, 2, seed=1), small((2, 2), 1))
checked["Activation"] = work('Activation("sigmoid")', lambda: Activation("sigmoid"),
                             small((2, 3), 2))

# %% [markdown]
# ## Normalization
#
# Batch norm normalizes each column over the batch (three examples), layer
# norm each row over its units, RMS norm each row by its root mean square,
# group norm each group of channels of one example. $\gamma$ starts at 1 and $\beta$ at 0, so
# $Y$ is the normalized input itself; the gradients of $\gamma$ and $\beta$
# are $\sum_i dY_{ij}\hat X_{ij}$ and $\sum_i dY_{ij}$.

# %% tags=["hide-input"]
checked["BatchNorm"] = work("BatchNorm(2), training mode", lambda: BatchNorm(2),
                            small((3, 2), 3))
checked["LayerNorm"] = work("LayerNorm(3)", lambda: LayerNorm(3), small((2, 3), 4))
checked["RMSNorm"] = work("RMSNorm(3)", lambda: RMSNorm(3), small((2, 3), 12),
                          note="Each row is divided by its root mean square; no mean is "
                               "subtracted and there is no shift.")
checked["GroupNorm"] = work("GroupNorm(2, 4)", lambda: GroupNorm(2, 4), small((1, 4, 2), 13),
                            note="One example, four channels of two positions, in two "
                                 "groups of two channels: each group is normalized over "
                                 "its channels and positions together.")

# %% [markdown]
# ## Dropout, embedding, residual
#
# Dropout with $p = 1/2$ keeps each entry with probability one half and
# scales the kept ones by 2; the mask comes from the layer's seed, so every
# evaluation below draws the same one. The embedding looks up rows of its
# table $E$ (the input holds integer ids, which have no gradient). The
# residual block adds a dense layer's output to its input.

# %% tags=["hide-input"]
checked["Dropout"] = work("Dropout(0.5)", lambda: Dropout(0.5, seed=5), small((2, 3), 5))
checked["Embedding"] = work("Embedding(3, 2)", lambda: Embedding(3, 2, seed=6),
                            np.array([[0, 2, 0]]),
                            note="The id 0 appears twice, so its row of the gradient "
                                 "is the sum of two rows of $dY$.")
checked["Residual"] = work("Residual(Dense(2, 2))", lambda: Residual(Dense(2, 2, seed=7)),
                           small((2, 2), 7))

# %% [markdown]
# ## Self-attention
#
# One sequence of three positions with two features, one head of size two.

# %% tags=["hide-input"]
checked["SelfAttention"] = work("SelfAttention(d_model=2, d_head=2)",
                                lambda: SelfAttention(d_model=2, d_head=2, seed=8),
                                small((1, 3, 2), 8))
checked["MultiHeadAttention"] = work(
    "MultiHeadAttention(d_model=4, heads=2, causal=True)",
    lambda: MultiHeadAttention(4, 2, causal=True, seed=14), small((1, 3, 4), 14),
    note="Two heads of two features each: head 0 reads features 0-1 of $q = XW_q^T$, "
         "head 1 features 2-3. With `causal=True` the first query sees only the first key.")

# %% [markdown]
# ## Convolution
#
# A one-channel signal of four samples under a kernel of two taps, and a
# $3 \times 3$ image under a $2 \times 2$ kernel.

# %% tags=["hide-input"]
checked["Conv1d"] = work("Conv1d(1, 1, 2)", lambda: Conv1d(1, 1, 2, seed=9),
                         small((1, 1, 4), 9))
checked["Conv2d"] = work("Conv2d(1, 1, 2, 2)", lambda: Conv2d(1, 1, 2, 2, seed=10),
                         small((1, 1, 3, 3), 10))

# %% [markdown]
# ## Pooling
#
# Pooling has no parameters: only $\partial\ell/\partial X$ is printed. A
# window of two samples with stride two averages (each input sample receives
# half of its window's $dY$) or takes the largest sample (which receives all of
# it; the others receive 0). The inputs below have no two equal samples in a
# window, so the maximum does not change under the nudge $h$ and central
# differences apply; at a tie the gradient goes to the first largest sample,
# the rule stated on [Pooling](../derivations/15_pooling.py).

# %% tags=["hide-input"]
SIGNAL = np.array([[[0.3, -0.5, 0.9, 0.1, -0.2, 0.6]]])
IMAGE = np.array([[[[0.1, 0.8, -0.4, 0.2],
                    [-0.6, 0.3, 0.5, -0.9],
                    [0.7, -0.1, 0.0, 0.4],
                    [0.2, -0.3, -0.8, 0.6]]]])
checked["AvgPool1d"] = work("AvgPool1d(2)", lambda: AvgPool1d(2), SIGNAL)
checked["MaxPool1d"] = work("MaxPool1d(2)", lambda: MaxPool1d(2), SIGNAL,
                            note="The largest samples of the windows are "
                                 + ", ".join(f"{v:g}" for v in SIGNAL[0, 0].reshape(-1, 2).max(1))
                                 + ": only they receive a gradient.")
checked["AvgPool2d"] = work("AvgPool2d(2)", lambda: AvgPool2d(2), IMAGE)
checked["MaxPool2d"] = work("MaxPool2d(2)", lambda: MaxPool2d(2), IMAGE)

# %% [markdown]
# ## Recurrence
#
# A tanh RNN with two inputs and two hidden units over three time steps; $Y$
# holds the hidden state of every step.

# %% tags=["hide-input"]
checked["RNN"] = work("RNN(2, 2)", lambda: RNN(2, 2, seed=11), small((1, 3, 2), 11))

# %% [markdown]
# The gated cells of [Gated recurrence](../derivations/16_gated_recurrence.py),
# with one input and two hidden units over three steps. Their parameters are
# stacked as PyTorch stacks them: the GRU's $W_{ih}$ holds the reset, update and
# candidate blocks (r, z, n) one under the other, the LSTM's the input, forget,
# cell and output blocks (i, f, g, o).

# %% tags=["hide-input"]
checked["GRU"] = work("GRU(1, 2)", lambda: GRU(1, 2, seed=15), small((1, 3, 1), 15))
checked["LSTM"] = work("LSTM(1, 2)", lambda: LSTM(1, 2, seed=16), small((1, 3, 1), 16))

# %% [markdown]
# ## Every layer of the runtime is here

# %% tags=["hide-input"]
import backprop_derived.layers as layers  # noqa: E402

runtime = {name for name in layers.__all__ if name not in ("Layer", "Sequential")}
missing = sorted(runtime - set(checked))
summary = (f"{len(checked)} layers worked through; the largest relative difference from "
           f"central differences on this page is {max(checked.values()):.1e}. ")
# A layer added to the runtime without an example here is named, not hidden.
summary += (f"Not yet worked through here: {', '.join(f'`{n}`' for n in missing)}."
            if missing else "That is every layer `backprop_derived.layers` exports.")
display(Markdown(summary))
