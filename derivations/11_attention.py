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
# # Self-attention
#
# One attention head over a batch of sequences. Sequence $n$ has $T$
# positions, each a vector of $d_\text{model}$ features. Every position asks
# a *query*, offers a *key* and carries a *value*, three linear maps of its
# features into $d_\text{head}$ dimensions. The score $S_{nts}$ says how well
# the key of position $s$ matches the query of position $t$; a softmax over
# the keys turns the scores of row $t$ into weights $P_{nts}$ that add up to
# one, and the output of position $t$ is the weighted mean of the values,
# mapped back to $d_\text{model}$ features.
#
# Causal attention (a language model reading left to right) hides the keys
# after the query. The catalog writes the mask as an array $M_{ts}$ of ones
# and zeros that multiplies $e^{S}$ in the numerator *and* in the
# denominator of the softmax: a hidden key gets weight exactly 0 and the
# visible ones still add up to one. Without a mask $M$ is all ones. $M$ is an
# input like $X$, but nothing is learned about it, so the engine is never
# asked for its gradient.

# %% tags=["hide-input"]
import sympy as sp
from sympy import Indexed, Sum, exp

from backprop_derived.symbolic.catalog import (
    ATT_H,
    ATT_K,
    ATT_M,
    ATT_N,
    ATT_O,
    ATT_P,
    ATT_Q,
    ATT_S,
    ATT_T,
    ATT_V,
    ATT_X,
    SELF_ATTENTION,
    ATT_n,
    ATT_s,
    ATT_s2,
    ATT_t,
    ATT_Wk,
    ATT_Wo,
    ATT_Wq,
    ATT_Wv,
)
from backprop_derived.symbolic.checked import Chain, prove_equal
from backprop_derived.symbolic.engine import backward, gradient_chain
from backprop_derived.symbolic.index_printer import Assignment
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/11_attention.py"
n, t, s, s2 = ATT_n, ATT_t, ATT_s, ATT_s2

# %% [markdown]
# ## The definition
#
# Seven equations, one per node, as the catalog (`symbolic/catalog.py`)
# writes them. The weight matrices are named as in the code: $Wq$, $Wk$, $Wv$
# (each $d_\text{head} \times d_\text{model}$) and $Wo$
# ($d_\text{model} \times d_\text{head}$).

# %%
for lhs, rhs in SELF_ATTENTION:
    show(Chain(lhs, rhs, "definition of the layer"))

# %% [markdown]
# ## The chain rule, node by node
#
# The engine differentiates the seven equations last one first, as a
# textbook does. Every intermediate gets its own gradient ($dO$, $dP$, $dS$,
# $dV$, $dK$, $dQ$) and the gradients of $X$ and of the four weight matrices
# are written through them. $X$ feeds three equations (the query, the key and
# the value), so its gradient is the sum of three terms, the `+=` of the chain
# rule. Each line is proven by SymPy evaluating the chain rule of the first
# one.

# %%
LAYER = SELF_ATTENTION
grads = backward(LAYER, [ATT_X, ATT_Wq, ATT_Wk, ATT_Wv, ATT_Wo])
ORDER = (ATT_O, ATT_P, ATT_S, ATT_V, ATT_K, ATT_Q, ATT_X, ATT_Wq, ATT_Wk, ATT_Wv, ATT_Wo)
assert list(grads) == list(ORDER), list(grads)
show(*(gradient_chain(grads[x], LAYER) for x in ORDER))

# %% [markdown]
# Read them as matrix products per sequence: $dO = dY\,Wo$,
# $dWo = \sum_n dY_n^\top O_n$, $dP = dO\,V^\top$, $dV = P^\top dO$, and the
# scores' gradient reaches the queries as $dQ = dS\,K/\sqrt{d_\text{head}}$
# and the keys as $dK = dS^\top Q/\sqrt{d_\text{head}}$: the key of position
# $v$ collects from every query $t$ that looked at it.
#
# ## The softmax's gradient, compact
#
# The engine's $dS$ is the softmax differentiated as written: a quotient,
# so two terms, the second a sum over the keys of the row. Written through
# the weights $P$ it is the form every implementation uses,
#
# $$dS = P \odot \big(dP - \textstyle\sum_{s} dP_{\cdot s} P_{\cdot s}\big),$$
#
# the row sum of $dP \odot P$ broadcast along the row. SymPy proves the two
# equal for every number of keys $T$ and every mask (the definition of $P$
# is substituted, the sums are compared term by term). A hidden key has
# $P = 0$, so its score gets no gradient, with no separate masking step.

