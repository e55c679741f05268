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
# # Normalization: batch norm and layer norm
#
# Batch norm (Ioffe & Szegedy, 2015) and layer norm (Ba, Kiros & Hinton,
# 2016) subtract a mean, divide by a standard deviation and then scale and
# shift each feature with learned $\gamma$ and $\beta$. They differ only in
# the axis of the statistics: batch norm normalizes each *feature* over the
# examples of the batch, layer norm normalizes each *example* over its
# features. The backward pass is where they are instructive: the mean and
# the variance are functions of the input, so every input reaches the output
# by three paths, and the compact formula people use is earned by adding them
# up. The engine does the chain rule node by node; SymPy then proves the
# compact form equal to the engine's result for every batch size.

# %% tags=["hide-input"]
import copy

import sympy as sp
from sympy import Indexed, IndexedBase, Sum

from backprop_derived.symbolic.catalog import (
    BATCH_NORM,
    BATCH_NORM_EVAL,
    BN_BETA,
    BN_GAMMA,
    BN_MU,
    BN_VAR,
    BN_X,
    BN_XHAT,
    LAYER_NORM,
    LN_BETA,
    LN_GAMMA,
    LN_MU,
    LN_VAR,
    LN_X,
    LN_XHAT,
    NORM_EPS,
    NORM_i,
    NORM_m,
    NORM_n,
    NORM_r,
    NORM_s,
    NORM_t,
)
from backprop_derived.symbolic.checked import Chain, Step
from backprop_derived.symbolic.engine import backward, gradient_chain
from backprop_derived.symbolic.index_printer import Assignment
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show as show_chains

SOURCE = "derivations/10_normalization.py"
m, n, eps = NORM_m, NORM_n, NORM_EPS
# The arrays' names in the catalog are the generated code's names (xhat, var);
# the page shows them as the textbook writes them.
TEXTBOOK = {"xhat": r"\hat{x}", "var": r"\sigma^{2}", "dxhat": r"d\hat{x}",
            "dvar": r"d\sigma^{2}", "dmu": r"d\mu", "dgamma": r"d\gamma", "dbeta": r"d\beta",
            "xc": r"\tilde{X}", "rstd": r"\rho"}


def textbook(chain):
    """A copy of ``chain`` for display, its arrays renamed by ``TEXTBOOK`` (proofs kept)."""
    def rename(e):
        bases = {x.base for x in e.atoms(Indexed) if str(x.base.label) in TEXTBOOK}
        return e.xreplace({b: IndexedBase(TEXTBOOK[str(b.label)], shape=b.shape, real=True)
                           for b in bases})

    shown = copy.copy(chain)
    shown.lhs = rename(chain.lhs)
    shown.steps = [Step(rename(s.expr), s.why, s.proof) for s in chain.steps]
    return shown


def show(*chains, caption=None):
    show_chains(*(textbook(c) for c in chains), caption=caption)


def substituting(*definitions):
    """A Chain definition: replace every entry of a defined array by its definition.

    ``definitions`` are ``(lhs, rhs)`` pairs (a catalog equation or an engine
    gradient); an entry ``mu[v]`` becomes the right-hand side with the
    left-hand side's indices renamed to ``v``. Repeated until nothing is left
    to replace, so a definition may use another.
    """
    table = {lhs.base: (lhs.indices, rhs) for lhs, rhs in definitions}

    def expand(e):
        for _ in range(len(table) + 1):
            before = e
            e = e.replace(
                lambda x: isinstance(x, Indexed) and x.base in table,
                lambda x: table[x.base][1].xreplace(
                    dict(zip(table[x.base][0], x.indices, strict=True))))
            if e == before:
                break
        return e

    return expand


def as_definition(gradient):
    return (gradient.lhs, gradient.expr)


def numeric(expr, sizes, arrays):
    """``expr`` on concrete sizes and array entries (exact rationals)."""
    e = expr.xreplace(sizes).doit()
    e = e.replace(lambda x: isinstance(x, Indexed),
                  lambda x: sp.Integer(arrays[str(x.base.label)][tuple(int(k) for k in x.indices)]))
    return sp.simplify(e)


