"""``python -m benchmarks.layers``: each layer's forward + backward against PyTorch CPU autograd.

For every layer of ``backprop_derived.layers``, at a moderate size, in float32
and float64: our side runs ``Y = layer.forward(X); dX = layer.backward(dY)``
with a fixed ``dY``; the PyTorch side runs the equivalent ``torch.nn`` module
with our parameters copied in, ``y = module(x); y.backward(dy)`` (gradients
reset to None first, as ``optimizer.zero_grad()`` does).

Before anything is timed, three checks, none of which needs the other side:

- ``central_differences``: our layer in float64 at tiny sizes, every gradient
  (input and parameters) against a directional central difference of
  ``sum(Y * dY)``;
- ``float64``: our layer in float32 against the same layer in float64 on the
  same parameters and data (float32 cases only);
- ``torch``: the PyTorch module's output, input gradient and every parameter
  gradient against ours, to a tolerance of the dtype (skipped, and the case not
  timed, when PyTorch is not installed).

A contender that disagrees is reported as such and not timed. Then both sides
are timed interleaved (``benchmarks.timing``): whole passes, and forwards alone,
round by round, and what is reported is the median (and quartiles) of the
per-round ratios ours / PyTorch. Both run on one thread: the machine is shared,
and one thread each is the comparison of the code rather than of how two
thread pools share two busy cores. ``--threads 2`` gives both two.

Writes ``benchmarks/layer_results.json``, which docs/layers/speed.py shows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from backprop_derived.layers import (
    RNN,
    Activation,
    BatchNorm,
    Conv1d,
    Conv2d,
    Dense,
    Dropout,
    Embedding,
    LayerNorm,
    Residual,
    SelfAttention,
)

from .contenders import torch_version
from .timing import (
    SETTLE_S,
    Entry,
    OtherLoad,
    calibrate,
    interleave,
    machine_info,
    ratio_stats,
    rounded,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "layer_results.json"
SCHEMA_VERSION = 1
DTYPES = ("float32", "float64")
# Output and every gradient, max error relative to the array's largest entry
# (as benchmarks.contenders.compare: a tiny entry carries an absolute error).
RTOL = {"float32": 1e-4, "float64": 1e-10}
FD_RTOL = 1e-6  # central differences in float64, h = 1e-6: error ~1e-10 here
DROPOUT_P = 0.5

Arrays = dict[str, np.ndarray]


# --------------------------------------------------------------------------
# The layers: how to build ours, its inputs, and the PyTorch equivalent
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One layer as benchmarked: our stack of layers, its data, the torch module."""

    name: str
    torch_label: str  # the PyTorch side, for people
    full: dict[str, int]  # the sizes timed
    tiny: dict[str, int]  # the sizes of the central-difference check and the tests
    build: Callable[[dict[str, int], str, int], list]  # (sizes, dtype, seed) -> our layers
    inputs: Callable[[dict[str, int], str, np.random.Generator], tuple[np.ndarray, np.ndarray]]
    torch: Callable[[dict[str, int]], tuple[Any, dict[str, str]]]  # module, our key -> its
    describe: Callable[[dict[str, int]], str]
    # NumPy written by hand with the fewest passes we found (layers where the
    # gap to PyTorch is NumPy's one pass per operation): the floor of NumPy
    handwritten: Callable[[Any], Contender] | None = None


def _normal(rng, shape, dtype) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def _rows_io(s, dtype, rng):
    return _normal(rng, (s["m"], s["n"]), dtype), _normal(rng, (s["m"], s["n"]), dtype)


def _randomize_scale_shift(layer, seed: int):
    """gamma = 1, beta = 0 would hide a swapped or missing gradient term."""
    rng = np.random.default_rng(seed + 100)
    layer.params["gamma"][...] = 1 + 0.1 * rng.standard_normal(layer.n)
    layer.params["beta"][...] = 0.1 * rng.standard_normal(layer.n)
    return layer


def _torch_dense_relu(s):
    from torch import nn

    return (nn.Sequential(nn.Linear(s["n"], s["n"]), nn.ReLU()),
            {"0.W": "0.weight", "0.b": "0.bias"})


def _torch_norm(kind):
    def make(s):
        from torch import nn

        module = nn.BatchNorm1d(s["n"]) if kind == "batch" else nn.LayerNorm(s["n"])
        return module, {"0.gamma": "weight", "0.beta": "bias"}

    return make


