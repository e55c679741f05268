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
# # Pooling
#
# A pooling layer summarises each window of $k$ neighbouring inputs of a
# channel by one number: their mean (average pooling) or their largest value
# (max pooling). Windows start every $s$ positions (the *stride*; PyTorch's
# default is $s = k$, windows side by side), so an input of length $L$ gives
# $P = \lfloor (L - k)/s \rfloor + 1$ outputs, and the inputs after the last
# window are read by none. There are no parameters; the backward pass only
# routes the upstream gradient back to the inputs each window read.
#
# Each layer is written in the catalog as its equation and a declaration
# (`catalog.AVG_POOL1D`, ...), and goes the route of every declared layer: the
# engine differentiates it, and the index printer prints both kernels. The
# new part is the index $s p + j$: a stride times an output position plus a
# tap of the window.

# %% tags=["hide-input"]
import sympy as sp
from sympy import Indexed

from backprop_derived.symbolic.catalog import (
    AVG_POOL1D,
    AVG_POOL2D,
    MAX_POOL1D,
    MAX_POOL2D,
    POOL_K,
    POOL_L,
    POOL_S,
)
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.declared import declared_kernels
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/15_pooling.py"

# %% [markdown]
# ## Average pooling
#
# Output $p$ of channel $c$ is the mean of the window
# $X_{n,c,sp}, \dots, X_{n,c,sp+k-1}$:

# %%
(Y_ncp, avg_rhs), = AVG_POOL1D.equations
show(Chain(Y_ncp, avg_rhs, "definition of the layer"))
avg_chains, AVG1_FORWARD, AVG1_BACKWARD = declared_kernels(
    AVG_POOL1D, "pool", SOURCE, "Average pooling over windows of k, stride s, of (N, C, L)")
show(*avg_chains, caption="average pooling, input gradient")

# %% [markdown]
# Input $w$ receives $dY_p / k$ from every window that reads it: every $p$
# with $0 \le w - sp \le k - 1$ (the bracket is the condition the engine
# keeps after summing out the delta $[sp + j = w]$ over the taps $j$). With
# $s = k$ exactly one window reads each input of the tiled part, and none
# reads the rest; with $s < k$ the windows overlap and an input collects
# several shares; with $s > k$ some inputs fall between windows.
#
# The 2-d layer, on $(N, C, H, W)$, does the same along both spatial axes
# with a $k \times k$ window and one stride for both:

# %%
(Y2, avg2_rhs), = AVG_POOL2D.equations
show(Chain(Y2, avg2_rhs, "definition of the layer"))
avg2_chains, AVG2_FORWARD, AVG2_BACKWARD = declared_kernels(
    AVG_POOL2D, "pool", SOURCE, "Average pooling over k x k windows, stride s, of (N, C, H, W)")
show(*avg2_chains, caption="2-d average pooling, input gradient")

# %% [markdown]
# ## Max pooling, and the tie rule
#
# The largest entry of a window is written as the entry a *selection* picks:
# $S_{n,c,p,j}$ is 1 at the first tap $j$ of window $p$ where $X$ is
# largest and 0 at the others, and $Y_{n,c,p} = \sum_{j=0}^{k-1} S_{n,c,p,j}\,
# X_{n,c,sp+j}$. Wherever the maximum of a window is unique, a small change
# of $X$ does not change which tap holds it, so $S$ is constant there and
# its derivative is 0: the catalog declares it a selection, computed in the
# forward pass, saved, and never differentiated. Where several taps tie,
# $Y$ has no derivative; the rule stated once in the catalog (`FirstMax`)
# sends the whole gradient to the first of them (in 2-d the first in
# row-major order), as PyTorch's max pooling does.

# %%
(S_ncpj, first_max), = MAX_POOL1D.selections
(Ym, max_rhs), = MAX_POOL1D.equations
show(Chain(S_ncpj, first_max, "the selection: one-hot of the first largest tap"),
     Chain(Ym, max_rhs, "definition of the layer"))
max_chains, MAX1_FORWARD, MAX1_BACKWARD = declared_kernels(
    MAX_POOL1D, "pool", SOURCE, "Max pooling over windows of k, stride s, of (N, C, L)")
show(*max_chains, caption="max pooling, input gradient")

# %% [markdown]
# Input $w$ receives $dY_p$ from each window $p$ that reads it *and* selected
# it: the selection is read at tap $w - sp$, the tap through which window
# $p$ reads input $w$.

# %%
max2_chains, MAX2_FORWARD, MAX2_BACKWARD = declared_kernels(
    MAX_POOL2D, "pool", SOURCE, "Max pooling over k x k windows, stride s, of (N, C, H, W)")
show(*max2_chains, caption="2-d max pooling, input gradient")

