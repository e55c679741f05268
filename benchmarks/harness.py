"""``python -m benchmarks``: Network.gradients against its yardsticks.

For each configuration, in one process: build the problem, check that every
contender computes the same loss and gradients as a float64 reference (abort
if not), calibrate, then time all contenders interleaved round by round and
report the median of the per-round ratios to the bare GEMMs and to the
hand-written NumPy. Then the training loop (``benchmarks.loops``: one epoch
of ``Network.fit`` against a hand-written NumPy loop and a PyTorch loop),
peak memory of one ``Network.gradients`` call, the elementwise breakdown
(``benchmarks.micro``), and, in the full run, the wall time of ``make
regenerate`` and ``make site``. Everything goes to one JSON
file (``benchmarks/results.json`` by default) that docs/performance.py plots.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import loops, micro
from .contenders import (
    Config,
    Problem,
    bare_gemms,
    compare,
    derived_network,
    gemm_flops,
    handwritten_gradients,
    handwritten_numpy,
    make_problem,
    per_example_loop,
    pytorch_autograd,
    pytorch_unavailable,
    reference_gradients,
)
# Machine info and the load of other processes live in timing.py, shared by every
# benchmark; imported here as well (benchmarks.backends reads them from here).
from .timing import (
    SETTLE_S,
    Entry,
    OtherLoad,
    blas_threads,
    calibrate,
    interleave,
    machine_info,
    ratio_stats,
    rounded,
    spread,
    wait_for_quiet,
)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results.json"
SCHEMA_VERSION = 1

_TANH2 = ("tanh", "tanh", "softmax")
CONFIGS = [
    Config("784-256-128-10 float32 m=256", (784, 256, 128, 10), _TANH2, "cross_entropy", "float32", 256),
    Config("784-256-128-10 float64 m=256", (784, 256, 128, 10), _TANH2, "cross_entropy", "float64", 256),
    Config("1024-1024-1024-10 float32 m=512", (1024, 1024, 1024, 10), _TANH2, "cross_entropy", "float32", 512, loop_rounds=3),
    Config("2-3-2 float64 m=64", (2, 3, 2), ("tanh", "softmax"), "cross_entropy", "float64", 64),
]  # fmt: skip
# --quick: small enough for a test to run the whole pipe in a few seconds.
QUICK_CONFIGS = [
    Config("2-3-2 float64 m=64", (2, 3, 2), ("tanh", "softmax"), "cross_entropy", "float64", 64, loop_rounds=2),
    Config("20-16-8-4 float32 m=32", (20, 16, 8, 4), _TANH2, "cross_entropy", "float32", 32, loop_rounds=2),
]  # fmt: skip

# Contender keys, in the order the page shows them; the labels are for people.
LABELS = {
    "bare_gemms": "bare GEMMs (the bound)",
    "network": "Network.gradients (derived)",
    "numpy": "hand-written NumPy",
    "pytorch": "PyTorch CPU autograd",
    "loop": "per-example loop (Coursera)",
}


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------


def peak_extra_bytes(fn: Callable[[], object]) -> dict[str, int]:
    """Peak and retained bytes NumPy allocates during one call, after warm-up.

    Two warm-up calls first, so workspaces a runtime reuses between calls of
    the same batch size are already there and do not count. ``retained`` is
    what is still held after the call (the returned gradients, if fresh).
    """
    fn()
    fn()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return {"peak": peak - before, "retained": current - before}


def memory_report(problem: Problem, network_fn: Callable[[], object] | None) -> dict[str, Any]:
    c, item = problem.config, problem.dtype.itemsize
    report: dict[str, Any] = {
        # A_1 .. A_L (the input X is the caller's); the stored forward pass
        "activations_bytes": c.m * sum(c.layer_sizes[1:]) * item,
        "largest_delta_bytes": c.m * max(c.layer_sizes[1:]) * item,
        "parameters_bytes": sum(w.nbytes for w in problem.weights)
        + sum(b.nbytes for b in problem.biases),
        "numpy": peak_extra_bytes(
            lambda: handwritten_gradients(problem.weights, problem.biases, problem.X, problem.Y)
        ),
    }
    report["network"] = peak_extra_bytes(network_fn) if network_fn is not None else None
    return report


# --------------------------------------------------------------------------
# One configuration
# --------------------------------------------------------------------------


def build_contenders(
    problem: Problem, use_torch: bool
) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """The callables that run, and a status for those that cannot."""
    fns: dict[str, Callable[[], Any]] = {
        "bare_gemms": bare_gemms(problem),
        "numpy": handwritten_numpy(problem),
        "loop": per_example_loop(problem),
    }
    status: dict[str, str] = {}
    try:
        fns["network"] = derived_network(problem)
    except ImportError as exc:
        status["network"] = f"not available ({exc})"
    if why := pytorch_unavailable(use_torch):
        status["pytorch"] = why
    else:
        fns["pytorch"] = pytorch_autograd(problem, blas_threads())
    return fns, status


def check(problem: Problem, fns: dict[str, Callable[[], Any]]) -> dict[str, dict[str, Any]]:
    """Every contender against the float64 reference; raise if any disagrees."""
    reference = reference_gradients(problem)
    checks = {}
    for name, fn in fns.items():
        if name == "bare_gemms":
            continue
        checks[name] = compare(fn(), reference, problem.dtype)
    bad = {k: v for k, v in checks.items() if not v["ok"]}
    if bad:
        raise SystemExit(
            f"{problem.config.name}: contenders disagree with the reference, not timing them: {bad}"
        )
    return checks


def run_config(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    others_before = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
    load = OtherLoad()
    problem = make_problem(config)
    fns, status = build_contenders(problem, use_torch=not args.no_torch)
    checks = check(problem, fns)

    # Calibrate the fast contenders to ~target_s per sample; size the run so
    # that it takes about budget_s. The loop is timed call by call, in few rounds.
    entries: dict[str, Entry] = {}
    per_round = 0.0
    for name, fn in fns.items():
        if name == "loop":
            continue
        number, per_call = calibrate(fn, args.target_s)
        entries[name] = Entry(fn, number, runtime="torch" if name == "pytorch" else "numpy")
        per_round += number * per_call
    if "pytorch" in entries:  # about two runtime switches per round, each waits settle_s
        per_round += 2 * args.settle_s
    rounds = int(np.clip(args.budget_s / per_round, args.min_rounds, args.max_rounds))
    fns["loop"]()  # warm-up
    entries["loop"] = Entry(fns["loop"], 1, spread(config.loop_rounds, rounds))

    started = time.perf_counter()
    times = interleave(entries, rounds, seed=0, settle_s=args.settle_s)
    elapsed = time.perf_counter() - started

    contenders: dict[str, Any] = {}
    for name, label in LABELS.items():
        if name in status:
            contenders[name] = {"label": label, "status": status[name]}
            continue
        t = times[name]
        contenders[name] = {
            "label": label,
            "status": "measured",
            "rounds": int(np.isfinite(t).sum()),
            "calls_per_sample": entries[name].number,
            "median_s": float(np.nanmedian(t)),
            "min_s": float(np.nanmin(t)),
            "ratio_to_gemms": ratio_stats(t, times["bare_gemms"]),
            "ratio_to_numpy": ratio_stats(t, times["numpy"]),
            "check": checks.get(name),
        }
    flops = gemm_flops(config.layer_sizes, config.m)
    network_fn = fns.get("network")
    return {
        "name": config.name,
        "layer_sizes": list(config.layer_sizes),
        "activations": list(config.activations),
        "loss": config.loss,
        "dtype": config.dtype,
        "m": config.m,
        "rounds": rounds,
        "timing_seconds": elapsed,
        "gemm_flops": flops,
        "gemm_gflops": flops / contenders["bare_gemms"]["median_s"] / 1e9,
        "contenders": contenders,
        "memory": memory_report(problem, network_fn),
        # cores' share used by other processes: in the 2 s before, and during the run
        "other_load": {"before": others_before, "during": load.fraction()},
    }


# --------------------------------------------------------------------------
# Tooling: make regenerate and make site, timed once each
# --------------------------------------------------------------------------


def time_command(cmd: list[str], shown: str) -> dict[str, Any]:
    """Wall time of one run of cmd from the repository root, as the Makefile runs it."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "NO_MKDOCS_2_WARNING": "1"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    result: dict[str, Any] = {
        "command": shown,
        "seconds": time.perf_counter() - started,
        "returncode": proc.returncode,
    }
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr.strip().splitlines()[-5:]
    return result


