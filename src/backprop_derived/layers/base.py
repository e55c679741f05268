"""What every layer shares: its parameters, their gradients, and input checks.

A layer holds ``params`` (a dict of arrays that training updates in place)
and, after ``backward``, ``grads`` with the same keys and shapes. ``forward``
keeps what ``backward`` needs (the generated forward kernels return those
intermediates; the generated backward kernels take them back). Every check
raises ``ValueError`` with a message that names the layer and says what was
wrong, before any work starts.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np

from ..checks import all_finite

__all__ = ["Layer", "all_finite", "check_dtype", "check_positive_int"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as error:
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}") from error
    if dt not in _DTYPES:
        raise ValueError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Layer:
    """Base class: ``params``, ``grads``, ``forward(X, train=True)``, ``backward(dY)``.

    ``get_config()`` gives the constructor arguments that rebuild the layer
    (for saving, serialization.py); ``BUFFERS`` names the arrays other than
    ``params`` that belong to its state (batch norm's running statistics).
    """

    BUFFERS: tuple[str, ...] = ()
    # The ``params`` that an L2 penalty (``Sequential(l2=...)``) applies to; None: every
    # array of two or more dimensions (weight matrices and kernels), never a vector
    # (biases, gamma, beta). A layer names its own where that rule is wrong for it.
    WEIGHTS: tuple[str, ...] | None = None

    def __init__(self, dtype=np.float64) -> None:
        self.dtype = check_dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._cache: tuple | None = None

    # -- subclasses implement ----------------------------------------------------
    def forward(self, X, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dY) -> np.ndarray | None:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The constructor's arguments, read from the attributes of the same name.

        ``seed`` is left out (the saved parameters replace the initial draw);
        ``dtype`` is the layer's dtype name. A layer that keeps an argument
        under another name overrides this.
        """
        config = {}
        for name, parameter in inspect.signature(type(self).__init__).parameters.items():
            if name in ("self", "seed") or parameter.kind in (parameter.VAR_POSITIONAL,
                                                              parameter.VAR_KEYWORD):
                continue
            if name == "dtype":
                config[name] = self.dtype.name
            elif hasattr(self, name):
                value = getattr(self, name)
                config[name] = value.item() if isinstance(value, np.generic) else value
            else:
                raise NotImplementedError(f"{self.name}: get_config finds no attribute {name!r} "
                                          "for the constructor argument of that name; define "
                                          "get_config")
        return config

    def weight_keys(self) -> list[str]:
        """The keys of ``params`` that an L2 penalty applies to (see ``WEIGHTS``)."""
        if self.WEIGHTS is not None:
            return list(self.WEIGHTS)
        return [key for key, value in self.params.items() if np.ndim(value) >= 2]

    # -- shared helpers ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return type(self).__name__

    def _set_params(self, params: Mapping[str, np.ndarray]) -> None:
        for key, value in params.items():
            self.params[key] = np.ascontiguousarray(value, dtype=self.dtype)

    def _check_input(self, X, *, ndim: int | tuple[int, ...], last: int | None = None,
                     what: str = "X") -> np.ndarray:
        """``X`` as a C-contiguous array of the layer's dtype, or a ValueError."""
        if isinstance(X, np.ndarray) and X.dtype.kind not in "fiu":
            raise ValueError(f"{self.name}: {what} must be numeric, got dtype {X.dtype}")
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.name}: {what} is not an array: {error}") from None
        if X.dtype.kind not in "fiu":
            raise ValueError(f"{self.name}: {what} must be numeric, got dtype {X.dtype}")
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if X.ndim not in allowed:
            raise ValueError(f"{self.name}: {what} must have {' or '.join(map(str, allowed))} "
                             f"dimensions, got shape {X.shape}")
        if last is not None and X.shape[-1] != last:
            raise ValueError(f"{self.name}: {what} has {X.shape[-1]} features in its last "
                             f"axis, the layer expects {last}")
        if 0 in X.shape:
            raise ValueError(f"{self.name}: {what} is empty, shape {X.shape}")
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if not all_finite(X):
            raise ValueError(f"{self.name}: {what} contains NaN or inf")
        return X

    def _check_upstream(self, dY, shape: tuple) -> np.ndarray:
        if self._cache is None:
            raise ValueError(f"{self.name}: backward needs a forward(X, train=True) first")
        dY = self._check_input(dY, ndim=len(shape), what="dY")
        if dY.shape != tuple(shape):
            raise ValueError(f"{self.name}: dY has shape {dY.shape}, the forward output "
                             f"had {tuple(shape)}")
        return dY

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}{v.shape}" for k, v in self.params.items())
        return f"{self.name}({shapes}, dtype={self.dtype.name})"
