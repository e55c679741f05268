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
# # Regularization
#
# The Coursera notes add an L2 penalty on every weight, but not on the biases
# (Coursera's column 0 of $\Theta$):
#
# $$J = \frac1m \sum_{t=1}^m E^{(t)} + \frac{\lambda}{2m} \sum_l \sum_{r,s} \left(W^{(l)}_{rs}\right)^2 .$$
#
# SymPy differentiates the penalty with respect to a weight and to a bias:

# %%
import sympy as sp

from backprop_derived.symbolic.checked import Chain, assert_clean
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/08_regularization.py"
lam, m = sp.symbols("lambda m", positive=True)
l, r, s, u, p, q = sp.symbols("l r s u p q", integer=True)
W, b = sp.IndexedBase("W"), sp.IndexedBase("b")
penalty = lam / (2 * m) * sp.Sum(W[u, p, q] ** 2, (u, -sp.oo, sp.oo), (p, -sp.oo, sp.oo),
                                 (q, -sp.oo, sp.oo))
d_weight = assert_clean(sp.diff(penalty, W[l, r, s]).doit().doit(), "dpenalty/dW")
d_bias = sp.diff(penalty, b[l, r]).doit()
show(
    Chain(sp.Symbol(r"\partial P / \partial W^{(l)}_{rs}"), sp.Derivative(penalty, W[l, r, s]),
          "the penalty P").step(d_weight, "sympy.diff"),
    Chain(sp.Symbol(r"\partial P / \partial b^{(l)}_{r}"), d_bias, "biases are not penalized"),
)
assert d_bias == 0

# %% [markdown]
# The penalty adds $\frac{\lambda}{m} W$ to each weight gradient (BP1) and
# nothing to the bias gradients (BP2). This is Coursera's
# $D^{(l)}_{ij} = \frac1m\left(\Delta^{(l)}_{ij} + \lambda\Theta^{(l)}_{ij}\right)$
# for $j \neq 0$. The notes flag the version on the lecture slide, which
# leaves out the outer parentheses, as a typo. SymPy shows the two differ
# whenever $\lambda \neq 0$ and $m \neq 1$:

# %%
Delta, theta = sp.symbols("Delta Theta", real=True)
correct = (Delta + lam * theta) / m
slide = Delta / m + lam * theta
difference = sp.factor(slide - correct)
show(Chain(sp.Symbol("D_{slide} - D"), slide - correct, "slide minus notes")
     .step(difference, "factor"))
assert difference != 0 and difference.subs(m, 1) == 0

# %%
a_prev, dz, w = (sp.MatrixSymbol(n, sp.Symbol("n"), sp.Symbol("n"))
                 for n in ("a_prev", "dz", "w"))
w_elem, half_scale = sp.symbols("w l2_scale", real=True)
EXPORTS = [
    Kernel("layers", "l2_penalty", ("w", "l2_scale"), half_scale * w_elem ** 2,
           "l2_scale * sum(W**2), with l2_scale = lambda / (2m); biases excluded.",
           "L2 penalty of the Coursera cost", SOURCE, style="scalar"),
    Kernel("layers", "weight_gradient_l2", ("dz", "a_prev", "w", "l2_scale", "out"),
           dz.T * a_prev + sp.Symbol("l2_scale") * w,
           "dW = dZ^T A + (lambda/m) W, with l2_scale = lambda / m.",
           "(BP1) plus the L2 term", SOURCE, style="matrix"),
]
