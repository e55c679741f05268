"""Where the time of a pass goes: the elementwise pieces next to the GEMMs.

For the 784-256-128-10 net at m = 256 this times, interleaved with the bare
GEMMs of the pass, each piece of elementwise work a backward pass needs (and
its cheaper or dearer variants), so that the kernels' design can be argued
from measurements: which ufunc sequences, whether ``out=`` pays, what ratio
to the GEMMs the irreducible elementwise work implies.

Run alone with ``python -m benchmarks.micro``; ``python -m benchmarks`` runs it
too and stores the figures in results.json.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from .contenders import Config, bare_gemms, gemm_flops, handwritten_numpy, make_problem
from .prototype import PrototypePass
from .timing import Entry, calibrate, interleave, ratio_stats

CONFIG = {"layer_sizes": (784, 256, 128, 10), "m": 256}


def _blas_one_thread() -> Callable[[Callable[[], object]], Callable[[], None]] | None:
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()

    def wrap(fn: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with controller.limit(limits=1, user_api="blas"):
                fn()

        return run

    return wrap


def pieces(dtype: str) -> dict[str, tuple[str, Callable[[], object]]]:
    """name -> (what it is, callable). Buffers are fixed; nothing drifts or goes denormal."""
    sizes, m = CONFIG["layer_sizes"], CONFIG["m"]
    config = Config("micro", sizes, ("tanh", "tanh", "softmax"), "cross_entropy", dtype, m)
    p = make_problem(config)
    rng = np.random.default_rng(2)
    dt = p.dtype
    W, b, X = p.weights, p.biases, p.X
    Wt = [np.ascontiguousarray(w.T) for w in W]
    Z = [(p.X @ W[0].T).astype(dt)]
    Z.append((np.tanh(Z[0]) @ W[1].T).astype(dt))
    Z.append((np.tanh(Z[1]) @ W[2].T).astype(dt))
    A = [X] + [np.tanh(z) for z in Z]
    out = [np.empty_like(z) for z in Z]
    dA = [None] + [rng.standard_normal(z.shape).astype(dt) for z in Z[:2]]
    dZ = [rng.standard_normal(z.shape).astype(dt) / m for z in Z]
    dZt = [np.ascontiguousarray(d.T) for d in dZ]
    dW = [np.empty_like(w) for w in W]
    db = [np.empty_like(v) for v in b]
    scratch = [np.empty_like(z) for z in Z]
    ones_m = np.ones(m, dtype=dt)
    zeros_X = np.zeros(X.size, dtype=dt)
    row_max = np.empty((m, 1), dt)
    row_sum = np.empty((m, 1), dt)
    transposed = np.empty(Z[2].T.shape, dt)
    units = np.ones((Z[2].shape[1], 1), dt)
    hidden = (0, 1)  # layers with tanh (indices into Z)

    def dW_fresh():  # results into new arrays each call, as returned gradients would be
        for l in range(3):
            np.matmul(dZ[l].T, A[l], out=np.empty_like(W[l]))

    def fwd_views():
        for l in range(3):
            np.matmul(A[l], W[l].T, out=out[l])

    def fwd_contiguous():
        for l in range(3):
            np.matmul(A[l], Wt[l], out=out[l])

    def dW_views():
        for l in range(3):
            np.matmul(dZ[l].T, A[l], out=dW[l])

    def dW_contiguous():
        for l in range(3):
            np.matmul(dZt[l], A[l], out=dW[l])

    def tanh_out():
        for l in hidden:
            np.tanh(Z[l], out=out[l])

    def tanh_alloc():
        return [np.tanh(Z[l]) for l in hidden]

    def bias_out():
        for l in range(3):
            np.add(Z[l], b[l], out=out[l])

    def bias_alloc():
        return [Z[l] + b[l] for l in range(3)]

    def tanh_grad_out():  # dZ = dA * (1 - a^2) in three ufunc passes, no temporaries
        for l in hidden:
            s = scratch[l]
            np.multiply(A[l + 1], A[l + 1], out=s)
            np.subtract(1, s, out=s)
            np.multiply(dA[l + 1], s, out=out[l])

    def tanh_grad_alloc():
        return [dA[l + 1] * (1 - A[l + 1] ** 2) for l in hidden]

    def tanh_grad_recompute():  # g'(z) from z instead of from the stored a
        return [dA[l + 1] / np.cosh(Z[l]) ** 2 for l in hidden]

    def softmax_out():
        t, e = scratch[2], out[2]
        np.max(Z[2], axis=1, keepdims=True, out=row_max)
        np.subtract(Z[2], row_max, out=t)
        np.exp(t, out=e)
        np.sum(e, axis=1, keepdims=True, out=row_sum)
        np.divide(e, row_sum, out=e)

    def softmax_rows():  # as the generated fused pass: max over a (10, m) copy, sums as GEMVs
        t, e = scratch[2], out[2]
        np.copyto(transposed, Z[2].T)
        np.maximum.reduce(transposed, axis=0, keepdims=True, out=row_max.T)
        np.subtract(Z[2], row_max, out=t)
        np.exp(t, out=e)
        np.matmul(e, units, out=row_sum)
        np.divide(e, row_sum, out=e)

    def softmax_alloc():
        e = np.exp(Z[2] - Z[2].max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def db_sum():
        for l in range(3):
            np.sum(dZ[l], axis=0, out=db[l])

    def db_gemv():
        for l in range(3):
            np.matmul(ones_m, dZ[l], out=db[l])

    def scale_delta():  # the 1/m applied to the output delta (m, 10) ...
        np.multiply(dZ[2], dt.type(1 / m), out=out[2])

    def scale_dW():  # ... versus to every dW after the GEMMs
        for l in range(3):
            np.multiply(dW[l], dt.type(1 / m), out=dW[l])

    def isfinite_all():
        return np.isfinite(X).all()

    def isfinite_minmax():  # min/max propagate NaN, and +-inf shows in one of them
        return np.isfinite(X.min()) and np.isfinite(X.max())

    def isfinite_dot_zero():  # x * 0 is 0 for every finite x, NaN for inf and NaN
        return np.dot(X.reshape(-1), zeros_X) == 0

    gemms = bare_gemms(p)
    result = {
        "gemms": ("bare GEMMs of the pass (BLAS threads as configured)", gemms),
        "gemms_noout": (
            "the same GEMMs allocating their results (no out=)",
            lambda: (
                [A[l] @ W[l].T for l in range(3)],
                [dZ[l].T @ A[l] for l in range(3)],
                [dZ[l] @ W[l] for l in (1, 2)],
            ),
        ),
        "fwd_views": ("forward GEMMs A @ W.T, transposed view", fwd_views),
        "fwd_contiguous": ("forward GEMMs A @ Wt, Wt a contiguous copy", fwd_contiguous),
        "dW_views": ("dW GEMMs dZ.T @ A, transposed view", dW_views),
        "dW_contiguous": ("dW GEMMs dZt @ A, dZt a contiguous copy", dW_contiguous),
        "dW_fresh": ("dW GEMMs into freshly allocated arrays", dW_fresh),
        "transpose_copy": (
            "np.ascontiguousarray(W.T) for the three W",
            lambda: [np.ascontiguousarray(w.T) for w in W],
        ),
        "tanh_out": ("np.tanh on (m,256)+(m,128), out=", tanh_out),
        "tanh_alloc": ("np.tanh on (m,256)+(m,128), allocating", tanh_alloc),
        "bias_out": ("bias add, three layers, out=", bias_out),
        "bias_alloc": ("bias add, three layers, allocating", bias_alloc),
        "tanh_grad_out": ("dA * (1 - a*a), two hidden layers, out= (3 ufuncs)", tanh_grad_out),
        "tanh_grad_alloc": ("dA * (1 - a**2), two hidden layers, temporaries", tanh_grad_alloc),
        "tanh_grad_recompute": (
            "dA / cosh(z)**2, two hidden layers (g' from z)",
            tanh_grad_recompute,
        ),
        "softmax_out": ("stable softmax (m,10), out=", softmax_out),
        "softmax_rows": (
            "stable softmax (m,10), out=, row max of a transposed copy, row sums as GEMVs",
            softmax_rows,
        ),
        "softmax_alloc": ("stable softmax (m,10), allocating", softmax_alloc),
        "db_sum": ("dZ.sum(axis=0), three layers, out=", db_sum),
        "db_gemv": ("ones @ dZ (GEMV), three layers, out=", db_gemv),
        "scale_delta": ("1/m folded into the output delta (m,10)", scale_delta),
        "scale_dW": ("1/m applied to the three dW instead", scale_dW),
        "isfinite_all": ("np.isfinite(X).all(), X (m,784)", isfinite_all),
        "isfinite_minmax": ("isfinite(X.min()) and isfinite(X.max())", isfinite_minmax),
        "isfinite_dot_zero": ("np.dot(X.ravel(), zeros) == 0 (BLAS)", isfinite_dot_zero),
    }
    result["numpy_pass"] = ("whole pass: hand-written NumPy contender", handwritten_numpy(p))
    proto = PrototypePass(W, b, m)
    result["prototype_pass"] = (
        "whole pass: prototype sequence (benchmarks/prototype.py), reused outputs",
        lambda: proto(X, p.Y),
    )
    proto_fresh = PrototypePass(W, b, m, fresh_outputs=True)
    result["prototype_fresh"] = (
        "whole pass: prototype sequence, fresh dW/db arrays each call",
        lambda: proto_fresh(X, p.Y),
    )
    one_thread = _blas_one_thread()
    if one_thread is not None:
        result["gemms_1thread"] = ("bare GEMMs with BLAS limited to 1 thread", one_thread(gemms))
    return result


# The elementwise work every pass of this net must do, at its cheapest measured
# variant each: the sum bounds from below what NumPy ufuncs can reach.
FLOOR = {
    "bias add": ("bias_out",),
    "tanh": ("tanh_out",),
    "softmax": ("softmax_out", "softmax_rows"),
    "tanh'": ("tanh_grad_out",),
    "db": ("db_sum", "db_gemv"),
    "1/m": ("scale_delta",),
}


def run(dtype: str, rounds: int, target_s: float = 5e-4) -> dict:
    named = pieces(dtype)
    entries = {}
    for name, (_, fn) in named.items():
        number, _ = calibrate(fn, target_s)
        entries[name] = Entry(fn, number)
    times = interleave(entries, rounds, seed=1)
    flops = gemm_flops(CONFIG["layer_sizes"], CONFIG["m"])
    gemm_s = float(np.median(times["gemms"]))
    items = {}
    for name, (label, _) in named.items():
        items[name] = {
            "label": label,
            "median_s": float(np.median(times[name])),
            "ratio_to_gemms": ratio_stats(times[name], times["gemms"])["median"],
        }
    floor_parts = {
        part: min(items[n]["ratio_to_gemms"] for n in names) for part, names in FLOOR.items()
    }
    return {
        "dtype": dtype,
        "layer_sizes": list(CONFIG["layer_sizes"]),
        "m": CONFIG["m"],
        "rounds": rounds,
        "gemm_median_s": gemm_s,
        "gemm_gflops": flops / gemm_s / 1e9,
        "items": items,
        "floor_parts": floor_parts,
        "floor_ratio": 1 + sum(floor_parts.values()),
    }


def overheads(rounds: int, target_s: float = 5e-4) -> dict:
    """Fixed per-call costs that decide the tiny nets (2-3-2, m = 64), in seconds.

    Shown relative to one whole hand-written pass on the tiny net.
    """
    config = Config("tiny", (2, 3, 2), ("tanh", "softmax"), "cross_entropy", "float64", 64)
    p = make_problem(config)
    X, W = p.X, p.weights
    Z = np.empty((config.m, 3))
    proto = PrototypePass(p.weights, p.biases, config.m)

    def errstate():
        with np.errstate(over="ignore", under="ignore"):
            pass

    named = {
        "numpy_pass": ("whole pass: hand-written NumPy, 2-3-2 m=64", handwritten_numpy(p)),
        "prototype_pass": ("whole pass: prototype sequence, 2-3-2 m=64", lambda: proto(X, p.Y)),
        "ufunc_out": ("one ufunc call, np.add(Z, b, out=Z), Z (64,3)",
                      lambda: np.add(Z, p.biases[0], out=Z)),
        "matmul_out": ("one np.matmul(X, W.T, out=Z), (64,2)x(2,3)",
                       lambda: np.matmul(X, W[0].T, out=Z)),
        "isfinite_tiny": ("np.isfinite(X).all(), X (64,2)", lambda: np.isfinite(X).all()),
        "errstate": ("entering and leaving np.errstate(...)", errstate),
        "asarray_noop": ("np.asarray(X, dtype=X.dtype) on an array that fits",
                         lambda: np.asarray(X, dtype=X.dtype)),
    }  # fmt: skip
    entries = {name: Entry(fn, calibrate(fn, target_s)[0]) for name, (_, fn) in named.items()}
    times = interleave(entries, rounds, seed=2)
    return {
        "config": "2-3-2 float64 m=64",
        "rounds": rounds,
        "items": {
            name: {
                "label": label,
                "median_s": float(np.median(times[name])),
                "ratio_to_numpy": ratio_stats(times[name], times["numpy_pass"])["median"],
            }
            for name, (label, _) in named.items()
        },
    }


def cold_calls(rounds: int) -> dict:
    """What a small call costs right after the GEMMs of a pass, and back to back.

    The GEMMs of the 784-256-128-10 pass stream megabytes through the caches,
    so the Python and NumPy code of whatever runs next is fetched again. In a
    real pass every elementwise step and every input check runs in that state.
    Each round runs the GEMMs (untimed), times one call ("cold"), then times
    the same call again at once ("warm").
    """
    config = Config("cold", CONFIG["layer_sizes"], ("tanh", "tanh", "softmax"),
                    "cross_entropy", "float32", CONFIG["m"])  # fmt: skip
    p = make_problem(config)
    gemms = bare_gemms(p)
    Y, b = p.Y, p.biases[-1]
    Z = np.zeros_like(Y)

    def errstate() -> None:
        with np.errstate(invalid="ignore", over="ignore"):
            pass

    def check_like() -> None:  # a few attribute tests in Python, as an argument check does
        if not (type(Y) is np.ndarray and Y.ndim == 2 and Y.shape[1] == b.shape[0]):
            raise AssertionError

    from backprop_derived import Network
    from backprop_derived.checks import all_finite as _all_finite

    net = Network(list(config.layer_sizes), list(config.activations), dtype=np.float32, seed=0)
    net.gradients(p.X, Y)  # the workspace for this batch size exists from here on
    ws = net._workspace

    def network_checks() -> None:
        # what Network.gradients checks before and after its first GEMM
        # (the GEMM itself left out), via the private helpers it uses
        x = net._check_X(p.X)
        net._check_Y(Y, x.shape[0], ws)
        _all_finite(ws.z[0][:, 0])

    named = {
        "checks": ("the input checks of Network.gradients (X, Y, and the X column test)",
                   network_checks),
        "reduce": ("np.minimum.reduce(Y, axis=None), Y (256,10)",
                   lambda: np.minimum.reduce(Y, axis=None)),
        "ufunc": ("np.add(Z, b, out=Z), Z (256,10)", lambda: np.add(Z, b, out=Z)),
        "errstate": ("entering and leaving np.errstate(...)", errstate),
        "python": ("three attribute tests in Python", check_like),
    }  # fmt: skip
    clock = time.perf_counter
    cold: dict[str, list[float]] = {name: [] for name in named}
    warm: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(rounds):
        for name, (_, fn) in named.items():
            gemms()
            t0 = clock()
            fn()
            t1 = clock()
            fn()
            t2 = clock()
            cold[name].append(t1 - t0)
            warm[name].append(t2 - t1)
    return {
        "config": "after the bare GEMMs of 784-256-128-10 float32 m=256",
        "rounds": rounds,
        "items": {
            name: {
                "label": label,
                "cold_s": float(np.median(cold[name])),
                "warm_s": float(np.median(warm[name])),
            }
            for name, (label, _) in named.items()
        },
    }


def format_cold_calls(res: dict) -> str:
    lines = [f"calls right after the GEMMs ({res['config']}, {res['rounds']} rounds)",
             f"  {'piece':<10} {'cold':>9} {'warm':>9} {'cold/warm':>10}  what"]  # fmt: skip
    for name, item in res["items"].items():
        lines.append(
            f"  {name:<10} {item['cold_s'] * 1e6:>7.2f}us {item['warm_s'] * 1e6:>7.2f}us"
            f" {item['cold_s'] / item['warm_s']:>10.1f}  {item['label']}"
        )
    return "\n".join(lines)


def format_overheads(res: dict) -> str:
    lines = [f"per-call overheads ({res['config']}, {res['rounds']} rounds)",
             f"  {'piece':<16} {'median':>9} {'x NumPy pass':>13}  what"]  # fmt: skip
    for name, item in res["items"].items():
        lines.append(
            f"  {name:<16} {item['median_s'] * 1e6:>7.2f}us {item['ratio_to_numpy']:>13.3f}"
            f"  {item['label']}"
        )
    return "\n".join(lines)


def format_table(res: dict) -> str:
    lines = [
        (
            f"{res['dtype']}: bare GEMMs {res['gemm_median_s'] * 1e3:.3f} ms "
            f"({res['gemm_gflops']:.0f} GFLOP/s), {res['rounds']} rounds"
        ),
        f"  {'piece':<22} {'median':>10} {'x GEMMs':>8}  what",
    ]
    for name, item in res["items"].items():
        lines.append(
            f"  {name:<22} {item['median_s'] * 1e6:>8.1f}us {item['ratio_to_gemms']:>8.3f}"
            f"  {item['label']}"
        )
    parts = ", ".join(f"{k} {v:.3f}" for k, v in res["floor_parts"].items())
    lines.append(f"  elementwise floor: 1 + ({parts}) = {res['floor_ratio']:.3f} x GEMMs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args(argv)
    for dtype in ("float32", "float64"):
        print(format_table(run(dtype, args.rounds)), flush=True)
    print(format_overheads(overheads(args.rounds)), flush=True)
    print(format_cold_calls(cold_calls(args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