# %% [markdown]
# ## Batch norm
#
# ### The definition
#
# For a batch $X$ of $m$ examples (rows) and $n$ features (columns), feature
# $r$ is normalized with its mean $\mu_r$ and its *biased* variance
# $\sigma^2_r$ over the batch; $\epsilon$ keeps the division finite for a
# constant feature. One equation per node of the graph, as the catalog
# writes them:

# %%
for lhs, rhs in BATCH_NORM:
    show(Chain(lhs, rhs, "definition of the layer"))

# %% [markdown]
# ### The chain rule, node by node
#
# The engine walks the four equations backwards. $\hat x$ and $\sigma^2$ and
# $\mu$ are intermediates: each gets its own gradient, complete once every
# later node that uses it has contributed, exactly as a textbook draws the
# graph. $X_{uv}$ is used by three equations ($\mu$, $\sigma^2$ and $\hat x$),
# so its gradient has three terms. Each line below is proven by SymPy
# evaluating the chain rule in the line before it.

# %%
bn = backward(BATCH_NORM, [BN_X, BN_GAMMA, BN_BETA])
for var in (BN_XHAT, BN_VAR, BN_MU, BN_X, BN_GAMMA, BN_BETA):
    show(gradient_chain(bn[var], BATCH_NORM))

# %% [markdown]
# ### The compact form, earned
#
# The raw $dX$ above is three terms through three intermediates. The
# textbook form (CS231n; Karpathy's *Becoming a backprop ninja*) writes it
# in the normalized inputs and two column sums, which are $d\beta$ and
# $d\gamma$:
#
# $$dX_{uv} = \frac{\gamma_v}{m\sigma_v}\Big(m\, dY_{uv} - \sum_i dY_{iv}
#   - \hat x_{uv}\sum_i dY_{iv}\hat x_{iv}\Big),\qquad
#   \sigma_v = \sqrt{\sigma^2_v + \epsilon}.$$
#
# One fact does the work: the deviations from the mean add up to zero. It
# follows from $\mu$'s definition alone, for every $m$:

# %%
u, v = bn[BN_X].indices
sigma = sp.sqrt(BN_VAR[v] + eps)
mu_definition = substituting(BATCH_NORM[0])
show(Chain(Sum(BN_X[NORM_s, v] - BN_MU[v], (NORM_s, 0, m - 1)),
           Sum(BN_X[NORM_s, v] - BN_MU[v], (NORM_s, 0, m - 1)), "deviations from the mean",
           definitions=mu_definition)
     .step(Sum(BN_X[NORM_s, v], (NORM_s, 0, m - 1)) - m * BN_MU[v], "the sum of a constant")
     .step(sp.Integer(0), "definition of $\\mu$"))

# %% [markdown]
# Now substitute the intermediates' gradients into the raw $dX$, collect,
# and let the zero sum remove the path through $\mu$'s effect on
# $\sigma^2$. Every step is proven for every batch size with $\mu$,
# $\hat x$, the intermediates' gradients, $d\gamma$ and $d\beta$ replaced by
# their definitions:

# %%
d_xhat, d_var, d_mu = (bn[x].grad for x in (BN_XHAT, BN_VAR, BN_MU))
dY = next(x.base for x in bn[BN_XHAT].expr.atoms(Indexed) if str(x.base.label) == "dY")
d_gamma, d_beta = bn[BN_GAMMA].grad, bn[BN_BETA].grad
i = NORM_i
column = (i, 0, m - 1)
bn_definitions = substituting(
    *(as_definition(bn[x]) for x in (BN_XHAT, BN_VAR, BN_MU, BN_GAMMA, BN_BETA)),
    BATCH_NORM[2], BATCH_NORM[0])


def dev(q):
    """A deviation from the mean of feature v."""
    return BN_X[q, v] - BN_MU[v]