def _torch_dropout(s):
    from torch import nn

    return nn.Dropout(DROPOUT_P), {}


def _torch_embedding(s):
    from torch import nn

    return nn.Embedding(s["vocab"], s["dim"]), {"0.E": "weight"}


def _torch_residual(s):
    import torch
    from torch import nn

    class DenseReluResidual(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.linear = nn.Linear(n, n)

        def forward(self, x):
            return x + torch.relu(self.linear(x))

    return DenseReluResidual(s["n"]), {"0.0.W": "linear.weight", "0.0.b": "linear.bias"}


def _torch_attention(causal: bool):
    def make(s):
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Head(nn.Module):
            """One head, no biases, as idiomatic PyTorch writes it: the fused SDPA."""

            def __init__(self, d_model, d_head):
                super().__init__()
                self.Wq = nn.Parameter(torch.empty(d_head, d_model))
                self.Wk = nn.Parameter(torch.empty(d_head, d_model))
                self.Wv = nn.Parameter(torch.empty(d_head, d_model))
                self.Wo = nn.Parameter(torch.empty(d_model, d_head))

            def forward(self, x):
                q, k, v = F.linear(x, self.Wq), F.linear(x, self.Wk), F.linear(x, self.Wv)
                o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
                return F.linear(o, self.Wo)

        names = {f"0.{w}": w for w in ("Wq", "Wk", "Wv", "Wo")}
        return Head(s["d_model"], s["d_head"]), names

    return make


def _torch_conv(rank: int):
    def make(s):
        from torch import nn

        conv = nn.Conv1d if rank == 1 else nn.Conv2d
        return conv(s["c_in"], s["c_out"], s["k"]), {"0.W": "weight", "0.b": "bias"}

    return make


def _torch_rnn(s):
    import torch
    from torch import nn

    class TanhRNN(nn.Module):
        """nn.RNN, every hidden state out; its second bias is held at zero (ours has one)."""

        def __init__(self, d_in, d_hidden):
            super().__init__()
            self.rnn = nn.RNN(d_in, d_hidden, nonlinearity="tanh", batch_first=True)
            with torch.no_grad():
                self.rnn.bias_hh_l0.zero_()

        def forward(self, x):
            return self.rnn(x)[0]

    names = {"0.W_ih": "rnn.weight_ih_l0", "0.W_hh": "rnn.weight_hh_l0", "0.b": "rnn.bias_ih_l0"}
    return TanhRNN(s["d_in"], s["d_hidden"]), names


def _attention_spec(causal: bool) -> Spec:
    def build(s, dtype, seed):
        return [SelfAttention(s["d_model"], s["d_head"], causal=causal, dtype=dtype, seed=seed)]

    def inputs(s, dtype, rng):
        shape = (s["batch"], s["T"], s["d_model"])
        return _normal(rng, shape, dtype), _normal(rng, shape, dtype)

    return Spec(
        "SelfAttention causal" if causal else "SelfAttention",
        "F.linear ×3, F.scaled_dot_product_attention"
        + ("(is_causal=True)" if causal else "") + ", F.linear",
        {"batch": 16, "T": 64, "d_model": 128, "d_head": 64},
        {"batch": 2, "T": 5, "d_model": 6, "d_head": 4},
        build, inputs, _torch_attention(causal),
        lambda s: f"batch {s['batch']}, T {s['T']}, d_model {s['d_model']}, d_head {s['d_head']}",
    )


def _conv_spec(rank: int) -> Spec:
    def build(s, dtype, seed):
        if rank == 1:
            return [Conv1d(s["c_in"], s["c_out"], s["k"], dtype=dtype, seed=seed)]
        return [Conv2d(s["c_in"], s["c_out"], s["k"], s["k"], dtype=dtype, seed=seed)]

    def inputs(s, dtype, rng):
        space = (s["L"],) * rank
        out = tuple(n - s["k"] + 1 for n in space)
        return (_normal(rng, (s["batch"], s["c_in"], *space), dtype),
                _normal(rng, (s["batch"], s["c_out"], *out), dtype))

    def describe(s):
        space = "L" if rank == 1 else "H = W"
        kernel = f"{s['k']}" if rank == 1 else f"{s['k']}×{s['k']}"
        return (f"batch {s['batch']}, {s['c_in']} → {s['c_out']} channels, {space} {s['L']}, "
                f"kernel {kernel}")

    full = ({"batch": 64, "c_in": 16, "c_out": 32, "L": 256, "k": 5} if rank == 1
            else {"batch": 64, "c_in": 3, "c_out": 8, "L": 32, "k": 3})
    return Spec(
        f"Conv{rank}d", f"nn.Conv{rank}d (stride 1, no padding)", full,
        {"batch": 2, "c_in": 2, "c_out": 3, "L": 7 if rank == 1 else 5, "k": 3},
        build, inputs, _torch_conv(rank), describe,
    )


def _handwritten_norm(kind: str):
    """Batch norm (``kind="batch"``) or layer norm over the rows of an (m, n) array,
    in NumPy, as few passes as we could write: the deviations once, the sums
    as BLAS products with a ones vector, in-place updates, no temporaries that
    an ``out=`` can avoid. Independent of the generated kernels."""

    def make(setup: Setup) -> Contender:
        X, dY = setup.X, setup.dY
        gamma, beta = setup.params["0.gamma"], setup.params["0.beta"]
        eps = setup.layers[0].eps
        axis = 0 if kind == "batch" else 1  # the axis the statistics are taken over
        count = X.shape[axis]
        ones = np.ones(count, X.dtype)
        state: dict[str, np.ndarray] = {}

        def stat_sum(A):  # a column sum (batch) or a row sum (layer)
            return ones @ A if axis == 0 else A @ ones

        def along(v):  # a statistic, broadcast against the (m, n) array
            return v if axis == 0 else v[:, None]

        def forward():
            mu = stat_sum(X) / count
            xhat = X - along(mu)
            var = np.einsum("ij,ij->j" if axis == 0 else "ij,ij->i", xhat, xhat) / count
            r = 1 / np.sqrt(var + eps)
            xhat *= along(r)
            Y = xhat * gamma
            Y += beta
            state["xhat"], state["r"] = xhat, r
            return Y

        def backward():
            xhat, r = state["xhat"], state["r"]
            dgamma = np.einsum("ij,ij->j", dY, xhat)
            dbeta = ones @ dY if axis == 0 else np.ones(X.shape[0], X.dtype) @ dY
            if axis == 0:  # dX = (gamma r / m) (m dY - dbeta - xhat dgamma)
                scale = gamma * r
                dX = dY * scale
                dX -= xhat * (scale * dgamma / count)
                dX -= scale * dbeta / count
            else:  # dX = (r / n) (n dxhat - sum dxhat - xhat sum(dxhat xhat))
                dX = dY * gamma
                a = dX @ ones * (r / count)
                b = np.einsum("ij,ij->i", dX, xhat) * (r / count)
                dX *= r[:, None]
                dX -= xhat * b[:, None]
                dX -= a[:, None]
            return dX, dgamma, dbeta

        def make_backward():
            forward()
            return backward

        def run():
            Y = forward()
            return Y, backward()

        def result() -> Arrays:
            Y, (dX, dgamma, dbeta) = run()
            return {"Y": Y.copy(), "dX": dX, "d0.gamma": dgamma, "d0.beta": dbeta}

        return Contender("NumPy by hand", run, forward, make_backward, result, "numpy")

    return make


def _rows_describe(s):
    return f"{s['m']} × {s['n']}"


SPECS: list[Spec] = [
    Spec("Dense + ReLU", "nn.Linear, nn.ReLU", {"m": 256, "n": 512}, {"m": 4, "n": 5},
         lambda s, dt, seed: [Dense(s["n"], s["n"], dtype=dt, seed=seed),
                              Activation("relu", dtype=dt)],
         _rows_io, _torch_dense_relu, lambda s: f"{s['m']} × {s['n']} → {s['n']}"),
    Spec("BatchNorm", "nn.BatchNorm1d (training mode)", {"m": 256, "n": 512}, {"m": 4, "n": 5},
         lambda s, dt, seed: [_randomize_scale_shift(BatchNorm(s["n"], dtype=dt), seed)],
         _rows_io, _torch_norm("batch"), _rows_describe, _handwritten_norm("batch")),
    Spec("LayerNorm", "nn.LayerNorm", {"m": 256, "n": 512}, {"m": 4, "n": 5},
         lambda s, dt, seed: [_randomize_scale_shift(LayerNorm(s["n"], dtype=dt), seed)],
         _rows_io, _torch_norm("layer"), _rows_describe, _handwritten_norm("layer")),
    Spec("Dropout", f"nn.Dropout({DROPOUT_P})", {"m": 256, "n": 512}, {"m": 4, "n": 5},
         lambda s, dt, seed: [Dropout(DROPOUT_P, seed=seed, dtype=dt)],
         _rows_io, _torch_dropout, lambda s: f"{s['m']} × {s['n']}, p = {DROPOUT_P}"),
    Spec("Embedding", "nn.Embedding", {"vocab": 5000, "dim": 64, "batch": 256, "T": 32},
         {"vocab": 7, "dim": 3, "batch": 2, "T": 6},
         lambda s, dt, seed: [Embedding(s["vocab"], s["dim"], dtype=dt, seed=seed)],
         lambda s, dt, rng: (rng.integers(0, s["vocab"], (s["batch"], s["T"])),
                             _normal(rng, (s["batch"], s["T"], s["dim"]), dt)),
         _torch_embedding,
         lambda s: f"vocab {s['vocab']} × dim {s['dim']}, ids {s['batch']} × {s['T']}"),
    Spec("Residual(Dense + ReLU)", "x + relu(nn.Linear(x))", {"m": 256, "n": 512},
         {"m": 4, "n": 5},
         lambda s, dt, seed: [Residual(Dense(s["n"], s["n"], dtype=dt, seed=seed),
                                       Activation("relu", dtype=dt))],
         _rows_io, _torch_residual, _rows_describe),
    _attention_spec(causal=False),
    _attention_spec(causal=True),
    _conv_spec(1),
    _conv_spec(2),
    Spec("RNN", "nn.RNN(tanh, batch_first), bias_hh = 0",
         {"batch": 32, "T": 64, "d_in": 32, "d_hidden": 64},
         {"batch": 2, "T": 4, "d_in": 3, "d_hidden": 5},
         lambda s, dt, seed: [RNN(s["d_in"], s["d_hidden"], dtype=dt, seed=seed)],
         lambda s, dt, rng: (_normal(rng, (s["batch"], s["T"], s["d_in"]), dt),
                             _normal(rng, (s["batch"], s["T"], s["d_hidden"]), dt)),
         _torch_rnn,
         lambda s: f"batch {s['batch']}, T {s['T']}, d_in {s['d_in']}, "
                   f"d_hidden {s['d_hidden']}"),
]  # fmt: skip
SPEC = {spec.name: spec for spec in SPECS}


@dataclass(frozen=True)
class Case:
    spec: Spec
    dtype: str
    tiny: bool = False

    @property
    def name(self) -> str:
        return f"{self.spec.name} {self.dtype}"

    @property
    def sizes(self) -> dict[str, int]:
        return self.spec.tiny if self.tiny else self.spec.full


def cases(tiny: bool = False) -> list[Case]:
    return [Case(spec, dtype, tiny) for spec in SPECS for dtype in DTYPES]


# --------------------------------------------------------------------------
# The two sides as contenders
# --------------------------------------------------------------------------


@dataclass
class Contender:
    """``run`` is one forward + backward, ``forward`` a forward alone, and
    ``make_backward()`` runs one forward and returns a backward alone that can be
    repeated after it (all three timed); ``result`` runs one pass and returns
    ``Y``, ``dX`` (if X is not ids) and ``d<key>`` for every parameter, under our
    keys, as NumPy arrays."""

    label: str
    run: Callable[[], object]
    forward: Callable[[], object]
    make_backward: Callable[[], Callable[[], object]]
    result: Callable[[], Arrays]
    runtime: str  # "numpy" or "torch", for timing.interleave
    module: Any = None  # the torch module, if any


@dataclass
class Setup:
    case: Case
    layers: list
    X: np.ndarray
    dY: np.ndarray
    seed: int
    ours: Contender = field(init=False)

    def __post_init__(self) -> None:
        self.ours = ours_contender(self.layers, self.X, self.dY)

    @property
    def params(self) -> Arrays:
        """Our parameters under ``<position in the stack>.<key>`` (the layers' own arrays)."""
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.params.items()}


