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
# # Convolution
#
# A convolutional layer slides a small kernel along its input. Deep-learning
# libraries compute a *cross-correlation* (no kernel flip in the forward
# pass) with stride 1 and, here, no padding, so an input of length $L$ and a
# kernel of length $k$ give $L - k + 1$ outputs. The backward pass is where the
# flip appears: the input gradient is a *full* correlation of the
# zero-padded upstream gradient with the *flipped* kernel. This page lets the
# engine derive the gradients from the definition, and proves that textbook
# form equal to the engine's result for every size.

# %% tags=["hide-input"]
import sympy as sp
from sympy import Indexed, IndexedBase, Piecewise, Sum

from backprop_derived.symbolic.catalog import (
    CONV1D,
    CONV1D_W,
    CONV1D_X,
    CONV2D,
    CONV2D_W,
    CONV2D_X,
    CONV_B,
    CONV_C_IN,
    CONV_C_OUT,
    CONV_K,
    CONV_KH,
    CONV_KW,
    CONV_L,
    CONV_N,
    conv_j,
    conv_o,
)
from backprop_derived.symbolic.checked import Chain, StepNotVerified
from backprop_derived.symbolic.conv_forms import (
    chain_rule_chain,
    expand_definitions,
    lower,
    reindexed_definitions,
)
from backprop_derived.symbolic.conv_statements import IntoOut
from backprop_derived.symbolic.engine import backward, gradient_chain
from backprop_derived.symbolic.index_printer import Assignment
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/13_convolution.py"
N, C_in, C_out, L, k = CONV_N, CONV_C_IN, CONV_C_OUT, CONV_L, CONV_K

# %% [markdown]
# ## The definition
#
# Output position $p$ of channel $o$ adds up the window
# $X_{n,c,p}, \dots, X_{n,c,p+k-1}$ of every input channel $c$, weighted by the
# kernel $W_{o,c,0}, \dots, W_{o,c,k-1}$, plus the bias $b_o$. The input is read at the
# *shifted* index $p + j$: that is what makes this layer different from the
# dense one.

# %%
(Y_nop, conv1d_rhs), = CONV1D
show(Chain(Y_nop, conv1d_rhs, "definition of the layer"))

# %% [markdown]
# ## The engine's gradients
#
# The engine differentiates the definition and sums out the Kronecker deltas,
# as for every layer. For the weights and the bias the deltas meet summed
# indices with the same ranges, and the result is plain:

# %%
grads = backward(CONV1D, [CONV1D_W, CONV_B, CONV1D_X])
show(gradient_chain(grads[CONV1D_W], CONV1D), caption="weight gradient")
show(gradient_chain(grads[CONV_B], CONV1D), caption="bias gradient")

# %% [markdown]
# $dW_{uvw}$ is a *valid* correlation of input channel $v$ with the upstream
# gradient of output channel $u$ (the $L-k+1$ positions of $dY$ slide over the
# $L$ of $X$, giving $k$ values), added up over the batch; $db_u$ adds up
# $dY$ over the batch and the positions.
#
# For the input the delta is the bracket $[p + j = w]$: input position $w$ is read by
# output $p = w - j$ through kernel tap $j$, but only when that output exists,
# $0 \le w - j \le L - k$. Near the two ends of the input fewer outputs read
# it, and the engine keeps that range as a condition.
#
# SymPy's own summation of the same deltas sums out $j$ instead of $p$, so
# the two sides of this step are the same terms under different names. The
# proof writes both in one canonical form, valid for every size: each finite
# range becomes a condition on an index that runs over all integers, and each
# summed index is renamed to the one an array reads plainly ($p = w - q$, a
# bijection of the integers, so the sum keeps its terms).

# %%
gx = grads[CONV1D_X]
u, v, w = gx.indices
dY = next(x.base for x in gx.expr.atoms(Indexed) if str(x.base.label) == "dY")
DELTAS_SUMMED = (r"local derivatives taken: a bracket such as $[p + j = w]$ keeps one term "
                 "of each sum; where the window would leave the input, a range condition stays")
