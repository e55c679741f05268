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
# # Convolution in practice: finding a motif in noise
#
# The *Convolution* derivation ends in generated kernels and the `Conv1d`
# layer that runs them. Here the layer learns the task convolutions are made
# for: **does a short pattern occur anywhere in a signal?** Each signal is 64
# samples of Gaussian noise. Half of them contain a 7-sample motif at a random
# position; the other half contain, half of the time, a *decoy*, the same
# motif played backwards, with the same energy. A detector of loudness fails
# on the decoys; the network has to learn the motif's shape, wherever it is.
#
# The model is `Conv1d(1, 8, 7)`, a ReLU (`Activation("relu")`, the generated
# activation kernels), the maximum of each channel over the positions, and a
# `Dense(8, 1)` readout into a sigmoid with binary cross-entropy. The pooling
# and the loss are a few lines of NumPy on this page, the optimizer is the
# runtime's `Adam`, and the convolution's forward and backward are the
# generated kernels.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived.layers import Activation, Conv1d, Dense
from backprop_derived.optim import Adam

L, K = 64, 7
MOTIF = 1.2 * np.array([1.0, 2.0, 3.0, -3.0, -2.0, -1.0, 0.0])
DECOY = MOTIF[::-1]
rng = np.random.default_rng(0)


def signals(n):
    """n noisy signals (n, 1, L) and their labels (n, 1): 1 if MOTIF occurs."""
    X = rng.normal(size=(n, 1, L))
    label = rng.integers(0, 2, size=n)
    start = rng.integers(0, L - K + 1, size=n)
    decoy = (label == 0) & (rng.random(n) < 0.5)
    for s in range(n):
        if label[s]:
            X[s, 0, start[s]:start[s] + K] += MOTIF
        elif decoy[s]:
            X[s, 0, start[s]:start[s] + K] += DECOY
    return X, label[:, None].astype(float)


# %% tags=["hide-input"]
conv = Conv1d(1, 8, K, seed=0)
relu = Activation("relu")
dense = Dense(8, 1, seed=0)


def forward(X, train=True):
    """Pre-activation z of the readout, and the argmax positions of the pooling."""
    H = relu.forward(conv.forward(X, train), train)
    where = H.argmax(axis=2)[:, :, None]
    pooled = np.take_along_axis(H, where, axis=2)[:, :, 0]
    return dense.forward(pooled, train), where, H.shape


def probability(z):
    return 1 / (1 + np.exp(-z))

# %% [markdown]
# ## Training
#
# A step draws a fresh batch of 64 signals. The mean binary cross-entropy of
# the sigmoid output $a = \sigma(z)$ is computed from $z$ in its stable form,
# and its delta at the readout's input is $dz = (a - y)/m$ (derived on
# *Losses × activations*); `Dense.backward` turns it into the gradient of the pooled features; the
# maximum passes each channel's gradient to the one position it took; and
# `Activation.backward` and `Conv1d.backward` do the rest, filling
# `conv.grads["W"]` and `conv.grads["b"]`.

# %%
layers = (conv, dense)
params = [p for layer in layers for p in layer.params.values()]
adam = Adam(lr=0.01)  # the runtime's optimizer, torch.optim.Adam's rule and defaults
losses = []
for step in range(1, 1201):
    X, y = signals(64)
    z, where, shape = forward(X)
    losses.append(np.mean(np.logaddexp(0, z) - y * z))  # -y log a - (1 - y) log(1 - a)
    dz = (probability(z) - y) / len(y)
    d_pooled = dense.backward(dz)
    dH = np.zeros(shape)
    np.put_along_axis(dH, where, d_pooled[:, :, None], axis=2)
    conv.backward(relu.backward(dH))
    adam.step(params, [layer.grads[k] for layer in layers for k in layer.params])

X_test, y_test = signals(4000)
z_test, _, _ = forward(X_test, train=False)
accuracy = ((z_test > 0) == (y_test > 0.5)).mean()
print(f"after 1200 steps, mean loss of the last 100 steps {np.mean(losses[-100:]):.4f}")
print(f"accuracy on 4000 new signals: {accuracy:.2%}")
assert accuracy >= 0.95

# %% [markdown]
# ## What the filters learned
#
# The readout weighs each channel's maximum. The filter of the channel with
# the largest weight is compared below with the motif: a matched filter
# correlates best with the pattern it looks for, so it should look like the
# motif itself (up to scale), and not like the decoy. On the right, one test
# signal that contains the motif, and that channel's response over the
# positions: the peak is where the motif starts.

# %% tags=["hide-input"]
best = int(np.argmax(dense.params["W"][0]))
filt = conv.params["W"][best, 0]
print("correlation of the filter with the motif:",
      f"{np.corrcoef(filt, MOTIF)[0, 1]:.2f}; with the decoy: {np.corrcoef(filt, DECOY)[0, 1]:.2f}")

s = int(np.flatnonzero(y_test[:, 0] == 1)[0])
response = relu.forward(conv.forward(X_test[s:s + 1], train=False), train=False)[0, best]
fig, (ax_f, ax_s) = plt.subplots(1, 2, figsize=(9, 3.2))
ax_f.plot(filt / np.abs(filt).max(), "o-", label="learned filter (scaled)")
ax_f.plot(MOTIF / np.abs(MOTIF).max(), "s--", label="motif (scaled)")
ax_f.set_xlabel("tap j")
ax_f.set_title("strongest channel's filter")
ax_f.legend(fontsize=8)
ax_s.plot(X_test[s, 0], color="0.6", lw=1, label="signal")
ax_s.plot(np.arange(len(response)), response / response.max() * 3, color="C0",
          label="channel response (scaled)")
ax_s.set_xlabel("position")
ax_s.set_title("a test signal with the motif")
ax_s.legend(fontsize=8)
fig.tight_layout()
