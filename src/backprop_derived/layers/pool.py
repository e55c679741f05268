"""Average and max pooling on the kernels generated from their catalog declarations.

``catalog.AVG_POOL1D`` ... ``MAX_POOL2D`` (derivations/15_pooling.py): window
``p`` reads ``X[n, c, s p + j]``, ``j = 0 .. k - 1``; no padding, PyTorch's
output size ``(L - k) // s + 1``. A max pool's gradient goes to the first
largest entry of a window (the catalog's tie rule, as PyTorch's).
"""

from __future__ import annotations

import numpy as np

from backprop_derived.backend import kernels

from .base import Layer, check_positive_int
from .declared import call_declared

pool = kernels("pool")  # the active backend's kernels, looked up at each call

__all__ = ["AvgPool1d", "AvgPool2d", "MaxPool1d", "MaxPool2d"]


class _Pool(Layer):
    """What the four layers share; ``_kind`` is "avg" or "max", ``_dims`` 1 or 2."""

    _kind: str
    _dims: int

    def __init__(self, k: int, stride: int | None = None, dtype=np.float64) -> None:
        super().__init__(dtype)
        self.k = check_positive_int(k, f"{self.name}: k")
        self.stride = self.k if stride is None else check_positive_int(stride,
                                                                         f"{self.name}: stride")

    def get_config(self) -> dict:
        return {"k": self.k, "stride": self.stride, "dtype": self.dtype.name}

    def __repr__(self) -> str:
        return f"{self.name}({self.k}, stride={self.stride}, dtype={self.dtype.name})"

    def _sizes(self, shape: tuple) -> dict:
        """The kernels' size parameters: the input's spatial sizes and the windows'."""
        out = [(n - self.k) // self.stride + 1 for n in shape[2:]]
        names = ("L",) if self._dims == 1 else ("H", "W")
        return {**dict(zip(names, shape[2:], strict=True)),
                **dict(zip(("P", "Q"), out, strict=False)), "k": self.k, "stride": self.stride}

    def _kernel(self, part: str):
        return getattr(pool, f"{self._kind}_pool{self._dims}d_{part}")

    def forward(self, X, train: bool = True) -> np.ndarray:
        rank = 2 + self._dims
        X = self._check_input(X, ndim=rank)
        if any(n < self.k for n in X.shape[2:]):
            raise ValueError(f"{self.name}: the input's spatial size {X.shape[2:]} is smaller "
                             f"than the window k = {self.k} (no padding)")
        sizes = self._sizes(X.shape)
        if self._kind == "avg":
            Y, saved = call_declared(self._kernel("forward"), x=X, **sizes), {}
        else:
            Y, S = call_declared(self._kernel("forward"), x=X, **sizes)
            saved = {"s": S}
        self._cache = (X.shape, saved) if train else None
        return Y

    def backward(self, dY) -> np.ndarray:
        shape = self._cache[0] if self._cache is not None else ()
        sizes = self._sizes(shape) if self._cache is not None else {}
        out = (shape[0], shape[1], sizes.get("P"), sizes.get("Q")) if shape else ()
        dY = self._check_upstream(dY, out[: 2 + self._dims])
        self.grads = {}
        return call_declared(self._kernel("backward"), dy=dY, **self._cache[1], **sizes)


class AvgPool1d(_Pool):
    """Average over windows of ``k`` along the last axis of ``(N, C, L)``, every ``stride``
    (default ``k``), as PyTorch's ``nn.AvgPool1d(k, stride)``; output ``(N, C, P)``,
    ``P = (L - k) // stride + 1``."""

    _kind, _dims = "avg", 1


class AvgPool2d(_Pool):
    """Average over ``k x k`` windows of ``(N, C, H, W)``, every ``stride`` (default ``k``)
    along both axes, as PyTorch's ``nn.AvgPool2d(k, stride)``."""

    _kind, _dims = "avg", 2


class MaxPool1d(_Pool):
    """Largest entry of windows of ``k`` of ``(N, C, L)``, every ``stride`` (default ``k``),
    as PyTorch's ``nn.MaxPool1d(k, stride)``; at a tie the gradient goes to the first."""

    _kind, _dims = "max", 1


class MaxPool2d(_Pool):
    """Largest entry of ``k x k`` windows of ``(N, C, H, W)``, every ``stride`` (default
    ``k``), as PyTorch's ``nn.MaxPool2d(k, stride)``; at a tie the gradient goes to the
    first in row-major order."""

    _kind, _dims = "max", 2
