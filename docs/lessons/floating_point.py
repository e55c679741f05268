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
# # Overflow, and floats that are close but not equal
#
# The derivation pages work with exact numbers: SymPy proves that two
# expressions are equal. The generated code works with IEEE 754 doubles (or
# singles), which hold about 16 (or 7) significant digits and nothing larger
# than about $1.8 \times 10^{308}$. Two things follow that every reader of a
# gradient check meets sooner or later: an exponential overflows long before a
# probability does, and two correct programs seldom agree to the last bit.
# This page puts a number on both.

# %% tags=["hide-input"]
import math

import numpy as np
import sympy as sp
from IPython.display import Markdown, Math, display

from backprop_derived import Network
from backprop_derived.reference_loop import reference_gradients
from backprop_derived.symbolic.printers import latex

# %% [markdown]
# ## Log-sum-exp at $z = 1000$
#
# Softmax with cross-entropy needs $\log \sum_j e^{z_j}$. Written as it
# stands, the sum overflows as soon as one logit passes
# $\log(\text{largest double})$:

# %% tags=["hide-input"]
largest = np.finfo(np.float64).max
display(Markdown(
    f"The largest double is ${largest / 1e308:.4g} \\times 10^{{308}}$, so $e^{{z}}$ is "
    f"infinite for $z > \\log({largest / 1e308:.4g} \\times 10^{{308}}) = {np.log(largest):.2f}$ "
    f"(in float32 already for $z > {np.log(np.finfo(np.float32).max):.2f}$)."))

