"""The catalog: every activation and loss, each ONE SymPy expression.

This file is the single source for the generated NumPy code, the LaTeX on the
site and the parametrised tests. To add an activation, add one entry to
``ACTIVATIONS`` (an expression in the real symbol ``z``) and run
``make regenerate``; its derivative, its stable form, its output deltas, code,
LaTeX and tests all follow from the expression.

Conventions
-----------
* Elementwise activations are expressions in the scalar ``z``.
* ``softmax`` is written in index form over the output units: ``z[k]`` with a
  sum over ``j``. The infinite limits are deliberate: SymPy differentiates
  such sums cleanly (finite limits wrap the result in an index-range
  Piecewise); pages and tests confirm results on finite instances.
* Losses are per example, summed over the output units ``k``; the network's
  cost is their mean over the batch (plus the L2 term).

Kinks
-----
Where a definition has a kink, the value its derivative takes there is
stated once, here, and matches PyTorch's backward formulas:

* ``Heaviside(0) = HEAVISIDE_AT_ZERO = 0``: ``Max(0, z)`` gives relu'(0) = 0;
* a ``Piecewise`` takes the branch whose condition holds at the kink; written
  ``z > 0`` as PyTorch's ``x > 0 ? 1 : slope`` does: leaky_relu'(0) = 0.01 and
  elu'(0) = exp(0) = 1;
* ``Abs`` differentiates to ``sign``, with ``sign(0) = 0`` (absolute error'(0) = 0);
  Huber's branches meet with equal slopes at |a - y| = 1.

:func:`kinks` lists where an expression has them, so that tests can keep
finite differences away from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import (
    Abs,
    Heaviside,
    IndexedBase,
    Max,
    Piecewise,
    Sum,
    erf,
    exp,
    log,
    oo,
    sin,
    sqrt,
    tanh,
)

from .max_shift import FirstMax

z = sp.Symbol("z", real=True)
j, k = sp.symbols("j k", integer=True)
zv = IndexedBase("z", real=True)  # pre-activations of the output layer, z[k]
a = IndexedBase("a", real=True)  # activations of the output layer, a[k]
y = IndexedBase("y", real=True)  # targets, y[k]

ACTIVATIONS: dict[str, sp.Expr] = {
    "identity": z,
    "sigmoid": 1 / (1 + exp(-z)),
    "tanh": tanh(z),
    # Max(0, z) differentiates to Heaviside(z); relu'(0) = 0 is the usual
    # subgradient (SymPy's default Heaviside(0) is 1/2), so say it here.
    "relu": Max(0, z),
    "softplus": log(1 + exp(z)),
    "softmax": exp(zv[k]) / Sum(exp(zv[j]), (j, -oo, oo)),
    # Added after the others, to show that one line is all an activation needs.
    "swish": z / (1 + exp(-z)),
    # The kinks of the next two take PyTorch's values at 0 (see Kinks above).
    "elu": Piecewise((z, z > 0), (exp(z) - 1, True)),
    "leaky_relu": Piecewise((z, z > 0), (z / 100, True)),
    "mish": z * tanh(log(1 + exp(z))),
    "gelu": z / 2 * (1 + erf(z / sqrt(2))),
    "sin": sin(z),
}

HEAVISIDE_AT_ZERO = sp.Integer(0)  # value of relu'(0) and of every Heaviside(0)

LOSSES: dict[str, sp.Expr] = {
    "squared_error": Sum((a[k] - y[k]) ** 2, (k, -oo, oo)) / 2,
    # Coursera's logistic cost, summed over the K output units.
    "binary_cross_entropy": -Sum(
        y[k] * log(a[k]) + (1 - y[k]) * log(1 - a[k]), (k, -oo, oo)
    ),
    "cross_entropy": -Sum(y[k] * log(a[k]), (k, -oo, oo)),
    # Two losses with kinks, one line each (see Kinks above); Huber with delta = 1.
    "absolute_error": Sum(Abs(a[k] - y[k]), (k, -oo, oo)),
    "huber": Sum(Piecewise(((a[k] - y[k]) ** 2 / 2, Abs(a[k] - y[k]) < 1),
                           (Abs(a[k] - y[k]) - sp.S.Half, True)), (k, -oo, oo)),
}

# The output activation a loss needs for its logarithms to be defined:
# binary cross-entropy takes a in (0, 1) per unit, cross-entropy a
# probability vector. Every other loss takes any output activation.
REQUIRED_OUTPUT: dict[str, str] = {
    "binary_cross_entropy": "sigmoid",
    "cross_entropy": "softmax",
}


def is_elementwise(name: str) -> bool:
    """Elementwise activations are written in ``z``; others in index form."""
    return not ACTIVATIONS[name].has(sp.Indexed)


def fix_heaviside(expr: sp.Expr) -> sp.Expr:
    """Give every Heaviside the catalog's value at 0."""
    return expr.replace(
        lambda e: isinstance(e, Heaviside),
        lambda e: Heaviside(e.args[0], HEAVISIDE_AT_ZERO),
    )


def kinks(expr: sp.Basic) -> list[sp.Basic]:
    """Expressions whose zeros are the kinks of ``expr``: where a derivative jumps.

    The arguments of ``Abs``, ``sign`` and ``Heaviside``, the difference of the
    two arguments of ``Max``/``Min``, and ``lhs - rhs`` of every ``Piecewise``
    condition; sorted, without repeats.
    """
    found = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, Abs | sp.sign | Heaviside):
            found.add(node.args[0])
        elif isinstance(node, Max | sp.Min) and len(node.args) == 2:
            found.add(node.args[0] - node.args[1])
        elif isinstance(node, Piecewise):
            for cond in (ec.cond for ec in node.args):
                for rel in cond.atoms(sp.core.relational.Relational):
                    found.add(rel.lhs - rel.rhs)
    return sorted(found, key=sp.default_sort_key)


def output_pairs() -> list[tuple[str, str]]:
    """Every (output activation, loss) pair the runtime accepts, sorted."""
    pairs = []
    for loss in sorted(LOSSES):
        for act in sorted(ACTIVATIONS):
            if REQUIRED_OUTPUT.get(loss, act) == act:
                pairs.append((act, loss))
    return pairs


