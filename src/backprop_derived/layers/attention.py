"""Self-attention on the kernels generated from derivations/11_attention.py: one head
(``SelfAttention``) and many (``MultiHeadAttention``, from ``catalog.MULTI_HEAD_ATTENTION``).

``Y = SelfAttention(d_model, d_head).forward(X)`` for ``X`` of shape
(batch, T, d_model): Q = X Wq^T, K = X Wk^T, V = X Wv^T,
S = Q K^T / sqrt(d_head), P = softmax of S over the keys, O = P V, Y = O Wo^T.
With ``causal=True`` the key s is hidden from the query t when s > t.
"""

from __future__ import annotations

import numpy as np

from backprop_derived._generated.attention import MULTI_HEAD_ATTENTION as _BINDING
from backprop_derived.backend import kernels as _kernels

from .base import Layer, check_positive_int
from .declared import call_declared

__all__ = ["MultiHeadAttention", "SelfAttention"]

kernels = _kernels("attention")  # the active backend's kernels, looked up at each call


class SelfAttention(Layer):
    """A single attention head, no biases; ``params`` ``Wq``, ``Wk``, ``Wv`` (d_head, d_model)
    and ``Wo`` (d_model, d_head)."""

    def __init__(self, d_model: int, d_head: int, causal: bool = False, dtype=np.float64,
                 seed=None) -> None:
        super().__init__(dtype)
        self.d_model = check_positive_int(d_model, "d_model")
        self.d_head = check_positive_int(d_head, "d_head")
        if not isinstance(causal, bool | np.bool_):
            raise ValueError(f"causal must be True or False, got {causal!r}")
        self.causal = bool(causal)
        rng = np.random.default_rng(seed)
        # variance 1/fan_in keeps the scores and the output of order 1
        self._set_params({
            "Wq": rng.normal(0.0, self.d_model ** -0.5, (self.d_head, self.d_model)),
            "Wk": rng.normal(0.0, self.d_model ** -0.5, (self.d_head, self.d_model)),
            "Wv": rng.normal(0.0, self.d_model ** -0.5, (self.d_head, self.d_model)),
            "Wo": rng.normal(0.0, self.d_head ** -0.5, (self.d_model, self.d_head)),
        })
        # a number of the layer's dtype: a NumPy float64 scalar would promote float32 arrays
        self._head = self.dtype.type(self.d_head)
        self._masks: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _mask(self, T: int) -> tuple[np.ndarray, np.ndarray]:
        """The catalog's causal M (1 visible, 0 hidden) in the layer's dtype, and as booleans."""
        if T not in self._masks:
            visible = np.tril(np.ones((T, T), dtype=bool))
            self._masks[T] = (visible.astype(self.dtype), visible)
        return self._masks[T]

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=3, last=self.d_model)
        p = self.params
        q, k, v, s = kernels.attention_scores(X, p["Wq"], p["Wk"], p["Wv"], self._head)
        # Any shift c per row gives the same P (proven on the page); the largest
        # visible score keeps every visible exponent <= 0 and the denominator >= 1.
        if self.causal:
            M, visible = self._mask(X.shape[1])
            c = np.max(s, axis=2, where=visible, initial=-np.inf)
            P, o, y = kernels.attention_mix(s, c, M, v, p["Wo"])
        else:  # M = 1 everywhere
            P, o, y = kernels.attention_mix_unmasked(s, s.max(axis=2), v, p["Wo"])
        self._cache = (X, q, k, v, P, o) if train else None
        return y

    def backward(self, dY) -> np.ndarray:
        shape = None if self._cache is None else self._cache[0].shape
        dY = self._check_upstream(dY, shape)
        X, q, k, v, P, o = self._cache
        p = self.params
        dX, dWq, dWk, dWv, dWo = kernels.attention_backward(
            dY, X, q, k, v, P, o, p["Wq"], p["Wk"], p["Wv"], p["Wo"], self._head)
        self.grads = {"Wq": dWq, "Wk": dWk, "Wv": dWv, "Wo": dWo}
        return dX