# %%
dS = grads[ATT_S]
u, v, w = dS.indices
dP = grads[ATT_P].grad
P_definition = dict(LAYER)[ATT_P[n, t, s]]


def weights_defined(e):
    """Every P[a, b, c] replaced by the catalog's softmax."""
    return e.replace(lambda x: isinstance(x, Indexed) and x.base == ATT_P,
                     lambda x: P_definition.xreplace(dict(zip((n, t, s), x.indices,
                                                              strict=True))))


dS_compact = ATT_P[u, v, w] * (dP[u, v, w] - Sum(dP[u, v, s] * ATT_P[u, v, s],
                                                  (s, 0, ATT_T - 1)))
compact = Chain(dS.lhs, dS.expr, "derived by the engine", definitions=weights_defined)
compact.step(dS_compact, r"written through $P$")
show(compact, caption="the scores' gradient, any number of keys $T$, any mask")
assert compact.steps[-1].proof == "index sums"

# %% [markdown]
# ## A common mistake: only the diagonal of the softmax's Jacobian
#
# Each weight $P_{ts}$ depends on *every* score of its row, through the
# denominator. Keeping only $\partial P_{ts}/\partial S_{ts} = P_{ts}(1 - P_{ts})$
# and dropping the off-diagonal $-P_{ts}P_{ts'}$ gives
# $dS = P \odot (1 - P) \odot dP$. SymPy cannot prove it equal to the
# engine's result, and two keys with equal scores show the difference: the
# upstream gradient reaches the *other* key only, $dP = (0, 1)$.

# %%
mistake = ATT_P[u, v, w] * (1 - ATT_P[u, v, w]) * dP[u, v, w]
assert prove_equal(weights_defined(dS.expr), weights_defined(mistake)) is None
example = {ATT_T: 2, u: 0, v: 0, w: 0}
VALUES = {("S", (0, 0, 0)): 0, ("S", (0, 0, 1)): 0, ("dP", (0, 0, 0)): 0, ("dP", (0, 0, 1)): 1,
          ("M", (0, 0)): 1, ("M", (0, 1)): 1}


def on_example(e):
    """T = 2 keys, scores 0, dP = (0, 1), no mask (the sizes change the arrays' shapes,
    so entries are matched by name)."""
    e = weights_defined(e).xreplace(example).doit()
    e = e.replace(lambda x: isinstance(x, Indexed),
                  lambda x: sp.Integer(VALUES[str(x.base.label), tuple(map(int, x.indices))]))
    return sp.simplify(e)


engine_value, mistake_value = on_example(dS.expr), on_example(mistake)
show(Chain(sp.Symbol("dS_{000}"), on_example(dS.expr), "engine, T = 2, S = 0, dP = (0, 1)"),
     Chain(sp.Symbol(r"dS^\text{diag}_{000}"), mistake_value, "diagonal only, same values"))
assert engine_value == sp.Rational(-1, 4) and mistake_value == 0
print(f"engine: dS_000 = {engine_value};  diagonal only: {mistake_value}")

# %% [markdown]
# Raising the other key's weight lowers this one's (they add up to one), so
# the true gradient is $-1/4$; the diagonal-only form says 0.
#
# ## A softmax that cannot overflow
#
# $e^{S}$ overflows for scores above about 709 in float64 and 88 in float32.
# Multiplying numerator and denominator by $e^{-C_{nt}}$, for any number
# $C_{nt}$ per row, changes nothing; SymPy proves it for every $T$:

# %%
ATT_C = sp.IndexedBase("C", shape=(ATT_N, ATT_T), real=True)
shifted = (ATT_M[t, s] * exp(ATT_S[n, t, s] - ATT_C[n, t])
           / Sum(ATT_M[t, s2] * exp(ATT_S[n, t, s2] - ATT_C[n, t]), (s2, 0, ATT_T - 1)))
shift = Chain(ATT_P[n, t, s], P_definition, "definition of the layer")
shift.step(shifted, r"numerator and denominator times $e^{-C_{nt}}$")
show(shift)