# --- Layers and the cost, in index form -----------------------------------
# A layer is a list of equations ``lhs[indices] = expression`` over
# IndexedBase objects that carry their shapes; the derivation engine
# (``symbolic/engine.py``) differentiates them. Batch-first, as the runtime
# stores arrays: example i, unit r of this layer, unit t of the previous one.
m = sp.Symbol("m", integer=True, positive=True)  # examples in the batch
n_in, n_out = sp.symbols("n_in n_out", integer=True, positive=True)
i, r, t = sp.symbols("i r t", integer=True)
A = IndexedBase("A", shape=(m, n_in), real=True)  # the previous layer's outputs
W = IndexedBase("W", shape=(n_out, n_in), real=True)
b = IndexedBase("b", shape=(n_out,), real=True)
Z = IndexedBase("Z", shape=(m, n_out), real=True)

# The dense layer's forward map: Z = A W^T + 1 b^T.
DENSE = ((Z[i, r], Sum(A[i, t] * W[r, t], (t, 0, n_in - 1)) + b[r]),)

# An elementwise activation layer, a = g(z), for any activation g.
g = sp.Function("g")
A_out = IndexedBase("A", shape=(m, n_out), real=True)
ACTIVATION_LAYER = ((A_out[i, r], g(Z[i, r])),)

# The cost: the mean over the batch of the per-example losses L_i (each one
# an entry of LOSSES), plus the L2 penalty of every layer's weights.
L = IndexedBase("L", shape=(m,), real=True)
COST = Sum(L[i], (i, 0, m - 1)) / m
lam = sp.Symbol("lambda", nonnegative=True)
# Coursera's penalty on one layer's weights; biases are not penalized.
PENALTY = lam / (2 * m) * Sum(W[r, t] ** 2, (r, 0, n_out - 1), (t, 0, n_in - 1))


# --- Normalization layers: batch norm and layer norm -----------------------
# Both normalize with a mean and a biased variance, then scale and shift; one
# equation per node, as a textbook draws the graph: mu, var, xhat, Y. Batch
# norm normalizes each feature r over the batch (sums over the examples s);
# layer norm normalizes each example i over its features (sums over the
# features t; the leading axes of a (..., n) input are the m rows).
NORM_m = sp.Symbol("m", integer=True, positive=True)  # examples (rows)
NORM_n = sp.Symbol("n", integer=True, positive=True)  # features
NORM_i, NORM_r = sp.symbols("i r", integer=True)  # an example, a feature
NORM_s, NORM_t = sp.symbols("s t", integer=True)  # summed: an example, a feature
NORM_EPS = sp.Symbol("epsilon", positive=True)


def _norm_layer(axis: str):
    """``(equations, X, mu, var, xhat, gamma, beta, Y)`` normalizing over ``axis``."""
    m_, n_, i_, r_ = NORM_m, NORM_n, NORM_i, NORM_r
    stat = (n_,) if axis == "batch" else (m_,)  # one statistic per feature / per row
    X = IndexedBase("X", shape=(m_, n_), real=True)
    mu = IndexedBase("mu", shape=stat, real=True)
    var = IndexedBase("var", shape=stat, real=True)
    xhat = IndexedBase("xhat", shape=(m_, n_), real=True)
    gamma = IndexedBase("gamma", shape=(n_,), real=True)
    beta = IndexedBase("beta", shape=(n_,), real=True)
    Y = IndexedBase("Y", shape=(m_, n_), real=True)
    if axis == "batch":
        k, s = r_, NORM_s  # statistic of feature r, summed over examples s
        entry, size, limit = (lambda q: X[q, r_]), m_, (NORM_s, 0, m_ - 1)
    else:
        k, s = i_, NORM_t  # statistic of example i, summed over features t
        entry, size, limit = (lambda q: X[i_, q]), n_, (NORM_t, 0, n_ - 1)
    equations = (
        (mu[k], Sum(entry(s), limit) / size),
        (var[k], Sum((entry(s) - mu[k]) ** 2, limit) / size),
        (xhat[i_, r_], (X[i_, r_] - mu[k]) / sp.sqrt(var[k] + NORM_EPS)),
        (Y[i_, r_], gamma[r_] * xhat[i_, r_] + beta[r_]),
    )
    return (equations, X, mu, var, xhat, gamma, beta, Y)


(BATCH_NORM, BN_X, BN_MU, BN_VAR, BN_XHAT, BN_GAMMA, BN_BETA, BN_Y) = _norm_layer("batch")
# Evaluation mode: mu and var are the running statistics, inputs of the layer
# rather than functions of X, so only the last two equations remain.
BATCH_NORM_EVAL = BATCH_NORM[2:]
(LAYER_NORM, LN_X, LN_MU, LN_VAR, LN_XHAT, LN_GAMMA, LN_BETA, LN_Y) = _norm_layer("features")


# --- Layers declared with their roles: RMS norm and group norm -------------------
# A declaration names what each array of the equations is to the runtime:
# ``inputs`` and ``params`` are differentiated; ``saved`` intermediates are
# returned by the forward kernel and handed back to the backward one (any
# other intermediate the backward pass reads is recomputed there); ``outputs``
# get an upstream gradient d<name>; ``scalars`` are numbers the layer holds.
# ``symbolic/declared.py`` derives, proves and prints both kernels from this.
@dataclass(frozen=True)
class LayerDeclaration:
    name: str  # the kernels are <name>_forward and <name>_backward
    equations: tuple
    inputs: tuple
    params: tuple
    saved: tuple
    outputs: tuple
    scalars: tuple = ()
    # equations evaluated first in the forward kernel whose values are constant
    # in the inputs almost everywhere (which tap of a window holds its maximum):
    # saved, and read by the backward pass as given arrays, never differentiated
    selections: tuple = ()
    # integer arrays the equations read arrays at (an embedding's ids): given to
    # both kernels, never differentiated
    indices: tuple = ()
    # A recurrent cell's (previous state it reads, output that is the next step's state)
    states: tuple = ()
    # The runtime's parameters that stack declared ones along their first axis,
    # ((name, (part, ...)), ...): PyTorch's weight_ih_l0 is the GRU's W_ir, W_iz, W_in
    stacks: tuple = ()
    # arrays the layer passes that are never differentiated (an attention mask)
    constants: tuple = ()


