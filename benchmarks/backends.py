"""``python -m benchmarks.backends``: the NumPy and Numba backends beside PyTorch CPU.

For the layers the Numba printer covers (LayerNorm, BatchNorm in training mode,
Dropout), at 256 x 512, float32 and float64, one and two
threads: ``layer.forward(X); layer.backward(dY)`` with the backend set to
NumPy, the same with Numba, and the ``torch.nn`` module (``benchmarks.layers``
builds both sides and copies our parameters into PyTorch's). Plus
``Network.gradients`` of a 64-25-10 tanh/softmax net on 256 examples (the fused
softmax/cross-entropy output kernel and the elementwise activation kernels), a
net built under each backend; and the dropout and residual kernels called
directly, NumPy's against the fused ones (what ``backend.NUMPY_IS_FASTER``
rests on).

Before timing, the Numba side's output and every gradient are checked against
the NumPy side's, and PyTorch's against ours (``benchmarks.layers.agree``); a
side that disagrees is not timed. Then the three are timed interleaved
(``benchmarks.timing``), round by round in shuffled order, and reported as
medians with quartiles of the per-round times and of the ratios to PyTorch.

First-call compile time: two fresh processes with one empty cache directory
(``BACKPROP_DERIVED_CACHE_DIR``): the first compiles every kernel timed here
(cold), the second loads them from that cache (warm); each reports
``import numba`` and the first forward + backward of each case.

prange: the printed layer-norm forward and softmax/cross-entropy output kernels
against the same text with the row loop a ``numba.prange`` (``parallel=True``),
on one and two Numba threads, at 256 and 2048 rows (what ``backend.NOT_PARALLEL``
rests on).

Writes ``benchmarks/backend_results.json``, which docs/layers/speed.py shows.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from backprop_derived import backend

from . import layers as layer_bench
from .contenders import torch_version
from .harness import OtherLoad, machine_info, rounded
from .timing import SETTLE_S, Entry, calibrate, interleave, ratio_stats

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "backend_results.json"
LAYERS = ("LayerNorm", "BatchNorm", "Dropout")
NET = {"sizes": (64, 25, 10), "activations": ("tanh", "softmax"), "m": 256}
SIDES = ("numpy", "numba", "torch")


def _with_backend(name: str, fn):
    """``fn`` run with the backend ``name`` (set_backend costs a microsecond or two)."""
    def run():
        backend.set_backend(name)
        return fn()
    return run


def layer_case(layer: str, dtype: str, use_torch: bool) -> dict[str, Any]:
    """Contenders (run, result) of one layer for each side, checked against each other."""
    case = layer_bench.Case(layer_bench.SPEC[layer], dtype)
    setup = layer_bench.make_setup(case)
    ours = setup.ours
    sides = {name: (_with_backend(name, ours.run), _with_backend(name, ours.result))
             for name in ("numpy", "numba")}
    checks = {}
    ref = sides["numpy"][1]()
    saved = layer_bench.replay_dropout(setup.layers, ref["Y"])  # the same mask each time
    try:
        checks["numba"] = layer_bench.agree(sides["numba"][1](), ref, dtype)
    finally:
        layer_bench.restore(saved)
    if use_torch:
        torch_side = layer_bench.torch_contender(setup)
        got = torch_side.result()
        saved = layer_bench.replay_dropout(setup.layers, got["Y"])
        try:
            checks["torch"] = layer_bench.agree(got, sides["numpy"][1](), dtype)
        finally:
            layer_bench.restore(saved)
        sides["torch"] = (torch_side.run, torch_side.result)
    return {"name": f"{layer} {dtype}", "kind": "layer", "layer": layer, "dtype": dtype,
            "shape": case.spec.describe(case.sizes), "checks": checks,
            "runs": {k: v[0] for k, v in sides.items()}}


def network_case(dtype: str, use_torch: bool) -> dict[str, Any]:
    """``Network.gradients`` under each backend (and the same net in PyTorch)."""
    from backprop_derived import Network

    rng = np.random.default_rng(0)
    sizes, m = NET["sizes"], NET["m"]
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    labels = rng.integers(0, sizes[-1], m)
    nets, results = {}, {}
    for name in ("numpy", "numba"):
        backend.set_backend(name)  # a Network takes its kernels when it is built
        nets[name] = Network(list(sizes), list(NET["activations"]), dtype=dtype, seed=1)
        results[name] = nets[name].gradients(X, labels)

    def as_arrays(res):
        loss, dW, db = res
        out = {"loss": np.asarray(loss, dtype)}
        out.update({f"dW{i}": w for i, w in enumerate(dW)})
        out.update({f"db{i}": b for i, b in enumerate(db)})
        return out

    checks = {"numba": layer_bench.agree(as_arrays(results["numba"]),
                                         as_arrays(results["numpy"]), dtype)}
    runs = {name: (lambda net=net: net.gradients(X, labels)) for name, net in nets.items()}
    if use_torch:
        import torch

        tdtype = getattr(torch, dtype)
        ref = nets["numpy"]
        lin = [torch.nn.Linear(a, b).to(tdtype) for a, b in zip(sizes[:-1], sizes[1:])]
        with torch.no_grad():
            for layer, W, b in zip(lin, ref.weights, ref.biases, strict=True):
                layer.weight.copy_(torch.from_numpy(np.array(W)))
                layer.bias.copy_(torch.from_numpy(np.array(b)))
        params = [p for layer in lin for p in layer.parameters()]
        x, y = torch.from_numpy(X), torch.from_numpy(labels)

        def torch_gradients():
            for p in params:
                p.grad = None
            loss = torch.nn.functional.cross_entropy(lin[1](torch.tanh(lin[0](x))), y)
            loss.backward()
            return loss

        loss = torch_gradients()
        got = {"loss": loss.detach().numpy().astype(dtype)}
        got.update({f"dW{i}": layer.weight.grad.numpy() for i, layer in enumerate(lin)})
        got.update({f"db{i}": layer.bias.grad.numpy() for i, layer in enumerate(lin)})
        checks["torch"] = layer_bench.agree(got, as_arrays(results["numpy"]), dtype)
        runs["torch"] = torch_gradients
    return {"name": f"Network.gradients {dtype}", "kind": "network", "layer": "Network.gradients",
            "dtype": dtype, "shape": f"{'-'.join(map(str, sizes))}, m = {m}",
            "checks": checks, "runs": runs}


def time_sides(case: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of every side whose check passed; medians and ratios to PyTorch."""
    runs = {k: fn for k, fn in case.pop("runs").items()
            if k == "numpy" or case["checks"].get(k, {}).get("ok")}
    entries = {}
    per_round = 0.0
    for name, fn in runs.items():
        number, per_call = calibrate(fn, args.target_s)
        entries[name] = Entry(fn, number, runtime="torch" if name == "torch" else "numpy")
        per_round += number * per_call
    rounds = int(np.clip(args.budget_s / (per_round + 2 * args.settle_s),
                         args.min_rounds, args.max_rounds))
    t = {k: np.asarray(v) for k, v in interleave(entries, rounds, seed=0,
                                                   settle_s=args.settle_s).items()}
    out: dict[str, Any] = {"rounds": rounds, "timed": sorted(runs)}
    out["seconds"] = {k: {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)),
                          "q75": float(np.percentile(v, 75))} for k, v in t.items()}
    if "torch" in t:
        out["ratio_to_torch"] = {k: ratio_stats(t[k], t["torch"]) for k in t if k != "torch"}
    if "numba" in t:
        out["numba_over_numpy"] = ratio_stats(t["numba"], t["numpy"])
    return out