bn_dx = (
    Chain(bn[BN_X].lhs, bn[BN_X].expr, "the engine's result", definitions=bn_definitions)
    .step(dY[u, v] * BN_GAMMA[v] / sigma
          - BN_GAMMA[v] / (m * sigma) * Sum(dY[i, v], column)
          - dev(u) * BN_GAMMA[v] / (m * sigma**3) * Sum(dY[i, v] * dev(i), column)
          + d_var[v] * 2 / m * Sum(dev(NORM_s), (NORM_s, 0, m - 1)),
          "substitute $d\\hat x$, $d\\sigma^2$, $d\\mu$")
    .step(dY[u, v] * BN_GAMMA[v] / sigma
          - BN_GAMMA[v] / (m * sigma) * Sum(dY[i, v], column)
          - dev(u) * BN_GAMMA[v] / (m * sigma**3) * Sum(dY[i, v] * dev(i), column),
          "deviations sum to zero")
    .step(BN_GAMMA[v] / (m * sigma) * (m * dY[u, v] - Sum(dY[i, v], column)
                                       - BN_XHAT[u, v] * Sum(dY[i, v] * BN_XHAT[i, v], column)),
          "$\\hat x = (X - \\mu)/\\sigma$")
    .step(BN_GAMMA[v] / (m * sigma) * (m * dY[u, v] - d_beta[v] - BN_XHAT[u, v] * d_gamma[v]),
          "$d\\beta$ and $d\\gamma$")
)
show(bn_dx)
BN_DX_COMPACT = bn_dx.result

# %% [markdown]
# The three terms read as the three paths: $\gamma\,dY/\sigma$ is the direct
# one through $\hat x$; $-d\beta$ removes the mean of the upstream gradient
# (the path through $\mu$); $-\hat x\,d\gamma$ removes its component along
# $\hat x$ (the path through $\sigma^2$). The kernel computes $d\gamma$ and
# $d\beta$ first and reuses them: two column sums and one elementwise pass.
#
# A consequence worth checking in any implementation: batch norm's output
# does not change when a constant is added to a whole feature, so $dX$ must
# sum to zero over the batch. Proven from the compact form:

# %%
show(Chain(Sum(bn[BN_X].expr.xreplace({u: NORM_s}), (NORM_s, 0, m - 1)),
           Sum(BN_DX_COMPACT.xreplace({u: NORM_s}), (NORM_s, 0, m - 1)),
           "compact form", definitions=bn_definitions)
     .step(sp.Integer(0), "deviations sum to zero"))

# %% [markdown]
# ### The common mistake
#
# A learner who treats $\mu$ and $\sigma^2$ as constants differentiates only
# the direct path and writes $dX = \gamma\, dY / \sigma$. SymPy shows what is
# missing (the difference is the two sums), and a batch of two examples with
# one feature gives a counterexample:

# %%
mistake = BN_GAMMA[v] * dY[u, v] / sigma
missing = sp.factor(BN_DX_COMPACT - mistake)
show(Chain(sp.Symbol("dX - dX_{mistake}"), BN_DX_COMPACT - mistake, "compact minus mistake")
     .step(missing, "factored"))
sizes = {m: 2, n: 1, u: 0, v: 0, eps: sp.Integer(0)}
example = {"X": {(0, 0): 0, (1, 0): 2}, "dY": {(0, 0): 1, (1, 0): 0}, "gamma": {(0,): 1}}
everything = substituting(*(as_definition(bn[x]) for x in (BN_XHAT, BN_VAR, BN_MU)),
                          *BATCH_NORM[:3])
right = numeric(everything(bn[BN_X].expr), sizes, example)
wrong = numeric(everything(mistake), sizes, example)
show(Chain(sp.Symbol("dX_{00}"), right, "engine, $X = (0, 2)$, $dY = (1, 0)$, "
           "$\\gamma = 1$, $\\epsilon = 0$"))
show(Chain(sp.Symbol("dX^{mistake}_{00}"), wrong, "the mistake, same batch"))
assert right != wrong and missing != 0

# %% [markdown]
# The exact gradient is $0$: with two examples and $\epsilon = 0$ the
# normalized outputs are $\pm 1$ whatever $X$ is, so no change of $X_{00}$
# changes the loss. The mistake reports $1/\sigma = 1$.
#
# ### Evaluation mode
#
# At inference, batch norm uses running averages of the batch statistics
# instead of the batch's own (`train=False` in the runtime). Then $\mu$ and
# $\sigma^2$ are inputs, not functions of $X$, only the last two equations
# remain, and the engine finds the single direct path. The "mistake" above is
# the *correct* gradient in evaluation mode:

# %%
bn_eval = backward(BATCH_NORM_EVAL, [BN_X, BN_GAMMA, BN_BETA])
for var in (BN_XHAT, BN_X, BN_GAMMA, BN_BETA):
    show(gradient_chain(bn_eval[var], BATCH_NORM_EVAL))

# %% [markdown]
# The running statistics are bookkeeping, not part of the gradient. The
# runtime follows PyTorch: $\text{running} \leftarrow (1 - \text{momentum})\,
# \text{running} + \text{momentum}\cdot\text{batch}$, where the batch variance
# that enters `running_var` is the *unbiased* one, $\frac{m}{m-1}\sigma^2$,
# while the normalization itself uses the biased $\sigma^2$ above.
#
# ## Layer norm
#
# Layer norm takes the same four nodes over the other axis: example $i$ is
# normalized with the mean and variance of its own $n$ features, so it needs
# no batch and behaves the same in training and evaluation. An input of shape
# $(\dots, n)$ is flattened to $m$ rows.

# %%
for lhs, rhs in LAYER_NORM:
    show(Chain(lhs, rhs, "definition of the layer"))

# %%
ln = backward(LAYER_NORM, [LN_X, LN_GAMMA, LN_BETA])
for var in (LN_XHAT, LN_VAR, LN_MU, LN_X, LN_GAMMA, LN_BETA):
    show(gradient_chain(ln[var], LAYER_NORM))

# %% [markdown]
# The compact form runs over the features of row $u$. Here $\gamma$ varies
# along the summed axis, so it cannot be pulled out of the sums: the form
# is written in $d\hat x = \gamma \odot dY$,
#
# $$dX_{uv} = \frac{1}{n\sigma_u}\Big(n\, d\hat x_{uv} - \sum_t d\hat x_{ut}
#   - \hat x_{uv}\sum_t d\hat x_{ut}\hat x_{ut}\Big),$$
#
# proven the same way, with the deviations of a row summing to zero:

# %%
u_, v_ = ln[LN_X].indices
ln_sigma = sp.sqrt(LN_VAR[u_] + eps)
ln_dxhat = ln[LN_XHAT].grad
row = (NORM_t, 0, n - 1)
ln_definitions = substituting(
    *(as_definition(ln[x]) for x in (LN_VAR, LN_MU)), LAYER_NORM[2], LAYER_NORM[0])


def ln_dev(q):
    """A deviation from the mean of row u."""
    return LN_X[u_, q] - LN_MU[u_]


show(Chain(Sum(ln_dev(NORM_t), row), Sum(ln_dev(NORM_t), row), "deviations from the mean",
           definitions=ln_definitions)
     .step(sp.Integer(0), "definition of $\\mu$"))
ln_dx = (
    Chain(ln[LN_X].lhs, ln[LN_X].expr, "the engine's result", definitions=ln_definitions)
    .step(ln_dxhat[u_, v_] / ln_sigma
          - Sum(ln_dxhat[u_, NORM_t], row) / (n * ln_sigma)
          - ln_dev(v_) / (n * ln_sigma**3) * Sum(ln_dxhat[u_, NORM_t] * ln_dev(NORM_t), row),
          "substitute $d\\sigma^2$, $d\\mu$; deviations sum to zero")
    .step((n * ln_dxhat[u_, v_] - Sum(ln_dxhat[u_, NORM_t], row)
           - LN_XHAT[u_, v_] * Sum(ln_dxhat[u_, NORM_t] * LN_XHAT[u_, NORM_t], row))
          / (n * ln_sigma),
          "$\\hat x = (X - \\mu)/\\sigma$")
)
show(ln_dx)
LN_DX_COMPACT = ln_dx.result