# RMS norm (Zhang & Sennrich, 2019), as PyTorch's nn.RMSNorm: every row i of
# a (..., n) input is divided by its root mean square; no mean is subtracted
# and there is no shift. eps defaults to 1e-6 in the runtime.
RMS_ms = IndexedBase("ms", shape=(NORM_m,), real=True)  # the mean square of row i
RMS_X = IndexedBase("X", shape=(NORM_m, NORM_n), real=True)
RMS_GAMMA = IndexedBase("gamma", shape=(NORM_n,), real=True)
RMS_Y = IndexedBase("Y", shape=(NORM_m, NORM_n), real=True)
RMS_NORM = LayerDeclaration(
    "rms_norm",
    ((RMS_ms[NORM_i], Sum(RMS_X[NORM_i, NORM_t] ** 2, (NORM_t, 0, NORM_n - 1)) / NORM_n),
     (RMS_Y[NORM_i, NORM_r],
      RMS_GAMMA[NORM_r] * RMS_X[NORM_i, NORM_r] / sp.sqrt(RMS_ms[NORM_i] + NORM_EPS))),
    inputs=(RMS_X,), params=(RMS_GAMMA,), saved=(RMS_ms,), outputs=(RMS_Y,),
    scalars=(NORM_EPS,))

# Group norm (Wu & He, 2018), as PyTorch's nn.GroupNorm: the C channels of an
# (N, C, *spatial) input are split into G contiguous groups of K = C / G; each
# (example, group) is normalized over its K channels and all spatial
# positions (flattened to L), then every channel is scaled and shifted by its
# own gamma and beta. The runtime views X as (N, G, K, L) and gamma, beta of
# shape (C,) as (G, K): channel c is k = c mod K of group g = c div K.
GN_N, GN_G, GN_K, GN_L = sp.symbols("N G K L", integer=True, positive=True)
gn_n, gn_g, gn_k, gn_l, gn_k2, gn_l2 = sp.symbols("n g k l k' l'", integer=True)
GN_X = IndexedBase("X", shape=(GN_N, GN_G, GN_K, GN_L), real=True)
GN_MU = IndexedBase("mu", shape=(GN_N, GN_G), real=True)
GN_VAR = IndexedBase("var", shape=(GN_N, GN_G), real=True)
GN_XHAT = IndexedBase("xhat", shape=(GN_N, GN_G, GN_K, GN_L), real=True)
GN_GAMMA = IndexedBase("gamma", shape=(GN_G, GN_K), real=True)
GN_BETA = IndexedBase("beta", shape=(GN_G, GN_K), real=True)
GN_Y = IndexedBase("Y", shape=(GN_N, GN_G, GN_K, GN_L), real=True)
_gn_group = ((gn_k2, 0, GN_K - 1), (gn_l2, 0, GN_L - 1))  # one (example, group)
GROUP_NORM = LayerDeclaration(
    "group_norm",
    ((GN_MU[gn_n, gn_g], Sum(GN_X[gn_n, gn_g, gn_k2, gn_l2], *_gn_group) / (GN_K * GN_L)),
     (GN_VAR[gn_n, gn_g],
      Sum((GN_X[gn_n, gn_g, gn_k2, gn_l2] - GN_MU[gn_n, gn_g]) ** 2, *_gn_group)
      / (GN_K * GN_L)),
     (GN_XHAT[gn_n, gn_g, gn_k, gn_l],
      (GN_X[gn_n, gn_g, gn_k, gn_l] - GN_MU[gn_n, gn_g]) / sp.sqrt(GN_VAR[gn_n, gn_g] + NORM_EPS)),
     (GN_Y[gn_n, gn_g, gn_k, gn_l],
      GN_GAMMA[gn_g, gn_k] * GN_XHAT[gn_n, gn_g, gn_k, gn_l] + GN_BETA[gn_g, gn_k])),
    inputs=(GN_X,), params=(GN_GAMMA, GN_BETA), saved=(GN_MU, GN_VAR, GN_XHAT),
    outputs=(GN_Y,), scalars=(NORM_EPS,))


# --- Self-attention (one head), in index form ---------------------------------
# Batch-first over sequences: sequence n, query position t, key position s,
# model feature d, head feature h. Q = X Wq^T, K = X Wk^T, V = X Wv^T,
# S = Q K^T / sqrt(d_head), P = softmax of S over the keys, O = P V, Y = O Wo^T.
# The mask M[t, s] (1: key s is visible from query t, 0: hidden) multiplies
# exp(S) in the numerator and in the denominator: all ones without a mask,
# M[t, s] = 1 if s <= t else 0 for causal attention. It is an input that is
# never differentiated.
ATT_N, ATT_T = sp.symbols("N T", integer=True, positive=True)  # sequences, positions
ATT_D, ATT_H = sp.symbols("d_model d_head", integer=True, positive=True)
ATT_n, ATT_t, ATT_s, ATT_s2, ATT_d, ATT_h = sp.symbols("n t s s' d h", integer=True)
ATT_X = IndexedBase("X", shape=(ATT_N, ATT_T, ATT_D), real=True)
ATT_Wq = IndexedBase("Wq", shape=(ATT_H, ATT_D), real=True)
ATT_Wk = IndexedBase("Wk", shape=(ATT_H, ATT_D), real=True)
ATT_Wv = IndexedBase("Wv", shape=(ATT_H, ATT_D), real=True)
ATT_Wo = IndexedBase("Wo", shape=(ATT_D, ATT_H), real=True)
ATT_M = IndexedBase("M", shape=(ATT_T, ATT_T), real=True)
ATT_Q = IndexedBase("Q", shape=(ATT_N, ATT_T, ATT_H), real=True)
ATT_K = IndexedBase("K", shape=(ATT_N, ATT_T, ATT_H), real=True)
ATT_V = IndexedBase("V", shape=(ATT_N, ATT_T, ATT_H), real=True)
ATT_S = IndexedBase("S", shape=(ATT_N, ATT_T, ATT_T), real=True)
ATT_P = IndexedBase("P", shape=(ATT_N, ATT_T, ATT_T), real=True)
ATT_O = IndexedBase("O", shape=(ATT_N, ATT_T, ATT_H), real=True)
ATT_Y = IndexedBase("Y", shape=(ATT_N, ATT_T, ATT_D), real=True)


