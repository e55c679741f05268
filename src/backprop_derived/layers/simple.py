"""``Dropout``, ``Embedding`` and ``Residual``: three layers with one idea each.

Their kernels are generated from derivations/12_dropout_embedding_residual.py
into ``_generated/simple.py``: dropout's backward uses the mask and the
1/(1 - p) of its forward pass; an embedding's table gradient *adds up* the
upstream rows of repeated ids (a scatter-add); a residual block's input
gradient is the upstream gradient *plus* the gradient through its inner
layers.
"""

from __future__ import annotations

import numpy as np

from ..backend import kernels
from ..checks import is_real as _is_real
from .base import Layer, check_positive_int

__all__ = ["Dropout", "Embedding", "Residual"]

simple = kernels("simple")  # the active backend's kernels, looked up at each call


class Dropout(Layer):
    """Inverted dropout: ``Y = X * mask / (1 - p)`` while training, ``Y = X`` otherwise.

    ``p`` in [0, 1) is the probability of dropping a unit. A training-mode
    ``forward`` draws a new 0/1 keep-mask (1 with probability 1 - p) from
    ``numpy.random.default_rng(seed)`` and keeps it in ``layer.mask`` (same
    shape as X, in ``dtype``); ``backward`` uses that mask. With
    ``train=False`` the layer is the identity (it returns X itself) and keeps
    nothing. Any input rank. No parameters. ``dtype=None`` (default) takes
    the dtype of the `Sequential` it is put in (float64 on its own).
    """

    def __init__(self, p: float, seed=None, dtype=None):
        super().__init__(np.float64 if dtype is None else dtype)
        self.dtype_given = dtype is not None
        if not _is_real(p) or not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = np.random.default_rng(seed)
        self.mask: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, dtype={self.dtype.name})"

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=max(np.ndim(X), 1))
        return self._forward_unchecked(X, train)

    def _forward_unchecked(self, X: np.ndarray, train: bool = True) -> np.ndarray:
        if not train:
            self._cache = None
            return X
        keep = self.rng.random(X.shape, dtype=self.dtype) >= self.p
        self.mask = keep.astype(self.dtype)
        self._cache = (X.shape,)
        return simple.dropout_forward(X, self.mask, self.p)

    def backward(self, dY) -> np.ndarray:
        shape = (1,) if self._cache is None else self._cache[0]
        dY = self._check_upstream(dY, shape)
        return self._backward_unchecked(dY)

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> np.ndarray:
        self.grads = {}
        return simple.dropout_backward(dY, self.mask, self.p)


class Embedding(Layer):
    """``Y[..., :] = E[ids[...], :]``: a row of the table ``E`` per id.

    Parameter ``E`` of shape (vocab, dim), initialized from the standard
    normal distribution (``numpy.random.default_rng(seed)``), as PyTorch's
    ``nn.Embedding`` does. Input: integer ids of any shape, each in
    [0, vocab); output: ``ids.shape + (dim,)``. ``backward(dY)`` fills
    ``grads["E"]`` with the table gradient, where an id that occurs several
    times collects the sum of its rows of dY, and returns None (ids have no
    gradient).
    """

    def __init__(self, vocab: int, dim: int, dtype=np.float64, seed=None):
        super().__init__(dtype)
        self.vocab = check_positive_int(vocab, "Embedding: vocab")
        self.dim = check_positive_int(dim, "Embedding: dim")
        rng = np.random.default_rng(seed)
        self._set_params({"E": rng.standard_normal((self.vocab, self.dim))})

    def _check_ids(self, ids) -> np.ndarray:
        try:
            ids = np.asarray(ids)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.name}: ids is not an array: {error}") from None
        if ids.dtype.kind not in "iu":
            raise ValueError(f"{self.name}: ids must be integers, got dtype {ids.dtype}")
        if ids.size == 0:
            raise ValueError(f"{self.name}: ids is empty, shape {ids.shape}")
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.vocab:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{self.name}: id {bad} out of range: the table has "
                             f"{self.vocab} rows, ids 0..{self.vocab - 1}")
        return ids.astype(np.intp, copy=False)

    def forward(self, X, train: bool = True) -> np.ndarray:
        return self._forward_unchecked(self._check_ids(X), train)

    def _forward_unchecked(self, ids: np.ndarray, train: bool = True) -> np.ndarray:
        flat = ids.ravel()
        Y = simple.embedding_forward(ids=flat, e=self.params["E"])
        self._cache = (flat, ids.shape) if train else None
        return Y.reshape(*ids.shape, self.dim)

    def backward(self, dY) -> None:
        shape = (self.dim,) if self._cache is None else (*self._cache[1], self.dim)
        dY = self._check_upstream(dY, shape)
        return self._backward_unchecked(dY)

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> None:
        flat, _ = self._cache
        self.grads = {"E": simple.embedding_backward(
            dy=dY.reshape(-1, self.dim), ids=flat, V=self.vocab)}


