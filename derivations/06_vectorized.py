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
# # Vectorized: BP1–BP4 for a minibatch
#
# The earlier pages work one example and one unit at a time. Code works
# one *layer* at a time, for a whole minibatch of $m$ examples, so that the
# arithmetic happens in matrix products (GEMMs). This page derives those matrix
# equations from the index form and lets SymPy turn index sums into
# matrix expressions.
#
# **Layout.** The runtime stores examples in rows (batch-first). $A$ is
# $(m, n_\text{in})$, $W$ is $(n_\text{out}, n_\text{in})$ as in the
# vectorized seed, and $Z$ and $dZ$ are $(m, n_\text{out})$. The seed writes
# $A^{[l]}$ with examples in columns, shape $(n_l, m)$. Every equation below is
# its transpose, which is the whole answer to *why the transpose?*.
#
# **Cost and the $1/m$.** $J = \frac1m\sum_i \mathcal{L}^{(i)}$. We define
# $dZ_{ir} = \partial J/\partial Z_{ir}$, *including* the $1/m$. The code
# multiplies the small output delta by $1/m$ once, before any GEMM, and no
# gradient needs rescaling afterwards.

# %%
import sympy as sp
from sympy import OneMatrix
from sympy.tensor.array.expressions import convert_indexed_to_array
from sympy.tensor.array.expressions.from_array_to_matrix import convert_array_to_matrix

from backprop_derived.symbolic.checked import Chain, assert_clean
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show
from backprop_derived.symbolic.printers import latex

SOURCE = "derivations/06_vectorized.py"
m, n_in, n_out = sp.symbols("m n_in n_out", integer=True, positive=True)
i, r, s, t = sp.symbols("i r s t", integer=True)

# %% [markdown]
# ## The index form, differentiated
#
# One layer: $Z_{ir} = \sum_t A_{it} W_{rt} + b_r$. Its local derivatives come
# from `sympy.diff` (formal index sums, as on the other pages):

# %%
Ai, Wi, bi = sp.IndexedBase("A"), sp.IndexedBase("W"), sp.IndexedBase("b")
Z_ir = sp.Sum(Ai[i, t] * Wi[r, t], (t, -sp.oo, sp.oo)) + bi[r]
dZ_dW = sp.diff(Z_ir.subs(r, sp.Symbol("r'", integer=True)), Wi[r, s]).doit().doit()
assert dZ_dW.has(sp.KroneckerDelta), dZ_dW  # only unit r of each example depends on W_rs
dZ_db = sp.diff(Z_ir, bi[r]).doit()
dZ_dA = assert_clean(sp.diff(Z_ir, Ai[i, s]).doit().doit(), "dZ/dA")
show(
    Chain(sp.Symbol(r"\partial Z_{ir'} / \partial W_{rs}"), dZ_dW, "sympy.diff"),
    Chain(sp.Symbol(r"\partial Z_{ir} / \partial b_{r}"), dZ_db, "sympy.diff"),
    Chain(sp.Symbol(r"\partial Z_{ir} / \partial A_{is}"), dZ_dA, "sympy.diff"),
)

# %% [markdown]
# The Kronecker delta in $\partial Z_{ir'}/\partial W_{rs}$ says that a weight
# of unit $r$ reaches only unit $r$ of each example. So the chain rule over all
# $Z_{ir'}$ collapses to a sum over the examples $i$ (BP1, BP2). $A_{is}$,
# in contrast, feeds every unit $r$ of its example, so its chain rule sums over
# $r$ (BP3).
#
# ## From index sums to matrices
#
# SymPy's `convert_indexed_to_array` and `convert_array_to_matrix` turn each
# contraction into a matrix expression. Each result is then checked entry by
# entry on a concrete layer with $m = 2$, $n_\text{in} = 2$,
# $n_\text{out} = 3$.

# %%
A = sp.MatrixSymbol("a_prev", m, n_in)
W = sp.MatrixSymbol("w", n_out, n_in)
dZ = sp.MatrixSymbol("dz", m, n_out)
b = sp.MatrixSymbol("b", n_out, 1)
SIZES = {m: 2, n_in: 2, n_out: 3}


def to_matrix(index_expr, first):
    return convert_array_to_matrix(convert_indexed_to_array(index_expr, first_indices=first))


CONCRETE = {X: sp.MatrixSymbol(X.name, *(d.subs(SIZES) for d in X.shape)) for X in (A, W, dZ, b)}


def concrete(expr):
    """On the concrete layer; ``ones`` is what its name says."""
    return expr.xreplace(CONCRETE).xreplace({ones: OneMatrix(1, m)}).subs(SIZES)


def entrywise_equal(matrix_expr, entry, rows, cols):
    """``matrix_expr[row, col] == entry(row, col)`` exactly on the concrete sizes."""
    M = sp.Matrix(concrete(matrix_expr).as_explicit())
    return all(sp.expand(M[x, y] - concrete(entry(x, y)).doit()) == 0
               for x in range(rows) for y in range(cols))


