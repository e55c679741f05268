"""The training loop: one epoch of ``Network.fit`` against the same epoch written by hand.

For each configuration (layer sizes, dtype, minibatch size, number of
examples) every contender runs one epoch of plain minibatch SGD (no momentum,
no L2) on the same data, from the same weights, with the same shuffling
(``numpy.random.default_rng(seed).permutation`` of the examples, cut into
consecutive minibatches, the last one possibly short):

- ``fit``: ``net.fit(X, Y, epochs=1, ...)``, everything it does per call
  included (its one-time checks of the data and the parameters, its buffers);
- ``numpy``: the loop a careful tutorial writes, in plain NumPy: index the
  minibatch, the hand-written forward and backward pass of
  ``contenders.handwritten_gradients``, ``W -= lr * dW``;
- ``pytorch``: the idiomatic PyTorch CPU loop: ``nn.Linear`` and ``nn.Tanh``
  layers, ``nn.CrossEntropyLoss`` on class indices, ``optim.SGD``.

Threads: each runtime runs with whichever of one thread or all the cores made
its loop faster on a few epochs just before the timing (NumPy's BLAS through
threadpoolctl, for ``fit`` and the hand-written loop alike; PyTorch through
``torch.set_num_threads``). On two cores that other processes keep busy, a
second thread made PyTorch's 64-25-10 epoch 50 times slower and NumPy's
784-wide GEMMs several times slower; each yardstick is taken at its best.

Before any timing, one epoch of each must give the same weights as the
hand-written loop (else the benchmark stops). Each timed call first copies the
initial weights back, so every call does the same arithmetic on the same
numbers (a network that drifts over hundreds of epochs could reach denormal
numbers and slow down for reasons of its own); the copy is the same few
hundred kilobytes for every contender and is timed with them.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .contenders import handwritten_gradients, pytorch_unavailable
from .timing import Entry, calibrate, interleave, ratio_stats


@dataclass(frozen=True)
class LoopConfig:
    name: str
    layer_sizes: tuple[int, ...]
    dtype: str
    batch: int
    examples: int
    learning_rate: float = 0.05
    seed: int = 0


LOOP_CONFIGS = [
    LoopConfig("784-256-128-10 float32, batch 64", (784, 256, 128, 10), "float32", 64, 4096),
    LoopConfig("784-256-128-10 float32, batch 256", (784, 256, 128, 10), "float32", 256, 4096),
    LoopConfig("64-25-10 float64, batch 32", (64, 25, 10), "float64", 32, 1797),
]
QUICK_LOOP_CONFIGS = [
    LoopConfig("12-8-3 float64, batch 8", (12, 8, 3), "float64", 8, 60),
]

LOOP_LABELS = {
    "fit": "Network.fit (derived)",
    "numpy": "hand-written NumPy loop",
    "pytorch": "PyTorch CPU loop",
}


@dataclass
class LoopProblem:
    config: LoopConfig
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    X: np.ndarray  # (examples, n0)
    Y: np.ndarray  # one-hot rows in the problem's dtype
    labels: np.ndarray  # int64 class indices

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config.dtype)


def make_loop_problem(config: LoopConfig) -> LoopProblem:
    """Inputs and labels with something to learn: the labels of a random teacher net."""
    rng = np.random.default_rng(config.seed)
    dtype, sizes = np.dtype(config.dtype), config.layer_sizes
    X = rng.standard_normal((config.examples, sizes[0]))
    teacher = rng.standard_normal((sizes[0], sizes[-1]))
    labels = np.argmax(X @ teacher, axis=1).astype(np.int64)
    weights = [(rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)).astype(dtype)
               for n_in, n_out in itertools.pairwise(sizes)]
    biases = [np.zeros(n_out, dtype) for n_out in sizes[1:]]
    Y = np.zeros((config.examples, sizes[-1]), dtype)
    Y[np.arange(config.examples), labels] = 1
    return LoopProblem(config, weights, biases, X.astype(dtype), Y, labels)


# --------------------------------------------------------------------------
# The contenders: each returns a callable that resets the weights, runs one
# epoch, and returns the weights and biases (as NumPy arrays) it trained.
# --------------------------------------------------------------------------

Params = tuple[list[np.ndarray], list[np.ndarray]]


def handwritten_epoch(weights, biases, X, Y, batch, learning_rate, seed) -> None:
    """One epoch of minibatch SGD, as plainly as it can be written."""
    order = np.random.default_rng(seed).permutation(len(X))
    for start in range(0, len(X), batch):
        rows = order[start : start + batch]
        _, dW, db = handwritten_gradients(weights, biases, X[rows], Y[rows])
        for W, g in zip(weights, dW, strict=True):
            W -= learning_rate * g
        for b, g in zip(biases, db, strict=True):
            b -= learning_rate * g


def numpy_loop(problem: LoopProblem) -> Callable[[], Params]:
    c = problem.config
    weights = [w.copy() for w in problem.weights]
    biases = [b.copy() for b in problem.biases]

    def run() -> Params:
        for p, p0 in zip([*weights, *biases], [*problem.weights, *problem.biases], strict=True):
            p[...] = p0
        handwritten_epoch(weights, biases, problem.X, problem.Y, c.batch, c.learning_rate, c.seed)
        return weights, biases

    return run


def network_fit(problem: LoopProblem) -> Callable[[], Params]:
    from backprop_derived import Network

    c = problem.config
    hidden = len(c.layer_sizes) - 2
    net = Network(list(c.layer_sizes), ["tanh"] * hidden + ["softmax"], loss="cross_entropy",
                  dtype=problem.dtype.type, seed=0)
    params = [*net.weights, *net.biases]
    initial = [*problem.weights, *problem.biases]

    def run() -> Params:
        for p, p0 in zip(params, initial, strict=True):
            p[...] = p0
        net.fit(problem.X, problem.Y, epochs=1, batch_size=c.batch,
                learning_rate=c.learning_rate, seed=c.seed, progress=False)
        return list(net.weights), list(net.biases)

    return run


def pytorch_loop(problem: LoopProblem, num_threads: int) -> Callable[[], Params]:
    import torch
    from torch import nn

    torch.set_num_threads(num_threads)
    c = problem.config
    torch_dtype = torch.float32 if problem.dtype == np.float32 else torch.float64
    layers: list[nn.Module] = []
    for n_in, n_out in itertools.pairwise(c.layer_sizes):
        layers += [nn.Linear(n_in, n_out, dtype=torch_dtype), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])  # no tanh after the output layer: the loss has softmax
    linear = [m for m in model if isinstance(m, nn.Linear)]
    optimizer = torch.optim.SGD(model.parameters(), lr=c.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    X, labels = torch.from_numpy(problem.X), torch.from_numpy(problem.labels)
    initial = [torch.from_numpy(a) for a in (*problem.weights, *problem.biases)]
    params = [layer.weight for layer in linear] + [layer.bias for layer in linear]

    def run() -> Params:
        with torch.no_grad():
            for p, p0 in zip(params, initial, strict=True):
                p.copy_(p0)
        order = torch.from_numpy(np.random.default_rng(c.seed).permutation(len(problem.X)))
        for start in range(0, len(problem.X), c.batch):
            rows = order[start : start + c.batch]
            optimizer.zero_grad()
            loss = loss_fn(model(X[rows]), labels[rows])
            loss.backward()
            optimizer.step()
        return ([layer.weight.detach().numpy() for layer in linear],
                [layer.bias.detach().numpy() for layer in linear])

    return run


def _seconds(fn: Callable[[], object], calls: int = 3) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return time.perf_counter() - start


def fastest_pytorch(problem: LoopProblem, threads: int) -> tuple[Callable[[], Params], int]:
    """The PyTorch loop with 1 or ``threads`` threads, whichever ran 3 epochs faster."""
    best = min((_seconds(pytorch_loop(problem, n)), n) for n in sorted({1, threads}))[1]
    return pytorch_loop(problem, best), best


def blas_limit(threads: int):
    """A context that runs NumPy's BLAS (only it: PyTorch's threads are OpenMP's) on
    ``threads`` threads; None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().limit(limits=threads, user_api="blas")


