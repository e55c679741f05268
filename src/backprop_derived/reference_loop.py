"""The notes' backpropagation, one training example at a time.

This is the algorithm exactly as the Coursera notes write it ("Backpropagation
Algorithm"): Delta accumulators set to zero, a ``for t in range(m)`` loop that
runs forward and backward on one example, then D = Delta / m with the
regularization term added to every column except the bias column. It exists to
teach and to cross-check `Network.gradients`; it is slow on purpose and is
never used for training.

Index conventions: the notes count layers from 1 (``a^(1) = x``) and write
Theta^(l) = [b | W] with the bias column first; here Python lists count from 0,
so ``thetas[l]`` maps layer l's activations to layer l + 1.
"""

from __future__ import annotations

import numpy as np

from backprop_derived._generated import ACTIVATIONS
from backprop_derived.unrolling import to_theta


def activation(name: str):
    """(g, g') of a catalog activation, from the generated kernels.

    ``g(z)`` works on a vector (one example) or a batch of rows; ``g'(z)`` is
    elementwise and is None for softmax, whose derivative couples the units
    (a Jacobian, handled in `output_delta`).
    """
    try:
        kernels = ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}"
        ) from None

    def scratch(z):
        return [np.empty_like(z) for _ in range(kernels.scratch)]

    def g(z):
        z = np.asarray(z, dtype=np.float64)
        rows = np.atleast_2d(z)  # the kernels take a batch: one row per example
        a = kernels.forward(rows, np.empty_like(rows), scratch(rows))
        return a.reshape(z.shape)

    if not kernels.elementwise:
        return g, None

    def g_prime(z):
        z = np.asarray(z, dtype=np.float64)
        return kernels.derivative(g(z), z, np.empty_like(z), scratch(z))

    return g, g_prime


def forward_layers(net, X: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward pass keeping every layer: (zs, activations), Nielsen's names.

    ``activations[0]`` is X itself and ``zs[l]`` is the pre-activation of layer l + 1.
    Used to look inside a network (hidden units, relu kinks); batch-vectorized.
    """
    a = np.asarray(X, dtype=np.float64)
    zs, activations = [], [a]
    for W, b, name in zip(net.weights, net.biases, net.activations, strict=True):
        z = a @ W.T + b
        a = activation(name)[0](z)
        zs.append(z)
        activations.append(a)
    return zs, activations


def _one_hot_targets(net, Y) -> np.ndarray:
    Y = np.asarray(Y)
    K = net.layer_sizes[-1]
    if net.loss_name == "cross_entropy" and Y.ndim == 1:
        return np.eye(K)[Y]
    return Y.reshape(len(Y), K).astype(np.float64)


def _one_example(loss: str, g_name: str | None):
    """A loss the notes do not cover: the pair's generated kernels, on one example (m = 1)."""
    from backprop_derived._generated import OUTPUTS

    if (g_name, loss) not in OUTPUTS:
        raise ValueError(f"unknown loss {loss!r} for output activation {g_name!r}")
    out = OUTPUTS[g_name, loss]

    def row(v):
        return np.ascontiguousarray(v, dtype=np.float64).reshape(1, -1)

    return out, row


def example_cost(loss: str, z: np.ndarray, a: np.ndarray, y: np.ndarray,
                 g_name: str | None = None) -> float:
    """cost(t): the loss of one example, in log-sum-exp form where logs appear."""
    if loss == "squared_error":
        return 0.5 * float(np.sum((a - y) ** 2))
    if loss == "binary_cross_entropy":
        # -[y log a + (1 - y) log(1 - a)] with log a = -log(1 + e^-z), log(1 - a) = -log(1 + e^z)
        return float(np.sum(y * np.logaddexp(0.0, -z) + (1.0 - y) * np.logaddexp(0.0, z)))
    if loss == "cross_entropy":
        # -sum_k y_k log softmax(z)_k, log softmax(z) = z - log sum exp z
        zmax = z.max()
        log_a = z - (zmax + np.log(np.sum(np.exp(z - zmax))))
        return float(-np.sum(y * log_a))
    out, row = _one_example(loss, g_name)
    return float(out.value(row(a), row(z), row(y), 1))


def output_delta(loss: str, g_name: str, z: np.ndarray, a: np.ndarray, y: np.ndarray):
    """delta^(L) = d cost(t) / d z^(L) for one example."""
    if loss in ("binary_cross_entropy", "cross_entropy"):
        # The notes' delta^(L) = a^(L) - y: the sigmoid (softmax) derivative cancels
        # against the log loss; cross_entropy also uses sum_k y_k = 1.
        return a - y
    if loss == "squared_error":
        # dcost/da = a - y, times the Jacobian of a = g(z).
        if g_name == "softmax":
            return (np.diag(a) - np.outer(a, a)) @ (a - y)
        return (a - y) * activation(g_name)[1](z)
    out, row = _one_example(loss, g_name)
    delta = np.empty((1, a.size))
    scratch = [np.empty_like(delta) for _ in range(out.scratch)]
    return out.delta(row(a), row(z), row(y), 1, delta, scratch).ravel()


def reference_gradients(net, X, Y) -> tuple[float, list[np.ndarray], list[np.ndarray]]:
    """(J, [dW_l], [db_l]) by the notes' per-example loop, in float64.

    Same shapes and meaning as ``Network.gradients``; the D^(l) matrices are
    split back into their weight columns and bias column at the end.
    """
    X = np.asarray(X, dtype=np.float64)
    Y = _one_hot_targets(net, Y)
    m = X.shape[0]
    thetas = [
        to_theta(W, b).astype(np.float64) for W, b in zip(net.weights, net.biases, strict=True)
    ]
    Deltas = [np.zeros_like(theta) for theta in thetas]  # Delta^(l)_ij := 0
    J = 0.0
    for t in range(m):
        # forward propagation for example t; a^(l) carries its bias unit a_0 = 1
        a = X[t]
        a_biased, zs = [], []
        for theta, name in zip(thetas, net.activations, strict=True):
            a = np.concatenate(([1.0], a))
            a_biased.append(a)
            z = theta @ a
            zs.append(z)
            a = activation(name)[0](z)
        J += example_cost(net.loss_name, zs[-1], a, Y[t], net.activations[-1])
        delta = output_delta(net.loss_name, net.activations[-1], zs[-1], a, Y[t])
        for l in range(len(thetas) - 1, -1, -1):
            Deltas[l] += np.outer(delta, a_biased[l])  # Delta := Delta + delta^(l+1) (a^(l))^T
            if l > 0:
                # delta^(l) = (Theta^(l))^T delta^(l+1) .* g'(z^(l)); row 0 belongs to
                # the bias unit, which has no incoming weights, so it is dropped.
                g_prime = activation(net.activations[l - 1])[1]
                delta = (thetas[l].T @ delta)[1:] * g_prime(zs[l - 1])
    # J = (1/m) sum_t cost(t) + (lambda / 2m) sum of squared weights (bias column excluded)
    J = J / m + net.l2 / (2 * m) * sum(float(np.sum(theta[:, 1:] ** 2)) for theta in thetas)
    dW, db = [], []
    for theta, Delta in zip(thetas, Deltas, strict=True):
        D = Delta / m  # D_ij = (1/m) Delta_ij          if j = 0
        D[:, 1:] += net.l2 / m * theta[:, 1:]  # + (lambda/m) Theta_ij  if j != 0
        dW.append(D[:, 1:])
        db.append(D[:, 0])
    return J, dW, db
