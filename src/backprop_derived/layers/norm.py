"""Batch norm and layer norm on the kernels generated from derivations/10_normalization.py.

Both layers keep ``xhat`` and the variance from the forward pass; the backward
kernels take them back (the compact input gradients, proven equal to the
engine's node-by-node results on that page).
"""

from __future__ import annotations

import math

import numpy as np

from backprop_derived.backend import kernels

from .base import Layer, check_positive_int

__all__ = ["BatchNorm", "LayerNorm"]

norm = kernels("norm")  # the active backend's kernels, looked up at each call


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.floating | np.integer):
        raise ValueError(f"eps must be a positive number, got {eps!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return float(eps)


class BatchNorm(Layer):
    """Batch normalization of ``n`` features over the batch (Ioffe & Szegedy, 2015).

    ``forward(X, train=True)`` takes ``X`` of shape ``(m, n)`` with ``m >= 2``
    and normalizes each feature with the batch mean and the *biased* batch
    variance, then returns ``gamma * xhat + beta``. It also updates the running
    statistics as PyTorch does::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * m / (m - 1)

    i.e. ``running_var`` averages the *unbiased* batch variance (PyTorch's
    convention), while the normalization uses the biased one.

    ``forward(X, train=False)`` normalizes with ``running_mean`` and
    ``running_var`` instead and leaves them unchanged. ``backward`` then gives
    the evaluation-mode gradient, in which the statistics are constants:
    ``dX = gamma * dY / sqrt(running_var + eps)`` (derived on the same page).

    ``params``: ``gamma`` (ones) and ``beta`` (zeros), shape ``(n,)``.
    ``running_mean`` (zeros) and ``running_var`` (ones) are not parameters:
    training does not update them by gradient; they are saved with the model.
    """

    BUFFERS = ("running_mean", "running_var")

    def __init__(self, n: int, eps: float = 1e-5, momentum: float = 0.1,
                 dtype=np.float64) -> None:
        super().__init__(dtype)
        self.n = check_positive_int(n, "n")
        self.eps = _check_eps(eps)
        if (isinstance(momentum, bool) or not isinstance(momentum, int | float | np.floating)
                or not 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self._set_params({"gamma": np.ones(self.n), "beta": np.zeros(self.n)})
        self.running_mean = np.zeros(self.n, dtype=self.dtype)
        self.running_var = np.ones(self.n, dtype=self.dtype)

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=2, last=self.n)
        gamma, beta = self.params["gamma"], self.params["beta"]
        if train:
            m = X.shape[0]
            if m < 2:
                raise ValueError(f"{self.name}: training needs at least 2 examples in the "
                                 f"batch to estimate a variance, got X of shape {X.shape}")
            Y, mu, var, xhat = norm.batch_norm_forward(X, gamma, beta, self.eps)
            keep = 1 - self.momentum
            self.running_mean *= keep
            self.running_mean += self.momentum * mu
            self.running_var *= keep
            self.running_var += (self.momentum * m / (m - 1)) * var  # unbiased, as PyTorch
            self._cache = (norm.batch_norm_backward, xhat, var, Y.shape)
        else:
            var = self.running_var.copy()
            Y, xhat = norm.batch_norm_eval_forward(X, self.running_mean, var, gamma, beta,
                                                   self.eps)
            self._cache = (norm.batch_norm_eval_backward, xhat, var, Y.shape)
        return Y

    def backward(self, dY) -> np.ndarray:
        shape = self._cache[3] if self._cache is not None else ()
        dY = self._check_upstream(dY, shape)
        kernel, xhat, var, _ = self._cache
        dX, dgamma, dbeta = kernel(dY, xhat, var, self.params["gamma"], self.eps)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return dX


class LayerNorm(Layer):
    """Layer normalization over the last axis (Ba, Kiros & Hinton, 2016).

    ``forward(X)`` takes ``X`` of shape ``(..., n)``: every leading index is
    one row, normalized with the mean and the biased variance of its own ``n``
    features, then scaled and shifted by ``gamma`` and ``beta`` (shape
    ``(n,)``). Training and evaluation are the same computation; ``train`` is
    accepted for a uniform interface.
    """

    def __init__(self, n: int, eps: float = 1e-5, dtype=np.float64) -> None:
        super().__init__(dtype)
        self.n = check_positive_int(n, "n")
        self.eps = _check_eps(eps)
        self._set_params({"gamma": np.ones(self.n), "beta": np.zeros(self.n)})

    def forward(self, X, train: bool = True) -> np.ndarray:
        try:
            ndim = np.ndim(X)
        except ValueError:  # a ragged list: let the shared check name it
            ndim = 1
        if ndim == 0:
            raise ValueError(f"{self.name}: X must have shape (..., {self.n}), got a scalar")
        X = self._check_input(X, ndim=ndim, last=self.n)
        rows = X.reshape(-1, self.n)  # leading axes flattened: one row per vector
        Y, _, var, xhat = norm.layer_norm_forward(rows, self.params["gamma"],
                                                  self.params["beta"], self.eps)
        self._cache = (xhat, var, X.shape)
        return Y.reshape(X.shape)

    def backward(self, dY) -> np.ndarray:
        shape = self._cache[2] if self._cache is not None else ()
        dY = self._check_upstream(dY, shape)
        xhat, var, _ = self._cache
        dX, dgamma, dbeta = norm.layer_norm_backward(dY.reshape(-1, self.n), xhat, var,
                                                     self.params["gamma"], self.eps)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return dX.reshape(shape)