def make_setup(case: Case, seed: int = 0, dtype: str | None = None) -> Setup:
    rng = np.random.default_rng(seed)
    dtype = dtype or case.dtype
    layers = case.spec.build(case.sizes, dtype, seed)
    X, dY = case.spec.inputs(case.sizes, dtype, rng)
    return Setup(case, layers, X, dY, seed)


def ours_contender(layers: list, X: np.ndarray, dY: np.ndarray) -> Contender:
    def forward():
        Y = X
        for layer in layers:
            Y = layer.forward(Y)
        return Y

    def backward():
        d = dY
        for layer in reversed(layers):
            d = layer.backward(d)
        return d

    def make_backward():
        forward()  # the layers keep what backward needs; backward leaves it there
        return backward

    def run():
        Y = forward()
        return Y, backward()

    def result() -> Arrays:
        Y, dX = run()
        out = {"Y": np.array(Y)}
        if dX is not None:
            out["dX"] = np.array(dX)
        for i, layer in enumerate(layers):
            out.update({f"d{i}.{k}": np.array(g) for k, g in layer.grads.items()})
        return out

    return Contender("ours", run, forward, make_backward, result, "numpy")


def torch_contender(setup: Setup) -> Contender:
    """The case's torch module with our parameters copied in, on a copy of our data."""
    import torch

    case = setup.case
    module, names = case.spec.torch(case.sizes)
    module = module.to(getattr(torch, case.dtype)).train()
    named = dict(module.named_parameters())
    with torch.no_grad():
        for ours_key, value in setup.params.items():
            named[names[ours_key]].copy_(torch.from_numpy(value))
    params = list(module.parameters())
    x = torch.from_numpy(setup.X.copy())
    has_dx = x.is_floating_point()
    if has_dx:
        x.requires_grad_()
    dy = torch.from_numpy(setup.dY.copy())

    def run():
        for p in params:
            p.grad = None
        x.grad = None
        y = module(x)
        y.backward(dy)
        return y

    def make_backward():
        y = module(x)

        def backward():
            for p in params:
                p.grad = None
            x.grad = None
            y.backward(dy, retain_graph=True)  # the graph of one forward, kept for repeats

        return backward

    def result() -> Arrays:
        y = run()
        out = {"Y": y.detach().numpy().copy()}
        if has_dx:
            out["dX"] = x.grad.numpy().copy()
        out.update({f"d{k}": named[t].grad.numpy().copy() for k, t in names.items()})
        return out

    return Contender(f"PyTorch: {case.spec.torch_label}", run, lambda: module(x),
                     make_backward, result, "torch", module)


