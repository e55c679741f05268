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
# # Dropout, embedding, residual
#
# Three layers with almost no arithmetic, each with one idea in its backward
# pass that is easy to get wrong:
#
# * **dropout** multiplies by a random mask, and the backward pass must use
#   the *same* mask and the same $1/(1-p)$;
# * **embedding** reads rows of a table at the ids it is given, and a row
#   read twice collects *both* gradients (`+=`, not `=`);
# * **residual** adds its input to the output of some inner layers, and the
#   input gradient is the sum of *two* paths (`+=` again).
#
# As on the *Vectorized* page, each layer is the catalog's index-form
# definition (`symbolic/catalog.py`), the derivation engine applies the chain
# rule, and SymPy proves every displayed step. The generated kernels are in
# `src/backprop_derived/_generated/simple.py`; the runtime layers
# (`Dropout`, `Embedding`, `Residual` in `backprop_derived.layers`) call them.

# %% tags=["hide-input"]
import numpy as np
import sympy as sp

from backprop_derived.symbolic.catalog import (
    DROPOUT,
    DROPOUT_M,
    DROPOUT_X,
    EMBEDDING,
    EMBEDDING_E,
    EMBEDDING_LAYER,
    RESIDUAL,
    RESIDUAL_F,
    RESIDUAL_X,
    DROPOUT_p,
)
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.declared import declared_kernels
from backprop_derived.symbolic.engine import backward, gradient_chain
from backprop_derived.symbolic.index_printer import Assignment
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/12_dropout_embedding_residual.py"


def assignment(gradient):
    """``dV[indices] = expr`` of an engine result, for an ``"index"`` kernel."""
    return Assignment(str(gradient.grad.label), gradient.indices, gradient.expr)


# %% [markdown]
# ## Dropout
#
# While training, inverted dropout keeps each unit with probability $1-p$
# and scales the kept ones by $1/(1-p)$, so that the expected output equals
# the input and inference is the identity. The 0/1 mask is drawn by the
# runtime; for the derivative it is an *input* of the layer, like $X$, that
# is not differentiated.

# %%
(Y_do, dropout_def), = DROPOUT
show(Chain(Y_do, dropout_def, "definition of the layer"))
dropout = backward(DROPOUT, [DROPOUT_X])[DROPOUT_X]
show(gradient_chain(dropout, DROPOUT), caption="dropout, input gradient")

# %% [markdown]
# Each output depends on its own input only, so the chain rule leaves one
# term: the upstream gradient goes back through exactly the units that were
# kept, scaled by the same $1/(1-p)$. The backward pass therefore needs the
# mask of *its* forward pass: drawing a new one, or forgetting the scale,
# gives another function's gradient. For instance with $p = 1/2$ and a unit
# that was kept, the scale is a factor 2:

# %%
dY_do = next(x.base for x in dropout.expr.atoms(sp.Indexed) if str(x.base.label) == "dY")
u, v = dropout.indices
unscaled = dY_do[u, v] * DROPOUT_M[u, v]  # the mistake: no 1/(1 - p) in the backward
case = {DROPOUT_p: sp.Rational(1, 2), DROPOUT_M[u, v]: 1}
show(Chain(sp.Symbol(r"dX_{uv} - dY_{uv}\,\mathrm{mask}_{uv}"), dropout.expr - unscaled,
           "derived minus the mistake", definitions=case)
     .step(dY_do[u, v], r"$p = 1/2$, unit kept"))
assert (dropout.expr - unscaled).subs(case) != 0

# %% [markdown]
# ## Embedding
#
# An embedding holds a table $E$ of $V$ rows of $D$ numbers. Given $N$ ids
# (a batch of sequences of token ids is flattened to one list), output row $s$
# is the table's row $\mathrm{ids}_s$. The index of $E$ is itself an array
# entry:

# %%
(Y_emb, embedding_def), = EMBEDDING
show(Chain(Y_emb, embedding_def, "definition of the layer"))

# %% [markdown]
# The catalog declares the layer (`catalog.EMBEDDING_LAYER`): the table is
# its parameter, the ids an integer array it is read at. The chain rule is the
# engine's, as for every declared layer, but one Kronecker delta cannot be
# summed out: $\delta_{u,\,\mathrm{ids}_s}$ says "id $s$ is $u$", and no
# formula in $u$ gives the $s$ with that id, because an id may occur several
# times or not at all. The engine keeps that delta under its sum, and SymPy
# proves the result:

# %%
embedding_chains, EMBEDDING_FORWARD, EMBEDDING_BACKWARD = declared_kernels(
    EMBEDDING_LAYER, "simple", SOURCE,
    "Embedding Y[s] = E[ids[s]], ids flattened to 1-D; repeated ids add up in dE")