def _att_project(W):
    return Sum(ATT_X[ATT_n, ATT_t, ATT_d] * W[ATT_h, ATT_d], (ATT_d, 0, ATT_D - 1))


SELF_ATTENTION = (
    (ATT_Q[ATT_n, ATT_t, ATT_h], _att_project(ATT_Wq)),
    (ATT_K[ATT_n, ATT_t, ATT_h], _att_project(ATT_Wk)),
    (ATT_V[ATT_n, ATT_t, ATT_h], _att_project(ATT_Wv)),
    (ATT_S[ATT_n, ATT_t, ATT_s],
     Sum(ATT_Q[ATT_n, ATT_t, ATT_h] * ATT_K[ATT_n, ATT_s, ATT_h], (ATT_h, 0, ATT_H - 1))
     / sqrt(ATT_H)),
    (ATT_P[ATT_n, ATT_t, ATT_s],
     ATT_M[ATT_t, ATT_s] * exp(ATT_S[ATT_n, ATT_t, ATT_s])
     / Sum(ATT_M[ATT_t, ATT_s2] * exp(ATT_S[ATT_n, ATT_t, ATT_s2]), (ATT_s2, 0, ATT_T - 1))),
    (ATT_O[ATT_n, ATT_t, ATT_h],
     Sum(ATT_P[ATT_n, ATT_t, ATT_s] * ATT_V[ATT_n, ATT_s, ATT_h], (ATT_s, 0, ATT_T - 1))),
    (ATT_Y[ATT_n, ATT_t, ATT_d],
     Sum(ATT_O[ATT_n, ATT_t, ATT_h] * ATT_Wo[ATT_d, ATT_h], (ATT_h, 0, ATT_H - 1))),
)


# --- Dropout, embedding, residual (derivations/12_dropout_embedding_residual.py) ---
# Batch-first like the dense layer: example i, unit r of a layer of n units.
DROPOUT_n = sp.Symbol("n", integer=True, positive=True)
DROPOUT_p = sp.Symbol("p", nonnegative=True)  # the probability of dropping a unit, 0 <= p < 1
DROPOUT_X = IndexedBase("X", shape=(m, DROPOUT_n), real=True)
# The 0/1 keep-mask, drawn by the runtime: an input of the layer, never differentiated.
DROPOUT_M = IndexedBase("mask", shape=(m, DROPOUT_n), real=True)
DROPOUT_Y = IndexedBase("Y", shape=(m, DROPOUT_n), real=True)
# Inverted dropout: the kept units are scaled by 1/(1 - p) while training, so
# that the expected output equals the input and inference is the identity.
DROPOUT = ((DROPOUT_Y[i, r], DROPOUT_X[i, r] * DROPOUT_M[i, r] / (1 - DROPOUT_p)),)

# Embedding: row ids[s] of the table E for each of N ids (any shape of ids,
# flattened), a vector of D numbers; V rows in the table.
EMBEDDING_N, EMBEDDING_V, EMBEDDING_D = sp.symbols("N V D", integer=True, positive=True)
EMBEDDING_s, EMBEDDING_d = sp.symbols("s d", integer=True)
EMBEDDING_ids = IndexedBase("ids", shape=(EMBEDDING_N,), integer=True)
EMBEDDING_E = IndexedBase("E", shape=(EMBEDDING_V, EMBEDDING_D), real=True)
EMBEDDING_Y = IndexedBase("Y", shape=(EMBEDDING_N, EMBEDDING_D), real=True)
# An Indexed index: E is read at the row the id names.
EMBEDDING = ((EMBEDDING_Y[EMBEDDING_s, EMBEDDING_d],
              EMBEDDING_E[EMBEDDING_ids[EMBEDDING_s], EMBEDDING_d]),)

# Residual block Y = X + f(X). X feeds the block twice: directly, and as the
# input Xf of the inner layers f, whose output F comes back as an input of
# the sum. dXf is what the inner layers' backward returns when given dF.
RESIDUAL_n = sp.Symbol("n", integer=True, positive=True)
RESIDUAL_X = IndexedBase("X", shape=(m, RESIDUAL_n), real=True)
RESIDUAL_Xf = IndexedBase("Xf", shape=(m, RESIDUAL_n), real=True)
RESIDUAL_F = IndexedBase("F", shape=(m, RESIDUAL_n), real=True)
RESIDUAL_Y = IndexedBase("Y", shape=(m, RESIDUAL_n), real=True)
RESIDUAL = (
    (RESIDUAL_Xf[i, r], RESIDUAL_X[i, r]),  # the branch into f
    (RESIDUAL_Y[i, r], RESIDUAL_X[i, r] + RESIDUAL_F[i, r]),  # the skip connection
)


# --- Convolutions (derivations/13_convolution.py) ---------------------------
# Stride 1, no padding, cross-correlation as PyTorch computes it: output
# position p of channel o reads the input window X[n, c, p .. p + k - 1] of
# every input channel c. The input index p + j is shifted: the engine keeps
# a range condition in the input gradient, where the window leaves the input.
CONV_N = sp.Symbol("N", integer=True, positive=True)  # examples in the batch
CONV_C_IN, CONV_C_OUT = sp.symbols("C_in C_out", integer=True, positive=True)
CONV_L, CONV_K = sp.symbols("L k", integer=True, positive=True)  # length, kernel size
conv_n, conv_o, conv_c, conv_p, conv_j = sp.symbols("n o c p j", integer=True)
CONV1D_X = IndexedBase("X", shape=(CONV_N, CONV_C_IN, CONV_L), real=True)
CONV1D_W = IndexedBase("W", shape=(CONV_C_OUT, CONV_C_IN, CONV_K), real=True)
CONV_B = IndexedBase("b", shape=(CONV_C_OUT,), real=True)
CONV1D_Y = IndexedBase("Y", shape=(CONV_N, CONV_C_OUT, CONV_L - CONV_K + 1), real=True)