# %% [markdown]
# ## Counting: every input of the tiled part has one window when $s = k$
#
# The bracket of the input gradient, summed over the windows, counts the
# windows that read input $w$. On a finite instance (here $L = 7$, $k = 2$)
# SymPy evaluates it: with $s = k$ each of the first $P \cdot k = 3 \cdot 2 = 6$ inputs is read
# once and the last one never; with $s = 1$ the inner inputs are read twice.

# %%
dx_expr, w = AVG1_BACKWARD.expr[-1].expr, AVG1_BACKWARD.expr[-1].indices[2]
ones = dx_expr.replace(lambda x: isinstance(x, Indexed), lambda x: sp.Integer(1))
P = next(s for s in ones.free_symbols if s.name == "P")


def windows(stride):
    count = ones * POOL_K  # drop the 1/k: each term counts one window
    sizes = {POOL_K: 2, POOL_S: stride, POOL_L: 7}
    sizes[P] = (sizes[POOL_L] - 2) // stride + 1
    return [int(count.xreplace(sizes).xreplace({w: value}).doit()) for value in range(7)]


show(Chain(sp.Symbol("n_{s=2}"), sp.Matrix([windows(2)]), "windows reading w = 0, ..., 6, s = k"),
     Chain(sp.Symbol("n_{s=1}"), sp.Matrix([windows(1)]), "windows reading w = 0, ..., 6, s = 1"))
assert windows(2) == [1, 1, 1, 1, 1, 1, 0] and windows(1) == [1, 2, 2, 2, 2, 2, 1]

# %% [markdown]
# ## Kernels
#
# Two generic primitives of the index printer print these results (no code
# on this page or in the printer is specific to pooling):
#
# * **Forward.** An entry read at $X_{n,c,sp+j}$ with $j$ over a window of
#   $k$ taps is the view `sliding_window_view(x, (k,), axis=(2,))[:, :, 0::s]`
#   of every window, every $s$-th one; the window's axis $j$ comes last. The
#   sum over $j$ (average) is a reduce along that axis; the selection is
#   `numpy.argmax` along it (the first largest, the tie rule) read off the
#   rows of an identity matrix.
# * **Backward.** A sum over $p$ under the bracket $[\,lo \le w - sp \le hi\,]$
#   is a *tap scatter*: the gradient starts at zeros, and for each tap $j$ the
#   strided slice `dx[..., j : j + s(P-1) + 1 : s]` (the inputs $w = sp + j$
#   for every $p$) adds the summand at $w = sp + j$, an array over $p$ (for
#   max pooling, $dY$ times the selection's slice at tap $j$). The loop runs
#   over the $k$ taps (the $k^2$ taps in 2-d), each step one NumPy
#   operation over the whole batch.
#
# Three kinds of number are parameters of the kernels, passed by the layer
# by name: the stride $s$; the window size $k$ where no array has an axis of
# that length to read it from; and, in the backward pass, the input's spatial
# sizes, which $dY$ does not carry.

# %%
EXPORTS = [AVG1_FORWARD, AVG1_BACKWARD, AVG2_FORWARD, AVG2_BACKWARD,
           MAX1_FORWARD, MAX1_BACKWARD, MAX2_FORWARD, MAX2_BACKWARD]

# %% [markdown]
# ## Exercises
#
# One example, one channel, windows of $k = 2$ with the default stride
# $s = k$. The numbers come from the runtime's layers, which run the kernels
# this page exports; the answers are one click away without the live engine.

# %%
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived.layers import AvgPool1d, MaxPool1d
    from backprop_derived.symbolic.exercises import Exercise, show_exercises, tex_matrix

    x_avg = np.array([[[1.0, 3.0, -2.0, 4.0, 5.0]]])
    y_avg = AvgPool1d(2).forward(x_avg)
    x_max = np.array([[[1.0, 3.0, 4.0, -2.0, 5.0]]])
    pool = MaxPool1d(2)
    pool.forward(x_max)
    dx_max = pool.backward(np.array([[[1.0, -2.0]]]))
    x_tie = np.array([[[2.0, 2.0, 0.0, 1.0]]])
    tie = MaxPool1d(2)
    tie.forward(x_tie)
    dx_tie = tie.backward(np.array([[[1.0, 1.0]]]))
    show_exercises(
        Exercise(rf"Average pooling of \(X = {tex_matrix(x_avg[0])}\): what is \(Y_1\), the "
                 r"second output (counting from 0)? The last input is in no window.",
                 float(y_avg[0, 0, 1]), tolerance=1e-12),
        Exercise(rf"Max pooling of \(X = {tex_matrix(x_max[0])}\) receives "
                 r"\(dY = (1, -2)\). What is \(dX_2\)?", float(dx_max[0, 0, 2]),
                 tolerance=1e-12),
        Exercise(rf"A tie: max pooling of \(X = {tex_matrix(x_tie[0])}\) receives "
                 r"\(dY = (1, 1)\). By the tie rule, what is \(dX_1\)?",
                 float(dx_tie[0, 0, 1]), tolerance=1e-12),
    )