class MultiHeadAttention(Layer):
    """Multi-head self-attention, as PyTorch's ``nn.MultiheadAttention(d_model, heads,
    bias=False, batch_first=True)`` called with ``X`` as query, key and value.

    ``X`` has shape (batch, T, d_model); ``heads`` must divide ``d_model``. ``params``
    ``Wq``, ``Wk``, ``Wv``, ``Wo``, each (d_model, d_model): ``q = X Wq^T`` is split
    contiguously into heads of ``d_head = d_model // heads`` features (head ``h`` uses
    rows ``h d_head .. h d_head + d_head - 1`` of ``Wq``, ``Wk``, ``Wv``), and
    ``Y = concat(heads) Wo^T``. With ``causal=True`` the key s is hidden from the query
    t when s > t. Initialisation as PyTorch's: ``Wq``, ``Wk``, ``Wv`` are the blocks of
    one (3 d_model, d_model) matrix drawn Xavier-uniform, ``Wo`` uniform in
    +-1/sqrt(d_model).
    """

    def __init__(self, d_model: int, heads: int, causal: bool = False, dtype=np.float64,
                 seed=None) -> None:
        super().__init__(dtype)
        self.d_model = check_positive_int(d_model, "d_model")
        self.heads = check_positive_int(heads, "heads")
        if self.d_model % self.heads:
            raise ValueError(f"d_model = {self.d_model} is not divisible by heads = "
                             f"{self.heads}: each head takes d_model / heads features")
        if not isinstance(causal, bool | np.bool_):
            raise ValueError(f"causal must be True or False, got {causal!r}")
        self.causal = bool(causal)
        self.d_head = self.d_model // self.heads
        rng = np.random.default_rng(seed)
        d = self.d_model
        in_proj = rng.uniform(-1.0, 1.0, (3 * d, d)) * np.sqrt(6.0 / (3 * d + d))
        # the catalog declares the three input projections, then the output one
        *projections, out = (key for _, key in _BINDING["labels"])
        self._set_params({**{key: in_proj[n * d:(n + 1) * d] for n, key in enumerate(projections)},
                          out: rng.uniform(-1.0, 1.0, (d, d)) / np.sqrt(d)})
        self._masks: dict[int, np.ndarray] = {}

    def _mask(self, T: int) -> np.ndarray:
        """The catalog's B, added to the scores: 0 where a key is visible, -inf where hidden."""
        if T not in self._masks:
            B = np.zeros((T, T), dtype=self.dtype)
            if self.causal:
                B[np.triu_indices(T, 1)] = -np.inf
            self._masks[T] = B
        return self._masks[T]

    def _weights(self) -> dict:
        """What the kernels read besides the arrays: the parameters under the kernels'
        argument names (the generated binding's), and the head split."""
        return {arg: self.params[key] for arg, key in _BINDING["labels"]} | {
            "heads": self.heads, "d_head": self.d_head}

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=3, last=self.d_model)
        if X.shape[1] == 0:
            raise ValueError(f"{self.name}: X has no positions (shape {X.shape}); "
                             "attention needs T >= 1")
        (x_name,), (mask,) = _BINDING["inputs"], _BINDING["constants"]
        forward = getattr(kernels, _BINDING["kernels"][0])
        got = dict(zip(_BINDING["forward_returns"], call_declared(
            forward, **{x_name: X, mask: self._mask(X.shape[1])}, **self._weights()),
            strict=True))
        self._cache = ({x_name: X, **{k: got[k] for k in _BINDING["saved"]}}
                       if train else None)
        return got[_BINDING["outputs"][0]]

    def backward(self, dY) -> np.ndarray:
        (x_name,), (upstream,) = _BINDING["inputs"], _BINDING["upstream"]
        shape = None if self._cache is None else self._cache[x_name].shape
        dY = self._check_upstream(dY, shape)
        backward = getattr(kernels, _BINDING["kernels"][1])
        got = dict(zip(_BINDING["backward_returns"], call_declared(
            backward, **{upstream: dY}, **self._cache, **self._weights()), strict=True))
        self.grads = {key: got["d" + arg] for arg, key in _BINDING["labels"]}
        return got["d" + x_name]
