"""``Dense`` and ``Activation``: the layers of `Network`, one at a time.

Both run on the kernels that derivations/06_vectorized.py and
derivations/01_activations.py generate (``_generated/layers.py`` and
``_generated/activations.py``), the same ones `Network` uses. Inputs may have
any rank: a dense layer acts on the last axis (a batch of sequences
``(batch, T, n_in)`` is treated as ``batch * T`` rows), an activation on
every entry.
"""

from __future__ import annotations

import math

import numpy as np

from .._generated import ACTIVATIONS, layers
from .base import Layer, check_positive_int

__all__ = ["Activation", "Dense"]


def _rows(X: np.ndarray) -> np.ndarray:
    """``X`` as a 2-D (rows, last axis) view."""
    return X.reshape(-1, X.shape[-1])


class Dense(Layer):
    """``Y = X W^T + b`` over the last axis of ``X``.

    Parameters ``W`` of shape (n_out, n_in) and ``b`` of shape (n_out,),
    initialized as in `Network` (uniform in [-eps, eps], eps = sqrt(6) /
    sqrt(n_in + n_out), from ``numpy.random.default_rng(seed)``; the same
    draw as a one-layer `Network` with that seed). Input (..., n_in), output
    (..., n_out).
    """

    def __init__(self, n_in: int, n_out: int, dtype=np.float64, seed=None):
        super().__init__(dtype)
        self.n_in = check_positive_int(n_in, "Dense: n_in")
        self.n_out = check_positive_int(n_out, "Dense: n_out")
        rng = np.random.default_rng(seed)
        eps = math.sqrt(6) / math.sqrt(self.n_in + self.n_out)
        theta = rng.uniform(-eps, eps, size=(self.n_out, self.n_in + 1))  # bias in column 0
        self._set_params({"W": theta[:, 1:], "b": theta[:, 0]})

    def forward(self, X, train: bool = True) -> np.ndarray:
        ndim = np.ndim(X)
        X = self._check_input(X, ndim=max(ndim, 2), last=self.n_in)
        return self._forward_unchecked(X, train)

    def _forward_unchecked(self, X: np.ndarray, train: bool = True) -> np.ndarray:
        A = _rows(X)
        Z = np.empty((A.shape[0], self.n_out), self.dtype)
        layers.affine(A, self.params["W"], self.params["b"], Z)
        self._cache = (A, X.shape) if train else None
        return Z.reshape(*X.shape[:-1], self.n_out)

    def backward(self, dY) -> np.ndarray:
        shape = None if self._cache is None else (*self._cache[1][:-1], self.n_out)
        dY = self._check_upstream(dY, shape or (self.n_out,))
        return self._backward_unchecked(dY)

    def _ones(self, m: int) -> np.ndarray:
        """The batch-ones vector of (V2), db = 1^T dZ, kept while the batch size repeats."""
        ones = getattr(self, "_ones_m", None)
        if ones is None or ones.shape[0] != m or ones.dtype != self.dtype:
            ones = self._ones_m = np.ones(m, self.dtype)
        return ones

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        A, shape = self._cache
        dZ = _rows(dY)
        W = self.params["W"]
        self.grads = {
            "W": layers.weight_gradient(dZ, A, np.empty_like(W)),  # (V1)
            "b": layers.bias_gradient(dZ, self._ones(dZ.shape[0]),
                                      np.empty_like(self.params["b"])),  # (V2)
        }
        if not input_grad:
            return None
        dA = layers.backpropagate(dZ, W, np.empty((dZ.shape[0], self.n_in), self.dtype))  # (V3)
        return dA.reshape(shape)


class Activation(Layer):
    """``A = g(Z)`` entry by entry, for any activation of the generated catalog.

    ``name`` is one of ``Activation.NAMES``. The elementwise ones work as a
    layer anywhere; ``softmax`` couples the units of a row, so it has no
    backward of its own: it is allowed only as the last layer of a
    `Sequential`, whose loss then runs the fused output pass (its delta at the
    pre-activations). No parameters. ``dtype=None`` (default) takes the
    dtype of the `Sequential` it is put in (float64 on its own).
    """

    NAMES = tuple(sorted(ACTIVATIONS))

    def __init__(self, name: str, dtype=None):
        super().__init__(np.float64 if dtype is None else dtype)
        self.dtype_given = dtype is not None
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ValueError(f"Activation: unknown activation {name!r}; valid names: "
                             f"{', '.join(self.NAMES)}")
        self.activation = name
        self._kernels = ACTIVATIONS[name]
        self.elementwise = bool(self._kernels.elementwise)

    def __repr__(self) -> str:
        return f"Activation({self.activation!r}, dtype={self.dtype.name})"

    def get_config(self) -> dict:
        return {"name": self.activation, "dtype": self.dtype.name}

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=max(np.ndim(X), 1 if self.elementwise else 2))
        return self._forward_unchecked(X, train)

    def _forward_unchecked(self, Z: np.ndarray, train: bool = True) -> np.ndarray:
        act = self._kernels
        if not self.elementwise:  # softmax: over the last axis, row by row
            rows = _rows(Z)
            out = act.forward(rows, np.empty_like(rows), [])
            self._cache = None
            return out.reshape(Z.shape)
        out = np.empty_like(Z)
        act.forward(Z, out, [np.empty_like(Z) for _ in range(act.scratch)])
        self._cache = (Z, out) if train else None
        return out

    def backward(self, dY) -> np.ndarray:
        self._refuse_coupled()
        shape = (1,) if self._cache is None else self._cache[0].shape
        dY = self._check_upstream(dY, shape)
        return self._backward_unchecked(dY)

    def _refuse_coupled(self) -> None:
        if not self.elementwise:
            raise ValueError(
                f"Activation: {self.activation} couples the units of a row and has no "
                "standalone backward; use it as the last layer of a Sequential, whose loss "
                f"runs the fused output pass (e.g. {self.activation} with cross_entropy)")

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> np.ndarray:
        Z, A = self._cache
        act = self._kernels
        self.grads = {}
        # (V4): dZ = dA * g'(Z)
        return act.backward(dY, A, Z, np.empty_like(Z), [np.empty_like(Z)
                                                         for _ in range(act.scratch)])
