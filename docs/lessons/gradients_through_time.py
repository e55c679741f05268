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
# # Vanishing and exploding gradients through time, and clipping
#
# The [Recurrence](../derivations/14_recurrence.py) page derives the
# backward pass of a tanh RNN, $h_t = \tanh(x_t W_{ih}^\top + h_{t-1}
# W_{hh}^\top + b)$. Its error at step $t$ collects the error of every later
# step, each carried back through one factor per step in between:
#
# $$\frac{\partial h_{t+1}}{\partial h_t} = \operatorname{diag}\!\big(1 - h_{t+1}^2\big)\, W_{hh}.$$
#
# From step $t$ to the last step $T - 1$ (steps count from 0) that is a
# product of $T - 1 - t$ such factors, which shrinks or grows roughly like
# $\rho^{\,T-1-t}$, where $\rho$ is the size of $W_{hh}$ (its spectral radius,
# times the tanh slope, which is at most 1). Below 1 the gradient that
# reaches early steps **vanishes**: the network cannot learn that an early
# input matters. Above 1 it can **explode**, and one step of gradient descent
# throws the weights far away. This page measures both with the runtime's
# `RNN` layer, then shows the usual cure for the second: clipping the
# gradient's norm.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from backprop_derived.layers import RNN
from backprop_derived.optim import clip_grad_norm

T, D, H = 60, 4, 32
rng = np.random.default_rng(0)
X = 1e-6 * rng.standard_normal((1, T, D))  # tiny inputs: tanh stays on its linear part
# An orthogonal matrix has every singular value 1; rho * Q has every one rho.
Q, _ = np.linalg.qr(rng.standard_normal((H, H)))


def error_reaching_each_step(rho):
    """|dL/dx_t| for L = sum of the last hidden state, for W_hh = rho * Q."""
    layer = RNN(D, H, seed=1)
    layer.params["W_hh"][...] = rho * Q
    layer.params["b"][...] = 0.0
    hidden = layer.forward(X)
    upstream = np.zeros_like(hidden)
    upstream[:, -1, :] = 1.0  # the loss sees only the last step
    dX = layer.backward(upstream)
    return np.linalg.norm(dX[0], axis=1), layer.grads


# %% [markdown]
# ## How much error reaches step $t$
#
# The loss reads only the last hidden state, the sum over its $d_h$ units
# $L = \sum_{j=0}^{d_h-1} h_{T-1,j}$, with $T = 60$ steps $t = 0, \dots, T-1$.
# The plot shows the size of $\partial L / \partial x_t$, the
# error that reaches the input at step $t$, for three recurrent weights
# $W_{hh} = \rho Q$ ($Q$ orthogonal, so every singular value is $\rho$).

# %% tags=["hide-input"]
norms = {rho: error_reaching_each_step(rho)[0] for rho in (0.8, 1.0, 1.2)}
fig, ax = plt.subplots(figsize=(6.4, 3.2))
for rho, n in norms.items():
    ax.semilogy(np.arange(1, T + 1), n, label=rf"$\rho = {rho}$")
ax.set_xlabel("time step $t$")
ax.set_ylabel(r"$\|\partial L / \partial x_t\|$")
ax.legend(fontsize=8)
ax.grid(alpha=0.3, which="both")
fig.tight_layout()
plt.show()

rows = ["| $\\rho$ | error at the last step | at the first step | ratio | $\\rho^{T-1}$ |",
        "|---|---|---|---|---|"]
for rho, n in norms.items():
    rows.append(f"| {rho} | {n[-1]:.3g} | {n[0]:.3g} | {n[0] / n[-1]:.3g} | {rho ** (T - 1):.3g} |")
display(Markdown("\n".join(rows)))
# The text says the error falls for rho < 1 and grows for rho > 1; hold it to that.
assert norms[0.8][0] < 1e-3 * norms[0.8][-1] and norms[1.2][0] > 1e3 * norms[1.2][-1]
# ... and that the ratio follows rho^(T-1) while the units stay unsaturated.
for rho, n in norms.items():
    assert 0.5 < (n[0] / n[-1]) / rho ** (T - 1) < 2, rho

# %% [markdown]
# With small inputs the tanh slopes are close to 1 and the ratio follows
# $\rho^{T-1}$ closely. Saturated units (slopes near 0) only make the
# vanishing faster. The remedies for vanishing are architectural: gated
# cells (LSTM, GRU) whose state is carried by addition rather than by a
# product of Jacobians, residual connections, careful initialisation.
#
# ## Clipping an exploding gradient
#
# For explosion there is a simple, cheap safeguard. Compute the global norm
# of the whole gradient, $\|g\| = \big(\sum_{\text{params}} \sum g^2\big)^{1/2}$;
# if it exceeds a threshold $c$, scale every gradient by $c / \|g\|$. The
# direction of the step is kept, only its length is capped. (PyTorch's
# `torch.nn.utils.clip_grad_norm_` is this rule, with $10^{-6}$ added to
# $\|g\|$ to avoid dividing by zero.) The runtime has it as
# `backprop_derived.optim.clip_grad_norm`, and `fit(..., clip_grad_norm=c)`
# applies it to every minibatch's gradient before the optimizer's step.

# %%
_, grads = error_reaching_each_step(1.2)
original = {k: g.copy() for k, g in grads.items()}
before = clip_grad_norm(list(grads.values()), max_norm=1.0)  # scales grads in place

# %% tags=["hide-input"]
clipped = grads
grads = original
after = float(np.sqrt(sum(np.sum(g * g) for g in clipped.values())))
flat = np.concatenate([g.ravel() for g in grads.values()])
flat_clipped = np.concatenate([g.ravel() for g in clipped.values()])
cosine = float(flat @ flat_clipped / (np.linalg.norm(flat) * np.linalg.norm(flat_clipped)))
assert after <= 1.0 + 1e-9 and abs(cosine - 1.0) < 1e-12
display(Markdown(
    f"For $\\rho = 1.2$ the gradient of the three parameters ($W_{{ih}}$, "
    f"$W_{{hh}}$, $b$) has global norm **{before:.3g}**. Clipped at $c = 1$ its "
    f"norm is {after:.6f}, and the cosine between the clipped and the original "
    f"gradient is {cosine:.15f}: the same direction, a bounded step."))

# %% [markdown]
# Clipping does not make the gradient *right*: a gradient dominated by
# distant steps still says little about nearby ones. It makes training
# survive the occasional huge gradient, which is why recurrent models are
# almost always trained with it.
#
# ## Sources
#
# * Yoshua Bengio, Patrice Simard and Paolo Frasconi, [Learning long-term
#   dependencies with gradient descent is
#   difficult](https://doi.org/10.1109/72.279181), IEEE Transactions on
#   Neural Networks 5(2), 1994: the vanishing gradient through time.
# * Razvan Pascanu, Tomas Mikolov and Yoshua Bengio, [On the difficulty of
#   training recurrent neural networks](https://proceedings.mlr.press/v28/pascanu13.html),
#   ICML 2013: the spectral-radius argument used above and clipping by the
#   gradient's norm.
# * PyTorch, [`torch.nn.utils.clip_grad_norm_`](https://pytorch.org/docs/stable/generated/torch.nn.utils.clip_grad_norm_.html):
#   the rule as implemented there.