# Y[n, o, p] = b[o] + sum_c sum_j X[n, c, p + j] W[o, c, j]
CONV1D = ((CONV1D_Y[conv_n, conv_o, conv_p],
           CONV_B[conv_o] + Sum(CONV1D_X[conv_n, conv_c, conv_p + conv_j]
                                * CONV1D_W[conv_o, conv_c, conv_j],
                                (conv_c, 0, CONV_C_IN - 1), (conv_j, 0, CONV_K - 1))),)

# The 2-d layer: an image of H_in x W_in, a kernel of k_h x k_w.
CONV_H, CONV_WIDTH = sp.symbols("H_in W_in", integer=True, positive=True)
CONV_KH, CONV_KW = sp.symbols("k_h k_w", integer=True, positive=True)
conv_q, conv_i = sp.symbols("q i", integer=True)
CONV2D_X = IndexedBase("X", shape=(CONV_N, CONV_C_IN, CONV_H, CONV_WIDTH), real=True)
CONV2D_W = IndexedBase("W", shape=(CONV_C_OUT, CONV_C_IN, CONV_KH, CONV_KW), real=True)
CONV2D_Y = IndexedBase("Y", shape=(CONV_N, CONV_C_OUT, CONV_H - CONV_KH + 1,
                                   CONV_WIDTH - CONV_KW + 1), real=True)

# Y[n, o, p, q] = b[o] + sum_c sum_i sum_j X[n, c, p + i, q + j] W[o, c, i, j]
CONV2D = ((CONV2D_Y[conv_n, conv_o, conv_p, conv_q],
           CONV_B[conv_o] + Sum(CONV2D_X[conv_n, conv_c, conv_p + conv_i, conv_q + conv_j]
                                * CONV2D_W[conv_o, conv_c, conv_i, conv_j],
                                (conv_c, 0, CONV_C_IN - 1), (conv_i, 0, CONV_KH - 1),
                                (conv_j, 0, CONV_KW - 1))),)


# --- Recurrence (RNN) ---------------------------------------------------------
# h_t = tanh(x_t W_ih^T + h_{t-1} W_hh^T + b), h_{-1} = 0, for every example n
# and time step t. The layer returns every h_t; h_{t-1} is read through a
# shifted time index, zero before the first step.
RNN_N, RNN_T, RNN_D, RNN_H = sp.symbols("N T d_in d_h", integer=True, positive=True)
rnn_n, rnn_t, rnn_d, rnn_e, rnn_f = sp.symbols("n t d e f", integer=True)
RNN_X = IndexedBase("X", shape=(RNN_N, RNN_T, RNN_D), real=True)
RNN_W_IH = IndexedBase("W_ih", shape=(RNN_H, RNN_D), real=True)
RNN_W_HH = IndexedBase("W_hh", shape=(RNN_H, RNN_H), real=True)
RNN_B = IndexedBase("b", shape=(RNN_H,), real=True)
RNN_A = IndexedBase("A", shape=(RNN_N, RNN_T, RNN_H), real=True)  # pre-activations
RNN_HID = IndexedBase("H", shape=(RNN_N, RNN_T, RNN_H), real=True)
RNN = (
    (RNN_A[rnn_n, rnn_t, rnn_e],
     Sum(RNN_X[rnn_n, rnn_t, rnn_d] * RNN_W_IH[rnn_e, rnn_d], (rnn_d, 0, RNN_D - 1))
     + Piecewise((Sum(RNN_HID[rnn_n, rnn_t - 1, rnn_f] * RNN_W_HH[rnn_e, rnn_f],
                      (rnn_f, 0, RNN_H - 1)), rnn_t >= 1), (0, True))
     + RNN_B[rnn_e]),
    (RNN_HID[rnn_n, rnn_t, rnn_e], tanh(RNN_A[rnn_n, rnn_t, rnn_e])),
)
# The layer: X is read, the weights are learned, every H is returned and saved
# (the backward pass reads tanh(A) back as H). Nothing says "time loop": the
# read of H at t - 1 by A's equation is what makes the kernels loop over t
# (symbolic/scheduling.py), forwards here and backwards in the gradient.
RNN_LAYER = LayerDeclaration(
    "rnn", RNN, inputs=(RNN_X,), params=(RNN_W_IH, RNN_W_HH, RNN_B), saved=(RNN_HID,),
    outputs=(RNN_HID,))


