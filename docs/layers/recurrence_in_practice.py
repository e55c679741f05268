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
# # Recurrence in practice: remembering two steps back
#
# The *Recurrence* derivation ends in the generated BPTT kernels that `RNN`
# runs. Here an RNN has to *use* its memory: at every step it sees one of
# four tokens, and must output the token it saw **two steps earlier**. No
# single input carries the answer, so a model can only succeed if the error
# at step $t$ reaches the weights through the hidden states of steps $t-1$
# and $t-2$, which is exactly the term of the BPTT recurrence that a
# step-by-step derivation drops.
#
# The model is `Sequential([RNN(4, 32), Dense(32, 4), Activation("softmax")],
# loss="cross_entropy")`: the dense readout and the softmax act on every
# time step, and the cost is the mean over every position of every sequence.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np

from backprop_derived.layers import RNN, Activation, Dense, Sequential

TOKENS, STEPS, DELAY = 4, 12, 2
rng = np.random.default_rng(0)


def sequences(count):
    """One-hot tokens and, at every step, the token DELAY steps back (0 before the start)."""
    ids = rng.integers(0, TOKENS, size=(count, STEPS))
    targets = np.zeros_like(ids)
    targets[:, DELAY:] = ids[:, :-DELAY]
    return np.eye(TOKENS)[ids], targets


X_train, y_train = sequences(2000)
X_test, y_test = sequences(1000)

# %%
model = Sequential([RNN(TOKENS, 32, seed=1), Dense(32, TOKENS, seed=2),
                    Activation("softmax")], loss="cross_entropy")
history = model.fit(X_train, y_train, epochs=30, batch_size=32, learning_rate=0.5,
                    momentum=0.9, seed=3)

# %%
predicted = model.predict(X_test)
remembered = (predicted == y_test)[:, DELAY:].mean()
print(f"token accuracy on 1,000 new sequences, steps {DELAY}..{STEPS - 1}: {remembered:.1%}")
assert remembered >= 0.95, remembered

# %% [markdown]
# Chance is 25 %. The curve below is the mean cost of each epoch (the mean of
# its minibatch costs): it stays near $\ln 4 \approx 1.39$ while the model has
# not yet found how to carry a token forward, then falls once the gradient
# through $W_{hh}$ has shaped a memory.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(np.arange(1, len(history.loss) + 1), history.loss)
ax.axhline(np.log(TOKENS), color="grey", linestyle=":", label=r"chance, $\ln 4$")
ax.set_xlabel("epoch")
ax.set_ylabel("mean cost")
ax.legend()
fig.tight_layout()
plt.show()
