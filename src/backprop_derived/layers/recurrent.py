"""A tanh RNN on the kernels generated from derivations/14_recurrence.py.

``H = RNN(d_in, d_hidden).forward(X)`` for ``X`` of shape (batch, T, d_in)
returns every hidden state, ``h_t = tanh(x_t W_ih^T + h_(t-1) W_hh^T + b)``
with ``h_(-1) = 0``, shape (batch, T, d_hidden). ``backward(dY)`` runs the
derived BPTT recurrence backwards in time.
"""

from __future__ import annotations

import numpy as np

from backprop_derived.backend import kernels as _kernels

from .base import Layer, check_positive_int

__all__ = ["RNN"]

kernels = _kernels("recurrent")  # the active backend's kernels, looked up at each call


class RNN(Layer):
    """``params``: ``W_ih`` (d_hidden, d_in), ``W_hh`` (d_hidden, d_hidden), ``b`` (d_hidden,)."""

    def __init__(self, d_in: int, d_hidden: int, dtype=np.float64, seed=None) -> None:
        super().__init__(dtype)
        self.d_in = check_positive_int(d_in, "d_in")
        self.d_hidden = check_positive_int(d_hidden, "d_hidden")
        rng = np.random.default_rng(seed)
        # PyTorch's default: uniform in +-1/sqrt(d_hidden) for every parameter
        bound = self.d_hidden ** -0.5
        self._set_params({
            "W_ih": rng.uniform(-bound, bound, (self.d_hidden, self.d_in)),
            "W_hh": rng.uniform(-bound, bound, (self.d_hidden, self.d_hidden)),
            "b": rng.uniform(-bound, bound, (self.d_hidden,)),
        })

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=3, last=self.d_in)
        p = self.params
        H = kernels.rnn_forward(X, p["W_ih"], p["W_hh"], p["b"])
        self._cache = (X, H) if train else None
        return H

    def backward(self, dY) -> np.ndarray:
        if self._cache is None:
            raise ValueError(f"{self.name}: backward needs a forward(X, train=True) first")
        X, H = self._cache
        dY = self._check_upstream(dY, H.shape)
        dX, dW_ih, dW_hh, db = kernels.rnn_backward(dY, X, H, self.params["W_ih"],
                                                    self.params["W_hh"])
        self.grads = {"W_ih": dW_ih, "W_hh": dW_hh, "b": db}
        return dX