ContenderFactory = Callable[[Setup], Contender]


# --------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------


class _Replay:
    """Stands in for a Dropout layer's generator: its next draw keeps exactly ``keep``."""

    def __init__(self, keep: np.ndarray) -> None:
        self.keep = keep

    def random(self, shape, dtype):
        assert tuple(shape) == self.keep.shape, (shape, self.keep.shape)
        return self.keep.astype(dtype)  # 1 >= p keeps, 0 >= p drops (p > 0)


def replay_dropout(layers: list, Y: np.ndarray) -> dict:
    """Make our Dropout layers keep what another pass kept (Y != 0); returns what to restore."""
    saved = {}
    for layer in layers:
        if isinstance(layer, Dropout):
            saved[id(layer)] = (layer, layer.rng)
            layer.rng = _Replay(Y != 0)
    return saved


def restore(saved: dict) -> None:
    for layer, rng in saved.values():
        layer.rng = rng


def agree(got: Arrays, ref: Arrays, dtype: str) -> dict[str, Any]:
    """Max error of every array relative to the reference's largest entry, and the worst one."""
    rtol = RTOL[dtype]
    worst, where = 0.0, None
    if set(got) != set(ref):
        worst, where = math.inf, f"keys {sorted(got)} != {sorted(ref)}"
    else:
        for key in ref:
            g, r = np.asarray(got[key]), np.asarray(ref[key], dtype=np.float64)
            if g.shape != r.shape:
                worst, where = math.inf, f"{key} shape {g.shape} != {r.shape}"
                break
            if g.dtype != np.dtype(dtype):
                worst, where = math.inf, f"{key} dtype {g.dtype}, expected {dtype}"
                break
            err = float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30))
            if not math.isfinite(err):
                worst, where = math.inf, key
                break
            if err >= worst:
                worst, where = err, key
    return {"ok": bool(worst <= rtol), "rtol": rtol, "max_rel_err": worst, "worst": where}


