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
# # Why σ′ disappears with cross-entropy
#
# A sigmoid output unit with squared error has the error
# $\delta = (a - y)\,\sigma'(z)$. When the unit is saturated, $z$ far from 0,
# the slope $\sigma'(z)$ is nearly 0, and so is $\delta$, **however wrong the
# output is**: the unit barely learns. With binary cross-entropy the same unit
# has $\delta = a - y$, and the slope is gone. This page derives both errors
# with SymPy, then trains one saturated unit under each loss with the
# project's generated code and plots what happens.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
from IPython.display import Markdown, Math, display

from backprop_derived import Network
from backprop_derived.symbolic.catalog import ACTIVATIONS, z
from backprop_derived.symbolic.printers import latex

y = sp.Symbol("y", real=True)
a = sp.Symbol("a", real=True)
sigma = ACTIVATIONS["sigmoid"]
losses = {
    "squared error": (sigma - y) ** 2 / 2,
    "binary cross-entropy": -(y * sp.log(sigma) + (1 - y) * sp.log(1 - sigma)),
}
delta = {}
for name, E in losses.items():
    d = sp.diff(E, z)
    # Written through the output a = sigma(z): replace e^{-z} by (1 - a)/a.
    through_a = sp.factor(sp.simplify(d.subs(sp.exp(-z), (1 - a) / a)))
    assert sp.simplify(through_a.subs(a, sigma) - d) == 0, name
    delta[name] = through_a

# The two results in the form the text uses, each checked against SymPy's.
textbook = {"squared error": (a - y) * a * (1 - a), "binary cross-entropy": a - y}
for name, form in textbook.items():
    assert sp.expand(form - delta[name]) == 0, name
    display(Math(rf"\text{{{name}:}}\quad \delta = \frac{{\partial E}}{{\partial z}} = "
                 + latex(form)))

# %% [markdown]
# SymPy differentiated each loss with respect to $z$ and rewrote the result
# through the output $a = \sigma(z)$, checking the rewrite. Under squared
# error the factor $a(1 - a) = \sigma'(z)$ stays; under cross-entropy the
# derivative of the logarithm, $1/(a(1-a))$ in effect, cancels it exactly.
# The [Losses × activations](../derivations/07_losses_x_activations.py) page
# derives this for every pair of output activation and loss.
#
# ## The error of a saturated unit
#
# Take target $y = 0$ and a unit whose pre-activation is $z$. For $z = 6$ the
# output is $a \approx 0.9975$: almost maximally wrong.

# %% tags=["hide-input"]
d_se = sp.lambdify((a, y), delta["squared error"])
d_ce = sp.lambdify((a, y), delta["binary cross-entropy"])
g = sp.lambdify(z, sigma)
rows = ["| $z$ | output $a$ | $\\delta$, squared error | $\\delta$, cross-entropy |",
        "|---|---|---|---|"]
for zz in (0.0, 2.0, 4.0, 6.0, 8.0):
    av = g(zz)
    rows.append(f"| {zz:g} | {av:.4f} | {d_se(av, 0.0):.2e} | {d_ce(av, 0.0):.4f} |")
display(Markdown("\n".join(rows)))
ratio = d_ce(g(6.0), 0.0) / d_se(g(6.0), 0.0)
display(Markdown(f"At $z = 6$ the squared-error $\\delta$ is {ratio:.0f} times smaller than "
                 "the cross-entropy one, and every weight gradient into the unit, "
                 "$a_j \\delta$, shrinks with it."))

# %% [markdown]
# ## Learning from a bad start
#
# One sigmoid unit with a single input $x = 1$, weight $w = 3$ and bias
# $b = 3$, so $z = 6$ at the start; target $y = 0$. Both runs use plain
# gradient descent with the same learning rate, 0.5, and the gradients of
# `Network.gradients`, that is the generated code.

# %% tags=["hide-input"]
X = np.ones((1, 1))
Y = np.zeros((1, 1))
runs = {}
for loss in ("squared_error", "binary_cross_entropy"):
    net = Network(layer_sizes=[1, 1], activations=["sigmoid"], loss=loss, seed=0)
    net.weights = [np.array([[3.0]])]
    net.biases = [np.array([3.0])]
    outputs = []
    for _ in range(600):
        outputs.append(float(net.forward(X)[0, 0]))
        _, dW, db = net.gradients(X, Y)
        net.weights = [net.weights[0] - 0.5 * dW[0]]
        net.biases = [net.biases[0] - 0.5 * db[0]]
    runs[loss] = np.array(outputs)

fig, ax = plt.subplots(figsize=(6.4, 3.2))
ax.plot(runs["squared_error"], label="squared error: $\\delta = (a - y)\\,\\sigma'(z)$")
ax.plot(runs["binary_cross_entropy"], label="cross-entropy: $\\delta = a - y$")
ax.set_xlabel("gradient-descent step")
ax.set_ylabel("output $a$ (target 0)")
ax.set_ylim(-0.02, 1.02)
ax.legend(loc="center right", fontsize=8)
ax.grid(alpha=0.3)
fig.tight_layout()
plt.show()

steps = {k: int(np.argmax(v < 0.5)) if np.any(v < 0.5) else None for k, v in runs.items()}
display(Markdown(
    f"Steps until the output first drops below 0.5: "
    f"**{steps['binary_cross_entropy']}** with cross-entropy, "
    + (f"**{steps['squared_error']}** with squared error."
       if steps["squared_error"] is not None
       else f"not within the {len(runs['squared_error'])} steps plotted with squared error.")))

# %% [markdown]
# The cross-entropy unit moves at once, because its error is as large as its
# miss. The squared-error unit sits on the flat shoulder of the sigmoid for a
# long stretch: its $\delta$ is tiny until the weights have crept far enough
# for $\sigma'(z)$ to grow, and only then does it fall. This is the slow start
# Nielsen's chapter 3 describes, and the reason a sigmoid (or softmax) output
# is paired with cross-entropy.
#
# The cancellation is specific to the pair. Cross-entropy with a tanh or ReLU
# output would keep a $g'$ factor, and the hidden layers keep theirs whatever
# the loss: $\delta_j = g'(z_j)\sum_k w_{jk}\delta_k$ still vanishes when a
# hidden unit saturates, which is what careful
# [initialization](../practice/initialization.py) is for.