embedding = backward(EMBEDDING, EMBEDDING_LAYER.params)[EMBEDDING_E]
show(*embedding_chains, caption="embedding, table gradient")

# %% [markdown]
# Row $u$ of $dE$ is the **sum** of the upstream rows of every position whose
# id is $u$, and zero for an id that does not occur. That sum is a
# *scatter-add*: `numpy.add.at(dE, ids, dY)`. Read as a matrix, the delta
# $A_{us} = \delta_{u,\,\mathrm{ids}_s}$ is a one-hot matrix of $V$ rows and
# $N$ columns with a single 1 per column, and $dE = A\, dY$. The kernel is
# generated as that product, with $A$ a SciPy sparse (COO) matrix holding its
# $N$ ones at $(\mathrm{ids}_s, s)$: one pass over the rows of $dY$ that adds
# each into row $\mathrm{ids}_s$, in the dtype of $dY$. Where many ids
# are summed it is many times faster than `numpy.add.at` or a
# `numpy.bincount` over the flat positions; where the table is large and the
# ids few, all of them cost the zeroed table they return. The index printer
# chooses that form for any sum of this shape, $\sum_s [u = \mathrm{ids}_s]\,
# V_{sv}$ (a *scatter-add*), and prints the forward read $E_{\mathrm{ids}_s, d}$
# as `numpy.take` (a *gather*): no form is typed on this page.
#
# **The common mistake** is to write `dE[ids] = dY`, an assignment. NumPy's
# fancy assignment keeps *one* of the rows for a repeated id (the last), so
# every repeated token loses gradient. SymPy evaluates the derived sum for
# three positions with ids $(1, 0, 1)$: row 1 of the table is read twice.

# %%
ids_example = (1, 0, 1)
dY_emb = next(x.base for x in embedding.expr.atoms(sp.Indexed) if str(x.base.label) == "dY")
u, v = embedding.indices
ids_base = next(x.base for x in embedding.expr.atoms(sp.Indexed) if str(x.base.label) == "ids")


N_emb = ids_base.shape[0]


def with_ids(e, values=ids_example):
    """``e`` for N = len(values) positions with these ids (the example's premises)."""
    e = e.subs(N_emb, len(values)).doit()  # N = 3 also renames the shape of ids
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base.label == ids_base.label,
                     lambda x: sp.Integer(values[int(x.indices[0])]))


derived_row_1 = with_ids(embedding.expr.subs({u: 1, v: 0}))
dY_3 = with_ids(dY_emb[0, 0]).base  # dY for N = 3 positions
assigned_row_1 = dY_3[2, 0]  # dE[ids] = dY: the last position with id 1 wins
show(Chain(sp.Symbol(r"dE_{10}"), embedding.expr.subs({u: 1, v: 0}),
           r"the derived sum, $u = 1$, $v = 0$", definitions=with_ids)
     .step(derived_row_1, r"$N = 3$, $\mathrm{ids} = (1, 0, 1)$: deltas evaluated"),
     Chain(sp.Symbol(r"dE_{10} - dE^{=}_{10}"), derived_row_1 - assigned_row_1,
           "derived minus the assignment").step(dY_3[0, 0], "expand"))
assert sp.expand(derived_row_1 - assigned_row_1) != 0

# %% [markdown]
# The difference is the gradient of the first occurrence, which the
# assignment drops. The same in NumPy, with upstream rows 1, 2, 3:

# %%
ids_np = np.array(ids_example)
dY_np = np.array([[1.0], [2.0], [3.0]])
accumulated = np.zeros((2, 1))
np.add.at(accumulated, ids_np, dY_np)
assigned = np.zeros((2, 1))
assigned[ids_np] = dY_np
print("dE with +=:", accumulated.ravel(), "  dE with =:", assigned.ravel())
assert accumulated[1, 0] == 4.0 and assigned[1, 0] == 3.0

# %% [markdown]
# ## Residual
#
# A residual block adds its input to the output of some inner layers $f$,
# $Y = X + f(X)$. The catalog writes the block as two equations: the branch
# $Xf = X$ ($X$ as the input of $f$) that feeds the inner layers, and the sum
# $Y = X + F$ where $F$ is what they return. $X$ is used twice, and the engine adds the two
# contributions, the `+=` of the chain rule. $dXf$ is the gradient the inner
# layers' backward pass returns when it is given $dF$:

# %%
show(*(Chain(lhs, rhs, "definition of the layer") for lhs, rhs in RESIDUAL))
residual = backward(RESIDUAL, [RESIDUAL_X, RESIDUAL_F])
show(gradient_chain(residual[RESIDUAL_F], RESIDUAL),
     gradient_chain(residual[RESIDUAL_X], RESIDUAL), caption="residual block")

# %% [markdown]
# So the inner layers receive the block's upstream gradient unchanged,
# $dF = dY$, and the block's input gradient is $dY$ **plus** what comes back
# through them. The identity path is why deep residual networks train: even
# when the inner layers' gradient is tiny, $dY$ reaches $X$ whole.
#
# **The common mistake** is to return only the gradient through the inner
# layers. Take inner layers whose output is always 0 (all weights zero):
# then $Y = X$, so $dX$ must be $dY$, while the mistaken gradient is
# $dXf = 0$:

# %%
dX_f = next(x for x in residual[RESIDUAL_X].expr.atoms(sp.Indexed)
            if str(x.base.label) == "dXf")
mistaken = dX_f  # only the path through f
difference = residual[RESIDUAL_X].expr - mistaken
show(Chain(sp.Symbol(r"dX_{uv} - dXf_{uv}"), difference, "derived minus the mistake")
     .step(residual[RESIDUAL_F].expr.xreplace(
         dict(zip(residual[RESIDUAL_F].indices, residual[RESIDUAL_X].indices, strict=True))),
         "the identity path, $dY$"))
assert difference.subs(dX_f, 0) != 0  # f = 0: the mistake gives 0, the block dY

# %% tags=["hide-input"]
# The generated kernels: every formula is an engine result or the catalog's
# forward definition; the embedding's come from its declaration.
(_, residual_def) = RESIDUAL[1]
EXPORTS = [
    Kernel("simple", "dropout_forward", ("x", "mask", "p"),
           (Assignment("Y", tuple(Y_do.indices), dropout_def),),
           "Y = X * mask / (1 - p): inverted dropout with a given 0/1 keep-mask.",
           "Dropout forward, catalog definition", SOURCE, style="index", returns=("Y",)),
    Kernel("simple", "dropout_backward", ("dy", "mask", "p"), (assignment(dropout),),
           "dX = dY * mask / (1 - p): the same mask and scale as the forward pass.",
           "Dropout input gradient", SOURCE, style="index", returns=("dX",)),
    EMBEDDING_FORWARD,
    EMBEDDING_BACKWARD,
    Kernel("simple", "residual_forward", ("x", "f"),
           (Assignment("Y", tuple(RESIDUAL[1][0].indices), residual_def),),
           "Y = X + F: the skip connection around the inner layers' output F.",
           "Residual forward, catalog definition", SOURCE, style="index", returns=("Y",)),
    Kernel("simple", "residual_backward", ("dy", "dxf"),
           (assignment(residual[RESIDUAL_X]),),
           "dX = dY + dXf: the identity path plus dXf, the gradient through the inner layers.",
           "Residual input gradient (dF = dY)", SOURCE, style="index", returns=("dX",)),
]

# %% [markdown]
# ## Exercises
#
# The expression is checked by the live engine against the engine's gradient
# above (one entry: write `dY`, `mask`, `p`); the numbers come from this
# page's generated kernels. The answers are one click away without the engine.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    from backprop_derived._generated import simple as generated_simple
    from backprop_derived.symbolic.exercises import Exercise, show_exercises, tex_matrix

    ids_ex = np.array([2, 0, 2])
    dY_ex = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    dE_ex = generated_simple.embedding_backward(dY_ex, ids_ex, 3)
    dy_res = np.array([[1.0, -2.0]])
    dxf_res = np.array([[0.5, 0.25]])
    show_exercises(
        Exercise(r"The input gradient of inverted dropout, one entry, in terms of the upstream "
                 r"gradient <code>dY</code>, the keep-mask <code>mask</code> and the drop "
                 r"probability <code>p</code>.", dropout.expr, typed="dY*mask/(1 - p)"),
        Exercise(rf"An embedding table of 3 rows of 2 numbers is read at the ids \((2, 0, 2)\); the "
                 rf"upstream gradient is \(dY = {tex_matrix(dY_ex)}\), one row per id. What is "
                 rf"\(dE_{{21}}\) (row 2, column 1)?", float(dE_ex[2, 1]), tolerance=1e-12),
        Exercise(rf"A residual block receives \(dY = {tex_matrix(dy_res)}\) and its inner layers "
                 rf"return \(dX_f = {tex_matrix(dxf_res)}\). What is \(dX_{{01}}\)?",
                 float(generated_simple.residual_backward(dy_res, dxf_res)[0, 1]), tolerance=1e-12),
    )