def central_differences(spec: Spec, seed: int = 0, h: float = 1e-6) -> dict[str, Any]:
    """Our layer in float64 at tiny sizes: each gradient along a random direction V
    against (L(+hV) - L(-hV)) / 2h, L = sum(Y * dY); relative to the larger of the two."""
    setup = make_setup(Case(spec, "float64", tiny=True), seed)
    layers, X, dY = setup.layers, setup.X, setup.dY
    grads = setup.ours.result()
    saved = replay_dropout(layers, grads["Y"])  # the same mask in every forward below

    def loss(X_=X) -> float:
        return float(np.sum(_forward(layers, X_) * dY))

    rng = np.random.default_rng(seed + 1)
    worst, where = 0.0, None
    try:
        if X.dtype.kind == "f":
            V = rng.standard_normal(X.shape)
            fd = (loss(X + h * V) - loss(X - h * V)) / (2 * h)
            worst, where = _rel(fd, float(np.sum(grads["dX"] * V))), "dX"
        for key, p in setup.params.items():
            V = rng.standard_normal(p.shape)
            p += h * V
            up = loss()
            p -= 2 * h * V
            down = loss()
            p += h * V
            err = _rel((up - down) / (2 * h), float(np.sum(grads[f"d{key}"] * V)))
            if err >= worst:
                worst, where = err, f"d{key}"
    finally:
        restore(saved)
    return {"ok": bool(worst <= FD_RTOL), "rtol": FD_RTOL, "max_rel_err": worst, "worst": where,
            "sizes": dict(spec.tiny)}


