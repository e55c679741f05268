"""The problems and the contenders that compute their gradients.

A *problem* is one configuration (layer sizes, activations, loss, dtype, batch
size m) with fixed weights and data. A *contender* turns a problem into a
zero-argument callable that does one forward + backward pass and returns
``(loss, [dW_l], [db_l])`` with the shapes of ``Network.gradients``; only the
bare GEMMs return ``None``, since they are the bound, not an answer.

Every contender sees the same weights and data (the derived ``Network`` gets
them assigned in place). The nets benchmarked are tanh hidden layers with a
softmax output and cross-entropy, so the hand-written contenders implement
exactly that and refuse anything else rather than pretend to be general.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Gradients = tuple[Any, list[Any], list[Any]]


@dataclass(frozen=True)
class Config:
    """One benchmark configuration."""

    name: str
    layer_sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str
    dtype: str
    m: int
    # The per-example loop is orders of magnitude slower; it is timed in only
    # this many rounds (spread over the run), on the real m, never extrapolated.
    loop_rounds: int = 5

    def __post_init__(self) -> None:
        hidden, output = self.activations[:-1], self.activations[-1]
        if len(self.activations) != len(self.layer_sizes) - 1:
            raise ValueError(f"{self.name}: one activation per layer")
        if set(hidden) - {"tanh"} or output != "softmax" or self.loss != "cross_entropy":
            raise ValueError(
                f"{self.name}: the benchmark's own contenders implement tanh hidden "
                "layers, a softmax output and cross_entropy only"
            )


@dataclass
class Problem:
    config: Config
    weights: list[np.ndarray]  # W_l: (n_{l+1}, n_l)
    biases: list[np.ndarray]  # b_l: (n_{l+1},)
    X: np.ndarray  # (m, n_0), batch-first like the Network
    Y: np.ndarray  # (m, n_L) one-hot, in the problem's dtype
    labels: np.ndarray  # (m,) int64 class indices, argmax of Y

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.config.dtype)


def make_problem(config: Config, seed: int = 0) -> Problem:
    """Weights scaled by 1/sqrt(fan-in) so tanh works in its live range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(config.dtype)
    sizes = config.layer_sizes
    weights = [
        (rng.standard_normal((n_out, n_in)) / math.sqrt(n_in)).astype(dtype)
        for n_in, n_out in itertools.pairwise(sizes)
    ]
    biases = [(0.1 * rng.standard_normal(n_out)).astype(dtype) for n_out in sizes[1:]]
    X = rng.standard_normal((config.m, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], size=config.m)
    Y = np.zeros((config.m, sizes[-1]), dtype=dtype)
    Y[np.arange(config.m), labels] = 1
    return Problem(config, weights, biases, X, Y, labels)


# --------------------------------------------------------------------------
# The bound: only the matrix products a forward + backward pass must do.
# --------------------------------------------------------------------------


def gemm_flops(layer_sizes: Sequence[int], m: int) -> int:
    """Flops of the bare GEMMs: forward Z_l, backward dW_l, and dA_{l-1} for l >= 2."""
    products = [n_in * n_out for n_in, n_out in itertools.pairwise(layer_sizes)]
    return 2 * m * (2 * sum(products) + sum(products[1:]))


def bare_gemms(problem: Problem) -> Callable[[], None]:
    """Exactly the GEMMs of the pass, into preallocated buffers, nothing else.

    The operands are the same shapes and memory layouts the real pass uses
    (``A @ W.T`` and ``dZ.T @ A`` as transposed views: BLAS takes the
    transpose flag). The dZ inputs are fixed random data; the values do not
    matter to a GEMM, their shapes do.
    """
    rng = np.random.default_rng(1)
    dtype, m, W = problem.dtype, problem.config.m, problem.weights
    A = [problem.X] + [np.empty((m, w.shape[0]), dtype) for w in W]
    dZ = [rng.standard_normal((m, w.shape[0])).astype(dtype) for w in W]
    dA = [np.empty((m, w.shape[1]), dtype) for w in W]
    dW = [np.empty_like(w) for w in W]
    L = len(W)

    def run() -> None:
        for l in range(L):
            np.matmul(A[l], W[l].T, out=A[l + 1])
        for l in reversed(range(L)):
            np.matmul(dZ[l].T, A[l], out=dW[l])
            if l > 0:  # no gradient for the input layer
                np.matmul(dZ[l], W[l], out=dA[l])

    return run