show(chain_rule_chain(gx, CONV1D, CONV1D_X, DELTAS_SUMMED), caption="input gradient")

# %% [markdown]
# ## The compact form: a full correlation with the flipped kernel
#
# Pad $dY$ with $k - 1$ zeros on each side (length $L + k - 1$) and flip the
# kernel. Then $dX$ is the *valid* correlation of the padded $dY$ with the
# flipped kernel, which has $(L + k - 1) - k + 1 = L$ positions: one per input
# position, no condition left. It is called the *full* correlation of $dY$
# with the flipped kernel, because it visits every overlap of the two.

# %%
q = sp.Symbol("q", integer=True)
n = sp.Symbol("n", integer=True)
c = sp.Symbol("c", integer=True)
dY_pad = IndexedBase(r"dY^{pad}", shape=(N, C_out, L + k - 1), real=True)
W_flip = IndexedBase(r"W^{flip}", shape=(C_out, C_in, k), real=True)
PAD = Assignment(str(dY_pad.label), (n, conv_o, q),
                 Piecewise((dY[n, conv_o, q - (k - 1)], (q >= k - 1) & (q <= L - 1)), (0, True)))
FLIP = Assignment(str(W_flip.label), (conv_o, c, conv_j), CONV1D_W[conv_o, c, k - 1 - conv_j])
show(Chain(dY_pad[PAD.indices], PAD.expr, "definition: dY with k - 1 zeros on each side"),
     Chain(W_flip[FLIP.indices], FLIP.expr, "definition: the kernel reversed"))

DX_COMPACT = Sum(dY_pad[u, conv_o, w + conv_j] * W_flip[conv_o, v, conv_j],
                 (conv_o, 0, C_out - 1), (conv_j, 0, k - 1))
dx_chain = Chain(gx.lhs, gx.expr, "the engine's result",
                 definitions=reindexed_definitions(gx.ranges, PAD, FLIP))
dx_chain.step(DX_COMPACT, "flipped kernel, j -> k - 1 - j: the same terms (canonical sums)")
show(dx_chain, caption="input gradient, compact")

# %% [markdown]
# ## The common mistake: no flip
#
# A learner who remembers "the input gradient is a correlation of the padded
# $dY$ with the kernel" and forgets the flip writes the same sum with
# $W_{o,v,j}$ in place of $W_{o,v,k-1-j}$. SymPy refuses that step:

# %%
DX_UNFLIPPED = Sum(dY_pad[u, conv_o, w + conv_j] * CONV1D_W[conv_o, v, conv_j],
                   (conv_o, 0, C_out - 1), (conv_j, 0, k - 1))
try:
    Chain(gx.lhs, gx.expr, "the engine's result",
          definitions=reindexed_definitions(gx.ranges, PAD, FLIP)).step(DX_UNFLIPPED, "no flip")
    raise AssertionError("the unflipped kernel was accepted")
except StepNotVerified:
    print("refused: the unflipped correlation is not the engine's input gradient")

# %% [markdown]
# and a single channel of length $L = 3$ with a kernel of length $k = 2$ shows
# why. With $W = (1, 2)$ and $dY = (1, 0)$, input position 0 is read only by
# output 0 through tap 0, so $dX_0 = W_0\, dY_0 = 1$; the unflipped form
# pairs the padded $dY = (0, 1, 0, 0)$ with $(W_0, W_1)$ and gets $2$:

# %%
SIZES = {N: 1, C_in: 1, C_out: 1, L: 3, k: 2}
VALUES = {"W": {(0, 0, 0): 1, (0, 0, 1): 2}, "dY": {(0, 0, 0): 1, (0, 0, 1): 0}}


def at(expr, point):
    """``expr`` on the sizes and arrays above, at the index values ``point``."""
    e = expand_definitions(expr, PAD, FLIP).xreplace(SIZES).xreplace(point).doit()
    return e.replace(lambda x: isinstance(x, Indexed),
                     lambda x: sp.Integer(VALUES[str(x.base.label)][tuple(x.indices)]))