BP1 = to_matrix(sp.Sum(dZ[i, r] * A[i, s], (i, 0, m - 1)), [r, s])
BP3 = to_matrix(sp.Sum(dZ[i, r] * W[r, s], (r, 0, n_out - 1)), [i, s])
forward = to_matrix(sp.Sum(A[i, t] * W[r, t], (t, 0, n_in - 1)), [i, r]) + OneMatrix(m, 1) * b.T
ones = sp.MatrixSymbol("ones", 1, m)  # the runtime keeps this vector of m ones
BP2 = ones * dZ  # the sum over examples as a product (a GEMV, faster than a reduction)

checks = {
    "forward Z = A W^T + 1 b^T": entrywise_equal(
        forward, lambda x, y: sp.Sum(A[x, t] * W[y, t], (t, 0, n_in - 1)) + b[y, 0], 2, 3),
    "(BP1) dW = dZ^T A": entrywise_equal(
        BP1, lambda x, y: sp.Sum(dZ[i, x] * A[i, y], (i, 0, m - 1)), 3, 2),
    "(BP2) db = ones^T dZ": entrywise_equal(
        BP2, lambda x, y: sp.Sum(dZ[i, y], (i, 0, m - 1)), 1, 3),
    "(BP3) dA = dZ W": entrywise_equal(
        BP3, lambda x, y: sp.Sum(dZ[x, r] * W[r, y], (r, 0, n_out - 1)), 2, 2),
}
for name, ok in checks.items():
    if not ok:
        raise AssertionError(f"{name}: matrix form differs from the index form")
for name, expr in (("Z", forward), ("dW", BP1), ("db", BP2), ("dA_{prev}", BP3)):
    show(Chain(sp.Symbol(name), expr, "index form, converted and checked entrywise"))

# %% [markdown]
# (BP4), $dZ = dA \odot g'(Z)$, is elementwise. It is generated per activation
# on the *Activations* page, through the stored outputs where possible.
#
# ## The Coursera form
#
# The Coursera notes keep the bias as column 0 of
# $\Theta^{(l)} = [\,b \mid W\,]$ and prepend a 1 to each activation vector,
# so that $\Theta^{(l)} [1; a] = W a + b$. They loop over examples and accumulate
# $\Delta^{(l)} \mathrel{+}= \delta^{(l+1)} (a^{(l)})^T$. Then
# $D = \frac1m(\Delta + \lambda\Theta)$ outside column 0. For the example
# $t$, $\delta^{(t)}$ is row $t$ of $m\,dZ$, so the accumulated sum is exactly
# $m\,[\,\mathbf 1^T dZ \mid dZ^T A\,]$. Hence $D$ equals the vectorized
# gradients (BP2 | BP1), plus the L2 term of the *Regularization* page. SymPy
# checks the accumulation on the concrete layer:

# %%
theta_rows = []
Delta = sp.zeros(3, 3)
for example in range(2):
    delta_t = concrete(sp.Matrix(3, 1, lambda x, _, e=example: m * dZ[e, x]))
    a_t = concrete(sp.Matrix([[1], [A[example, 0]], [A[example, 1]]]))
    Delta += delta_t * a_t.T  # Coursera: Delta := Delta + delta a^T
vectorized = sp.Matrix.hstack(concrete(BP2).as_explicit().T, concrete(BP1).as_explicit())
if sp.expand(Delta / 2 - vectorized) != sp.zeros(3, 3):
    raise AssertionError("Coursera's accumulated Delta/m differs from [db | dW]")
show(Chain(sp.Symbol(r"\frac{1}{m}\Delta"), Delta / 2, "Coursera's accumulator, m = 2")
     .step(vectorized, "equals [db | dW] of BP2 and BP1"))

# %%
EXPORTS = [
    Kernel("layers", "affine", ("a_prev", "w", "b", "out"), forward,
           "Z = A W^T + 1 b^T: the pre-activations of a layer for a whole batch.",
           "Forward pass z_j = b_j + sum_i a_i w_ij, batch-first", SOURCE, style="matrix"),
    Kernel("layers", "weight_gradient", ("dz", "a_prev", "out"), BP1,
           "dW = dZ^T A (the 1/m is already inside dZ).", "(BP1), eq. (5) and (11)",
           SOURCE, style="matrix"),
    Kernel("layers", "bias_gradient", ("dz", "ones", "out"), BP2,
           "db = 1^T dZ: the sum of dZ over the examples, as a product with m ones.",
           "(BP2), eq. (6) and (12)", SOURCE, style="matrix"),
    Kernel("layers", "backpropagate", ("dz", "w", "out"), BP3,
           "dA_prev = dZ W: the error carried back to the previous layer's outputs.",
           "(BP3), the sum over k in eq. (11)", SOURCE, style="matrix"),
]
LATEX = {name: latex(e) for name, e in (("Z", forward), ("dW", BP1), ("db", BP2), ("dA", BP3))}