# --------------------------------------------------------------------------
# Hand-written NumPy: what a careful tutorial shows. Readable, batch-first,
# allocations allowed, nothing deliberately slow.
# --------------------------------------------------------------------------


def handwritten_gradients(
    weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], X: np.ndarray, Y: np.ndarray
) -> Gradients:
    m = X.shape[0]
    activations = [X]
    for W, b in zip(weights[:-1], biases[:-1], strict=True):
        activations.append(np.tanh(activations[-1] @ W.T + b))
    Z = activations[-1] @ weights[-1].T + biases[-1]
    Z = Z - Z.max(axis=1, keepdims=True)  # log-sum-exp shift: exp cannot overflow
    log_probs = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
    loss = -(Y * log_probs).sum() / m
    delta = (np.exp(log_probs) - Y) / m  # softmax + cross-entropy: a - y, mean over batch
    dW, db = [None] * len(weights), [None] * len(weights)
    for l in reversed(range(len(weights))):
        dW[l] = delta.T @ activations[l]
        db[l] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ weights[l]) * (1 - activations[l] ** 2)  # tanh' = 1 - a^2
    return loss, dW, db


def handwritten_numpy(problem: Problem) -> Callable[[], Gradients]:
    W, b, X, Y = problem.weights, problem.biases, problem.X, problem.Y
    return lambda: handwritten_gradients(W, b, X, Y)


def reference_gradients(problem: Problem) -> Gradients:
    """The hand-written pass in float64 on the same (upcast) weights and data."""
    as64 = [np.asarray(a, dtype=np.float64) for a in (*problem.weights, *problem.biases)]
    L = len(problem.weights)
    X, Y = (np.asarray(a, dtype=np.float64) for a in (problem.X, problem.Y))
    return handwritten_gradients(as64[:L], as64[L:], X, Y)


# --------------------------------------------------------------------------
# The Coursera notes: one example at a time, Theta with the bias in column 0,
# Delta accumulated over the examples, D = Delta / m (l2 = 0 here).
# --------------------------------------------------------------------------


def per_example_loop(problem: Problem) -> Callable[[], Gradients]:
    dtype = problem.dtype
    thetas = [
        np.hstack([b[:, None], W]) for W, b in zip(problem.weights, problem.biases, strict=True)
    ]
    X, Y, m, L = problem.X, problem.Y, problem.config.m, len(thetas)
    one = np.ones(1, dtype=dtype)  # the bias unit, typed so float32 stays float32

    def run() -> Gradients:
        Deltas = [np.zeros_like(theta) for theta in thetas]
        J = dtype.type(0)
        for t in range(m):
            a = [np.concatenate([one, X[t]])]  # a^(1) with its bias unit
            for l, theta in enumerate(thetas):
                z = theta @ a[-1]
                if l < L - 1:
                    a.append(np.concatenate([one, np.tanh(z)]))
                else:
                    z = z - z.max()
                    log_h = z - np.log(np.exp(z).sum())
                    a.append(np.exp(log_h))  # h_theta(x^(t)), softmax
            J -= Y[t] @ log_h
            delta = a[-1] - Y[t]  # delta^(L) = a^(L) - y^(t)
            for l in reversed(range(L)):
                Deltas[l] += np.outer(delta, a[l])  # Delta^(l) += delta^(l+1) (a^(l))^T
                if l > 0:  # drop the bias unit's row; tanh' = 1 - a^2
                    delta = (thetas[l].T @ delta)[1:] * (1 - a[l][1:] ** 2)
        D = [Delta / dtype.type(m) for Delta in Deltas]
        return J / dtype.type(m), [d[:, 1:] for d in D], [d[:, 0] for d in D]

    return run


