"""One small example of every layer class: the layer and an input it accepts.

Tests that must visit "every layer" take their cases from here, so that a new
layer class is visited by adding one entry; `test_every_layer_class_has_an_example`
fails until it is added.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backprop_derived import layers as L

Example = Callable[[np.random.Generator], tuple[L.Layer, np.ndarray]]

# name -> rng -> (layer, input). Several entries may use one class (modes that
# run different kernels: causal attention, ...).
EXAMPLES: dict[str, Example] = {
    "Dense": lambda rng: (L.Dense(3, 4, seed=0), rng.normal(size=(6, 3))),
    "BatchNorm": lambda rng: (L.BatchNorm(3), rng.normal(size=(6, 3))),
    "LayerNorm": lambda rng: (L.LayerNorm(3), rng.normal(size=(6, 3))),
    "RMSNorm": lambda rng: (L.RMSNorm(3), rng.normal(size=(6, 3))),
    "GroupNorm": lambda rng: (L.GroupNorm(2, 4), rng.normal(size=(3, 4, 5))),
    "Dropout": lambda rng: (L.Dropout(0.3, seed=0), rng.normal(size=(6, 3))),
    "Residual": lambda rng: (L.Residual(L.Dense(3, 3, seed=1), L.Activation("tanh")),
                             rng.normal(size=(6, 3))),
    "Activation": lambda rng: (L.Activation("tanh"), rng.normal(size=(6, 3))),
    "SelfAttention": lambda rng: (L.SelfAttention(4, 3, seed=0), rng.normal(size=(2, 5, 4))),
    "SelfAttention(causal)": lambda rng: (L.SelfAttention(4, 3, causal=True, seed=0),
                                          rng.normal(size=(2, 5, 4))),
    "MultiHeadAttention": lambda rng: (L.MultiHeadAttention(4, 2, seed=0),
                                       rng.normal(size=(2, 5, 4))),
    "MultiHeadAttention(causal)": lambda rng: (L.MultiHeadAttention(6, 3, causal=True, seed=0),
                                               rng.normal(size=(2, 4, 6))),
    "RNN": lambda rng: (L.RNN(4, 3, seed=0), rng.normal(size=(2, 5, 4))),
    "GRU": lambda rng: (L.GRU(3, 4, seed=0), rng.normal(size=(2, 4, 3))),
    "LSTM": lambda rng: (L.LSTM(3, 4, seed=0), rng.normal(size=(2, 4, 3))),
    "Conv1d": lambda rng: (L.Conv1d(2, 3, 2, seed=0), rng.normal(size=(2, 2, 6))),
    "Conv2d": lambda rng: (L.Conv2d(2, 3, 2, 2, seed=0), rng.normal(size=(2, 2, 5, 5))),
    "Conv1d(stride, padding)": lambda rng: (L.Conv1d(2, 3, 3, stride=2, padding=1, seed=0),
                                            rng.normal(size=(2, 2, 7))),
    "Conv2d(stride, padding)": lambda rng: (L.Conv2d(2, 2, 3, 2, stride=2, padding=1, seed=0),
                                            rng.normal(size=(2, 2, 5, 4))),
    "Embedding": lambda rng: (L.Embedding(7, 3, seed=0), np.array([[1, 2], [3, 1]])),
    "AvgPool1d": lambda rng: (L.AvgPool1d(2), rng.normal(size=(2, 3, 7))),
    "AvgPool2d": lambda rng: (L.AvgPool2d(2, stride=1), rng.normal(size=(2, 2, 4, 5))),
    "MaxPool1d": lambda rng: (L.MaxPool1d(3, stride=2), rng.normal(size=(2, 3, 8))),
    "MaxPool2d": lambda rng: (L.MaxPool2d(2), rng.normal(size=(2, 2, 5, 4))),
}


def layer_classes() -> set[str]:
    """Every concrete layer class the package exports (a model is not a layer)."""
    return {name for name in L.__all__
            if isinstance(getattr(L, name), type) and issubclass(getattr(L, name), L.Layer)
            and name not in ("Layer", "Sequential")}


def example_classes() -> set[str]:
    rng = np.random.default_rng(0)
    return {type(make(rng)[0]).__name__ for make in EXAMPLES.values()}