# --- Pooling (derivations/15_pooling.py) ------------------------------------------
# PyTorch's AvgPool1d/2d and MaxPool1d/2d on (N, C, L) and (N, C, H, W) inputs,
# no padding: window p of each channel reads X[n, c, s p + j], j = 0 .. k - 1,
# with the stride s (PyTorch's default: s = k). There are P = (L - k) div s + 1
# windows; the inputs past the last window are read by none (their gradient is 0).
# The stride is a number the kernels take, like epsilon; so are the sizes that no
# array a kernel reads carries (k in the average pool, the input's length in the
# backward pass).
#
# Ties: a max pool's window may hold its maximum at several taps. The gradient
# goes to the FIRST of them (the lowest j; in 2-d the first in row-major order
# (i, j)), as PyTorch's max pooling does. FirstMax states the rule: it is the
# one-hot indicator of that tap, a selection (constant in X almost everywhere,
# so never differentiated), and the max is the selected entry, Y = sum_j S X.
POOL_N, POOL_C, POOL_L, POOL_P = sp.symbols("N C L P", integer=True, positive=True)
POOL_H, POOL_W, POOL_Q = sp.symbols("H W Q", integer=True, positive=True)
POOL_K, POOL_S = sp.symbols("k stride", integer=True, positive=True)  # window, stride
pool_n, pool_c, pool_p, pool_q, pool_i, pool_j = sp.symbols("n c p q i j", integer=True)
POOL1D_X = IndexedBase("X", shape=(POOL_N, POOL_C, POOL_L), real=True)
POOL1D_Y = IndexedBase("Y", shape=(POOL_N, POOL_C, POOL_P), real=True)
POOL1D_S = IndexedBase("S", shape=(POOL_N, POOL_C, POOL_P, POOL_K), real=True)
POOL2D_X = IndexedBase("X", shape=(POOL_N, POOL_C, POOL_H, POOL_W), real=True)
POOL2D_Y = IndexedBase("Y", shape=(POOL_N, POOL_C, POOL_P, POOL_Q), real=True)
POOL2D_S = IndexedBase("S", shape=(POOL_N, POOL_C, POOL_P, POOL_Q, POOL_K, POOL_K), real=True)
_pool_taps1 = ((pool_j, 0, POOL_K - 1),)
_pool_taps2 = ((pool_i, 0, POOL_K - 1), (pool_j, 0, POOL_K - 1))
_pool_x1 = POOL1D_X[pool_n, pool_c, POOL_S * pool_p + pool_j]
_pool_x2 = POOL2D_X[pool_n, pool_c, POOL_S * pool_p + pool_i, POOL_S * pool_q + pool_j]
_pool_y1, _pool_y2 = POOL1D_Y[pool_n, pool_c, pool_p], POOL2D_Y[pool_n, pool_c, pool_p, pool_q]
_pool_s1 = POOL1D_S[pool_n, pool_c, pool_p, pool_j]
_pool_s2 = POOL2D_S[pool_n, pool_c, pool_p, pool_q, pool_i, pool_j]

# Y[n, c, p] = (1/k) sum_j X[n, c, s p + j]
AVG_POOL1D = LayerDeclaration(
    "avg_pool1d", ((_pool_y1, Sum(_pool_x1, *_pool_taps1) / POOL_K),),
    inputs=(POOL1D_X,), params=(), saved=(), outputs=(POOL1D_Y,), scalars=(POOL_S,))
AVG_POOL2D = LayerDeclaration(
    "avg_pool2d", ((_pool_y2, Sum(_pool_x2, *_pool_taps2) / POOL_K**2),),
    inputs=(POOL2D_X,), params=(), saved=(), outputs=(POOL2D_Y,), scalars=(POOL_S,))
# S[n, c, p, j] = [j is the first tap of window p where X is largest]; Y = sum_j S X
MAX_POOL1D = LayerDeclaration(
    "max_pool1d", ((_pool_y1, Sum(_pool_s1 * _pool_x1, *_pool_taps1)),),
    inputs=(POOL1D_X,), params=(), saved=(POOL1D_S,), outputs=(POOL1D_Y,),
    scalars=(POOL_S,), selections=((_pool_s1, FirstMax(_pool_x1, *_pool_taps1)),))
MAX_POOL2D = LayerDeclaration(
    "max_pool2d", ((_pool_y2, Sum(_pool_s2 * _pool_x2, *_pool_taps2)),),
    inputs=(POOL2D_X,), params=(), saved=(POOL2D_S,), outputs=(POOL2D_Y,),
    scalars=(POOL_S,), selections=((_pool_s2, FirstMax(_pool_x2, *_pool_taps2)),))


# --- Strided convolution (derivations/13_convolution.py) ---------------------------
# Conv1d/Conv2d with a stride: output position p reads X[n, c, stride p + j]
# (stride 1: CONV1D and CONV2D above). Zero padding is a pad of the input
# before these equations (and a crop of the input gradient), in the runtime.
CONV_STRIDE = sp.Symbol("stride", integer=True, positive=True)
CONV_P, CONV_Q = sp.symbols("P Q", integer=True, positive=True)  # output positions
CONVS1D_Y = IndexedBase("Y", shape=(CONV_N, CONV_C_OUT, CONV_P), real=True)
CONVS2D_Y = IndexedBase("Y", shape=(CONV_N, CONV_C_OUT, CONV_P, CONV_Q), real=True)
# Y[n, o, p] = b[o] + sum_c sum_j X[n, c, stride p + j] W[o, c, j]
STRIDED_CONV1D = LayerDeclaration(
    "conv1d_strided",
    ((CONVS1D_Y[conv_n, conv_o, conv_p],
      CONV_B[conv_o] + Sum(CONV1D_X[conv_n, conv_c, CONV_STRIDE * conv_p + conv_j]
                           * CONV1D_W[conv_o, conv_c, conv_j],
                           (conv_c, 0, CONV_C_IN - 1), (conv_j, 0, CONV_K - 1))),),
    inputs=(CONV1D_X,), params=(CONV1D_W, CONV_B), saved=(), outputs=(CONVS1D_Y,),
    scalars=(CONV_STRIDE,))
STRIDED_CONV2D = LayerDeclaration(
    "conv2d_strided",
    ((CONVS2D_Y[conv_n, conv_o, conv_p, conv_q],
      CONV_B[conv_o] + Sum(CONV2D_X[conv_n, conv_c, CONV_STRIDE * conv_p + conv_i,
                                    CONV_STRIDE * conv_q + conv_j]
                           * CONV2D_W[conv_o, conv_c, conv_i, conv_j],
                           (conv_c, 0, CONV_C_IN - 1), (conv_i, 0, CONV_KH - 1),
                           (conv_j, 0, CONV_KW - 1))),),
    inputs=(CONV2D_X,), params=(CONV2D_W, CONV_B), saved=(), outputs=(CONVS2D_Y,),
    scalars=(CONV_STRIDE,))


# --- Embedding, declared (derivations/12_dropout_embedding_residual.py) ----------------
# EMBEDDING above with its roles: the table E is the parameter, the ids are read at.
# The engine leaves the id's delta [u = ids[s]] under its sum (a scatter-add).
EMBEDDING_LAYER = LayerDeclaration(
    "embedding", EMBEDDING, inputs=(), params=(EMBEDDING_E,), saved=(),
    outputs=(EMBEDDING_Y,), indices=(EMBEDDING_ids,))