# %% [markdown]
# ## In the kernels
#
# NumPy evaluates one operation at a time, each a pass over the whole
# $(m, n)$ array, so the kernels are written to make few passes. In the
# forward pass the deviations $X - \mu$ are named once, $\tilde X$, and reused by
# the variance and by $\hat x$; the reciprocal $\rho = 1/\sqrt{\sigma^2 +
# \epsilon}$ is taken once per feature (batch norm) or per row (layer norm),
# so that $\hat x$ is one multiplication. A sum of squares, and a sum of a
# product such as $d\gamma = \sum_i dY_{iv}\hat x_{iv}$, is one `numpy.einsum`
# pass that never stores the product. Each rewrite is proven equal to the
# catalog's definition, with the new names replaced by their definitions:

# %%
xc = IndexedBase("xc", shape=(m, n), real=True)
i_, r_ = NORM_i, NORM_r


def forward_kernel(equations, X, k, summed, rstd, caption):
    """The catalog's four equations with ``xc = X - mu`` and ``rstd`` named.

    ``k`` indexes the statistics (a feature or a row) and ``summed`` is the
    limit of their sums (over the examples or over the features).
    """
    (mu_lhs, mu_rhs), (var_lhs, var_rhs), (xhat_lhs, xhat_rhs), y = equations
    s_, size = summed[0], summed[2] + 1
    entry = xc[s_, r_] if k == r_ else xc[i_, s_]
    kernel = (
        (mu_lhs, mu_rhs),
        (xc[i_, r_], X[i_, r_] - mu_lhs),
        (var_lhs, Sum(entry**2, summed) / size),
        (rstd[k], 1 / sp.sqrt(var_lhs + eps)),
        (xhat_lhs, xc[i_, r_] * rstd[k]),
        y,
    )
    named = substituting(kernel[1], kernel[3])
    show(Chain(var_lhs, var_rhs, "definition of the layer", definitions=named)
         .step(kernel[2][1], "named deviations $\\tilde X$"),
         Chain(xhat_lhs, xhat_rhs, "definition of the layer", definitions=named)
         .step(kernel[4][1], "$\\tilde X$ and the reciprocal $\\rho$"), caption=caption)
    return kernel


BN_FORWARD_KERNEL = forward_kernel(BATCH_NORM, BN_X, r_, (NORM_s, 0, m - 1),
                                   IndexedBase("rstd", shape=(n,), real=True),
                                   "Batch norm's forward kernel")
LN_FORWARD_KERNEL = forward_kernel(LAYER_NORM, LN_X, i_, (NORM_t, 0, n - 1),
                                   IndexedBase("rstd", shape=(m,), real=True),
                                   "Layer norm's forward kernel")

# %% [markdown]
# In the backward pass, everything that is per feature (batch norm) or per
# row (layer norm) is gathered into three short vectors first: a *scale* for
# the upstream gradient, a *slope* along $\hat x$ and an *offset*. Then $dX$
# costs four passes, and $d\gamma$ and $d\beta$ one each. Each rewrite is
# proven equal to the compact form above:

# %%
scale, slope, offset = (IndexedBase(name, shape=(n,), real=True)
                        for name in ("scale", "slope", "offset"))
BN_KERNEL = (
    (d_gamma[v], bn[BN_GAMMA].expr.xreplace({bn[BN_GAMMA].indices[0]: v})),
    (d_beta[v], bn[BN_BETA].expr.xreplace({bn[BN_BETA].indices[0]: v})),
    (scale[v], BN_GAMMA[v] / sigma),
    (slope[v], scale[v] * d_gamma[v] / m),
    (offset[v], scale[v] * d_beta[v] / m),
    (bn[BN_X].lhs, scale[v] * dY[u, v] - slope[v] * BN_XHAT[u, v] - offset[v]),
)
show(Chain(bn[BN_X].lhs, BN_DX_COMPACT, "compact form",
           definitions=substituting(*BN_KERNEL[2:5]))
     .step(BN_KERNEL[-1][1], "per-feature scale, slope, offset"),
     caption="Batch norm's backward kernel")

row_scale, row_slope, row_offset = (IndexedBase(name, shape=(m,), real=True)
                                    for name in ("scale", "slope", "offset"))
