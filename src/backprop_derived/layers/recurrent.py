"""Recurrent layers: a tanh RNN (``catalog.RNN_LAYER``, derivations/14_recurrence.py),
a GRU and an LSTM (one declared time step each, ``catalog.GRU_CELL`` and ``LSTM_CELL``,
page 16).

``H = RNN(d_in, d_hidden).forward(X)`` for ``X`` of shape (batch, T, d_in)
returns every hidden state, ``h_t = tanh(x_t W_ih^T + h_(t-1) W_hh^T + b)``
with ``h_(-1) = 0``, shape (batch, T, d_hidden). ``backward(dY)`` runs the
derived BPTT recurrence backwards in time. The GRU and LSTM run their
generated step over t, and its generated backward from t = T-1 down to 0.
"""

from __future__ import annotations

import numpy as np

from backprop_derived._generated.recurrent import GRU_CELL, LSTM_CELL
from backprop_derived._generated.recurrent import RNN as RNN_LAYER
from backprop_derived.backend import kernels as _kernels

from .base import Layer, check_positive_int
from .declared import call_declared, returned

__all__ = ["GRU", "LSTM", "RNN"]

kernels = _kernels("recurrent")  # the active backend's kernels, looked up at each call


class RNN(Layer):
    """``params``: ``W_ih`` (d_hidden, d_in), ``W_hh`` (d_hidden, d_hidden), ``b`` (d_hidden,).

    The kernels are ``catalog.RNN_LAYER``'s, printed with their loops over time;
    the names come from its generated binding (``_generated.recurrent.RNN``).
    """

    def __init__(self, d_in: int, d_hidden: int, dtype=np.float64, seed=None) -> None:
        super().__init__(dtype)
        self.d_in = check_positive_int(d_in, "d_in")
        self.d_hidden = check_positive_int(d_hidden, "d_hidden")
        rng = np.random.default_rng(seed)
        # PyTorch's default: uniform in +-1/sqrt(d_hidden) for every parameter
        bound = self.d_hidden ** -0.5
        sizes = {"d_in": self.d_in, "d_h": self.d_hidden}
        self._set_params({key: rng.uniform(-bound, bound, tuple(sizes[d] for d in dims))
                          for (_, key), (_, dims) in zip(RNN_LAYER["labels"],
                                                         RNN_LAYER["shapes"], strict=True)})

    def _weights(self) -> dict:
        return {arg: self.params[key] for arg, key in RNN_LAYER["labels"]}

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=3, last=self.d_in)
        (x_name,), (out,) = RNN_LAYER["inputs"], RNN_LAYER["outputs"]
        got = returned(RNN_LAYER["forward_returns"],
                       call_declared(getattr(kernels, RNN_LAYER["kernels"][0]),
                                     **{x_name: X}, **self._weights()))
        self._cache = {x_name: X, **{k: got[k] for k in RNN_LAYER["saved"]}} if train else None
        return got[out]

    def backward(self, dY) -> np.ndarray:
        if self._cache is None:
            raise ValueError(f"{self.name}: backward needs a forward(X, train=True) first")
        (x_name,), (out,), (upstream,) = (RNN_LAYER["inputs"], RNN_LAYER["outputs"],
                                          RNN_LAYER["upstream"])
        dY = self._check_upstream(dY, self._cache[out].shape)
        got = returned(RNN_LAYER["backward_returns"],
                       call_declared(getattr(kernels, RNN_LAYER["kernels"][1]),
                                     **{upstream: dY}, **self._cache, **self._weights()))
        self.grads = {key: got["d" + arg] for arg, key in RNN_LAYER["labels"]}
        return got["d" + x_name]


