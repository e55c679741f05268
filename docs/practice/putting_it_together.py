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
# # Putting it together
#
# The notes close with a recipe for training a network:
#
# 1. pick an architecture;
# 2. initialize the weights randomly;
# 3. implement forward propagation and
# 4. the cost function and backpropagation;
# 5. check the gradient numerically, once, then switch the check off;
# 6. minimize the cost with gradient descent or a ready-made optimizer.
#
# Steps 3 and 4 are what the derivation pages generate; this page runs the
# whole recipe on three problems: handwritten digits, a regression curve and
# XOR. Every number below is computed when the site is built.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived import Network
from backprop_derived.examples import coursera_wiki as wiki
from backprop_derived.examples.digits import load_split, run_digits
from backprop_derived.examples.regression import run_regression, true_curve
from backprop_derived.examples.xor import X_XOR, hidden_activations, run_xor, success_rate
from backprop_derived.gradcheck import gradient_check
from backprop_derived.reference_loop import reference_gradients
from backprop_derived.unrolling import get_parameters, set_parameters, unroll

# %% [markdown]
# ## Handwritten digits
#
# ### 1. Architecture
#
# scikit-learn ships 1,797 handwritten digits as 8x8 grey images, so nothing
# is downloaded. Following the notes' defaults (one hidden layer, as many
# output units as classes): 64 inputs, one per pixel, 25 hidden units and 10
# outputs. The outputs form a softmax, trained with the cross-entropy loss.
# A quarter of the images is put aside for testing and never trained on.

# %%
X_train, X_test, y_train, y_test = load_split()
print(
    f"{len(X_train)} training images, {len(X_test)} test images, "
    f"{X_train.shape[1]} pixels each, scaled to [0, 1]"
)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for digit, ax in enumerate(axes):
    ax.imshow(X_train[y_train == digit][0].reshape(8, 8), cmap="gray_r")
    ax.set_title(str(digit))
    ax.axis("off")

# %% [markdown]
# ### 2. Initialize
#
# `Network` draws every weight uniformly from $[-\epsilon, \epsilon]$,
# $\epsilon = \sqrt 6/\sqrt{n_{\text{in}} + n_{\text{out}}}$ (see
# [Initialization](../initialization/)); `seed` makes the draw reproducible.
# $\lambda = 1$ is the exercise's regularization strength.

# %%
net = Network(
    layer_sizes=[64, 25, 10],
    activations=["sigmoid", "softmax"],
    loss="cross_entropy",
    l2=1.0,
    seed=0,
)
J_start = net.loss(X_train, y_train)
print(
    f"{get_parameters(net).size} parameters; cost before training J = {J_start:.4f}"
    f" (about log 10 = {np.log(10):.4f}: every class equally likely)"
)

# %% [markdown]
# ### 3-4. Forward pass, cost and backpropagation
#
# `net.loss` and `net.gradients` run the generated kernels on the whole batch
# at once. The notes describe the same computation one example at a time:
# accumulate $\Delta^{(l)} := \Delta^{(l)} + \delta^{(l+1)}(a^{(l)})^T$ over
# `for t in range(m)`, then $D^{(l)} = \frac1m(\Delta^{(l)} + \lambda\Theta^{(l)})$
# except in the bias column. `reference_gradients` is that loop, written out
# (`src/backprop_derived/reference_loop.py`). On 50 training images the two
# agree to rounding:

# %%
J, dW, db = net.gradients(X_train[:50], y_train[:50])
J_loop, dW_loop, db_loop = reference_gradients(net, X_train[:50], y_train[:50])
print(f"J: vectorized {J:.15f}, loop {J_loop:.15f}")
for l in range(2):
    print(
        f"layer {l}: largest difference dW {np.abs(dW[l] - dW_loop[l]).max():.1e}, "
        f"db {np.abs(db[l] - db_loop[l]).max():.1e}"
    )

# %% [markdown]
# **Unrolling.** An optimizer sees one long vector $\theta$, not a list of
# matrices. `unroll` / `roll` convert both ways, in our layout or in the
# notes' Octave layout, where $\Theta^{(l)} = [b \mid W]$ is stored column by
# column as `Theta(:)`. With the Octave layout we can replay the wiki's test
# case for a linear-output network (tanh hidden layer, $\lambda = 0.01$)
# and compare with the numbers Octave printed there:

# %%
wiki_net = Network(layer_sizes=list(wiki.LAYER_SIZES), activations=list(wiki.ACTIVATIONS),
                   loss=wiki.LOSS, l2=wiki.LAMBDA)
set_parameters(wiki_net, wiki.NN_PARAMS, order="octave")
J_wiki, dW_wiki, db_wiki = wiki_net.gradients(wiki.X, wiki.Y)
printed = wiki.GRAD_PRINTED  # the numbers as the wiki prints them
print(f"cost J = {J_wiki:.6f}   (the wiki prints {wiki.J_PRINTED})")
print(f"{'entry of the gradient':>22}  {'ours':>10}  {'wiki':>10}")
for n, (ours, theirs) in enumerate(
        zip(unroll(dW_wiki, db_wiki, order="octave"), printed, strict=True), start=1):
    print(f"{n:>22}  {ours:10.7f}  {theirs:10.7f}")

# %% [markdown]
# ### 5. Check the gradient, once
#
# On ten images the full check perturbs each of the parameters twice:

# %%
report = gradient_check(net, X_train[:10], y_train[:10])
print(report)

# %% [markdown]
# ### 6. Optimize
#
# The notes hand $J$ and its gradient to `fminunc`; we hand them to SciPy's
# L-BFGS (`net.fit(..., optimizer="lbfgs")`), for at most 200 iterations.
# For comparison, minibatch gradient descent with momentum on the same cost:
# 30 passes over the data in minibatches of 32.

# %%
digits = run_digits(seed=0)
sgd_net = Network(
    layer_sizes=[64, 25, 10],
    activations=["sigmoid", "softmax"],
    loss="cross_entropy",
    l2=1.0,
    seed=0,
)
sgd_history = sgd_net.fit(
    X_train,
    y_train,
    epochs=30,
    batch_size=32,
    learning_rate=0.2,
    momentum=0.9,
    validation_data=(X_test, y_test),
    seed=0,
    progress=False,
)

print(
    f"L-BFGS: {digits.history.epochs} iterations, final J = {digits.history.loss[-1]:.4f}, "
    f"training accuracy {digits.train_accuracy:.2%}, test accuracy {digits.test_accuracy:.2%}"
)
print(
    f"SGD:    {sgd_history.epochs} epochs, last epoch's mean minibatch cost "
    f"{sgd_history.loss[-1]:.4f}, "
    f"test accuracy {sgd_net.score(X_test, y_test):.2%}"
)

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, history, unit in [
    (axes[0], digits.history, "L-BFGS iteration"),
    (axes[1], sgd_history, "epoch (minibatch SGD + momentum)"),
]:
    steps = np.arange(0, history.epochs + 1)
    ax.plot(steps, [history.initial_loss, *history.loss], label="training cost J")
    ax.plot(steps[1:], history.val_loss, label="test-set cost")
    ax.set_xlabel(unit)
    ax.set_yscale("log")
    ax.legend()
axes[0].set_ylabel("cost")
fig.tight_layout()

# %% [markdown]
# The cost on the test images stays above the training cost, as it should
# for examples the network has not seen; the regularization keeps the gap
# small. Where are the remaining mistakes?

# %% tags=["hide-input"]
wrong = np.flatnonzero(digits.predicted != digits.y_test)
fig = plt.figure(figsize=(10, 4))
ax = fig.add_subplot(1, 2, 1)
ax.imshow(digits.confusion, cmap="Blues")
for (i, j), count in np.ndenumerate(digits.confusion):
    if count:
        ax.text(
            j,
            i,
            count,
            ha="center",
            va="center",
            fontsize=7,
            color="white" if count > 20 else "black",
        )