first = {u: 0, v: 0, w: 0}
engine_value, mistake_value = at(gx.expr, first), at(DX_UNFLIPPED, first)
show(Chain(sp.Symbol("dX_{000}"), engine_value, "engine, W = (1, 2), dY = (1, 0)"),
     Chain(sp.Symbol("dX^{no flip}_{000}"), mistake_value, "the mistake, same arrays"))
assert engine_value == 1 and mistake_value == 2

# %% [markdown]
# The other half of the mistake, a *valid* correlation of the unpadded $dY$
# (length $L - k + 1$) with the kernel, has $(L - k + 1) - k + 1 = L - 2k + 2$
# positions, not $L$: it has no value for $2(k - 1)$ input positions (the
# first and last $k - 1$, which fewer than $k$ outputs read). Only $k = 1$
# makes the two lengths equal:

# %%
assert sp.solve(sp.Eq(L - 2 * k + 2, L), k) == [1]

# %% [markdown]
# ## Two dimensions
#
# The 2-d layer shifts two indices, $p + i$ and $q + j$, over a $k_h \times
# k_w$ kernel. The engine's results have the same structure, the input
# gradient with a condition per axis, and the compact form pads $dY$ by
# $k_h - 1$ rows and $k_w - 1$ columns on each side and flips the kernel along
# both axes.

# %%
(Y2, conv2d_rhs), = CONV2D
show(Chain(Y2, conv2d_rhs, "definition of the layer"))
grads2 = backward(CONV2D, [CONV2D_W, CONV_B, CONV2D_X])
show(gradient_chain(grads2[CONV2D_W], CONV2D), caption="2-d weight gradient")
show(gradient_chain(grads2[CONV_B], CONV2D), caption="2-d bias gradient")
gx2 = grads2[CONV2D_X]
show(chain_rule_chain(gx2, CONV2D, CONV2D_X, DELTAS_SUMMED), caption="2-d input gradient")

# %%
H, Wd = CONV2D_X.shape[2], CONV2D_X.shape[3]
u2, v2, w2, x2 = gx2.indices
i, j, r, s = sp.symbols("i j r s", integer=True)
dY2 = next(x.base for x in gx2.expr.atoms(Indexed) if str(x.base.label) == "dY")
dY2_pad = IndexedBase(r"dY^{pad}", shape=(N, C_out, H + CONV_KH - 1, Wd + CONV_KW - 1),
                      real=True)
W2_flip = IndexedBase(r"W^{flip}", shape=(C_out, C_in, CONV_KH, CONV_KW), real=True)
PAD2 = Assignment(str(dY2_pad.label), (n, conv_o, r, s), Piecewise(
    (dY2[n, conv_o, r - (CONV_KH - 1), s - (CONV_KW - 1)],
     (r >= CONV_KH - 1) & (r <= H - 1) & (s >= CONV_KW - 1) & (s <= Wd - 1)), (0, True)))
FLIP2 = Assignment(str(W2_flip.label), (conv_o, c, i, j),
                   CONV2D_W[conv_o, c, CONV_KH - 1 - i, CONV_KW - 1 - j])
DX2_COMPACT = Sum(dY2_pad[u2, conv_o, w2 + i, x2 + j] * W2_flip[conv_o, v2, i, j],
                  (conv_o, 0, C_out - 1), (i, 0, CONV_KH - 1), (j, 0, CONV_KW - 1))
show(Chain(dY2_pad[PAD2.indices], PAD2.expr, "definition: dY padded on both axes"),
     Chain(W2_flip[FLIP2.indices], FLIP2.expr, "definition: the kernel reversed on both axes"))
dx2_chain = Chain(gx2.lhs, gx2.expr, "the engine's result",
                  definitions=reindexed_definitions(gx2.ranges, PAD2, FLIP2))
dx2_chain.step(DX2_COMPACT, "flipped kernel: the same terms (canonical sums)")
show(dx2_chain, caption="2-d input gradient, compact")