class _Gated(Layer):
    """A recurrence of one declared cell step; ``_cell`` is the step's declaration as
    the generated module spells it (its inputs, parameters, saved arrays, states).

    The step's first input is ``x_t``, its first output ``h_t``; every other
    input is a state, zero at t = 0 and the named output of step t - 1 after.
    ``params`` are the declaration's stacks (PyTorch's ``weight_ih_l0`` ...),
    the kernels read one view per gate.
    """

    _cell: dict

    def __init__(self, input_size: int, hidden_size: int, dtype=np.float64, seed=None) -> None:
        super().__init__(dtype)
        self.input_size = check_positive_int(input_size, f"{self.name}: input_size")
        self.hidden_size = check_positive_int(hidden_size, f"{self.name}: hidden_size")
        sizes = {"d_in": self.input_size, "d_h": self.hidden_size}
        shapes = {part: tuple(sizes[d] for d in dims) for part, dims in self._cell["shapes"]}
        rng = np.random.default_rng(seed)
        bound = self.hidden_size ** -0.5  # PyTorch's default: U(-1/sqrt(H), 1/sqrt(H))
        self._set_params({
            stack: rng.uniform(-bound, bound, (len(parts) * shapes[parts[0]][0],
                                               *shapes[parts[0]][1:]))
            for stack, parts in self._cell["stacks"]})

    def _parts(self, arrays: dict) -> dict:
        """Each stacked array's per-gate views, by the declaration's names."""
        H = self.hidden_size
        return {part: arrays[stack][k * H:(k + 1) * H]
                for stack, parts in self._cell["stacks"] for k, part in enumerate(parts)}

    def forward(self, X, train: bool = True) -> np.ndarray:
        X = self._check_input(X, ndim=3, last=self.input_size)
        cell, step = self._cell, getattr(kernels, self._cell["kernels"][0])
        x_name, out = cell["inputs"][0], cell["outputs"][0]
        N, T, _ = X.shape
        state = {s: np.zeros((N, self.hidden_size), self.dtype) for s, _ in cell["states"]}
        weights, Y, steps = self._parts(self.params), np.empty((N, T, self.hidden_size),
                                                               self.dtype), []
        for t in range(T):
            given = {x_name: X[:, t], **state}
            got = dict(zip(cell["forward_returns"],
                           call_declared(step, **given, **weights), strict=True))
            Y[:, t] = got[out]
            steps.append({**given, **{k: got[k] for k in cell["saved"]}})
            state = {s: got[o] for s, o in cell["states"]}
        self._cache = (Y.shape, steps) if train else None
        return Y

    def backward(self, dY) -> np.ndarray:
        dY = self._check_upstream(dY, self._cache[0] if self._cache is not None else ())
        cell, step = self._cell, getattr(kernels, self._cell["kernels"][1])
        (N, T, _), steps = self._cache
        weights, dX = self._parts(self.params), np.empty((N, T, self.input_size), self.dtype)
        zero = np.zeros((N, self.hidden_size), self.dtype)
        # the gradient reaching each state output of step t from step t + 1 (none at T-1)
        carry = {o: zero for _, o in cell["states"]}
        total = dict.fromkeys(cell["params"], 0)
        for t in reversed(range(T)):
            # h_t's upstream: what the loss sends to it plus what step t + 1 returns for it
            upstream = {up: carry[o] + (dY[:, t] if k == 0 else 0)
                        for k, (o, up) in enumerate(zip(cell["outputs"], cell["upstream"],
                                                        strict=True))}
            got = dict(zip(cell["backward_returns"],
                           call_declared(step, **upstream, **steps[t], **weights), strict=True))
            dX[:, t] = got["d" + cell["inputs"][0]]
            carry = {o: got["d" + s] for s, o in cell["states"]}
            total = {p: total[p] + got["d" + p] for p in cell["params"]}  # shared by every t
        self.grads = {stack: np.concatenate([total[p] for p in parts])
                      for stack, parts in cell["stacks"]}
        return dX


class GRU(_Gated):
    """A GRU over ``(N, T, input_size)``, as PyTorch's ``nn.GRU(input_size, hidden_size,
    batch_first=True)``: returns every ``h_t``, ``(N, T, hidden_size)``, from ``h_(-1) = 0``.

    ``params``: ``W_ih`` (3H, input_size), ``W_hh`` (3H, H), ``b_ih``, ``b_hh`` (3H,),
    the gates stacked in PyTorch's order r, z, n.
    """

    _cell = GRU_CELL


class LSTM(_Gated):
    """An LSTM over ``(N, T, input_size)``, as PyTorch's ``nn.LSTM(input_size, hidden_size,
    batch_first=True)``: returns every ``h_t``, ``(N, T, hidden_size)``, from ``h_(-1) =
    c_(-1) = 0``.

    ``params``: ``W_ih`` (4H, input_size), ``W_hh`` (4H, H), ``b_ih``, ``b_hh`` (4H,),
    the gates stacked in PyTorch's order i, f, g, o.
    """

    _cell = LSTM_CELL