LN_KERNEL = (
    (ln_dxhat[u_, v_], ln[LN_XHAT].expr),
    (ln[LN_GAMMA].grad[v_], ln[LN_GAMMA].expr.xreplace({ln[LN_GAMMA].indices[0]: v_})),
    (ln[LN_BETA].lhs, ln[LN_BETA].expr),
    (row_scale[u_], 1 / ln_sigma),
    (row_slope[u_], row_scale[u_] * Sum(ln_dxhat[u_, NORM_t] * LN_XHAT[u_, NORM_t], row) / n),
    (row_offset[u_], row_scale[u_] * Sum(ln_dxhat[u_, NORM_t], row) / n),
    (ln[LN_X].lhs,
     row_scale[u_] * ln_dxhat[u_, v_] - row_slope[u_] * LN_XHAT[u_, v_] - row_offset[u_]),
)
show(Chain(ln[LN_X].lhs, LN_DX_COMPACT, "compact form",
           definitions=substituting(*LN_KERNEL[3:6]))
     .step(LN_KERNEL[-1][1], "per-row scale, slope, offset"),
     caption="Layer norm's backward kernel")

# %% [markdown]
# ## RMS norm and group norm: declared, derived, printed
#
# Two more normalizations go through with no compact form typed on this page.
# Each is written in the catalog as its equations plus a *declaration* that
# names the role of every array (inputs, parameters, saved intermediates,
# outputs); `symbolic/declared.py` asks the engine for every gradient and
# prints the engine's own result as the backward kernel.
#
# **RMS norm** (Zhang & Sennrich, 2019; PyTorch's `nn.RMSNorm`) divides each row by
# its root mean square and scales it; nothing is subtracted and nothing is
# added:

# %%
from backprop_derived.symbolic.catalog import GROUP_NORM, RMS_NORM
from backprop_derived.symbolic.declared import declared_kernels

for lhs, rhs in RMS_NORM.equations:
    show(Chain(lhs, rhs, "catalog definition"))
rms_chains, RMS_FORWARD, RMS_BACKWARD = declared_kernels(
    RMS_NORM, "norm", SOURCE, "RMS norm over the last axis")
show(*rms_chains, caption="RMS norm, node by node")

# %% [markdown]
# **Group norm** (Wu & He, 2018; PyTorch's `nn.GroupNorm`) splits the $C$
# channels of an $(N, C, \dots)$ input into $G$ contiguous groups of
# $K = C/G$ and normalizes each example's group over its $K$ channels and
# all $L$ positions. The equations index the input as $X_{ngkl}$ (channel
# $c = gK + k$) and the per-channel $\gamma$, $\beta$ as $\gamma_{gk}$: the
# runtime passes views of that shape. With $G = 1$ it is layer norm over
# channels and positions; with $G = C$, instance norm.

# %%
for lhs, rhs in GROUP_NORM.equations:
    show(Chain(lhs, rhs, "catalog definition"))
gn_chains, GN_FORWARD, GN_BACKWARD = declared_kernels(
    GROUP_NORM, "norm", SOURCE, "Group norm over groups of channels and every position")
show(*gn_chains, caption="Group norm, node by node")
DECLARED_EXPORTS = [RMS_FORWARD, RMS_BACKWARD, GN_FORWARD, GN_BACKWARD]

# %% tags=["hide-input"]
def assignments(*pairs):
    """Index-form equations ``(lhs, rhs)`` as the printer's assignments."""
    return tuple(Assignment(str(lhs.base.label), lhs.indices, rhs) for lhs, rhs in pairs)


def gradients(result, *arrays):
    return tuple((result[x].lhs, result[x].expr) for x in arrays)