def _forward(layers: list, X: np.ndarray) -> np.ndarray:
    for layer in layers:
        X = layer.forward(X)
    return X


def _rel(fd: float, analytic: float) -> float:
    return abs(fd - analytic) / max(abs(fd), abs(analytic), 1e-300)


def float64_twin(setup: Setup, ref: Arrays) -> dict[str, Any]:
    """Our layer in float64, same parameters and data, against ``ref`` (ours in float32)."""
    twin = make_setup(setup.case, setup.seed, dtype="float64")
    for key, value in setup.params.items():
        twin.params[key][...] = value
    X = setup.X.astype(np.float64) if setup.X.dtype.kind == "f" else setup.X
    twin = Setup(setup.case, twin.layers, X, setup.dY.astype(np.float64), setup.seed)
    saved = replay_dropout(twin.layers, ref["Y"])
    try:
        return agree(ref, twin.ours.result(), setup.case.dtype)
    finally:
        restore(saved)


def check_case(setup: Setup, contender: Contender | None) -> dict[str, dict[str, Any]]:
    """The three checks of the module docstring (torch's only if a contender is given)."""
    checks = {"central_differences": central_differences(setup.case.spec, setup.seed)}
    ref = setup.ours.result()
    if setup.case.dtype != "float64":
        checks["float64"] = float64_twin(setup, ref)
    if contender is not None:
        got = contender.result()
        saved = replay_dropout(setup.layers, got["Y"])  # dropout: ours keeps what torch kept
        try:
            checks["torch"] = agree(got, setup.ours.result(), setup.case.dtype)
        finally:
            restore(saved)
        if any(isinstance(layer, Dropout) for layer in setup.layers):
            checks["torch"]["kept_fraction"] = float(np.mean(got["Y"] != 0))
    return checks


# --------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------


def run_case(case: Case, args: argparse.Namespace,
             factory: ContenderFactory | None = torch_contender) -> dict[str, Any]:
    """Check, then (if both sides agree) time ours against the contender, interleaved.

    ``factory`` None: no contender (PyTorch absent); only our checks run.
    """
    load = OtherLoad()
    setup = make_setup(case)
    contender = factory(setup) if factory is not None else None
    checks = check_case(setup, contender)
    res: dict[str, Any] = {
        "name": case.name,
        "layer": case.spec.name,
        "dtype": case.dtype,
        "sizes": dict(case.sizes),
        "shape": case.spec.describe(case.sizes),
        "contender": contender.label if contender else f"PyTorch: {case.spec.torch_label}",
        "checks": checks,
    }
    ours_ok = all(c["ok"] for k, c in checks.items() if k != "torch")
    if not ours_ok:
        bad = [k for k, c in checks.items() if k != "torch" and not c["ok"]]
        res["status"] = f"ours fails {', '.join(bad)}: not timed"
    elif contender is None:
        res["status"] = ("skipped (--no-torch): not timed" if getattr(args, "no_torch", False)
                         else "PyTorch not installed: not timed")
    elif not checks["torch"]["ok"]:
        res["status"] = (f"disagrees ({checks['torch']['worst']}: max rel. err. "
                         f"{checks['torch']['max_rel_err']:.2g} > {checks['torch']['rtol']:g}): "
                         "not timed")
    else:
        res["status"] = "measured"
        hand = case.spec.handwritten(setup) if case.spec.handwritten else None
        if hand is not None:
            checks["handwritten"] = agree(hand.result(), setup.ours.result(), case.dtype)
            if not checks["handwritten"]["ok"]:
                hand = None  # a wrong floor is no floor: reported, not timed
        res.update(time_case(setup.ours, contender, args, hand))
    res["other_load"] = load.fraction()
    return res


