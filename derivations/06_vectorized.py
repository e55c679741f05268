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
# # Vectorized: (V1)–(V4) for a minibatch
#
# The earlier pages work one example and one unit at a time. Code works one
# *layer* at a time, for a whole minibatch of $m$ examples, so that the
# arithmetic happens in matrix products (GEMMs). This page starts from the
# layer's definition in index form, lets the derivation engine differentiate
# it, and lets SymPy turn the resulting index sums into matrix expressions.
# Those matrix expressions, not anything typed on this page, are what the
# code generator prints into `src/backprop_derived/_generated/layers.py`.
#
# **Layout.** The runtime stores examples in rows (batch-first): $A$ is
# $(m, n_\text{in})$, $W$ is $(n_\text{out}, n_\text{in})$, and $Z$ and $dZ$
# are $(m, n_\text{out})$. Where a transpose lands in a formula depends on
# this layout and on which index of $W$ a product sums over; the
# [Notation](../../notation/#why-the-transpose) page works through both
# reasons (backward, $W$ is read by columns; batch-first, every equation is
# the transpose of the textbook's). EFAVDB's vectorized derivation
# ([Sources](../../sources/#efavdb)) writes
# examples in columns, so each of its equations is the transpose of one here.
#
# **Cost and the $1/m$.** The cost is the mean of the per-example losses,
# $J = \frac1m\sum_i L_i$ (plus the penalty of *Regularization*). We write
# $dX$ for $\partial J/\partial X$, so $dZ$ already *includes* the $1/m$: it
# comes out of differentiating the mean, on *Losses × activations*, and no
# gradient below is rescaled afterwards.

# %% tags=["hide-input"]

from backprop_derived.symbolic.catalog import ACTIVATION_LAYER, DENSE, A, W, Z, b, i, r
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.engine import (
    backward,
    code_form,
    gradient_chain,
    matrix_chain,
    to_elementwise,
    to_matrix,
)
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.printers import latex

SOURCE = "derivations/06_vectorized.py"
# How the generated code names each array of the layer.
CODE = {"A": "a_prev", "W": "w", "b": "b", "Z": "z", "dZ": "dz", "dA": "da"}

# %% [markdown]
# ## The definition
#
# One dense layer, as the catalog (`symbolic/catalog.py`) defines it: unit
# $r$ of example $i$ adds up the previous layer's outputs $A_{it}$, weighted
# by $W_{rt}$, and its bias $b_r$.

# %%
(Z_ir, forward_index), = DENSE
show(Chain(Z_ir, forward_index, "definition of the layer"), caption="A dense layer")

# %% [markdown]
# ## The chain rule, one array at a time
#
# The engine (`symbolic/engine.py`) treats every entry of every array as a
# variable. The gradient of the cost with respect to $W_{uv}$ collects the
# contribution of every $Z_{ir}$ that $W_{uv}$ feeds: the chain rule
# $dW_{uv} = \sum_{i=0}^{m-1} \sum_{r=0}^{n_{out}-1} (\partial Z_{ir}/\partial W_{uv})
# \cdot dZ_{ir}$. SymPy
# differentiates the definition, which leaves Kronecker deltas
# ($\partial W_{rt}/\partial W_{uv} = [r = u]\,[t = v]$, Iverson brackets), and sums them
# out. Each line is proven by SymPy evaluating the first one.

# %%
grads = backward(DENSE, [W, b, A])
for x, name in ((W, "the weights (V1)"), (b, "the biases (V2)"), (A, "the inputs (V3)")):
    show(gradient_chain(grads[x], DENSE), caption=f"Gradient with respect to {name}")

# %% [markdown]
# Read the three results the way a textbook would. A weight $W_{uv}$ joins
# input $v$ to unit $u$, so its gradient sums, over the examples, the error at
# unit $u$ times what came in on input $v$ **(V1)**. A bias feeds only its own
# unit, so its gradient is the error at that unit summed over the examples
# **(V2)**. An input $A_{uv}$ feeds *every* unit of its example, so its
# gradient sums over the units $r$, each weighted by the weight that carried
# it forward **(V3)**. The names (V1)–(V4), V for vectorized, are this
# site's. Nielsen's chapter 2 has four equations BP1–BP4 that say other
# things: his BP1 is the output error $\delta^L = \nabla_a C \odot \sigma'(z^L)$,
# his BP4 is (V1) for one example (the *Sources* page maps all four).
#
# ## From index sums to matrices
#
# SymPy's `convert_indexed_to_array` and `convert_array_to_matrix` turn each
# index sum into a matrix expression. A sum over the examples of a single
# array becomes a product with a row of $m$ ones, $\mathbf 1^\top dZ$, which
# BLAS does as one matrix-vector product. Each conversion is then proven
# the other way: the generic entry of the matrix expression, expanded by SymPy,
# equals the index form for every size (a ✓ marked *index sums*).

# %%
forward = to_matrix(forward_index, (i, r))
V1, V2, V3 = (to_matrix(grads[x]) for x in (W, b, A))
show(matrix_chain(Z_ir, forward_index, (i, r), forward, why="definition of the layer"),
     caption="The forward map as matrices")