def kernel_case(dtype: str) -> dict[str, Any]:
    """The dropout and residual kernels called directly, NumPy's against the fused ones
    (what backend.NUMPY_IS_FASTER rests on): all four in one call."""
    import importlib

    rng = np.random.default_rng(3)
    x, other = (rng.standard_normal((256, 512)).astype(dtype) for _ in range(2))
    mask = (rng.random((256, 512)) >= 0.5).astype(dtype)
    args = {"dropout_forward": (x, mask, 0.5), "dropout_backward": (other, mask, 0.5),
            "residual_forward": (x, other), "residual_backward": (other, x)}
    numpy_simple = importlib.import_module("backprop_derived._generated.simple")
    fused = backend.numba_kernels("simple")
    runs, checks = {}, {}
    for side, module in (("numpy", numpy_simple), ("numba", fused)):
        runs[side] = lambda module=module: [getattr(module, k)(*a) for k, a in args.items()]
    got = dict(zip(args, runs["numba"](), strict=True))
    ref = dict(zip(args, runs["numpy"](), strict=True))
    checks["numba"] = layer_bench.agree(got, ref, dtype)
    return {"name": f"simple.dropout_* + residual_* kernels {dtype}", "kind": "kernels",
            "layer": "dropout and residual kernels", "dtype": dtype, "shape": "256 × 512",
            "checks": checks, "runs": runs}