# %% [markdown]
# ## Kernels
#
# The index printer refuses shifted indices, so `symbolic/conv_forms.py`
# lowers these sums to NumPy pieces (an entry $X_{n,c,p+j}$ becomes a
# `sliding_window_view` of `x`, a view with a window axis) and
# `symbolic/conv_statements.py` writes them into the kernel's `out` with
# `numpy.matmul` (one BLAS matrix product per call). All four kernels print
# the engine's results; they add the same terms in another order.
#
# * **Forward map.** The windows are copied once into a (batch,
#   $C_{in} k$, positions) array (*im2col*; $C_{in} k_h k_w$ in 2-d) for one
#   batched matmul against the flattened kernel, written into `out`; then the
#   bias is added.
# * **Weight gradient.** In one dimension a kernel tap $j$ fixed leaves the
#   strided matrix view `x[:, :, j:j+P]` ($P = L - k + 1$ output
#   positions), so the kernel loops over the $k$
#   taps and writes tap $j$'s slice of `out`: the batch of products
#   `dY[n] @ x[n, :, j:j+P]ᵀ`, added up over $n$. In two dimensions a tap's
#   window is not a matrix, so the windows are copied once (im2col) for one
#   batched matmul against $dY$, added up over the batch.
# * **Input gradient.** The engine's result above adds, for every tap $j$,
#   $\sum_o W_{o,v,j}\, dY_{u,o,w-j}$ where $w - j$ is an output position.
#   For each tap the kernel computes that sum over $o$ as one matmul of the
#   tap's kernel slice, transposed, with $dY$: tap 0's product is written
#   into `out[:, :, 0:P]` (by `out=` in 1-d), the rest of `out` is set to
#   zero, and every other tap $j$ adds its product into `out[:, :, j:j+P]`
#   (*col2im*; in 2-d tap $(i, j)$ adds into `out[:, :, i:i+P, j:j+Q]`). The
#   condition $0 \le w - j \le L - k$ is exactly that slice, which the
#   printer checks before it prints the loop. No zero-padded copy of $dY$ is
#   made; the compact form proven above is the textbook's reading of the
#   same sum.
# * **Bias gradient.** $dY$ summed over the batch and the positions as two
#   products with vectors of ones (`numpy.matmul` with `numpy.ones`: first
#   over the positions, then over the batch), into `out`.

# %% tags=["hide-input"]
CODE = {"X": "x", "W": "w", "b": "b", "dY": "dy", str(dY_pad.label): "dy_pad",
        str(W_flip.label): "w_flip"}


def kernel(name, params, target, indices, shape, expr, doc, equation, definitions=()):
    """One generated function ``name(*params, out)`` printing ``target[indices] = expr``."""
    printable = IntoOut(lower(Assignment(target, tuple(indices), expr), shape, definitions,
                              CODE))
    return Kernel("conv", name, (*params, "out"), printable, doc, equation, SOURCE,
                  style="array")


def conv_kernels(dim, equations, grads_, x, wt):
    (lhs, rhs), = equations
    gw, gb, gxx = grads_[wt], grads_[CONV_B], grads_[x]
    out = []
    for target, idx, shape, expr, params, doc, eq, defs in (
        ("Y", lhs.indices, lhs.base.shape, rhs, ("x", "w", "b"),
         f"Y = b + X ⋆ W: the {dim} forward map (a valid cross-correlation).",
         "The catalog's definition", ()),
        ("dW", gw.indices, wt.shape, gw.expr, ("x", "dy"),
         f"dW: valid correlation of X with dY, summed over the batch ({dim}).",
         "The engine's weight gradient", ()),
        ("db", gb.indices, CONV_B.shape, gb.expr, ("dy",),
         f"db: dY summed over the batch and the positions ({dim}).",
         "The engine's bias gradient", ()),
        ("dX", gxx.indices, x.shape, gxx.expr, ("dy", "w"),
         f"dX: each tap's dY·W added at the tap's offset ({dim}).",
         ("The engine's input gradient (equal to the full correlation of dY with the "
          "flipped kernel)"), ()),
    ):
        name = {"Y": "forward", "dW": "weight_gradient", "db": "bias_gradient",
                "dX": "input_gradient"}[target]
        out.append(kernel(f"{dim}_{name}", params, target, idx, shape, expr, doc, eq, defs))
    return out