ax.set_xlabel("predicted")
ax.set_ylabel("true")
ax.set_xticks(range(10))
ax.set_yticks(range(10))
ax.set_title(f"test set: {len(wrong)} mistakes out of {len(digits.y_test)}")
for k, i in enumerate(wrong[:8]):
    ax = fig.add_subplot(2, 8, 4 + (k // 4) * 8 + k % 4 + 1)
    ax.imshow(digits.X_test[i].reshape(8, 8), cmap="gray_r")
    ax.set_title(f"{digits.y_test[i]} as {digits.predicted[i]}", fontsize=8)
    ax.axis("off")
fig.tight_layout()

# %% [markdown]
# ## Regression: a linear output unit
#
# The notes' bonus section turns the classifier into a regression network:
# keep a nonlinear hidden layer ($\tanh$, 8 units), drop the sigmoid on the
# single output unit, and use the squared-error cost
# $J = \frac1{2m}\sum_t (a^{(t)} - y^{(t)})^2 + \frac{\lambda}{2m}\sum W^2$.
# Instead of the exercise's data file we draw 60 noisy points around a curve,
# with a fixed seed, and run 200 L-BFGS iterations as the notes do.

# %%
reg = run_regression(seed=0)
fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(reg.x, reg.y, "o", ms=4, label="training data (noisy)")
ax.plot(reg.grid, true_curve(reg.grid), "--", color="gray", label="curve the data came from")
ax.plot(reg.grid, reg.fit, "-", lw=2, label="1-8-1 tanh network")
ax.set_xlabel("x")
ax.set_ylabel("y")
ax.legend()
fig.tight_layout()
print(f"{reg.history.epochs} L-BFGS iterations, final cost J = {reg.history.loss[-1]:.4f}")
print(
    f"mean squared error on the training points: network {reg.train_mse:.4f}, "
    f"best straight line {reg.line_mse:.4f}, noise variance {reg.noise**2:.4f}"
)

# %% [markdown]
# The network's error is close to the variance of the noise: it has found the
# curve, not the noise. A straight line, the model without a hidden layer,
# misses it by a factor of twenty or so.
#
# ## XOR: what the hidden units do
#
# XOR (output 1 when exactly one input is 1) is the classic function that a
# single unit cannot compute: no line separates $(0,1), (1,0)$ from
# $(0,0), (1,1)$. Two hidden units are enough, if they learn the right things.

# %%
xor = run_xor(seed=0)
print("input   hidden units    output")
for x, h, out in zip(X_XOR, xor.hidden, xor.output, strict=True):
    print(f"{x.astype(int)}   {h.round(3)}   {out:.3f} -> {int(out >= 0.5)}")
for j, name in enumerate(xor.hidden_names):
    print(f"hidden unit {j} is close to: {name}")

# %% tags=["hide-input"]
grid = np.linspace(-0.25, 1.25, 121)
G1, G2 = np.meshgrid(grid, grid)
points = np.column_stack([G1.ravel(), G2.ravel()])
H = hidden_activations(xor.net, points)
panels = [
    (H[:, 0], f"hidden unit 0: {xor.hidden_names[0]}"),
    (H[:, 1], f"hidden unit 1: {xor.hidden_names[1]}"),
    (xor.net.forward(points)[:, 0], "output: x1 XOR x2"),
]
fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.8))
for ax, (values, title) in zip(axes, panels, strict=True):
    image = ax.contourf(
        G1, G2, values.reshape(G1.shape), levels=np.linspace(0, 1, 11), cmap="RdBu_r"
    )
    ax.contour(G1, G2, values.reshape(G1.shape), levels=[0.5], colors="k")
    ax.scatter(X_XOR[:, 0], X_XOR[:, 1], c=[0, 1, 1, 0], cmap="RdBu_r", edgecolors="k", s=60)
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
fig.colorbar(image, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# Each hidden unit is a sigmoid of a linear function of the inputs, so it
# splits the plane with one line (black). The two lines together cut out the
# band between them, and the output unit, another single line but in the
# space of the hidden activations, combines the two half-planes into XOR.
#
# The 2-2-1 network is the smallest that can do it, and it has no room to
# spare: from some random starting points training ends in a local minimum
# that gets one of the four cases wrong.

# %%
solved, tried = success_rate(range(20))
print(f"{solved} of {tried} random initializations learn XOR within 200 L-BFGS iterations")