class Residual(Layer):
    """``Y = X + f(X)``, with ``f`` the inner layers applied in order.

    ``f(X)`` must have the shape of ``X``. ``params`` and ``grads`` gather
    the inner layers' arrays (the same array objects) under the keys
    ``"<position>.<key>"``, e.g. ``"0.W"``; ``backward(dY)`` gives the inner
    layers ``dF = dY``, which fills their own ``grads``, and returns
    ``dY + dXf``: the identity path plus the path through them.
    """

    def __init__(self, *layers: Layer):
        if not layers:
            raise ValueError("Residual: needs at least one inner layer")
        for k, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ValueError(f"Residual: inner layer {k} is not a Layer: {layer!r}")
        self.layers = list(layers)
        dtypes = {layer.dtype for layer in layers if _declares_dtype(layer)}
        if len(dtypes) > 1:
            raise ValueError(f"Residual: inner layers mix dtypes {sorted(d.name for d in dtypes)}")
        super().__init__(dtypes.pop() if dtypes else np.float64)
        self.dtype_given = bool(dtypes) or any(_declares_dtype(la) for la in layers)

    # params and grads are views of the inner layers' own dicts
    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{k}.{key}": value for k, layer in enumerate(self.layers)
                for key, value in layer.params.items()}

    @params.setter
    def params(self, value) -> None:
        if value:
            raise AttributeError("Residual: set the inner layers' params instead")

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{k}.{key}": value for k, layer in enumerate(self.layers)
                for key, value in layer.grads.items()}

    @grads.setter
    def grads(self, value) -> None:
        if value:
            raise AttributeError("Residual: the inner layers hold the grads")

    def weight_keys(self) -> list[str]:
        return [f"{k}.{key}" for k, layer in enumerate(self.layers) for key in layer.weight_keys()]

    def set_dtype(self, dtype) -> None:
        """The dtype of a `Sequential`, for the inner layers that did not choose one."""
        self.dtype = np.dtype(dtype)
        for layer in self.layers:
            if not _declares_dtype(layer):
                _adopt_dtype(layer, dtype)

    def __repr__(self) -> str:
        return f"Residual({', '.join(map(repr, self.layers))})"

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=max(np.ndim(X), 1))
        F = X
        for layer in self.layers:
            F = layer.forward(F, train)
        return self._add_branches(X, F, train)

    def _forward_unchecked(self, X: np.ndarray, train: bool = True) -> np.ndarray:
        F = X
        for layer in self.layers:
            F = _fast(layer, "_forward_unchecked", "forward")(F, train)
        return self._add_branches(X, F, train)

    def _add_branches(self, X, F, train) -> np.ndarray:
        if F.shape != X.shape:
            raise ValueError(f"Residual: the inner layers map shape {X.shape} to {F.shape}; "
                             "X + f(X) needs f(X) of the shape of X")
        self._cache = (X.shape,) if train else None
        return simple.residual_forward(X, F)

    def backward(self, dY) -> np.ndarray:
        shape = (1,) if self._cache is None else self._cache[0]
        dY = self._check_upstream(dY, shape)
        dXf = dY  # dF = dY
        for layer in reversed(self.layers):
            dXf = layer.backward(dXf)
        return simple.residual_backward(dY, dXf)

    def _backward_unchecked(self, dY: np.ndarray, input_grad: bool = True) -> np.ndarray:
        dXf = dY  # dF = dY
        for layer in reversed(self.layers):
            dXf = _fast(layer, "_backward_unchecked", "backward")(dXf)
        return simple.residual_backward(dY, dXf)


def _declares_dtype(layer: Layer) -> bool:
    """The layer chose its dtype: it has parameters, or ``dtype=`` was given."""
    return bool(layer.params) or getattr(layer, "dtype_given", True)


def _adopt_dtype(layer: Layer, dtype) -> None:
    if hasattr(layer, "set_dtype"):
        layer.set_dtype(dtype)
    else:
        layer.dtype = np.dtype(dtype)


def _fast(layer: Layer, fast: str, checked: str):
    """The layer's unchecked method where it has one (its input comes from a
    checked layer), else its public one."""
    return getattr(layer, fast, None) or getattr(layer, checked)
