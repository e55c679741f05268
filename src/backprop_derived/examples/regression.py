"""Regression with a linear output, as in the notes' bonus "NN for linear systems".

A tanh hidden layer of 8 units, an identity output unit and the squared error
(1/2m) sum (a - y)^2 + (lambda/2m) sum W^2, minimized by 200 L-BFGS iterations
(the notes' ``MaxIter`` 200). The data is a noisy 1-D curve generated here with
a fixed seed, standing in for the exercise's ``ex5data1.mat``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backprop_derived import Network
from backprop_derived.training import History


def true_curve(x: np.ndarray) -> np.ndarray:
    """The noise-free curve the data is drawn around."""
    return np.sin(1.5 * x) + 0.3 * x


@dataclass
class RegressionResult:
    net: Network
    history: History
    x: np.ndarray  # training inputs, shape (m,)
    y: np.ndarray  # noisy targets, shape (m,)
    grid: np.ndarray  # dense inputs for plotting, shape (200,)
    fit: np.ndarray  # network output on the grid
    noise: float  # standard deviation of the noise added to the curve
    train_mse: float  # mean squared error of the network on the training points
    line_mse: float  # the same for the least-squares straight line, for comparison


def make_data(m: int = 60, noise: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-3.0, 3.0, size=m))
    y = true_curve(x) + noise * rng.normal(size=m)
    return x, y


def run_regression(
    hidden_units: int = 8,
    l2: float = 0.01,
    max_iter: int = 200,
    noise: float = 0.15,
    seed: int = 0,
    progress: bool = False,
) -> RegressionResult:
    x, y = make_data(noise=noise, seed=seed)
    X, Y = x[:, None], y[:, None]  # (m, 1) inputs and targets
    net = Network(
        layer_sizes=[1, hidden_units, 1],
        activations=["tanh", "identity"],
        loss="squared_error",
        l2=l2,
        seed=seed,
    )
    history = net.fit(X, Y, optimizer="lbfgs", max_iter=max_iter, progress=progress)
    grid = np.linspace(x.min(), x.max(), 200)
    slope, intercept = np.polyfit(x, y, 1)
    return RegressionResult(
        net=net,
        history=history,
        x=x,
        y=y,
        grid=grid,
        fit=net.predict(grid[:, None])[:, 0],
        noise=noise,
        train_mse=net.score(X, Y),
        line_mse=float(np.mean((slope * x + intercept - y) ** 2)),
    )


if __name__ == "__main__":
    result = run_regression(progress=True)
    print(
        f"final cost J = {result.history.loss[-1]:.4f}; training MSE {result.train_mse:.4f} "
        f"(noise variance {result.noise**2:.4f}, straight line {result.line_mse:.4f})"
    )