def tooling(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        return {"regenerate": "skipped (--quick)", "site": "skipped (--quick)"}
    out: dict[str, Any] = {
        # Writes only files whose text changed: nothing, when the tree is in sync.
        "regenerate": time_command(
            [sys.executable, "-m", "backprop_derived", "regenerate"],
            "python -m backprop_derived regenerate",
        )
    }
    if args.no_site:
        out["site"] = "skipped (--no-site)"
    else:
        with tempfile.TemporaryDirectory() as site_dir:
            out["site"] = time_command(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", site_dir],
                "python -m mkdocs build --strict --site-dir <temporary directory>",
            )
    return out


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def _fmt_ratio(stats: dict[str, float] | None) -> str:
    if stats is None:
        return ""
    return f"{stats['median']:7.2f} [{stats['q25']:.2f}-{stats['q75']:.2f}]"


def _fmt_share(share: dict[str, float] | None) -> str:
    if share is None:
        return "not measured"
    return f"{share['others']:.0%} of the cores (host steal {share['steal']:.0%})"


def format_config(res: dict[str, Any]) -> str:
    gemm = res["contenders"]["bare_gemms"]
    lines = [
        (
            f"{res['name']}: bare GEMMs {gemm['median_s'] * 1e3:.3f} ms = "
            f"{res['gemm_gflops']:.1f} GFLOP/s; {res['rounds']} rounds; "
            f"other processes: {_fmt_share(res['other_load']['during'])}"
        ),
        f"  {'contender':<30} {'median':>11}  {'x GEMMs [IQR]':>20}  {'x NumPy [IQR]':>20}",
    ]
    for c in res["contenders"].values():
        if c["status"] != "measured":
            lines.append(f"  {c['label']:<30} {c['status']}")
            continue
        lines.append(
            f"  {c['label']:<30} {c['median_s'] * 1e3:>8.3f} ms  "
            f"{_fmt_ratio(c['ratio_to_gemms']):>20}  {_fmt_ratio(c['ratio_to_numpy']):>20}"
            + (f"  ({c['rounds']} rounds)" if c["rounds"] < res["rounds"] else "")
        )
    mem = res["memory"]
    net = mem["network"]
    lines.append(
        f"  memory: activations {mem['activations_bytes'] / 1e6:.3f} MB, "
        f"largest delta {mem['largest_delta_bytes'] / 1e6:.3f} MB; peak extra per call: "
        + (f"Network {net['peak'] / 1e6:.3f} MB, " if net else "")
        + f"hand-written NumPy {mem['numpy']['peak'] / 1e6:.3f} MB"
    )
    return "\n".join(lines)


def validate(results: dict[str, Any]) -> None:
    """The keys docs/performance.py reads; raise ValueError naming what is missing."""
    if results.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"schema {results.get('schema')!r}, expected {SCHEMA_VERSION}")
    for key in ("created", "command", "machine", "configs", "training", "elementwise",
                "overheads", "cold_calls", "tooling"):
        if key not in results:
            raise ValueError(f"results lack {key!r}")
    for key in ("cpu", "cores", "numpy", "python", "torch", "blas_threads"):
        if key not in results["machine"]:
            raise ValueError(f"machine info lacks {key!r}")
    for cfg in results["configs"]:
        for key in (
            "name",
            "dtype",
            "m",
            "gemm_gflops",
            "contenders",
            "memory",
            "other_load",
        ):
            if key not in cfg:
                raise ValueError(f"config {cfg.get('name')!r} lacks {key!r}")
        if set(cfg["contenders"]) != set(LABELS):
            raise ValueError(f"{cfg['name']}: contenders {sorted(cfg['contenders'])}")
        for name, c in cfg["contenders"].items():
            if c["status"] == "measured":
                for key in ("median_s", "ratio_to_gemms", "ratio_to_numpy", "rounds"):
                    if key not in c:
                        raise ValueError(f"{cfg['name']} / {name} lacks {key!r}")
    for cfg in results["training"]:
        for key in ("name", "dtype", "batch", "examples", "contenders"):
            if key not in cfg:
                raise ValueError(f"training config {cfg.get('name')!r} lacks {key!r}")
        if set(cfg["contenders"]) != set(loops.LOOP_LABELS):
            raise ValueError(f"{cfg['name']}: contenders {sorted(cfg['contenders'])}")
        for name, c in cfg["contenders"].items():
            if c["status"] == "measured":
                for key in ("median_epoch_s", "ratio_to_numpy", "ratio_to_pytorch", "rounds",
                            "check"):
                    if key not in c:
                        raise ValueError(f"{cfg['name']} / {name} lacks {key!r}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time Network.gradients against the bare GEMMs, hand-written NumPy, "
        "PyTorch and the per-example loop; write the results JSON.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny configs, few rounds (tests)")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-site", action="store_true", help="do not time `mkdocs build`")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=None,
        metavar="SECONDS",
        help="before each config, wait up to this long for the load to drop under 1 "
        "(default 120, 0 with --quick)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=20.0, help="seconds of interleaved timing per config"
    )
    args = parser.parse_args(argv)
    # Fixed by the mode rather than exposed: a sample of ~2 ms is far above the
    # timer's resolution; 30 rounds is the least that gives a stable median.
    args.target_s, args.min_rounds, args.max_rounds = (
        (1e-4, 3, 5) if args.quick else (2e-3, 30, 2000)
    )
    # An epoch is 2-40 ms here; a sample of a few epochs keeps the timer's and
    # the reset's share small, and 20 rounds is the least for a stable median.
    args.loop_target_s, args.loop_min_rounds = (1e-4, 3) if args.quick else (3e-2, 20)
    args.micro_rounds = 3 if args.quick else 200
    args.settle_s = 0.0 if args.quick else SETTLE_S
    if args.wait_quiet is None:
        args.wait_quiet = 0.0 if args.quick else 120.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "quick": args.quick,
        "machine": machine_info(use_torch=not args.no_torch),
        "method": {
            "statistic": "median over rounds of per-round time ratios; IQR in brackets",
            "interleaving": "each round times every contender once, in a shuffled order",
            "settle_s": args.settle_s,
            "settle": "pause whenever the next sample switches between NumPy and PyTorch, "
            "so that neither runtime's spinning worker threads slow the other",
            "sample_target_s": args.target_s,
            "budget_s_per_config": args.budget_s,
            "reference": "hand-written pass in float64 on the same weights and data",
            "labels": "one-hot Y for the NumPy contenders and Network; class indices for PyTorch",
        },
        "configs": [],
    }
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
          f"numpy {np.__version__}, torch {results['machine']['torch']}", flush=True)  # fmt: skip
    for config in QUICK_CONFIGS if args.quick else CONFIGS:
        res = run_config(config, args)
        results["configs"].append(res)
        print(format_config(res), flush=True)
    results["training"] = []
    for loop_config in loops.QUICK_LOOP_CONFIGS if args.quick else loops.LOOP_CONFIGS:
        others_before = wait_for_quiet(args.wait_quiet) if args.wait_quiet > 0 else None
        load = OtherLoad()
        res = loops.run_loop_config(
            loop_config,
            use_torch=not args.no_torch,
            threads=blas_threads(),
            target_s=args.loop_target_s,
            budget_s=args.budget_s,
            min_rounds=args.loop_min_rounds,
            max_rounds=args.max_rounds,
            settle_s=args.settle_s,
        )
        res["other_load"] = {"before": others_before, "during": load.fraction()}
        results["training"].append(res)
        print(loops.format_loop(res), flush=True)
    results["elementwise"] = [
        micro.run(dtype, args.micro_rounds, target_s=args.target_s / 4)
        for dtype in ("float32", "float64")
    ]
    for res in results["elementwise"]:
        print(micro.format_table(res), flush=True)
    results["overheads"] = micro.overheads(args.micro_rounds, target_s=args.target_s / 4)
    print(micro.format_overheads(results["overheads"]), flush=True)
    results["cold_calls"] = micro.cold_calls(args.micro_rounds)
    print(micro.format_cold_calls(results["cold_calls"]), flush=True)
    results["tooling"] = tooling(args)
    print("tooling:", json.dumps(results["tooling"]), flush=True)
    validate(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rounded(results), indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0
