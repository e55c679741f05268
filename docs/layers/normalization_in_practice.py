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
# # Normalization in practice: handwritten digits
#
# The *Normalization* derivation ends in the generated kernels that
# `BatchNorm` and `LayerNorm` run. Here they train. The data are
# scikit-learn's 1,797 handwritten digits (8x8 grey images, 10 classes),
# split as on *Putting it together*. Three models of the same depth see the
# same minibatches with the same learning rate:
#
# * **plain**: three sigmoid hidden layers of 64 units;
# * **batch norm**: the same, with `BatchNorm` between each dense layer and
#   its sigmoid;
# * **layer norm + residual**: a dense layer, then two residual blocks
#   $X + \text{relu}(\text{Dense}(\text{LayerNorm}(X)))$ (the "pre-norm" block
#   of transformers), then the softmax readout.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived.examples.digits import load_split
from backprop_derived.layers import (
    Activation,
    BatchNorm,
    Dense,
    LayerNorm,
    Residual,
    Sequential,
)

X_train, X_test, y_train, y_test = load_split(seed=0)
H = 64

# %%

def plain(seed=0):
    return [Dense(64, H, seed=seed), Activation("sigmoid"),
            Dense(H, H, seed=seed + 1), Activation("sigmoid"),
            Dense(H, H, seed=seed + 2), Activation("sigmoid")]


def with_batch_norm(seed=0):
    return [Dense(64, H, seed=seed), BatchNorm(H), Activation("sigmoid"),
            Dense(H, H, seed=seed + 1), BatchNorm(H), Activation("sigmoid"),
            Dense(H, H, seed=seed + 2), BatchNorm(H), Activation("sigmoid")]


def residual_layer_norm(seed=0):
    return [Dense(64, H, seed=seed),
            Residual(LayerNorm(H), Dense(H, H, seed=seed + 1), Activation("relu")),
            Residual(LayerNorm(H), Dense(H, H, seed=seed + 2), Activation("relu"))]


MODELS = {"plain": plain, "batch norm": with_batch_norm,
          "layer norm + residual": residual_layer_norm}
histories = {}
for name, body in MODELS.items():
    model = Sequential([*body(), Dense(H, 10, seed=9), Activation("softmax")],
                       loss="cross_entropy")
    histories[name] = model.fit(X_train, y_train, epochs=30, batch_size=64,
                                learning_rate=0.1, seed=0,
                                validation_data=(X_test, y_test))
    print(f"{name:22s} final training loss {histories[name].loss[-1]:.3f}   "
          f"test accuracy {model.score(X_test, y_test):.1%}")

# %% [markdown]
# ## Training curves
#
# Left, the mean minibatch cross-entropy of each epoch; right, the accuracy
# on the 450 held-out digits after each epoch, measured in evaluation mode
# (batch norm then uses its running statistics, not the test batch's).

# %% tags=["hide-input"]
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
for name, history in histories.items():
    epochs = np.arange(1, len(history.loss) + 1)
    left.plot(epochs, history.loss, label=name)
    right.plot(epochs, history.val_score, label=name)
left.set(xlabel="epoch", ylabel="training loss", yscale="log", title="cross-entropy")
right.set(xlabel="epoch", ylabel="test accuracy", title="held-out digits", ylim=(0, 1))
right.legend(loc="lower right")
fig.tight_layout()

# %% [markdown]
# ## Why: the gradient at the start
#
# The plain sigmoid stack stays on a plateau near $\ln 10 \approx 2.30$, the
# loss of a uniform guess over ten classes. The gradients at the
# initialization show why. Below, the norm of $dW$ for each dense layer,
# first to last, on one batch of 256 training digits, for freshly built
# models:

# %% tags=["hide-input"]
for name, body in MODELS.items():
    model = Sequential([*body(), Dense(H, 10, seed=9), Activation("softmax")],
                       loss="cross_entropy")
    _, grads = model.gradients(X_train[:256], y_train[:256])
    norms = [np.linalg.norm(g[key]) for g in grads for key in g if key.endswith("W")]
    print(f"{name:22s}", "  ".join(f"{x:8.2e}" for x in norms))

# %% [markdown]
# Without normalization the gradient shrinks by a factor of about four at
# each sigmoid on its way down (the sigmoid's slope is at most $1/4$), so the
# first layer's gradient is some sixty times smaller than the readout's. Batch norm
# rescales each pre-activation by $1/\sigma$ over the batch, and the backward
# pass applies the same $1/\sigma$ (the compact form's factor
# $\gamma/\sigma$): the first layer's gradient is as large as the others',
# and the same learning rate moves every layer. The residual blocks give
# the gradient an identity path around each block, and layer norm keeps each
# block's input at a fixed scale per example. That model needs no batch
# statistics, so it behaves the same for a batch of one.
