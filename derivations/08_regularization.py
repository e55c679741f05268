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
# (Coursera's column 0 of $\Theta$). The catalog writes the penalty of one
# layer as one expression, and the cost adds it for every layer:
#
# $$J = \frac1m \sum_{i} L_i + \sum_l P^{(l)} .$$

# %% tags=["hide-input"]
import sympy as sp

from backprop_derived.symbolic.catalog import DENSE, PENALTY, A, W, b, lam, m
from backprop_derived.symbolic.checked import Chain
from backprop_derived.symbolic.engine import (
    backward,
    code_form,
    gradient_chain,
    matrix_chain,
    to_matrix,
    to_total,
)
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.pages import show

SOURCE = "derivations/08_regularization.py"
CODE = {"A": "a_prev", "W": "w", "dZ": "dz"}
SCALARS = {"lambda": "lam"}  # `lambda` is a Python keyword
P = sp.Symbol("P", real=True)

# %%
show(Chain(P, PENALTY, "definition of the penalty"), caption="The L2 penalty of one layer")

# %% [markdown]
# The regularized layer is the dense layer's equation plus the penalty, a
# scalar that feeds the cost directly ($\partial J/\partial P = 1$). The same
# engine call as on the *Vectorized* page now finds two paths from $W$ to the
# cost, and the chain rule adds them; $b$ appears in the penalty nowhere, so its
# gradient is (V2) unchanged:

# %%
LAYER = (*DENSE, (P, PENALTY))
grads = backward(LAYER, [W, b, A], upstream={P: sp.Integer(1)})
for x, name in ((W, "the weights"), (b, "the biases")):
    show(gradient_chain(grads[x], LAYER, upstream={P: sp.Integer(1)}),
         caption=f"Gradient of the regularized cost with respect to {name}")
dW = to_matrix(grads[W], symbols=SCALARS)
show(matrix_chain(grads[W].lhs, grads[W].expr, grads[W].indices, dW, symbols=SCALARS),
     caption="(V1) with the penalty, as matrices")

# %% [markdown]
# The penalty adds $\frac{\lambda}{m} W$ to each weight gradient (V1) and
# nothing to the bias gradients (V2). This is Coursera's
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
     .step(difference, "factored"), caption="The lecture slide's typo")
assert difference != 0 and difference.subs(m, 1) == 0

# %% [markdown]
# A model of any layers (`Sequential`) has no single (V1) to extend: its
# weights are Dense matrices, convolution kernels, recurrent matrices. What
# the penalty adds to each of them is its own gradient, the same engine call
# on the penalty alone; the runtime adds it to the gradient the layers'
# backward passes give, for `Network` and `Sequential` alike.

# %%
PENALTY_ONLY = ((P, PENALTY),)
penalty_grads = backward(PENALTY_ONLY, [W], upstream={P: sp.Integer(1)})
dP = to_matrix(penalty_grads[W], symbols=SCALARS)
show(matrix_chain(penalty_grads[W].lhs, penalty_grads[W].expr, penalty_grads[W].indices, dP,
                  symbols=SCALARS),
     caption="The gradient of the penalty alone, as a matrix")

# %% tags=["hide-input"]
EXPORTS = [
    Kernel("layers", "l2_penalty", ("w", "lam", "m"), to_total(PENALTY, CODE, SCALARS),
           "The L2 penalty of one layer, (lambda / 2m) sum(W**2); biases excluded.",
           "L2 penalty of the Coursera cost", SOURCE, style="scalar"),
    Kernel("layers", "weight_gradient_l2", ("dz", "a_prev", "w", "lam", "m", "out"),
           code_form(dW, CODE),
           "dW = dZ^T A + (lambda/m) W: (V1) plus the gradient of the penalty.",
           "(V1) plus the L2 term", SOURCE, style="matrix"),
    Kernel("layers", "l2_gradient", ("w", "lam", "m", "out"), code_form(dP, CODE),
           "dP/dW = (lambda/m) W: the gradient of one weight array's L2 penalty.",
           "The gradient of the L2 penalty alone", SOURCE, style="matrix"),
]

# %% [markdown]
# ## Exercises
#
# The numbers come from the generated kernels of this page; the answers are
# one click away without the live engine. Watch the $1/m$: it multiplies
# $\lambda$ in the gradient.

# %%
# The numbers come from the runtime, which runs the kernels this page exports;
# `regenerate` runs the page to write those kernels, so it skips this cell.
if __name__ != "__derivation__":
    import numpy as np

    from backprop_derived._generated import layers as generated_layers
    from backprop_derived.symbolic.exercises import Exercise, show_exercises, tex_matrix

    A_ex = np.array([[1.0, -1.0], [2.0, 0.5]])
    W_ex = np.array([[0.5, -2.0], [1.0, 3.0]])
    dZ_ex = np.array([[0.25, 0.0], [-0.5, 1.0]])
    lam_ex, m_ex = 0.4, 2
    dW_ex = generated_layers.weight_gradient_l2(dZ_ex, A_ex, W_ex, lam_ex, m_ex, np.empty_like(W_ex))
    given = (rf"\(A = {tex_matrix(A_ex)}\), \(W = {tex_matrix(W_ex)}\), "
             rf"\(dZ = {tex_matrix(dZ_ex)}\) (its \(1/m\) already in), \(\lambda = {lam_ex}\), "
             rf"\(m = {m_ex}\)")
    show_exercises(
        Exercise(rf"The L2 penalty \(\frac{{\lambda}}{{2m}}\sum W^2\) of the layer with {given}.",
                 float(generated_layers.l2_penalty(W_ex, lam_ex, m_ex)), tolerance=1e-12),
        Exercise(r"With the same numbers, \(dW_{01}\) of (V1) with the penalty.",
                 float(dW_ex[0, 1]), tolerance=1e-12),
        Exercise(r"And \(dW_{11}\).", float(dW_ex[1, 1]), tolerance=1e-12),
    )