# -- compile time: cold and warm, in fresh processes --------------------------------------

_FIRST_CALLS = r"""
import json, sys, time
t0 = time.perf_counter()
import numba  # noqa: F401
t_import = time.perf_counter() - t0
from backprop_derived import backend
from benchmarks import backends
assert backend.set_backend("numba") == "numba"
first = {}
for dtype in ("float32", "float64"):
    for layer in ("LayerNorm", "BatchNorm"):
        case = backends.layer_bench.Case(backends.layer_bench.SPEC[layer], dtype)
        run = backends.layer_bench.make_setup(case).ours.run
        t = time.perf_counter(); run(); once = time.perf_counter() - t
        t = time.perf_counter(); run(); again = time.perf_counter() - t
        first[f"{layer} {dtype}"] = once - again
    import numpy as np
    from backprop_derived import Network
    rng = np.random.default_rng(0)
    sizes, m = backends.NET["sizes"], backends.NET["m"]
    X, y = rng.standard_normal((m, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], m)
    net = Network(list(sizes), list(backends.NET["activations"]), dtype=dtype, seed=1)
    t = time.perf_counter(); net.gradients(X, y); once = time.perf_counter() - t
    t = time.perf_counter(); net.gradients(X, y); again = time.perf_counter() - t
    first[f"Network.gradients {dtype}"] = once - again
# one fit epoch of a small net (64-25-10, 256 examples, batches of 32), the first
# in this process and the second: the first pays the compile (cold) or the cache load
epochs = {}
for dtype in ("float32", "float64"):
    X = rng.standard_normal((m, sizes[0])).astype(dtype)
    net = Network(list(sizes), list(backends.NET["activations"]), dtype=dtype, seed=2,
                  backend="numba")
    times = []
    for _ in range(2):
        t = time.perf_counter(); net.fit(X, y, epochs=1, lr=0.1); times.append(time.perf_counter() - t)
    epochs[f"Network.fit 1 epoch {dtype}"] = {"first_s": times[0], "second_s": times[1]}
json.dump({"import_numba_s": t_import, "first_call_s": first, "fit_epoch": epochs}, sys.stdout)
"""


