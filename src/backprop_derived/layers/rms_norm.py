"""RMS norm on the kernels generated from its catalog declaration (``catalog.RMS_NORM``)."""

from __future__ import annotations

import numpy as np

from backprop_derived.backend import kernels

from .base import Layer, check_positive_int
from .declared import call_declared
from .norm import _check_eps

norm = kernels("norm")  # the active backend's kernels, looked up at each call

__all__ = ["RMSNorm"]


class RMSNorm(Layer):
    """RMS normalization over the last axis, as PyTorch's ``nn.RMSNorm(n, eps)``.

    ``Y = gamma * X / sqrt(mean(X**2) + eps)`` for every row of an input of
    shape ``(..., n)``; ``params``: ``gamma`` (ones), shape ``(n,)``.
    """

    def __init__(self, n: int, eps: float = 1e-6, dtype=np.float64) -> None:
        super().__init__(dtype)
        self.n = check_positive_int(n, "n")
        self.eps = _check_eps(eps)
        self._set_params({"gamma": np.ones(self.n)})

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=tuple(range(1, 33)), last=self.n)
        x = X.reshape(-1, self.n)  # one row per vector
        y, ms = call_declared(norm.rms_norm_forward, x=x, epsilon=self.eps, **self.params)
        self._cache = (x, ms, X.shape)
        return y.reshape(X.shape)

    def backward(self, dY) -> np.ndarray:
        shape = self._cache[2] if self._cache is not None else ()
        dY = self._check_upstream(dY, shape)
        x, ms, _ = self._cache
        dx, dgamma = call_declared(norm.rms_norm_backward, dy=dY.reshape(x.shape), x=x, ms=ms,
                                   epsilon=self.eps, **self.params)
        self.grads = {"gamma": dgamma}
        return dx.reshape(shape)
