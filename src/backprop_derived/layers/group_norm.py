"""Group norm on the kernels generated from its catalog declaration (``catalog.GROUP_NORM``)."""

from __future__ import annotations

import numpy as np

from backprop_derived.backend import kernels

from .base import Layer, check_positive_int
from .declared import call_declared
from .norm import _check_eps

norm = kernels("norm")  # the active backend's kernels, looked up at each call

__all__ = ["GroupNorm"]


class GroupNorm(Layer):
    """Group normalization, as PyTorch's ``nn.GroupNorm(groups, channels, eps)``.

    ``forward(X)`` takes ``X`` of shape ``(N, C, *spatial)`` with ``C ==
    channels``; the channels form ``groups`` contiguous groups, each
    normalized per example over its channels and positions (biased
    variance), then every channel is scaled and shifted. ``params``:
    ``gamma`` (ones) and ``beta`` (zeros), shape ``(C,)``.
    """

    def __init__(self, groups: int, channels: int, eps: float = 1e-5,
                 dtype=np.float64) -> None:
        super().__init__(dtype)
        self.groups = check_positive_int(groups, "groups")
        self.channels = check_positive_int(channels, "channels")
        if self.channels % self.groups:
            raise ValueError(f"GroupNorm: channels ({channels}) must be a multiple of "
                             f"groups ({groups})")
        self.eps = _check_eps(eps)
        self._set_params({"gamma": np.ones(self.channels), "beta": np.zeros(self.channels)})

    def _views(self):
        """gamma and beta as (G, K): the catalog's gamma[g, k] for channel g K + k."""
        shape = (self.groups, self.channels // self.groups)
        return {k: v.reshape(shape) for k, v in self.params.items()}

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=tuple(range(2, 33)))
        if X.shape[1] != self.channels:
            raise ValueError(f"GroupNorm: X has {X.shape[1]} channels (axis 1), the layer "
                             f"expects {self.channels}")
        x = X.reshape(X.shape[0], self.groups, self.channels // self.groups, -1)
        y, mu, var, xhat = call_declared(norm.group_norm_forward, x=x, epsilon=self.eps,
                                         **self._views())
        self._cache = (x, mu, var, xhat, X.shape)
        return y.reshape(X.shape)

    def backward(self, dY) -> np.ndarray:
        shape = self._cache[4] if self._cache is not None else ()
        dY = self._check_upstream(dY, shape)
        x, mu, var, xhat, _ = self._cache
        dx, dgamma, dbeta = call_declared(norm.group_norm_backward, dy=dY.reshape(x.shape), x=x,
                                          mu=mu, var=var, xhat=xhat, epsilon=self.eps,
                                          **self._views())
        self.grads = {"gamma": dgamma.reshape(-1), "beta": dbeta.reshape(-1)}
        return dx.reshape(shape)