# %% [markdown]
# The runtime takes $C_{nt}$ = the largest *visible* score of the row, so
# every visible exponent is at most 0 and the largest is exactly $e^0 = 1$:
# the denominator is at least 1. A hidden score may still exceed $C_{nt}$,
# and $e^{S - C}$ could overflow before the mask zeroes it ($0 \cdot \infty$
# is NaN). So the kernel puts the mask inside the exponent as well,
# $E_{nts} = M_{ts}\, e^{M_{ts}(S_{nts} - C_{nt})}$: a hidden entry is
# $0 \cdot e^0 = 0$. For a mask entry, which is 0 or 1, this is the same
# number, proven for both values:

# %%
m_, x_ = sp.symbols("M_{ts} x", real=True)
for value in (0, 1):
    gap = (m_ * exp(m_ * x_) - m_ * exp(x_)).subs(m_, value)
    show(Chain(sp.Symbol(rf"M e^{{M x}} - M e^{{x}}\,\big|_{{M = {value}}}"), gap,
               "difference of the two forms").step(sp.Integer(0), "evaluated: zero"))

# %%
ATT_E = sp.IndexedBase("E", shape=(ATT_N, ATT_T, ATT_T), real=True)
E_kernel = ATT_M[t, s] * exp(ATT_M[t, s] * (ATT_S[n, t, s] - ATT_C[n, t]))
P_kernel = ATT_E[n, t, s] / Sum(ATT_E[n, t, s2], (s2, 0, ATT_T - 1))
# The kernel's P with E written out, and the mask's exponent factor dropped
# (the proven M e^{Mx} = M e^x), is the shifted softmax above:
dropped = P_kernel.xreplace({ATT_E[n, t, s]: ATT_M[t, s] * exp(ATT_S[n, t, s] - ATT_C[n, t]),
                             ATT_E[n, t, s2]: ATT_M[t, s2] * exp(ATT_S[n, t, s2]
                                                                 - ATT_C[n, t])})
shift.step(dropped, r"$E_{nts} = M_{ts} e^{S_{nts} - C_{nt}}$, $P = E / \sum_{s'} E$")
show(Chain(ATT_E[n, t, s], E_kernel, "the kernel's numerator"),
     Chain(ATT_P[n, t, s], P_kernel, "the kernel's weights"))

# %% [markdown]
# Without a mask every $M_{ts}$ is 1, and a second kernel skips the two
# multiplications by the mask (the same formula with $M_{ts} = 1$ substituted):

# %%
E_unmasked = E_kernel.xreplace({ATT_M[t, s]: 1})
show(Chain(ATT_E[n, t, s], E_unmasked, r"the kernel's numerator, $M_{ts} = 1$"))

# %% tags=["hide-input"]
# The kernels take d_head as `head`, a number of the layer's dtype, not read off
# an array's shape: NumPy 2 promotes a float32 array divided by
# numpy.sqrt(<int>), a float64 scalar, to float64.
HEAD = sp.Symbol("head", positive=True)


def kernel_form(e):
    return e.replace(lambda x: isinstance(x, sp.Pow) and x.base == ATT_H,
                     lambda x: sp.Pow(HEAD, x.exp))


def assign(lhs, rhs):
    return Assignment(str(lhs.base.label), lhs.indices, kernel_form(rhs))


def gradient(x, expr=None):
    g = grads[x]
    return Assignment(str(g.grad.label), g.indices, kernel_form(g.expr if expr is None else expr))


FORWARD_SCORES = tuple(assign(lhs, rhs) for lhs, rhs in LAYER[:4])
FORWARD_MIX = (assign(ATT_E[n, t, s], E_kernel), assign(ATT_P[n, t, s], P_kernel),
               *(assign(lhs, rhs) for lhs, rhs in LAYER[5:]))
FORWARD_MIX_UNMASKED = (assign(ATT_E[n, t, s], E_unmasked), assign(ATT_P[n, t, s], P_kernel),
                        *(assign(lhs, rhs) for lhs, rhs in LAYER[5:]))
BACKWARD = tuple(gradient(x, compact.result if x == ATT_S else None) for x in ORDER)