for x, form, name in ((W, V1, "(V1)"), (b, V2, "(V2)"), (A, V3, "(V3)")):
    g = grads[x]
    show(matrix_chain(g.lhs, g.expr, g.indices, form), caption=f"{name} as matrices")

# %% [markdown]
# ## (V4): through the activation
#
# The activation layer is the catalog's $A_{ir} = g(Z_{ir})$, with $g$ left
# undefined. The same engine call gives (V4): each pre-activation feeds only
# its own output, so the chain rule leaves one term, an elementwise product.
# The *Activations* page puts each catalog activation's $g'$ into it.

# %%
(act_lhs, _), = ACTIVATION_LAYER
bp4 = backward(ACTIVATION_LAYER, [Z])[Z]
show(gradient_chain(bp4, ACTIVATION_LAYER), caption="(V4) for any activation g")
V4 = to_elementwise(bp4, names=CODE)

# %% [markdown]
# The Coursera notes' loop over examples, which accumulates
# $\Delta \mathrel{+}= \delta a^\top$, is proven equal to (V1) and (V2) on the
# *Any depth* page, with the other textbook forms.

# %% tags=["hide-input"]
EXPORTS = [
    Kernel("layers", "affine", ("a_prev", "w", "b", "out"), code_form(forward, CODE),
           "Z = A W^T + 1 b^T: the pre-activations of a layer for a whole batch.",
           "Forward pass z_j = b_j + sum_i a_i w_ij, batch-first", SOURCE, style="matrix"),
    Kernel("layers", "weight_gradient", ("dz", "a_prev", "out"), code_form(V1, CODE),
           "dW = dZ^T A (the 1/m is already inside dZ).", "(V1), eq. (5) and (11)",
           SOURCE, style="matrix"),
    Kernel("layers", "bias_gradient", ("dz", "ones", "out"), code_form(V2, CODE),
           "db = 1^T dZ: the sum of dZ over the examples, as a product with m ones.",
           "(V2), eq. (6) and (12)", SOURCE, style="matrix"),
    Kernel("layers", "backpropagate", ("dz", "w", "out"), code_form(V3, CODE),
           "dA_prev = dZ W: the error carried back to the previous layer's outputs.",
           "(V3), the sum over k in eq. (11)", SOURCE, style="matrix"),
]
LATEX = {name: latex(e) for name, e in (("Z", forward), ("dW", V1), ("db", V2), ("dA", V3))}

# %% [markdown]
# ## Exercises
#
# A batch of $m = 2$ examples through a layer of 2 units with 3 inputs. The
# numbers come from the generated kernels themselves; the expression is
# checked by the live engine. The answers are one click away without it.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np
    import sympy as sp

    from backprop_derived._generated import layers as generated_layers
    from backprop_derived.symbolic.exercises import (
        Exercise,
        show_exercises,
        slope_through_output,
        tex_matrix,
    )

    A_ex = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    W_ex = np.array([[1.0, 0.0, 2.0], [-1.0, 1.0, 0.0]])
    dZ_ex = np.array([[0.5, -1.0], [2.0, 0.25]])
    dW_ex = generated_layers.weight_gradient(dZ_ex, A_ex, np.empty_like(W_ex))
    db_ex = generated_layers.bias_gradient(dZ_ex, np.ones(2), np.empty(2))
    dA_ex = generated_layers.backpropagate(dZ_ex, W_ex, np.empty_like(A_ex))
    given = (rf"\(A = {tex_matrix(A_ex)}\), \(W = {tex_matrix(W_ex)}\), "
             rf"\(dZ = {tex_matrix(dZ_ex)}\)")
    tanh_v4 = V4.replace(lambda e: isinstance(e, sp.Function) and str(e.func) == "g'",
                           lambda e: slope_through_output("tanh"))
    show_exercises(
        Exercise(rf"With {given}: the entry \(dW_{{12}}\) of (V1) (row 1, column 2, from 0).",
                 float(dW_ex[1, 2]), tolerance=1e-12),
        Exercise(rf"With the same numbers: \(db_0\) of (V2).", float(db_ex[0]), tolerance=1e-12),
        Exercise(rf"And \(dA_{{10}}\) of (V3).", float(dA_ex[1, 0]), tolerance=1e-12),
        Exercise(r"(V4) for a \(\tanh\) layer, one entry, in terms of <code>da</code> and the "
                 r"layer's output <code>a</code>.", tanh_v4, typed="da*(1 - a**2)"),
        Exercise(r"(V1) as one matrix expression: \(dW\) for the whole batch, in terms of "
                 r"<code>dZ</code> (\(m \times n_{out}\)) and <code>A</code> "
                 r"(\(m \times n_{in}\)). A wrong order of the factors or a missing "
                 r"transpose is pointed out.", V1, typed="dZ.T @ A"),
        Exercise(r"(V3) as one matrix expression: \(dA\) in terms of <code>dZ</code> and "
                 r"<code>W</code> (\(n_{out} \times n_{in}\)).", V3, typed="dZ @ W"),
    )
