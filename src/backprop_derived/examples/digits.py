"""Handwritten digits: the notes' exercise-4 network on scikit-learn's bundled data.

1797 images of 8x8 pixels (values 0..16, no download), split once into 75 %
training and 25 % held-out test examples, stratified by class. The network is
the notes' layout scaled to these images: 64 inputs, 25 hidden units, 10
outputs, regularization lambda = 1, trained with L-BFGS (our ``fminunc``). These
settings are the exercise's defaults, not tuned on the test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backprop_derived import Network
from backprop_derived.training import History


@dataclass
class DigitsResult:
    net: Network
    history: History
    train_accuracy: float
    test_accuracy: float
    X_test: np.ndarray
    y_test: np.ndarray
    predicted: np.ndarray  # predicted class of each test image
    confusion: np.ndarray  # confusion[true, predicted] counts on the test set


def load_split(test_size: float = 0.25, seed: int = 0):
    """(X_train, X_test, y_train, y_test), pixels scaled to [0, 1], labels 0..9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = digits.data / 16.0
    return train_test_split(
        X, digits.target, test_size=test_size, random_state=seed, stratify=digits.target
    )


def run_digits(
    hidden_activation: str = "sigmoid",
    hidden_units: int = 25,
    l2: float = 1.0,
    max_iter: int = 200,
    seed: int = 0,
    progress: bool = False,
) -> DigitsResult:
    X_train, X_test, y_train, y_test = load_split(seed=seed)
    net = Network(
        layer_sizes=[64, hidden_units, 10],
        activations=[hidden_activation, "softmax"],
        loss="cross_entropy",
        l2=l2,
        seed=seed,
    )
    history = net.fit(
        X_train,
        y_train,
        optimizer="lbfgs",
        max_iter=max_iter,
        validation_data=(X_test, y_test),  # watched only, never used to choose anything
        progress=progress,
    )
    predicted = net.predict(X_test)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (y_test, predicted), 1)
    return DigitsResult(
        net=net,
        history=history,
        train_accuracy=net.score(X_train, y_train),
        test_accuracy=net.score(X_test, y_test),
        X_test=X_test,
        y_test=y_test,
        predicted=predicted,
        confusion=confusion,
    )


if __name__ == "__main__":
    result = run_digits(progress=True)
    print(f"train accuracy {result.train_accuracy:.4f}, test accuracy {result.test_accuracy:.4f}")