EXPORTS = [
    *conv_kernels("conv1d", CONV1D, grads, CONV1D_X, CONV1D_W),
    *conv_kernels("conv2d", CONV2D, grads2, CONV2D_X, CONV2D_W),
]

# %% [markdown]
# ## Stride and padding
#
# With a stride $s$ output $p$ reads the window that starts at $sp$:
# $Y_{n,o,p} = b_o + \sum_c \sum_j X_{n,c,sp+j} W_{o,c,j}$, and there are
# $P = \lfloor (L - k)/s \rfloor + 1$ outputs (PyTorch's count). Zero padding
# by $a$ is this layer on the input with $a$ zeros added at both ends
# ($L + 2a$ positions); the zeros are constants, so the input gradient is
# the padded input's gradient with its $a$ first and last positions cropped.
# The runtime pads and crops; the equations, the engine's gradients and
# their kernels are those of a declared layer (`catalog.STRIDED_CONV1D`,
# `STRIDED_CONV2D`), printed by the index printer's window primitives (see
# the pooling page): the forward map and the weight gradient read
# sliding windows every $s$-th position, the input gradient is a tap
# scatter, one strided slice-add per kernel tap. The input gradient's proof
# is the canonical-sum one used above (SymPy sums out $j$, the engine $p$).

# %%
from backprop_derived.symbolic.catalog import STRIDED_CONV1D, STRIDED_CONV2D
from backprop_derived.symbolic.declared import declared_kernels

(Ys, strided_rhs), = STRIDED_CONV1D.equations
show(Chain(Ys, strided_rhs, "definition of the strided layer"))
strided_chains, STRIDED1_FORWARD, STRIDED1_BACKWARD = declared_kernels(
    STRIDED_CONV1D, "conv", SOURCE, "Conv1d with a stride (on the padded input)")
show(*strided_chains, caption="strided convolution, node by node")
strided2_chains, STRIDED2_FORWARD, STRIDED2_BACKWARD = declared_kernels(
    STRIDED_CONV2D, "conv", SOURCE, "Conv2d with a stride (on the padded input)")
show(*strided2_chains[:1], caption="2-d strided convolution, input gradient")
EXPORTS += [STRIDED1_FORWARD, STRIDED1_BACKWARD, STRIDED2_FORWARD, STRIDED2_BACKWARD]

# %% [markdown]
# ## Exercises
#
# One example, one input and one output channel: $X = (1, 2, -1, 3)$, the
# kernel $W = (0.5, -1)$ (so three output positions) and the upstream
# gradient $dY = (1, 0, 2)$. The numbers come from this page's generated
# kernels; the answers are one click away.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived._generated import conv as generated_conv
    from backprop_derived.symbolic.exercises import Exercise, show_exercises

    X_ex = np.array([[[1.0, 2.0, -1.0, 3.0]]])
    W_ex = np.array([[[0.5, -1.0]]])
    dY_ex = np.array([[[1.0, 0.0, 2.0]]])
    show_exercises(
        Exercise(r"The weight gradient \(dW_{001}\), the kernel's second tap.",
                 float(generated_conv.conv1d_weight_gradient(X_ex, dY_ex, np.empty_like(W_ex))
                       [0, 0, 1]), tolerance=1e-12),
        Exercise(r"The bias gradient \(db_0\).",
                 float(generated_conv.conv1d_bias_gradient(dY_ex, np.empty(1))[0]), tolerance=1e-12),
        Exercise(r"The input gradient \(dX_{002}\), at input position 2 (from 0). (Which output "
                 r"positions read it, through which taps?)",
                 float(generated_conv.conv1d_input_gradient(dY_ex, W_ex, np.empty_like(X_ex))
                       [0, 0, 2]), tolerance=1e-12),
    )