# --- Gated recurrences: GRU and LSTM (derivations/16_gated_recurrence.py) -----
# One time step of each cell, for every example n and hidden unit e: X is the
# step's input x_t (N, d_in), Hp and Cp the previous states h_(t-1), c_(t-1).
# The runtime runs the steps over t (zero initial state) and back, carrying
# each state's gradient from step t+1 into step t; ``states`` names which
# output of a step is the next step's which input. PyTorch's stacked weights
# weight_ih_l0 (gates x d_h, d_in) are split by gate, one array per gate
# (W_ir = rows 0..d_h-1 of W_ih, ...): the runtime passes views. The logistic
# function is written sigma(a) = (1 + tanh(a/2))/2, equal to 1/(1 + e^-a) and
# finite for every a, its derivative too. Saved: the gates and activations,
# which the backward pass reads back (declared.py), not the pre-activations.
GATED_N, GATED_D, GATED_H = sp.symbols("N d_in d_h", integer=True, positive=True)
gated_n, gated_d, gated_e, gated_f = sp.symbols("n d e f", integer=True)
GATED_X = IndexedBase("X", shape=(GATED_N, GATED_D), real=True)
GATED_HP = IndexedBase("Hp", shape=(GATED_N, GATED_H), real=True)  # h_(t-1)
GATED_CP = IndexedBase("Cp", shape=(GATED_N, GATED_H), real=True)  # c_(t-1), LSTM only


def _gated_arrays(*names):
    return tuple(IndexedBase(s, shape=(GATED_N, GATED_H), real=True) for s in names)


def _gates(letters):
    """Per gate g: W_ig (d_h, d_in), W_hg (d_h, d_h), b_ig, b_hg (d_h,), as PyTorch splits them."""
    return {g: (IndexedBase(f"W_i{g}", shape=(GATED_H, GATED_D), real=True),
                IndexedBase(f"W_h{g}", shape=(GATED_H, GATED_H), real=True),
                IndexedBase(f"b_i{g}", shape=(GATED_H,), real=True),
                IndexedBase(f"b_h{g}", shape=(GATED_H,), real=True)) for g in letters}


def _from_input(gate):  # x_t W_ig^T + b_ig
    W_i, _, b_i, _ = gate
    n, d, e = gated_n, gated_d, gated_e
    return Sum(GATED_X[n, d] * W_i[e, d], (d, 0, GATED_D - 1)) + b_i[e]


def _from_hidden(gate):  # h_(t-1) W_hg^T + b_hg
    _, W_h, _, b_h = gate
    n, f, e = gated_n, gated_f, gated_e
    return Sum(GATED_HP[n, f] * W_h[e, f], (f, 0, GATED_H - 1)) + b_h[e]


def _sigma(x):
    return (1 + tanh(x / 2)) / 2


def _params(gates):  # W_ih's gates, W_hh's, b_ih's, b_hh's
    return tuple(gates[g][part] for part in range(4) for g in gates)


def _stacks(gates):  # PyTorch's names of the stacked parameters (weight_ih_l0 ...)
    return tuple((name, tuple(gates[g][part] for g in gates))
                 for part, name in enumerate(("W_ih", "W_hh", "b_ih", "b_hh")))


# GRU (Cho et al., 2014), as PyTorch's nn.GRU: reset r, update z, new n.
# r = sigma(A_r), z = sigma(A_z), n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)),
# h' = (1 - z) * n + z * h.
GRU_GATES = _gates("rzn")
(GRU_AR, GRU_AZ, GRU_R, GRU_Z, GRU_G, GRU_AN, GRU_NEW, GRU_HN) = _gated_arrays(
    "Ar", "Az", "R", "Zg", "G", "An", "Nn", "H")
_ne = (gated_n, gated_e)
GRU_CELL = LayerDeclaration(
    "gru_cell",
    ((GRU_AR[_ne], _from_input(GRU_GATES["r"]) + _from_hidden(GRU_GATES["r"])),
     (GRU_AZ[_ne], _from_input(GRU_GATES["z"]) + _from_hidden(GRU_GATES["z"])),
     (GRU_R[_ne], _sigma(GRU_AR[_ne])),
     (GRU_Z[_ne], _sigma(GRU_AZ[_ne])),
     (GRU_G[_ne], _from_hidden(GRU_GATES["n"])),  # h W_hn^T + b_hn, which r scales
     (GRU_AN[_ne], _from_input(GRU_GATES["n"]) + GRU_R[_ne] * GRU_G[_ne]),
     (GRU_NEW[_ne], tanh(GRU_AN[_ne])),
     (GRU_HN[_ne], (1 - GRU_Z[_ne]) * GRU_NEW[_ne] + GRU_Z[_ne] * GATED_HP[_ne])),
    inputs=(GATED_X, GATED_HP), params=_params(GRU_GATES),
    saved=(GRU_R, GRU_Z, GRU_G, GRU_NEW), outputs=(GRU_HN,),
    states=((GATED_HP, GRU_HN),), stacks=_stacks(GRU_GATES))

# LSTM (Hochreiter & Schmidhuber, 1997), as PyTorch's nn.LSTM: input i,
# forget f, cell g, output o; c' = f * c + i * g, h' = o * tanh(c') (tanh(c')
# its own node, Tc, so that the backward pass reads it rather than computing it).
LSTM_GATES = _gates("ifgo")
(LSTM_AI, LSTM_AF, LSTM_AG, LSTM_AO, LSTM_I, LSTM_F, LSTM_G, LSTM_O, LSTM_C, LSTM_TC,
 LSTM_HN) = _gated_arrays("Ai", "Af", "Ag", "Ao", "I", "F", "Gc", "O", "C", "Tc", "H")