def fastest_blas_threads(fn: Callable[[], object], threads: int) -> int:
    """1 or ``threads`` BLAS threads, whichever ran 3 epochs of ``fn`` faster."""
    timings = []
    for n in sorted({1, threads}):
        limit = blas_limit(n)
        if limit is None:
            return threads
        with limit:
            timings.append((_seconds(fn), n))
    return min(timings)[1]


def same_weights(got: Params, reference: Params, dtype: np.dtype) -> dict[str, Any]:
    """Largest difference of any weight or bias, relative to the largest reference entry."""
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    worst = 0.0
    for a, r in zip([*got[0], *got[1]], [*reference[0], *reference[1]], strict=True):
        a, r = np.asarray(a, np.float64), np.asarray(r, np.float64)
        if a.shape != r.shape:
            return {"ok": False, "rtol": rtol, "max_rel_err": math.inf}
        err = float(np.max(np.abs(a - r)) / max(float(np.max(np.abs(r))), 1e-30))
        worst = max(worst, err if math.isfinite(err) else math.inf)
    return {"ok": bool(worst <= rtol), "rtol": rtol, "max_rel_err": worst}


def _copy(params: Params) -> Params:
    return [np.array(a, copy=True) for a in params[0]], [np.array(a, copy=True) for a in params[1]]


