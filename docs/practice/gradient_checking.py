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
# # Gradient checking
#
# Backpropagation is easy to get almost right. A transposed matrix, a
# forgotten factor $1/m$ or a derivative taken at $a$ instead of $z$ still
# gives a network that trains, just worse, and nothing crashes. The notes'
# remedy is to compare the analytic gradient with a numerical one, **once**,
# before training:
#
# $$
# \frac{\partial J}{\partial \theta_i} \approx
# \frac{J(\theta + \varepsilon e_i) - J(\theta - \varepsilon e_i)}{2\varepsilon},
# \qquad \varepsilon = 10^{-4}.
# $$
#
# Our gradients are generated from a SymPy derivation, and the project's tests
# already compare them with finite differences for every activation and loss.
# This page shows the tool a reader uses on *their* network,
# `backprop_derived.gradcheck.gradient_check`, and what its numbers mean.

# %%
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived import Network
from backprop_derived.gradcheck import eps_sweep, gradient_check, random_problem

# %% [markdown]
# ## A report, not a single number
#
# The check perturbs every weight and bias in turn (two evaluations of the
# loss each), compares with `net.gradients`, and reports the largest error per
# layer and per kind of parameter. The error of an entry is measured on the
# scale of its *block*, the layer's weights or its biases:
#
# $$
# \text{error}_i = \frac{|g_{\text{analytic},i} - g_{\text{numeric},i}|}
#   {\max\bigl(\max_{j \in \text{block}} |g_j|,\ \text{floor}\bigr)},
# $$
#
# and the check passes when every error is at most $10^{-5}$. The next
# sections say why the block and not the entry itself, and what the floor is.
# The programming exercise's single figure,
# $\lVert g_{\text{numeric}} - g_{\text{analytic}}\rVert / \lVert g_{\text{numeric}} +
# g_{\text{analytic}}\rVert$, is printed as well.
#
# Here is the network of the command line's default
# (`backprop-derived gradcheck --layers 4,5,3 --activations tanh,softmax --loss cross_entropy`),
# on five random examples:

# %%
net, X, Y = random_problem([4, 5, 3], ["tanh", "softmax"], "cross_entropy", seed=0, batch=5)
print(gradient_check(net, X, Y))

# %% [markdown]
# The worst errors are around $10^{-8}$ and not $10^{-16}$: the central
# difference is itself only an approximation, off by about
# $\tfrac{\varepsilon^2}{6}|\partial^3 J / \partial\theta_i^3|$.
#
# ## Why the scale of the block, not of the entry
#
# That truncation error follows the size of the derivatives of the whole
# block, not the size of the one entry: an entry whose gradient happens to be
# near 0 does not get a smaller error. The figure plots, for every parameter of
# a 64-25-10 network on 20 examples, the absolute error of the central
# difference against the size of its gradient entry. The errors stay within a
# band whatever the entry's size, so dividing each by its own entry (the usual
# "relative error") blows up on the smallest entries: on correct code that
# measure reached $2.3\cdot10^{-5}$ for
# `backprop-derived gradcheck --layers 300,200,10 --batch 20` and reported a
# failure. Measured on the block's scale, the same check passes with
# $2\cdot10^{-8}$, and so did every network tried, from 4-5-3 to
# 500-300-100-10.

# %%
scatter_net, X_s, Y_s = random_problem(
    [64, 25, 10], ["tanh", "softmax"], "cross_entropy", seed=1, batch=20
)
scatter = gradient_check(scatter_net, X_s, Y_s)
analytic = np.concatenate([g.ravel() for g in scatter.analytic.values()])
numeric = np.concatenate([g.ravel() for g in scatter.numerical.values()])
absolute = np.abs(analytic - numeric)
shown = (analytic != 0) & (absolute > 0)  # what a logarithmic axis can show
entrywise = absolute[shown] / np.maximum(np.abs(analytic), np.abs(numeric))[shown]
print(f"largest error on the block's scale:     {scatter.max_relative_error:.1e}")
print(f"largest error on the entry's own scale: {entrywise.max():.1e}")

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 4))
ax.loglog(np.abs(analytic[shown]), absolute[shown], ".", markersize=3, alpha=0.5)
ax.set_xlabel(r"$|g_{\mathrm{analytic}}|$ of the entry")
ax.set_ylabel(r"$|g_{\mathrm{analytic}} - g_{\mathrm{numeric}}|$")
ax.set_title("The error of the central difference does not shrink with the entry")
fig.tight_layout()

# %% [markdown]
# A wrong derivative, on the other hand, is wrong on the scale of its block.
# The project's tests run the check on a hand-written backprop with each of
# the classic slips, a dropped transpose, a wrong sign, a missing $1/m$ and a
# wrong $g'$ ($1 - a$ for tanh instead of $1 - a^2$), and each fails with an
# error above $10^{-2}$, while the same code without the slip passes. The pass
# mark $10^{-5}$ sits about three orders of magnitude from both sides.
#
# **The floor.** $J$ itself is computed only to about $u\,|J|$, with $u$ the
# machine epsilon, so the difference quotient cannot resolve gradients below
# about $u\,|J| / \varepsilon$. A block whose largest gradient is under that
# resolution divided by the pass mark is measured against the floor
# $10\,u \max(1, |J|) / (\varepsilon \cdot 10^{-5})$ instead, about
# $2 \cdot 10^{-6}$ in float64; in float32 the floor is so high that the report
# says the check means little.
#
# ## What a bug looks like
#
# To see the check fail, wrap the network so that its gradient for the first
# weight matrix is 1 % too large, the kind of error a mistyped constant causes.