# --------------------------------------------------------------------------
# The derived runtime and PyTorch.
# --------------------------------------------------------------------------


def derived_network(problem: Problem) -> Callable[[], Gradients]:
    from backprop_derived import Network

    c = problem.config
    net = Network(
        layer_sizes=list(c.layer_sizes),
        activations=list(c.activations),
        loss=c.loss,
        l2=0.0,
        dtype=problem.dtype.type,
        seed=0,
    )
    for l, (W, b) in enumerate(zip(problem.weights, problem.biases, strict=True)):
        net.weights[l][...] = W
        net.biases[l][...] = b
    X, Y = problem.X, problem.Y
    return lambda: net.gradients(X, Y)


def torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.__version__)


def pytorch_unavailable(use_torch: bool) -> str | None:
    """Why the PyTorch contender is not timed, or None when it is."""
    if not use_torch:
        return "skipped (--no-torch)"
    if torch_version() is None:
        return "not installed"
    return None


def pytorch_autograd(problem: Problem, num_threads: int) -> Callable[[], Gradients]:
    """forward + loss + backward with autograd, on the same weights and dtype.

    Idiomatic PyTorch: ``F.linear`` (one addmm with the bias), ``F.cross_entropy``
    on the logits with class indices (it fuses log-softmax), gradients reset to
    None before each backward as ``optimizer.zero_grad()`` does.
    """
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(num_threads)
    params = [
        torch.from_numpy(p.copy()).requires_grad_()
        for pair in zip(problem.weights, problem.biases, strict=True)
        for p in pair
    ]
    Ws, bs = params[0::2], params[1::2]
    X = torch.from_numpy(problem.X)
    labels = torch.from_numpy(problem.labels)

    def run() -> Gradients:
        for p in params:
            p.grad = None
        A = X
        for W, b in zip(Ws[:-1], bs[:-1], strict=True):
            A = torch.tanh(F.linear(A, W, b))
        loss = F.cross_entropy(F.linear(A, Ws[-1], bs[-1]), labels)
        loss.backward()
        return loss, [W.grad for W in Ws], [b.grad for b in bs]

    return run


def as_numpy(result: Gradients) -> Gradients:
    """Detach torch tensors (or pass NumPy through) for the comparison."""

    def conv(x: Any) -> np.ndarray:
        return np.asarray(x.detach()) if hasattr(x, "detach") else np.asarray(x)

    loss, dW, db = result
    return conv(loss), [conv(g) for g in dW], [conv(g) for g in db]


def compare(result: Gradients, reference: Gradients, dtype: np.dtype) -> dict[str, Any]:
    """Max error of loss and every gradient, relative to the largest reference entry.

    Relative to the array's scale rather than elementwise, because a float32
    gradient entry that is tiny next to its neighbours carries an absolute, not
    a relative, rounding error.
    """
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    loss, dW, db = as_numpy(result)
    ref_loss, ref_dW, ref_db = reference
    pairs = [("loss", loss, ref_loss)]
    pairs += [(f"dW[{l}]", g, r) for l, (g, r) in enumerate(zip(dW, ref_dW, strict=True))]
    pairs += [(f"db[{l}]", g, r) for l, (g, r) in enumerate(zip(db, ref_db, strict=True))]
    # Gradients must come back in the problem's dtype (no silent upcast); the
    # loss may be a Python float.
    dtype_preserved = all(np.asarray(g).dtype == dtype for g in (*dW, *db))
    worst, where = 0.0, "loss"
    for name, got, ref in pairs:
        got, ref = np.asarray(got), np.asarray(ref, dtype=np.float64)
        if got.shape != ref.shape:
            worst, where = math.inf, f"{name} shape {got.shape} != {ref.shape}"
            break
        err = float(np.max(np.abs(got - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
        if not math.isfinite(err):
            worst, where = math.inf, name
            break
        if err > worst:
            worst, where = err, name
    return {
        "ok": bool(worst <= rtol and dtype_preserved),
        "rtol": rtol,
        "max_rel_err": worst,
        "worst": where,
        "dtype_preserved": bool(dtype_preserved),
    }