def time_case(ours: Contender, other: Contender, args: argparse.Namespace,
              hand: Contender | None = None) -> dict[str, Any]:
    entries: dict[str, Entry] = {}
    per_round = 0.0
    sides = [("ours", ours), ("torch", other)] + ([("hand", hand)] if hand else [])
    for side, c in sides:
        for part, fn in (("pass", c.run), ("forward", c.forward),
                         ("backward", c.make_backward())):
            number, per_call = calibrate(fn, args.target_s)
            entries[f"{side} {part}"] = Entry(fn, number, runtime=c.runtime)
            per_round += number * per_call
    per_round += 3 * args.settle_s  # about three runtime switches per round
    rounds = int(np.clip(args.budget_s / per_round, args.min_rounds, args.max_rounds))
    t = {k: np.asarray(v) for k, v in interleave(entries, rounds, seed=0,
                                                   settle_s=args.settle_s).items()}
    floor = {} if hand is None else {
        # NumPy by hand / PyTorch: how close NumPy itself gets; ours / by hand
        "handwritten_ratio": ratio_stats(t["hand pass"], t["torch pass"]),
        "ours_vs_handwritten": ratio_stats(t["ours pass"], t["hand pass"]),
    }
    return {
        "rounds": rounds,
        "calls_per_sample": {k: e.number for k, e in entries.items()},
        "median_s": {k: float(np.median(v)) for k, v in t.items()},
        # ours / PyTorch: the whole pass, the forward alone, the backward alone
        "ratio": ratio_stats(t["ours pass"], t["torch pass"]),
        "forward_ratio": ratio_stats(t["ours forward"], t["torch forward"]),
        "backward_ratio": ratio_stats(t["ours backward"], t["torch backward"]),
        **floor,
    }


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------


def set_threads(n: int, use_torch: bool) -> dict[str, Any]:
    """n threads for NumPy's BLAS and for PyTorch; what each ended up with."""
    out: dict[str, Any] = {}
    if use_torch:
        import torch

        torch.set_num_threads(n)  # before threadpoolctl: torch's OpenMP is loaded by now
        out["torch"] = torch.get_num_threads()
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        out["blas"] = "threadpoolctl missing: set OPENBLAS_NUM_THREADS"
        return out
    threadpool_limits(limits=n, user_api="blas")  # stays in force for the process
    out["blas"] = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return out


def git_state() -> dict[str, Any]:
    """The commit measured, and which measured sources differed from it."""
    def git(*argv: str) -> str:
        proc = subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                              check=False)
        return proc.stdout.rstrip() if proc.returncode == 0 else ""

    changed = git("status", "--porcelain", "--", "src/backprop_derived", "benchmarks")
    return {
        "commit": git("rev-parse", "HEAD") or None,
        "commit_date": git("show", "-s", "--format=%cI", "HEAD") or None,
        "uncommitted": [line[3:] for line in changed.splitlines()
                        if not line[3:].endswith("layer_results.json")],
    }


def _fmt(stats: dict[str, float] | None) -> str:
    if stats is None:
        return ""
    return f"{stats['median']:6.2f} [{stats['q25']:.2f}-{stats['q75']:.2f}]"


def format_case(res: dict[str, Any]) -> str:
    head = f"{res['name']:<34} {res['shape']}"
    if res["status"] != "measured":
        return f"{head}\n    {res['status']}"
    med = res["median_s"]
    share = res["other_load"]
    others = "" if share is None else f"; others used {share['others']:.0%} of the cores"
    return (
        f"{head}\n    ours {med['ours pass'] * 1e3:.3f} ms, PyTorch {med['torch pass'] * 1e3:.3f} "
        f"ms; ours/PyTorch pass {_fmt(res['ratio'])}, forward {_fmt(res['forward_ratio'])}, "
        f"backward {_fmt(res['backward_ratio'])}; {res['rounds']} rounds{others}"
        + (f"\n    NumPy by hand/PyTorch pass {_fmt(res['handwritten_ratio'])}, "
           f"ours/NumPy by hand {_fmt(res['ours_vs_handwritten'])}"
           if "handwritten_ratio" in res else "")
    )