EXPORTS = [
    Kernel("norm", "batch_norm_forward", ("x", "gamma", "beta", "epsilon"),
           assignments(*BN_FORWARD_KERNEL),
           "Batch norm, training mode: batch statistics (biased variance), then scale and shift.",
           "Y = gamma * (X - mu) / sqrt(var + epsilon) + beta over the batch", SOURCE,
           style="index", returns=("Y", "mu", "var", "xhat")),
    Kernel("norm", "batch_norm_backward", ("dy", "xhat", "var", "gamma", "epsilon"),
           assignments(*BN_KERNEL),
           "Batch norm backward, training mode: dgamma, dbeta, then dX in the compact form "
           "proven equal to the engine's node-by-node result.",
           "dX = gamma/(m sigma) (m dY - dbeta - xhat dgamma) = scale dY - slope xhat - offset", SOURCE,
           style="index", returns=("dX", "dgamma", "dbeta")),
    Kernel("norm", "batch_norm_eval_forward", ("x", "mu", "var", "gamma", "beta", "epsilon"),
           assignments(*BATCH_NORM_EVAL),
           "Batch norm, evaluation mode: mu and var are the running statistics.",
           "Y = gamma * (X - mu) / sqrt(var + epsilon) + beta, mu and var given", SOURCE,
           style="index", returns=("Y", "xhat")),
    Kernel("norm", "batch_norm_eval_backward", ("dy", "xhat", "var", "gamma", "epsilon"),
           assignments(*gradients(bn_eval, BN_XHAT, BN_X), *BN_KERNEL[:2]),
           "Batch norm backward, evaluation mode: mu and var are constants.",
           "dX = gamma dY / sqrt(var + epsilon)", SOURCE,
           style="index", returns=("dX", "dgamma", "dbeta")),
    Kernel("norm", "layer_norm_forward", ("x", "gamma", "beta", "epsilon"),
           assignments(*LN_FORWARD_KERNEL),
           "Layer norm: statistics of each row over its features, then scale and shift.",
           "Y = gamma * (X - mu) / sqrt(var + epsilon) + beta over the features", SOURCE,
           style="index", returns=("Y", "mu", "var", "xhat")),
    Kernel("norm", "layer_norm_backward", ("dy", "xhat", "var", "gamma", "epsilon"),
           assignments(*LN_KERNEL),
           "Layer norm backward: dgamma, dbeta, and dX in the compact form proven equal to "
           "the engine's node-by-node result.",
           "dX = (n dxhat - sum dxhat - xhat sum(dxhat xhat)) / (n sigma) = scale dxhat - slope xhat - offset", SOURCE,
           style="index", returns=("dX", "dgamma", "dbeta")),
]
EXPORTS += DECLARED_EXPORTS

# %% [markdown]
# ## Exercises
#
# The numbers come from the runtime layers, which run this page's generated
# kernels, with $\varepsilon = 10^{-5}$; the upstream gradient $dY$ is given.
# Give six significant digits. The answers are one click away.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived.layers import BatchNorm, LayerNorm
    from backprop_derived.symbolic.exercises import Exercise, show_exercises, tex_matrix

    X_ex = np.array([[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]])
    dY_ex = np.array([[0.5, -1.0, 2.0], [1.0, 0.0, -0.5]])
    ln = LayerNorm(3)
    ln.params["gamma"][:] = [1.0, 2.0, 0.5]
    ln.forward(X_ex)
    dX_ln = ln.backward(dY_ex)
    bn = BatchNorm(3)
    bn.params["gamma"][:] = [1.0, 2.0, 0.5]
    bn.forward(X_ex)
    dX_bn = bn.backward(dY_ex)
    given = (rf"\(X = {tex_matrix(X_ex)}\), \(\gamma = (1, 2, 0.5)\), \(\beta = 0\), "
             rf"\(dY = {tex_matrix(dY_ex)}\)")
    show_exercises(
        Exercise(rf"Layer norm with {given}: \(\partial L/\partial \gamma_1\) (feature 1, from 0).",
                 float(ln.grads["gamma"][1]), tolerance=1e-5),
        Exercise(r"Layer norm, same numbers: \(dX_{00}\).", float(dX_ln[0, 0]), tolerance=1e-5),
        Exercise(r"Batch norm (training mode, the statistics over the two rows), same numbers: "
                 r"\(dX_{10}\), within \(10^{-4}\). (What is \(\hat x\) when a batch has two "
                 r"examples?)", float(dX_bn[1, 0]), tolerance=1e-4),
    )