def compile_times() -> dict[str, Any]:
    """First forward + backward per case with an empty cache (cold), then from it (warm)."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="backprop-derived-numba-") as cache:
        env = {**os.environ, backend.CACHE_ENV: cache, "OPENBLAS_NUM_THREADS": "1"}
        for label in ("cold", "warm"):
            proc = subprocess.run([sys.executable, "-c", _FIRST_CALLS], cwd=ROOT, env=env,
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                out[label] = {"error": proc.stderr.strip().splitlines()[-1:]}
                continue
            out[label] = json.loads(proc.stdout)
        out["note"] = ("first_call_s: the first call minus a second one, in a fresh process "
                       "(the first case's first call also pays Numba's own start-up); "
                       "fit_epoch: the first and second one-epoch fit of a new 64-25-10 "
                       "Network(backend='numba') after those calls (its float64 kernels "
                       "compiled or loaded by the gradients case before it)")
    return out


# -- prange: does a parallel row loop pay? ------------------------------------------------

def _parallel_variant(fn, buffers: tuple[str, ...]):
    """The printed serial kernel ``fn`` with its row loop made ``numba.prange`` and its
    one-row buffers allocated inside that loop (so rows do not share them), compiled
    with ``parallel=True``. A measuring probe, not a kernel the runtime uses."""
    import inspect
    import math

    import numba

    lines, moved, out = inspect.getsource(fn.py_func).splitlines(), [], []
    for line in lines:
        if any(line.strip().startswith(f"{b} = numpy.empty(_n") for b in buffers):
            moved.append(line.strip())
            continue
        out.append(line.replace("range(_m)", "numba.prange(_m)"))
        if line.strip() == "for _i in range(_m):":
            out.extend("        " + b for b in moved)
    text = "\n".join(out).replace("@numba.njit(cache=True, fastmath=FASTMATH)",
                                  "@numba.njit(parallel=True, fastmath=FASTMATH)")
    namespace = {"numba": numba, "numpy": np, "math": math,
                 "FASTMATH": backend.numba_kernels("norm").FASTMATH}
    exec(text, namespace)  # noqa: S102 (the printed module's own text, one loop changed)
    return namespace[fn.py_func.__name__]


def prange_probe(rounds: int = 12, calls: int = 20) -> list[dict[str, Any]]:
    """Serial printed kernels against their prange variant on 1 and 2 Numba threads,
    interleaved in shuffled order per round; ratios to serial, median and quartiles."""
    import numba

    norm, losses = backend.numba_kernels("norm"), backend.numba_kernels("losses")
    kernels = {"norm.layer_norm_forward": (norm.layer_norm_forward, ("xc",)),
               "losses.cross_entropy__softmax_output":
                   (losses._cross_entropy__softmax_output_loops, ())}
    rng = np.random.default_rng(0)
    out = []
    for m in (256, 2048):
        for dtype in ("float32", "float64"):
            x = rng.standard_normal((m, 512)).astype(dtype)
            y = np.zeros((m, 512), dtype)
            y[np.arange(m), rng.integers(0, 512, m)] = 1
            args = {"norm.layer_norm_forward": (x, np.ones(512, dtype), np.zeros(512, dtype),
                                                1e-5),
                    "losses.cross_entropy__softmax_output": (x, y, m, np.empty_like(x),
                                                             np.empty_like(x))}
            for name, (fn, buffers) in kernels.items():
                par = _parallel_variant(fn, buffers)
                first = [np.asarray(r[0] if isinstance(r, tuple) else r)
                         for r in (fn(*args[name]), par(*args[name]))]
                if not np.allclose(*first, rtol=1e-4, atol=1e-5):
                    raise AssertionError(f"prange variant of {name} disagrees")
                t = {"serial": [], "prange_1_thread": [], "prange_2_threads": []}
                for r in range(rounds):
                    for side in np.random.default_rng(r).permutation(list(t)):
                        numba.set_num_threads(2 if side == "prange_2_threads" else 1)
                        f = fn if side == "serial" else par
                        start = time.perf_counter()
                        for _ in range(calls):
                            f(*args[name])
                        t[side].append((time.perf_counter() - start) / calls)
                numba.set_num_threads(1)
                serial = np.asarray(t["serial"])
                out.append({"kernel": name, "shape": f"{m} × 512", "dtype": dtype,
                            "serial_s": float(np.median(serial)),
                            **{f"{k}_over_serial": ratio_stats(np.asarray(v), serial)
                               for k, v in t.items() if k != "serial"}})
                print(f"prange {name} {m}x512 {dtype}: "
                      + "  ".join(f"{k} {fmt(v)}" for k, v in out[-1].items()
                                  if k.endswith("_over_serial")), file=sys.stderr)
    return out


# -- the run ------------------------------------------------------------------------------

def installed_size_mb(dist: str) -> float | None:
    from importlib import metadata

    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for f in files:
        try:
            total += f.locate().stat().st_size
        except OSError:
            pass
    return total / 1e6


def fmt(stats) -> str:
    return "" if stats is None else f"{stats['median']:.2f} [{stats['q25']:.2f}-{stats['q75']:.2f}]"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--target-s", type=float, default=0.01, help="seconds per sample")
    p.add_argument("--budget-s", type=float, default=3.0, help="seconds of rounds per case")
    p.add_argument("--min-rounds", type=int, default=15)
    p.add_argument("--max-rounds", type=int, default=30)
    p.add_argument("--settle-s", type=float, default=SETTLE_S)
    p.add_argument("--no-compile", action="store_true", help="skip the cold/warm compile runs")
    p.add_argument("--only-compile", action="store_true",
                   help="rerun the cold/warm compile runs into the existing results file")
    p.add_argument("--only-prange", action="store_true",
                   help="rerun the prange probe into the existing results file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    use_torch = not args.no_torch and torch_version() is not None
    if backend.set_backend("numba") != "numba":
        print("Numba is not usable here: nothing to compare", file=sys.stderr)
        return 1
    if args.only_compile:
        results = json.loads(args.output.read_text())
        results["compile"] = rounded(compile_times())
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        print("compile:", json.dumps(results["compile"]), file=sys.stderr)
        return 0
    if args.only_prange:
        results = json.loads(args.output.read_text())
        results["prange"] = rounded(prange_probe())
        results["not_parallel"] = {f"{m}.{k}": why
                                   for (m, k), why in backend.NOT_PARALLEL.items()}
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        return 0
    started = datetime.datetime.now(datetime.UTC)
    load = OtherLoad()
    results: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "git": layer_bench.git_state(),
        "machine": machine_info(use_torch),
        "numba": __import__("numba").__version__,
        "fastmath": sorted(backend.numba_kernels("norm").FASTMATH),
        "numpy_is_faster": {f"{m}.{k}": why for (m, k), why in backend.NUMPY_IS_FASTER.items()},
        "not_parallel": {f"{m}.{k}": why for (m, k), why in backend.NOT_PARALLEL.items()},
        "installed_mb": {d: installed_size_mb(d) for d in ("numba", "llvmlite")},
        "configs": [],
    }
    if not args.no_compile:
        results["compile"] = compile_times()
        print("compile:", json.dumps(rounded(results["compile"])), file=sys.stderr)
    for threads in args.threads:
        results["configs"].append({"threads": layer_bench.set_threads(threads, use_torch),
                                   "n_threads": threads, "cases": []})
        for dtype in ("float32", "float64"):
            for case in ([layer_case(name, dtype, use_torch) for name in LAYERS]
                         + [network_case(dtype, use_torch), kernel_case(dtype)]):
                case.update(time_sides(case, args))
                results["configs"][-1]["cases"].append(case)
                r = case.get("ratio_to_torch", {})
                print(f"{threads} thr  {case['name']:28s} numpy/torch {fmt(r.get('numpy'))}  "
                      f"numba/torch {fmt(r.get('numba'))}  numba/numpy "
                      f"{fmt(case.get('numba_over_numpy'))}", file=sys.stderr)
    results["prange"] = prange_probe()
    results["other_load"] = load.fraction()
    results["seconds"] = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
    args.output.write_text(json.dumps(rounded(results), indent=1) + "\n")
    print(f"wrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}"
          f" ({results['seconds']:.0f} s; other load {results['other_load']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