def validate(results: dict[str, Any]) -> None:
    """The keys docs/layers/speed.py reads; ValueError naming what is missing."""
    if results.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"schema {results.get('schema')!r}, expected {SCHEMA_VERSION}")
    for key in ("created", "command", "git", "machine", "threads", "method", "cases"):
        if key not in results:
            raise ValueError(f"results lack {key!r}")
    for res in results["cases"]:
        for key in ("name", "layer", "dtype", "shape", "contender", "status", "checks"):
            if key not in res:
                raise ValueError(f"case {res.get('name')!r} lacks {key!r}")
        if res["status"] == "measured":
            for key in ("ratio", "forward_ratio", "backward_ratio", "median_s", "rounds"):
                if key not in res:
                    raise ValueError(f"case {res['name']!r} lacks {key!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.layers",
        description="Each layer's forward + backward against PyTorch CPU autograd.")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, few rounds (tests)")
    parser.add_argument("--no-torch", action="store_true", help="our checks only, no timing")
    parser.add_argument("--threads", type=int, default=1, help="threads for both sides")
    parser.add_argument("--budget-s", type=float, default=5.0,
                        help="seconds of interleaved timing per case")
    parser.add_argument("--only", default=None, help="cases whose name contains this")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    args = parser.parse_args(argv)
    # A sample of >= 2 ms is far above the timer's resolution; 30 rounds is the
    # least that gives a stable median (as benchmarks.harness).
    args.target_s, args.min_rounds, args.max_rounds = (
        (1e-4, 3, 3) if args.quick else (2e-3, 30, 400))
    # One thread each: no worker pool spins after a call, so nothing to wait
    # for when the runtime changes (interleave still makes one untimed call).
    args.settle_s = 0.0 if args.quick or args.threads == 1 else SETTLE_S
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    use_torch = not args.no_torch and torch_version() is not None
    threads = set_threads(args.threads, use_torch)
    command = " ".join(["python -m benchmarks.layers", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info(use_torch=use_torch)
    machine["blas_threads"] = args.threads
    if use_torch:
        machine["torch_threads"] = threads["torch"]
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": args.quick,
        "git": git_state(),
        "machine": machine,
        "threads": {"setting": f"{args.threads} thread(s) for NumPy's BLAS and for PyTorch",
                    **threads},
        "method": {
            "ours": "Y = layer.forward(X); dX = layer.backward(dY), the public (checked) "
                    "methods, dY fixed",
            "pytorch": "p.grad = None for every parameter, y = module(x); y.backward(dy)",
            "forward": "ours: layer.forward(X); PyTorch: module(x) with autograd recording",
            "backward": "after one forward, repeated: ours: layer.backward(dY); PyTorch: "
                        "grads reset, y.backward(dy, retain_graph=True)",
            "statistic": "median over rounds of the per-round time ratio ours / PyTorch; "
                         "quartiles for the IQR",
            "interleaving": "each round times the six entries (pass, forward, backward of "
                            "each side; nine with a hand-written NumPy floor) once each, in "
                            "a shuffled order",
            "handwritten": "BatchNorm and LayerNorm only: the same layer in NumPy written by "
                           "hand with the fewest passes we found (benchmarks/layers.py, "
                           "_handwritten_norm), checked against ours, timed in the same "
                           "rounds; handwritten_ratio = by hand / PyTorch",
            "settle_s": args.settle_s,
            "sample_target_s": args.target_s,
            "budget_s_per_case": args.budget_s,
            "checks": "central differences of ours (float64, tiny sizes); ours float32 vs "
                      "ours float64; PyTorch vs ours at the timed sizes",
            "rtol": RTOL,
        },
        "cases": [],
    }
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, numpy {np.__version__}, "
          f"torch {machine['torch']}; {results['threads']['setting']}", flush=True)
    for case in cases(tiny=args.quick):
        if args.only and args.only not in case.name:
            continue
        res = run_case(case, args, torch_contender if use_torch else None)
        results["cases"].append(res)
        print(format_case(res), flush=True)
    validate(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rounded(results), indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
