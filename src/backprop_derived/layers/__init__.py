"""Layers that train with the generated kernels, and ``Sequential`` to compose them.

Every layer has ``params`` (a dict of arrays, updated in place by training),
``forward(X, train=True)`` which keeps what the backward pass needs, and
``backward(dY)`` which returns the input gradient and fills ``grads`` (same
keys and shapes as ``params``).
"""

from importlib import import_module

from .base import Layer

# name -> submodule that defines it (imported on first use)
_WHERE = {
    "Dense": "dense",
    "Activation": "dense",
    "BatchNorm": "norm",
    "LayerNorm": "norm",
    "RMSNorm": "rms_norm",
    "GroupNorm": "group_norm",
    "Dropout": "simple",
    "Embedding": "simple",
    "Residual": "simple",
    "SelfAttention": "attention",
    "MultiHeadAttention": "attention",
    "Conv1d": "conv",
    "Conv2d": "conv",
    "AvgPool1d": "pool",
    "AvgPool2d": "pool",
    "MaxPool1d": "pool",
    "MaxPool2d": "pool",
    "RNN": "recurrent",
    "GRU": "recurrent",
    "LSTM": "recurrent",
    "Sequential": "sequential",
}

__all__ = [  # noqa: PLE0604 (the names are the keys above)
    "Layer", *sorted(_WHERE)]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