LSTM_CELL = LayerDeclaration(
    "lstm_cell",
    ((LSTM_AI[_ne], _from_input(LSTM_GATES["i"]) + _from_hidden(LSTM_GATES["i"])),
     (LSTM_AF[_ne], _from_input(LSTM_GATES["f"]) + _from_hidden(LSTM_GATES["f"])),
     (LSTM_AG[_ne], _from_input(LSTM_GATES["g"]) + _from_hidden(LSTM_GATES["g"])),
     (LSTM_AO[_ne], _from_input(LSTM_GATES["o"]) + _from_hidden(LSTM_GATES["o"])),
     (LSTM_I[_ne], _sigma(LSTM_AI[_ne])),
     (LSTM_F[_ne], _sigma(LSTM_AF[_ne])),
     (LSTM_G[_ne], tanh(LSTM_AG[_ne])),
     (LSTM_O[_ne], _sigma(LSTM_AO[_ne])),
     (LSTM_C[_ne], LSTM_F[_ne] * GATED_CP[_ne] + LSTM_I[_ne] * LSTM_G[_ne]),
     (LSTM_TC[_ne], tanh(LSTM_C[_ne])),
     (LSTM_HN[_ne], LSTM_O[_ne] * LSTM_TC[_ne])),
    inputs=(GATED_X, GATED_HP, GATED_CP), params=_params(LSTM_GATES),
    saved=(LSTM_I, LSTM_F, LSTM_G, LSTM_O, LSTM_TC),
    outputs=(LSTM_HN, LSTM_C), states=((GATED_HP, LSTM_HN), (GATED_CP, LSTM_C)),
    stacks=_stacks(LSTM_GATES))

# --- Multi-head attention (derivations/11_attention.py, "Many heads") -----------------
# PyTorch's nn.MultiheadAttention(d_model, heads, bias=False, batch_first=True) with
# query = key = value = X: q = X Wq^T, whose last axis of d_model = heads * d_head
# features is split contiguously into heads of d_head (row h d_head + j of Wq feeds
# feature j of head h); scores Q K^T / sqrt(d_head) per head, a softmax over the keys,
# O = P V per head, the heads concatenated in the same order, and Y = concat Wo^T.
# Each weight is one (d_model, d_model) matrix, indexed as PyTorch splits it: the
# affine index h d_head + j reads the row (of Wq, Wk, Wv) or the column (of Wo) of
# feature j of head h; d_model is heads * d_head.
# Sequence n, head h, query position t, key position s, head feature j, model feature c.
#
# The mask B[t, s] is added to the scores, as PyTorch adds a float attn_mask: 0 where
# key s is visible from query t, -inf where it is hidden (causal: s > t), so
# exp(S) = 0 there. Added rather than multiplied (SELF_ATTENTION's M), because then
# the max-shift pass, which shifts by the largest entry of the row, sees only
# visible scores: a hidden score, however large, cannot push every visible
# exponential below the smallest float. B is never differentiated.
MHA_N, MHA_T = sp.symbols("N T", integer=True, positive=True)
MHA_HEADS, MHA_DH = sp.symbols("heads d_head", integer=True, positive=True)
MHA_D = MHA_HEADS * MHA_DH  # d_model
mha_n, mha_h, mha_t, mha_s, mha_s2, mha_j, mha_c = sp.symbols("n h t s s' j c", integer=True)
MHA_X = IndexedBase("X", shape=(MHA_N, MHA_T, MHA_D), real=True)
MHA_Wq = IndexedBase("Wq", shape=(MHA_D, MHA_D), real=True)
MHA_Wk = IndexedBase("Wk", shape=(MHA_D, MHA_D), real=True)
MHA_Wv = IndexedBase("Wv", shape=(MHA_D, MHA_D), real=True)
MHA_Wo = IndexedBase("Wo", shape=(MHA_D, MHA_D), real=True)
MHA_B = IndexedBase("B", shape=(MHA_T, MHA_T), real=True)
MHA_Q = IndexedBase("Q", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_DH), real=True)
MHA_K = IndexedBase("K", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_DH), real=True)
MHA_V = IndexedBase("V", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_DH), real=True)
MHA_S = IndexedBase("S", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_T), real=True)
MHA_P = IndexedBase("P", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_T), real=True)
MHA_O = IndexedBase("O", shape=(MHA_N, MHA_HEADS, MHA_T, MHA_DH), real=True)
MHA_Y = IndexedBase("Y", shape=(MHA_N, MHA_T, MHA_D), real=True)
_mha_row = (mha_n, mha_h, mha_t)


def _mha_project(W):
    """Feature j of head h at position t: sum_c X[n, t, c] W[h d_head + j, c]."""
    return Sum(MHA_X[mha_n, mha_t, mha_c] * W[MHA_DH * mha_h + mha_j, mha_c],
               (mha_c, 0, MHA_D - 1))


MULTI_HEAD_ATTENTION = LayerDeclaration(
    "multi_head_attention",
    ((MHA_Q[(*_mha_row, mha_j)], _mha_project(MHA_Wq)),
     (MHA_K[(*_mha_row, mha_j)], _mha_project(MHA_Wk)),
     (MHA_V[(*_mha_row, mha_j)], _mha_project(MHA_Wv)),
     (MHA_S[(*_mha_row, mha_s)],
      Sum(MHA_Q[(*_mha_row, mha_j)] * MHA_K[mha_n, mha_h, mha_s, mha_j], (mha_j, 0, MHA_DH - 1))
      / sqrt(MHA_DH) + MHA_B[mha_t, mha_s]),
     (MHA_P[(*_mha_row, mha_s)],
      exp(MHA_S[(*_mha_row, mha_s)])
      / Sum(exp(MHA_S[(*_mha_row, mha_s2)]), (mha_s2, 0, MHA_T - 1))),
     (MHA_O[(*_mha_row, mha_j)],
      Sum(MHA_P[(*_mha_row, mha_s)] * MHA_V[mha_n, mha_h, mha_s, mha_j], (mha_s, 0, MHA_T - 1))),
     (MHA_Y[mha_n, mha_t, mha_c],
      Sum(MHA_O[(*_mha_row, mha_j)] * MHA_Wo[mha_c, MHA_DH * mha_h + mha_j],
          (mha_h, 0, MHA_HEADS - 1), (mha_j, 0, MHA_DH - 1)))),
    inputs=(MHA_X,), params=(MHA_Wq, MHA_Wk, MHA_Wv, MHA_Wo),
    saved=(MHA_Q, MHA_K, MHA_V, MHA_S, MHA_P, MHA_O), outputs=(MHA_Y,), constants=(MHA_B,))
