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
# # Initialization
#
# Gradient descent has to start somewhere. The notes give a rule, and a
# warning about the obvious choice: starting from all zeros does not work.
# This page shows both, on the real runtime.
#
# ## The rule
#
# Each weight of layer $l$ is drawn uniformly from $[-\epsilon_{\text{init}},
# \epsilon_{\text{init}}]$ with
#
# $$
# \epsilon_{\text{init}} = \frac{\sqrt 6}{\sqrt{n_{\text{in}} + n_{\text{out}}}},
# $$
#
# where $n_{\text{in}}$ and $n_{\text{out}}$ count the units on either side of
# the weight matrix. A uniform variable on $[-\epsilon, \epsilon]$ has variance
# $\epsilon^2/3 = 2/(n_{\text{in}} + n_{\text{out}})$: wide layers get small
# weights, so that a sum over many inputs stays of order one and the
# sigmoid or tanh is not saturated from the first step. `Network` does this by
# default, and `seed` makes it reproducible. (The $\epsilon$ here has nothing to
# do with the one of gradient checking.)

# %%
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived import Network

net = Network(layer_sizes=[64, 25, 10], activations=["sigmoid", "softmax"], seed=0)
for l, W in enumerate(net.weights):
    n_out, n_in = W.shape
    eps_init = np.sqrt(6) / np.sqrt(n_in + n_out)
    print(f"weights[{l}]: eps_init = {eps_init:.4f}, drawn range [{W.min():.4f}, {W.max():.4f}]")

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(8, 3), sharey=True)
for l, (W, ax) in enumerate(zip(net.weights, axes, strict=True)):
    n_out, n_in = W.shape
    eps_init = np.sqrt(6) / np.sqrt(n_in + n_out)
    ax.hist(W.ravel(), bins=30, color="C0", alpha=0.8)
    for x in (-eps_init, eps_init):
        ax.axvline(x, color="C3", ls="--")
    ax.set_title(f"weights[{l}]: {n_out} x {n_in},  $\\epsilon_{{init}}$ = {eps_init:.3f}")
    ax.set_xlabel("initial weight")
axes[0].set_ylabel("count")
fig.tight_layout()

# %% [markdown]
# ## Why not zeros?
#
# Take a hidden layer whose units all have the same incoming weights, the same
# bias and the same outgoing weights; all zeros is the extreme case. Then:
#
# 1. for every input, every unit computes the same $z_j$ and the same
#    activation $a_j$;
# 2. backpropagation gives every unit the same error
#    $\delta_j = g'(z_j)\sum_k w_{jk}\delta_k$, because $z_j$ and the outgoing
#    weights $w_{jk}$ are the same for every $j$ (weights written source
#    first, $w_{jk}$ from hidden unit $j$ to output $k$, as on every page);
# 3. so the gradients $\partial J/\partial w_{ij} = a_i \delta_j$ of the
#    incoming weights are the same for every $j$, which in the runtime's
#    `weights[0][j, i]` means equal rows, and the outgoing weights get the
#    same gradient $a_j \delta_k$ for every $j$ (equal columns of
#    `weights[1]`);
# 4. after the update, the units are still identical, and the argument repeats
#    at the next step.
#
# By induction, the units stay copies of each other however long we train:
# a layer of five units is as good as one unit. Let's watch it happen. The
# data are four noisy clusters at the corners of a square, labelled like XOR;
# one sigmoid unit draws a single line through the plane and can get at most
# three of the four clusters right. The cluster sizes differ, so that the
# all-zero network is not already sitting at a point where the gradient
# vanishes.

# %%
rng = np.random.default_rng(0)
corners = [((1, 1), 0, 15), ((-1, -1), 0, 15), ((1, -1), 1, 20), ((-1, 1), 1, 20)]
X = np.concatenate([1.5 * np.array(c) + 0.5 * rng.normal(size=(n, 2)) for c, _, n in corners])
Y = np.concatenate([np.full(n, float(label)) for _, label, n in corners])[:, None]


def train(zero_init, epochs=150):
    """2-5-1 sigmoid network; returns it and the incoming weights of each hidden unit per epoch."""
    net = Network(
        layer_sizes=[2, 5, 1],
        activations=["sigmoid", "sigmoid"],
        loss="binary_cross_entropy",
        seed=0,
        init="zeros" if zero_init else "uniform",
    )
    path = [net.weights[0].copy()]
    for epoch in range(epochs):
        net.fit(X, Y, epochs=1, batch_size=10, learning_rate=1.0, seed=epoch, progress=False)
        path.append(net.weights[0].copy())
    return net, np.array(path)  # path: (epochs + 1, 5 units, 2 inputs)


nets, paths = {}, {}
for name, zero_init in [("all zeros", True), ("notes' random rule", False)]:
    nets[name], paths[name] = train(zero_init)

# %% tags=["hide-input"]
grid = np.linspace(-3.5, 3.5, 150)
G1, G2 = np.meshgrid(grid, grid)
fig, axes = plt.subplots(2, 2, figsize=(9, 8))
for col, name in enumerate(nets):
    path = paths[name]
    ax = axes[0, col]
    for j in range(path.shape[1]):
        ax.plot(path[:, j, 0], path[:, j, 1], "-", lw=2.5 - 0.4 * j, label=f"unit {j}")
        ax.plot(path[-1, j, 0], path[-1, j, 1], "o", color=ax.lines[-1].get_color())
    ax.set_title(f"{name}: paths of the hidden units' weights", fontsize=10)
    ax.set_xlabel("$w_{j1}$")
    ax.set_ylabel("$w_{j2}$")
    ax.legend(fontsize=7)
    ax = axes[1, col]
    p = nets[name].forward(np.column_stack([G1.ravel(), G2.ravel()])).reshape(G1.shape)
    ax.contourf(G1, G2, p, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.7)
    ax.contour(G1, G2, p, levels=[0.5], colors="k")
    ax.scatter(X[:, 0], X[:, 1], c=Y[:, 0], cmap="RdBu_r", edgecolors="k", s=18)
    ax.set_title(f"{name}: training accuracy {nets[name].score(X, Y):.0%}", fontsize=10)
    ax.set_aspect("equal")
fig.tight_layout()

# %% [markdown]
# Left, all five paths lie on top of each other: the five units start equal
# and move together, and the network ends up with a single straight
# decision boundary. Right, each unit starts from its own small random
# weights, the units specialise, and together they carve out the two
# diagonal quadrants.
#
# How identical is "identical"? In exact arithmetic, exactly. In floating
# point, the matrix products may round the rows slightly differently, so the
# units drift apart at the level of the last bits:

# %%
for name, net in nets.items():
    W1 = net.weights[0]
    spread = np.abs(W1 - W1[0]).max()
    print(
        f"{name:>20}: largest difference between two units' incoming weights "
        f"{spread:.1e} (weights of size {np.abs(W1).max():.2f})"
    )

# %% [markdown]
# A difference of order $10^{-12}$ could in principle grow, since the symmetric
# state is unstable, but far too slowly to rescue training. Random
# initialization is not a refinement here; it is what makes the hidden
# layer worth having.
