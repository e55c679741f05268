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
# # Attention in practice: reversing a sequence
#
# The *Self-attention* derivation ends in three generated kernels and the
# `SelfAttention` layer that runs them. Here the layer learns a task that
# needs attention and nothing else: **reverse a sequence of tokens**. The
# output at position $t$ must be the token at position $T - 1 - t$, so each
# position has to look somewhere else, and where depends on the position
# only, not on the tokens.
#
# Each position's input is two one-hot vectors side by side: which token it
# holds, and which position it is. The model is one attention head and a
# linear readout per position into token scores, trained with softmax
# cross-entropy and Adam. The readout is a few lines of NumPy on this page,
# the optimizer is the runtime's `Adam` (`backprop_derived.optim`), and the
# attention layer's forward and backward are the generated kernels.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived.layers import SelfAttention
from backprop_derived.optim import Adam

T, V = 8, 10            # positions, vocabulary
D = V + T               # token one-hot + position one-hot
rng = np.random.default_rng(0)


def sequences(n):
    """n random sequences as inputs X (n, T, D) and their reversals (n, T)."""
    tokens = rng.integers(0, V, size=(n, T))
    X = np.zeros((n, T, D))
    X[np.arange(n)[:, None], np.arange(T), tokens] = 1
    X[:, np.arange(T), V + np.arange(T)] = 1
    return X, tokens[:, ::-1]


# %%
attention = SelfAttention(d_model=D, d_head=8, seed=0)
R = rng.normal(0.0, D ** -0.5, (V, D))  # readout: token scores from each output position
c = np.zeros(V)

# %% [markdown]
# ## Training
#
# A step draws a fresh batch of 64 sequences. The readout's gradients are
# those of a dense layer followed by softmax cross-entropy (the mean over
# every position of every sequence): $dZ = (\text{softmax}(Z) - \text{onehot})/n$,
# $dR = dZ^\top Y$, $dc = \mathbf 1^\top dZ$, and $dY = dZ\,R$ is what the
# attention layer's `backward` takes. Adam updates all six arrays in place.

# %% tags=["hide-input"]
def readout(Y):
    """Token probabilities at every position: softmax(Y R^T + c), max-shifted."""
    Z = Y @ R.T + c
    Z -= Z.max(axis=-1, keepdims=True)
    prob = np.exp(Z)
    return prob / prob.sum(axis=-1, keepdims=True)


def readout_loss(Y, target):
    """The mean cross-entropy over every position, and dZ = (softmax(Z) - onehot) / n."""
    prob = readout(Y)
    rows, labels = np.arange(target.size), target.ravel()
    loss = -np.log(prob.reshape(-1, V)[rows, labels]).mean()
    dZ = prob.reshape(-1, V).copy()
    dZ[rows, labels] -= 1
    return loss, (dZ / target.size).reshape(prob.shape)


def readout_grads(dZ, Y):
    """dR = dZ^T Y and dc = 1^T dZ, summed over every position of every sequence."""
    return {"R": np.einsum("ntv,ntd->vd", dZ, Y), "c": dZ.sum(axis=(0, 1))}


# %%
params = {**attention.params, "R": R, "c": c}
adam = Adam(lr=0.01)  # the runtime's optimizer, torch.optim.Adam's rule and defaults
losses = []
for step in range(800):
    X, target = sequences(64)
    Y = attention.forward(X)
    loss, dZ = readout_loss(Y, target)
    attention.backward(dZ @ R)  # dY = dZ R: the layer's generated backward pass
    grads = {**attention.grads, **readout_grads(dZ, Y)}
    adam.step(list(params.values()), [grads[k] for k in params])
    losses.append(loss)

# %% tags=["hide-input"]
X_test, target_test = sequences(2000)
predicted = readout(attention.forward(X_test, train=False)).argmax(axis=-1)
accuracy = (predicted == target_test).mean()
print(f"after 800 steps, training loss {losses[-1]:.4f}")
print(f"token accuracy on 2000 new sequences: {accuracy:.2%}")
print("input:   ", X_test[0, :, :V].argmax(axis=-1))
print("output:  ", predicted[0])
assert accuracy >= 0.95

# %% [markdown]
# ## What the head learned
#
# The weights $P_{ts}$ of the trained head, recomputed here in plain NumPy
# from its parameters ($P = \text{softmax}(QK^\top/\sqrt{d_\text{head}})$ for
# one test sequence). Every query position $t$ puts its largest weight on the
# key $T - 1 - t$: the anti-diagonal. The weight is not all there (about two
# thirds, the rest spread thinly over the other keys), but it is enough: the
# readout only needs the value of that key to dominate the mixture.
# Positions are one-hot, so the head has found this through the position half
# of `Wq` and `Wk`; the values carry the token half through `Wv` and `Wo`
# to the readout.

# %% tags=["hide-input"]
p = attention.params
Q, K = X_test[0] @ p["Wq"].T, X_test[0] @ p["Wk"].T
S = Q @ K.T / np.sqrt(attention.d_head)
P = np.exp(S - S.max(axis=1, keepdims=True))
P /= P.sum(axis=1, keepdims=True)
mirror = T - 1 - np.arange(T)
print("largest weight of each query on its mirror key:", (P.argmax(axis=1) == mirror).all())
print(f"weight on the mirror key: from {P[np.arange(T), mirror].min():.2f} "
      f"to {P[np.arange(T), mirror].max():.2f}")

fig, (ax_loss, ax_p) = plt.subplots(1, 2, figsize=(9, 3.4))
ax_loss.semilogy(losses)
ax_loss.set_xlabel("step")
ax_loss.set_ylabel("training loss (cross-entropy)")
ax_loss.set_title("loss")
image = ax_p.imshow(P, cmap="Blues", vmin=0, vmax=1)
ax_p.set_xlabel("key position s")
ax_p.set_ylabel("query position t")
ax_p.set_title("attention weights P of one sequence")
fig.colorbar(image, ax=ax_p)
fig.tight_layout()