# %%
class OnePercentTooLarge:
    """The same network, with a subtle bug in dJ/dW for layer 0."""

    def __init__(self, net):
        self.net = net

    def __getattr__(self, name):
        return getattr(self.net, name)

    def gradients(self, X, Y):
        J, dW, db = self.net.gradients(X, Y)
        dW[0] = 1.01 * dW[0]
        return J, dW, db


print(gradient_check(OnePercentTooLarge(net), X, Y))

# %% [markdown]
# The report points at the culprit: layer 0, weights, error
# $0.01/1.01$, while every other block stays near $10^{-9}$.
#
# ## Kinks: when the finite difference is the one that is wrong
#
# A relu has no derivative at $z = 0$. If a pre-activation sits within
# $\varepsilon$ of 0, the two evaluations $J(\theta \pm \varepsilon)$ fall on
# different sides of the kink and their difference measures neither slope.
# The check watches for this: whenever the two perturbed forward passes put
# some relu pre-activation on different sides of 0, the parameter gets a
# warning instead of counting as a failure. Below, unit 0 of the hidden layer
# has $z = 3\cdot 10^{-5}$ on the first example.

# %%
relu_net = Network(layer_sizes=[2, 2, 1], activations=["relu", "identity"], loss="squared_error")
relu_net.weights[0][...] = [[1.0, -1.0], [0.5, 0.5]]
relu_net.biases[0][...] = [3e-5, 0.2]
relu_net.weights[1][...] = [[1.5, -0.7]]
relu_net.biases[1][...] = [0.1]
X_kink = np.array([[0.3, 0.3], [1.0, -1.0], [-0.5, 2.0]])
Y_kink = np.array([[1.0], [0.0], [2.0]])
print(gradient_check(relu_net, X_kink, Y_kink))

# %% [markdown]
# ## Choosing $\varepsilon$
#
# The notes use $\varepsilon = 10^{-4}$ and warn that a much smaller value
# causes "numerical problems". The sweep below repeats the check for
# $\varepsilon = 10^{-1}, \dots, 10^{-10}$ and makes the two competing errors
# visible:
#
# * **truncation**: the central difference is exact for quadratics only; the
#   remainder of the Taylor series gives an error $\propto \varepsilon^2$;
# * **rounding**: $J(\theta+\varepsilon)$ and $J(\theta-\varepsilon)$ agree in
#   most of their digits, and their difference keeps only about
#   $u\,|J| / \varepsilon$ of accuracy, with $u$ the machine epsilon
#   ($2.2\cdot10^{-16}$ in float64, $1.2\cdot10^{-7}$ in float32).
#
# The total is smallest where the two meet, near $\varepsilon \approx u^{1/3}$:
# about $10^{-5}$ in float64, but $5\cdot10^{-3}$ in float32, where the notes'
# $10^{-4}$ is already on the rounding side.

# %%
sweeps = {}
for dtype in (np.float64, np.float32):
    sweep_net = Network(
        layer_sizes=[4, 5, 3],
        activations=["tanh", "softmax"],
        loss="cross_entropy",
        dtype=dtype,
        seed=0,
    )
    sweeps[np.dtype(dtype).name] = eps_sweep(sweep_net, X, Y)

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 4.5))
for (name, sweep), color in zip(sweeps.items(), ["C0", "C1"], strict=True):
    ax.loglog(sweep.eps, sweep.max_relative_error, "o-", color=color, label=f"{name}: largest")
    ax.loglog(
        sweep.eps,
        sweep.median_relative_error,
        "s--",
        color=color,
        alpha=0.6,
        label=f"{name}: median",
    )
eps = sweeps["float64"].eps
ax.loglog(eps, 0.3 * eps**2, ":", color="gray", label=r"slope $\varepsilon^2$ (truncation)")
ax.loglog(eps, 1e-15 / eps, "-.", color="gray", label=r"slope $1/\varepsilon$ (rounding)")
ax.axvline(1e-4, color="k", lw=0.8)
ax.text(1.3e-4, 2.0, "notes' choice", fontsize=8)
ax.set_xlabel(r"$\varepsilon$")
ax.set_ylabel("relative error of the finite difference")
ax.set_ylim(1e-14, 10)
ax.invert_xaxis()
ax.legend(fontsize=8, ncol=2)
ax.set_title("Truncation error gives way to rounding error")
fig.tight_layout()

# %%
for name, sweep in sweeps.items():
    print(
        f"{name}: best eps {sweep.best_eps:.0e}, largest relative error there "
        f"{np.nanmin(sweep.max_relative_error):.1e}"
    )

# %% [markdown]
# ## Then turn it off
#
# Each check costs two forward passes per parameter, so checking a
# 64-25-10 network on one example already costs about 3,500 forward passes,
# against one forward and one backward pass for the analytic gradient. As the
# notes say: check once on a small network and a few examples, then train
# without it. A check that takes longer than a second shows a progress bar
# (on stderr from the shell, with `progress=True` from Python;
# `--no-progress` turns it off). From a shell:
#
# ```console
# $ backprop-derived gradcheck --layers 4,5,3 \
#       --activations tanh,softmax --loss cross_entropy
# $ backprop-derived gradcheck --layers 3,6,2 \
#       --activations relu,identity --loss squared_error \
#       --l2 0.1 --batch 20
# ```
#
# The exit status is 0 when the check passes and 1 when it fails, so it can
# gate a script.