EXPORTS = [
    Kernel("attention", "attention_scores", ("x", "wq", "wk", "wv", "head"), FORWARD_SCORES,
           "Queries, keys, values and scores S = Q K^T / sqrt(d_head) of one attention head.",
           "Self-attention forward, catalog equations Q, K, V, S", SOURCE, style="index",
           returns=("Q", "K", "V", "S")),
    Kernel("attention", "attention_mix", ("s", "c", "m", "v", "wo"), FORWARD_MIX,
           "Weights P = softmax over the keys (shifted by c per row, masked by m), "
           "O = P V, Y = O Wo^T.",
           "Self-attention forward, catalog equations P, O, Y (stable softmax)", SOURCE,
           style="index", returns=("P", "O", "Y")),
    Kernel("attention", "attention_mix_unmasked", ("s", "c", "v", "wo"), FORWARD_MIX_UNMASKED,
           "attention_mix without a mask (every key visible).",
           "Self-attention forward, catalog equations P, O, Y with M = 1 (stable softmax)",
           SOURCE, style="index", returns=("P", "O", "Y")),
    Kernel("attention", "attention_backward",
           ("dy", "x", "q", "k", "v", "p", "o", "wq", "wk", "wv", "wo", "head"), BACKWARD,
           "Gradients of X and of the four weight matrices, through dO, dP, dS (compact "
           "form), dV, dK, dQ.",
           "Self-attention backward, engine result; dS = P (dP - rowsum(dP P))", SOURCE,
           style="index", returns=("dX", "dWq", "dWk", "dWv", "dWo")),
]

# %% [markdown]
# ## Many heads
#
# Multi-head attention (Vaswani et al., 2017, section 3.2.2; PyTorch's
# `nn.MultiheadAttention` with `bias=False`, `batch_first=True` and the same
# $X$ as query, key and value) runs $H$ heads side by side, each on its own
# $d_\text{head} = d_\text{model}/H$ features, and mixes their outputs in one
# final map. Each of $Wq$, $Wk$, $Wv$, $Wo$ is one $d_\text{model} \times
# d_\text{model}$ matrix; as in PyTorch, $q = X\,Wq^\top$ has its
# $d_\text{model}$ features split *contiguously*: feature $j$ of head $h$ is
# feature $h\,d_\text{head} + j$, read from row $h\,d_\text{head} + j$ of
# $Wq$. The catalog writes exactly that, $Wq_{h d_\text{head} + j,\, c}$ (and
# $Wo_{c,\, h d_\text{head} + j}$ for the column of $Wo$ that takes it), with
# $d_\text{model} = H\,d_\text{head}$; the head is an index like any other.
# The heads' outputs are concatenated in the same order, which is the sum
# over $h$ and $j$ in the last equation.
#
# The mask is written as PyTorch's float `attn_mask` is used: *added* to the
# scores, $B_{ts} = 0$ for a visible key and $-\infty$ for a hidden one, so
# $e^{S} = 0$ there. The single head above multiplies by $M$ instead, the
# same weights ($B = \log M$); added, it lets the generic max-shift pass,
# which subtracts the largest score of each row, see only the visible
# scores.

# %%
from backprop_derived.symbolic.catalog import MULTI_HEAD_ATTENTION
from backprop_derived.symbolic.declared import declared_binding, declared_kernels

for lhs, rhs in MULTI_HEAD_ATTENTION.equations:
    show(Chain(lhs, rhs, "catalog definition"))

# %% [markdown]
# The engine differentiates the declaration as it did the single head, last
# equation first; nothing about heads is typed here. Each head's gradient
# reaches its own rows of $Wq$, $Wk$, $Wv$ and its own columns of $Wo$: the
# bracket $[0 \le u - h\,d_\text{head} \le d_\text{head} - 1]$ in $dWq_{uv}$
# keeps, of the sum over heads, the one head whose block holds row $u$. $X$,
# read by every head, collects a sum over $h$ in each of its three terms.

# %%
mha_chains, MHA_FORWARD, MHA_BACKWARD = declared_kernels(
    MULTI_HEAD_ATTENTION, "attention", SOURCE,
    "Multi-head self-attention, heads split contiguously, mask B added to the scores")
show(*mha_chains, caption="multi-head attention, node by node")

# %% [markdown]
# The backward kernel prints the engine's $dS$ as it stands, the quotient
# rule with its two terms; the generated code subtracts the row's largest
# score from every exponent of both (the max-shift pass, proven for any
# shift), so scores of 800 stay finite in float64 and float32. The affine
# index is the index printer's strided window (as pooling's $s p + j$, here
# with stride and window both $d_\text{head}$): the forward kernel reads
# $Wq$ through a view of its $H$ blocks of rows, and the backward kernel adds
# each head feature $j$ into the rows $j, j + d_\text{head}, \dots$ of $dWq$.