z = np.array([1000.0, 999.0, 998.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive_lse = np.log(np.sum(np.exp(z)))
    naive_softmax = np.exp(z) / np.sum(np.exp(z))
display(Markdown(
    f"For the logits $z = (1000, 999, 998)$ the naive formulas give "
    f"$\\log\\sum_j e^{{z_j}}$ = `{naive_lse}` and softmax = `{naive_softmax}`: "
    "an infinity, then infinity over infinity, which is not a number."))

# %% [markdown]
# The cure is one line of algebra. Let $M = \max_j z_j$. Each term factors as
# $e^{z_j} = e^{M} e^{z_j - M}$, so
#
# $$\log \sum_{j=0}^{n-1} e^{z_j} = M + \log \sum_{j=0}^{n-1} e^{z_j - M},
# \qquad \operatorname{softmax}(z)_k = \frac{e^{z_k - M}}{\sum_{j=0}^{n-1} e^{z_j - M}}.$$
#
# Every exponent on the right is at most 0, so nothing overflows, and the
# largest term is exactly $e^0 = 1$, so the sum is at least 1 and its
# logarithm cannot be $-\infty$ either. SymPy checks the factorisation of one
# term, which is all the identity needs: the sum is linear, so equal terms
# give equal sums for every $n$.

# %% tags=["hide-input"]
zj, M = sp.symbols("z_j M", real=True)
term = sp.exp(M) * sp.exp(zj - M) - sp.exp(zj)
assert sp.simplify(term) == 0
display(Math(r"e^{M}\, e^{z_j - M} - e^{z_j} = " + latex(sp.simplify(term))
             + r"\qquad\checkmark\ \text{(simplified to 0)}"))

# %% [markdown]
# The generated output kernels are written this way (see the
# [Activations](../derivations/01_activations.py) page for where the shift
# comes from). Through the runtime, the same logits give finite numbers:

# %%
net = Network(layer_sizes=[3, 3], activations=["softmax"], loss="cross_entropy", seed=0)
net.weights, net.biases = [np.eye(3)], [np.zeros(3)]  # so that z = x
X, Y = np.array([[1000.0, 999.0, 998.0]]), np.array([[1.0, 0.0, 0.0]])
print("softmax:", net.forward(X), "  cross-entropy:", net.loss(X, Y))

# %% tags=["hide-input"]
exact = float(sp.N(sp.log(1 + sp.exp(-1) + sp.exp(-2)), 20))
error = abs(net.loss(X, Y) - exact)
ulp_1000 = float(np.spacing(1000.0))
assert error <= ulp_1000
display(Markdown(
    f"By hand: the loss is $\\log(1 + e^{{-1}} + e^{{-2}}) = {exact:.16f}$ "
    f"(SymPy, 20 digits). The runtime's value differs from it by {error:.1e}: "
    f"the kernel computes $M + \\log\\sum_j e^{{z_j - M}} - z_0$ (the labelled "
    f"logit is $z_0 = 1000$), and near 1000 "
    f"consecutive doubles are {ulp_1000:.1e} apart, so adding and then "
    "subtracting $M = 1000$ costs up to that much. Finite, and correct to the "
    "precision the inputs carry."))

# %% [markdown]
# ## Why two correct programs disagree in the last digits
#
# Floating-point addition is not associative: every sum is rounded, and the
# rounding depends on the order of the terms.

# %% tags=["hide-input"]
a_, b_, c_ = 1e16, -1e16, 1.0
display(Markdown(
    f"$(10^{{16}} + (-10^{{16}})) + 1 = {(a_ + b_) + c_:g}$ but "
    f"$10^{{16}} + ((-10^{{16}}) + 1) = {a_ + (b_ + c_):g}$; and "
    f"$0.1 + 0.2 = {0.1 + 0.2!r}$, not 0.3."))

rng = np.random.default_rng(0)
values = rng.standard_normal(1_000_000)
sequential = 0.0
for v in values.tolist():
    sequential += v
pairwise = float(np.sum(values))
fsum = math.fsum(values.tolist())
display(Markdown(
    "A million standard-normal numbers summed three ways: left to right "
    f"(`{sequential!r}`), by NumPy's pairwise `sum` (`{pairwise!r}`), and "
    f"exactly rounded by `math.fsum` (`{fsum!r}`). The left-to-right error is "
    f"{abs(sequential - fsum):.1e}, the pairwise one {abs(pairwise - fsum):.1e}."))

# %% [markdown]
# A gradient is a large sum of products, and the generated kernels, the
# per-example loop of the Coursera notes and a BLAS library each add in a
# different order (BLAS blocks its loops to fit the cache). So they agree to
# a relative error of a few units of the last place, times a factor that
# grows slowly with the number of terms, and no better.

# %% tags=["hide-input"]
rows = ["| dtype | largest relative difference, generated vs per-example loop | machine epsilon |",
        "|---|---|---|"]
for dtype in (np.float64, np.float32):
    net = Network(layer_sizes=[64, 25, 10], activations=["sigmoid", "softmax"],
                  loss="cross_entropy", seed=1, dtype=dtype)
    Xb = rng.standard_normal((50, 64)).astype(dtype)
    Yb = np.eye(10)[rng.integers(0, 10, 50)].astype(dtype)
    _, dW, db = net.gradients(Xb, Yb)
    _, rW, rb = reference_gradients(net, Xb, Yb)
    worst = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r)))
                for g, r in zip(dW + db, rW + rb, strict=True))
    rows.append(f"| {np.dtype(dtype).name} | {worst:.1e} | {np.finfo(dtype).eps:.1e} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# (The per-example loop always computes in float64, so the float32 row
# measures the float32 kernels' own rounding.)
#
# The rule that follows:
#
# * **`==` (bit for bit)** when the *same code* runs on the *same inputs* in
#   the *same order*: two runs of `fit` with the same seed, a model saved and
#   loaded again, a kernel called twice. A difference there is a bug.
# * **`numpy.allclose` with a stated tolerance** whenever the order of the
#   arithmetic may differ: another algorithm, another library, another
#   number of threads, float32 against float64. A sensible relative
#   tolerance is a small multiple of machine epsilon times the length of the
#   longest sum, about $10^{-12}$ to $10^{-10}$ in float64 and $10^{-5}$ to
#   $10^{-4}$ in float32 for the layers on this site. Finite differences are
#   coarser still; [Gradient checking](../practice/gradient_checking.py)
#   works out their error.

# %% tags=["hide-input"]
histories = []
for _ in range(2):
    net = Network(layer_sizes=[64, 25, 10], activations=["sigmoid", "softmax"],
                  loss="cross_entropy", seed=3)
    net.fit(Xb.astype(np.float64), Yb.astype(np.float64), epochs=3, batch_size=10,
            learning_rate=0.5, seed=3, progress=False)
    histories.append([w.copy() for w in net.weights])
same = all(np.array_equal(p, q) for p, q in zip(*histories, strict=True))
assert same
display(Markdown("Two runs of `fit` with the same seeds, compared with `==`: "
                 + ("**bit-identical**." if same else "**different** (a bug).")))

# %% [markdown]
# ## Sources
#
# * David Goldberg, [What every computer scientist should know about
#   floating-point arithmetic](https://doi.org/10.1145/103162.103163), ACM
#   Computing Surveys 23(1), 1991: rounding and the non-associativity of
#   addition.
# * Pierre Blanchard, Desmond J. Higham and Nicholas J. Higham,
#   [Accurately computing the log-sum-exp and softmax
#   functions](https://doi.org/10.1093/imanum/draa038), IMA Journal of
#   Numerical Analysis 41(4), 2021: the shifted formulas and their error.
# * Nicholas J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd
#   ed., SIAM, 2002, chapter 4: why pairwise summation is more accurate than
#   left to right.
