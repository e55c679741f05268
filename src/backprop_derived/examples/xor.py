"""XOR with the smallest network that can learn it: 2 inputs, 2 sigmoid hidden units, 1 output.

XOR is not linearly separable, so the output unit alone cannot compute it; the
two hidden units must first map the four corners to points that a single line
separates. After training we read off what each hidden unit computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backprop_derived import Network
from backprop_derived.reference_loop import forward_layers
from backprop_derived.training import History

X_XOR = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y_XOR = np.array([[0.0], [1.0], [1.0], [0.0]])


@dataclass
class XorResult:
    net: Network
    history: History
    initial_loss: float
    predicted: np.ndarray  # 0/1 prediction for each of the four inputs, shape (4,)
    output: np.ndarray  # the output unit's value for each input, shape (4,)
    hidden: np.ndarray  # hidden activations for the four inputs, shape (4, 2)
    hidden_truth_table: np.ndarray  # hidden activations rounded to 0/1, shape (4, 2)
    hidden_names: list[str]  # which Boolean function of (x1, x2) each hidden unit matches


# The sixteen Boolean functions of two inputs, named where they have a usual name.
_BOOLEAN = {
    (0, 0, 0, 1): "x1 AND x2",
    (0, 1, 1, 1): "x1 OR x2",
    (1, 1, 1, 0): "NOT (x1 AND x2)",
    (1, 0, 0, 0): "NOT (x1 OR x2)",
    (0, 1, 1, 0): "x1 XOR x2",
    (1, 0, 0, 1): "NOT (x1 XOR x2)",
    (0, 0, 1, 1): "x1",
    (0, 1, 0, 1): "x2",
    (1, 1, 0, 0): "NOT x1",
    (1, 0, 1, 0): "NOT x2",
    (0, 0, 1, 0): "x1 AND NOT x2",
    (0, 1, 0, 0): "x2 AND NOT x1",
    (1, 0, 1, 1): "x1 OR NOT x2",
    (1, 1, 0, 1): "x2 OR NOT x1",
    (0, 0, 0, 0): "always 0",
    (1, 1, 1, 1): "always 1",
}


def boolean_name(column) -> str:
    """Name of the Boolean function with this truth table over (0,0), (0,1), (1,0), (1,1)."""
    return _BOOLEAN[tuple(int(v) for v in column)]


def hidden_activations(net: Network, X: np.ndarray) -> np.ndarray:
    """The hidden layer's activations a^(2) for inputs X, shape (m, 2)."""
    _, activations = forward_layers(net, X)
    return activations[1]


def train_xor(seed: int = 0, max_iter: int = 200, progress: bool = False):
    net = Network(
        layer_sizes=[2, 2, 1],
        activations=["sigmoid", "sigmoid"],
        loss="binary_cross_entropy",
        seed=seed,
    )
    initial_loss = float(net.loss(X_XOR, Y_XOR))
    history = net.fit(X_XOR, Y_XOR, optimizer="lbfgs", max_iter=max_iter, progress=progress)
    return net, history, initial_loss


def run_xor(seed: int = 0, max_iter: int = 200, progress: bool = False) -> XorResult:
    net, history, initial_loss = train_xor(seed=seed, max_iter=max_iter, progress=progress)
    hidden = hidden_activations(net, X_XOR)
    table = (hidden >= 0.5).astype(np.int64)
    return XorResult(
        net=net,
        history=history,
        initial_loss=initial_loss,
        predicted=net.predict(X_XOR)[:, 0],
        output=net.forward(X_XOR)[:, 0],
        hidden=hidden,
        hidden_truth_table=table,
        hidden_names=[boolean_name(table[:, j]) for j in range(table.shape[1])],
    )


def success_rate(seeds=range(20), max_iter: int = 200) -> tuple[int, int]:
    """(number of seeds whose network computes XOR after training, number of seeds)."""
    seeds = list(seeds)
    solved = 0
    for seed in seeds:
        net, _, _ = train_xor(seed=seed, max_iter=max_iter)
        solved += bool(np.array_equal(net.predict(X_XOR), Y_XOR.astype(np.int64)))
    return solved, len(seeds)


if __name__ == "__main__":
    result = run_xor(progress=True)
    print("predictions", result.predicted, "hidden units:", result.hidden_names)
    solved, tried = success_rate()
    print(f"seeds that learn XOR: {solved} of {tried}")