# %%
EXPORTS += [MHA_FORWARD, MHA_BACKWARD,
            declared_binding(MULTI_HEAD_ATTENTION, "attention", SOURCE)]

# %% [markdown]
# ## Exercises
#
# One sequence of $T = 2$ positions, $d_{model} = 2$, one head of
# $d_{head} = 1$, no mask. The numbers come from the runtime layer, which runs
# this page's generated kernels. Give six significant digits.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived.layers import SelfAttention
    from backprop_derived.symbolic.exercises import Exercise, show_exercises, tex_matrix

    att = SelfAttention(2, 1)
    weights = {"Wq": [[1.0, 0.0]], "Wk": [[0.0, 2.0]], "Wv": [[1.0, -1.0]], "Wo": [[1.0], [0.5]]}
    for key, value in weights.items():
        att.params[key][:] = value
    X_ex = np.array([[[1.0, 0.5], [-1.0, 1.0]]])
    dY_ex = np.array([[[1.0, 0.0], [0.0, 1.0]]])
    att.forward(X_ex)
    P_ex = att._cache[4]  # the attention weights the forward pass stored
    dX_ex = att.backward(dY_ex)
    given = (rf"\(X = {tex_matrix(X_ex[0])}\) (one row per position), "
             + ", ".join(rf"\({k[0]}_{{{k[1]}}} = {tex_matrix(v)}\)" for k, v in weights.items()))
    show_exercises(
        Exercise(rf"With {given}: the weight \(P_{{01}}\) that position 0 gives to key 1.",
                 float(P_ex[0, 0, 1]), tolerance=1e-5),
        Exercise(rf"With \(dY = {tex_matrix(dY_ex[0])}\): \(\partial L/\partial W_{{o,10}}\).",
                 float(att.grads["Wo"][1, 0]), tolerance=1e-5),
        Exercise(r"And \(dX_{10}\), position 1, feature 0.", float(dX_ex[0, 1, 0]), tolerance=1e-5),
    )

# %% [markdown]
# ### Many heads
#
# Two heads on $d_{model} = 2$ features, so $d_{head} = 1$: head 0 reads
# row 0 of $Wq$, $Wk$, $Wv$ and head 1 reads row 1; $Wo$'s column $h$ takes
# head $h$'s output. One sequence of $T = 2$ positions. The numbers come from
# the runtime's `MultiHeadAttention`, which runs this page's generated kernels.

# %%
if __name__ != "__derivation__":
    from backprop_derived.layers import MultiHeadAttention

    mha_weights = {"Wq": [[1.0, 0.0], [0.0, 1.0]], "Wk": [[0.0, 2.0], [1.0, 1.0]],
                   "Wv": [[1.0, -1.0], [0.5, 2.0]], "Wo": [[1.0, 0.5], [-1.0, 1.0]]}
    mha = MultiHeadAttention(2, 2)
    for key, value in mha_weights.items():
        mha.params[key][:] = value
    mha.forward(X_ex)
    P_mha = mha._cache["p"]  # the attention weights, one (T, T) matrix per head
    mha.backward(dY_ex)
    causal_mha = MultiHeadAttention(2, 2, causal=True)
    for key, value in mha_weights.items():
        causal_mha.params[key][:] = value
    causal_mha.forward(X_ex)
    dX_causal = causal_mha.backward(dY_ex)
    given_mha = (rf"\(X = {tex_matrix(X_ex[0])}\), "
                 + ", ".join(rf"\({k[0]}_{{{k[1]}}} = {tex_matrix(np.array(v))}\)"
                             for k, v in mha_weights.items()))
    show_exercises(
        Exercise(rf"With {given_mha}: the weight that head 1 at position 0 gives to key 1.",
                 float(P_mha[0, 1, 0, 1]), tolerance=1e-5),
        Exercise(rf"With \(dY = {tex_matrix(dY_ex[0])}\): \(\partial L/\partial W_{{o,01}}\), "
                 "the weight from head 1's output to feature 0.",
                 float(mha.grads["Wo"][0, 1]), tolerance=1e-5),
        Exercise(r"The same layer with causal=True: \(dX_{00}\), position 0, feature 0 "
                 "(position 0 sees only itself, but position 1 also reads it).",
                 float(dX_causal[0, 0, 0]), tolerance=1e-5),
    )