def run_loop_config(config: LoopConfig, *, use_torch: bool, threads: int, target_s: float,
                    budget_s: float, min_rounds: int, max_rounds: int,
                    settle_s: float) -> dict[str, Any]:
    problem = make_loop_problem(config)
    fns: dict[str, Callable[[], Params]] = {"numpy": numpy_loop(problem)}
    torch_threads = 0
    status: dict[str, str] = {}
    try:
        fns["fit"] = network_fit(problem)
    except ImportError as exc:
        status["fit"] = f"not available ({exc})"
    if why := pytorch_unavailable(use_torch):
        status["pytorch"] = why
    else:
        fns["pytorch"], torch_threads = fastest_pytorch(problem, threads)

    numpy_threads = fastest_blas_threads(fns["numpy"], threads)
    limit = blas_limit(numpy_threads)
    with limit if limit is not None else contextlib.nullcontext():
        return _measure(config, problem, fns, status, numpy_threads, torch_threads, target_s,
                        budget_s, min_rounds, max_rounds, settle_s)


def _measure(config, problem, fns, status, numpy_threads, torch_threads, target_s, budget_s,
             min_rounds, max_rounds, settle_s) -> dict[str, Any]:
    reference = _copy(fns["numpy"]())
    checks = {name: same_weights(fn(), reference, problem.dtype)
              for name, fn in fns.items() if name != "numpy"}
    bad = {k: v for k, v in checks.items() if not v["ok"]}
    if bad:
        raise SystemExit(f"{config.name}: one epoch does not give the hand-written loop's "
                         f"weights, not timing it: {bad}")

    entries: dict[str, Entry] = {}
    per_round = 0.0
    for name, fn in fns.items():
        number, per_call = calibrate(fn, target_s, warmup=2)
        entries[name] = Entry(fn, number, runtime="torch" if name == "pytorch" else "numpy")
        per_round += number * per_call
    if "pytorch" in entries:
        per_round += 2 * settle_s
    rounds = int(np.clip(budget_s / per_round, min_rounds, max_rounds))
    times = interleave(entries, rounds, seed=0, settle_s=settle_s)

    contenders: dict[str, Any] = {}
    for name, label in LOOP_LABELS.items():
        if name in status:
            contenders[name] = {"label": label, "status": status[name]}
            continue
        t = times[name]
        n = torch_threads if name == "pytorch" else numpy_threads
        contenders[name] = {
            "label": f"{label} ({n} thread{'s' if n > 1 else ''})",
            "threads": n,
            "status": "measured",
            "rounds": int(np.isfinite(t).sum()),
            "epochs_per_sample": entries[name].number,
            "median_epoch_s": float(np.nanmedian(t)),
            "ratio_to_numpy": ratio_stats(t, times["numpy"]),
            "ratio_to_pytorch": ratio_stats(t, times["pytorch"]) if "pytorch" in times else None,
            "check": checks.get(name),
        }
    c = config
    return {
        "name": c.name,
        "layer_sizes": list(c.layer_sizes),
        "dtype": c.dtype,
        "batch": c.batch,
        "examples": c.examples,
        "batches_per_epoch": -(-c.examples // c.batch),
        "learning_rate": c.learning_rate,
        "rounds": rounds,
        "contenders": contenders,
    }


def _fmt(stats: dict[str, float] | None) -> str:
    return "" if stats is None else f"{stats['median']:.3f} [{stats['q25']:.3f}-{stats['q75']:.3f}]"


def format_loop(res: dict[str, Any]) -> str:
    lines = [
        (f"{res['name']}: {res['examples']} examples, {res['batches_per_epoch']} minibatches "
         f"per epoch; {res['rounds']} rounds"),
        f"  {'contender':<40} {'epoch':>10}  {'x NumPy loop [IQR]':>22}  {'x PyTorch [IQR]':>22}",
    ]
    for c in res["contenders"].values():
        if c["status"] != "measured":
            lines.append(f"  {c['label']:<40} {c['status']}")
            continue
        lines.append(
            f"  {c['label']:<40} {c['median_epoch_s'] * 1e3:>7.2f} ms  "
            f"{_fmt(c['ratio_to_numpy']):>22}  {_fmt(c['ratio_to_pytorch']):>22}"
        )
    return "\n".join(lines)
