"""Interleaved timing: every round times every contender once, in a new order.

The machine is shared and noisy: absolute times drift by tens of percent
within a minute, while two things timed within the same few milliseconds see
the same conditions. So contenders are timed side by side, round by round,
and what is reported is the median over rounds of the per-round ratios.

Also what every benchmark records next to its numbers: the machine
(`machine_info`), the share of the cores other processes took (`OtherLoad`,
`wait_for_quiet`) and `rounded` for the results files.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .contenders import torch_version


@dataclass
class Entry:
    """A contender as the timer sees it."""

    fn: Callable[[], object]
    number: int = 1  # calls per sample, so that a sample is well above timer noise
    rounds: frozenset[int] | None = None  # rounds it is timed in; None: every round
    runtime: str = "numpy"  # whose worker threads it wakes: "numpy" (OpenBLAS) or "torch"


def sample(fn: Callable[[], object], number: int) -> float:
    """Seconds per call, over ``number`` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def calibrate(fn: Callable[[], object], target_s: float, warmup: int = 3) -> tuple[int, float]:
    """Warm up, then double the calls per sample until a sample takes ``target_s``."""
    for _ in range(warmup):
        fn()
    number = 1
    while True:
        per_call = sample(fn, number)
        if per_call * number >= target_s or number >= 1 << 16:
            return number, per_call
        number *= 2


def spread(k: int, rounds: int) -> frozenset[int]:
    """k round indices spread evenly over the run (for the slow contenders)."""
    k = max(1, min(k, rounds))
    return frozenset(int(i) for i in np.linspace(0, rounds - 1, k).round())


# After a call, OpenBLAS's worker threads spin for about 0.1 s waiting for
# more work, and PyTorch's OpenMP threads for about 10 ms (measured here as CPU
# time burnt during a sleep). On 2 cores a spinning pool of one runtime slows
# the other: the bare GEMMs right after a PyTorch call took 2.8x as long, and
# PyTorch right after NumPy's GEMMs twice as long. So whenever the runtime
# changes between two samples, wait until the other pool sleeps, then make one
# untimed call: the first call after an idle spell is itself slow on this VM
# (PyTorch 13 ms instead of 2.9 ms, the bare GEMMs 2.1 instead of 1.8 ms).
SETTLE_S = 0.15


def interleave(
    entries: dict[str, Entry], rounds: int, seed: int = 0, settle_s: float = SETTLE_S
) -> dict[str, list[float]]:
    """Per-round seconds per call for each entry (NaN where an entry sat out).

    The order is shuffled each round so that no contender always follows the
    same one (cache state, BLAS threads waking up). The garbage collector is
    off while timing, as in ``timeit``.
    """
    rng = np.random.default_rng(seed)
    names = list(entries)
    times = {name: [float("nan")] * rounds for name in names}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        last_runtime = None
        for r in range(rounds):
            for i in rng.permutation(len(names)):
                name = names[i]
                entry = entries[name]
                if entry.rounds is None or r in entry.rounds:
                    if last_runtime not in (None, entry.runtime):
                        time.sleep(settle_s)
                        entry.fn()  # wake this runtime's threads, untimed
                    last_runtime = entry.runtime
                    times[name][r] = sample(entry.fn, entry.number)
            gc.collect()  # between rounds, outside the timed samples
    finally:
        if gc_was_enabled:
            gc.enable()
    return times


def ratio_stats(num: list[float], den: list[float]) -> dict[str, float] | None:
    """Median and quartiles of the per-round ratios num[r] / den[r]."""
    ratios = np.asarray(num) / np.asarray(den)
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size == 0:
        return None
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "n": int(ratios.size)}


# --------------------------------------------------------------------------
# Machine and load
# --------------------------------------------------------------------------


def blas_threads() -> int:
    """Threads NumPy's BLAS uses (PyTorch gets as many)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return os.cpu_count() or 1
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return int(blas[0]["num_threads"]) if blas else (os.cpu_count() or 1)


def machine_info(use_torch: bool) -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from threadpoolctl import threadpool_info

        keep = (
            "user_api",
            "internal_api",
            "version",
            "num_threads",
            "architecture",
            "threading_layer",
        )
        blas = [{k: i.get(k) for k in keep} for i in threadpool_info()]
    except ImportError:
        config = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = [config.get("Build Dependencies", {}).get("blas", {})]
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": blas,
        "blas_threads": blas_threads(),
    }
    version = torch_version()
    if version is None:
        info["torch"] = "not installed"
    elif not use_torch:
        info["torch"] = f"{version} (skipped: --no-torch)"
    else:
        import torch

        info["torch"] = version
        info["torch_threads"] = blas_threads()  # set_num_threads in the contender
        info["torch_blas"] = "MKL" if torch.backends.mkl.is_available() else "other"
    return info


def _cpu_seconds() -> tuple[float, float, float]:
    """(busy CPU seconds of the whole machine, of this process, stolen by the host)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    own = os.times()
    return (user + nice + system + irq + softirq) / tick, own.user + own.system, steal / tick


class OtherLoad:
    """Share of the machine's cores busy with other processes over an interval.

    Not the load average: that counts this benchmark's own BLAS and PyTorch
    threads and lags a minute behind. Linux only; None elsewhere.
    """

    def __init__(self) -> None:
        try:
            self.start = (time.monotonic(), *_cpu_seconds())
        except (OSError, ValueError):
            self.start = None

    def fraction(self) -> dict[str, float] | None:
        if self.start is None:
            return None
        t0, busy0, own0, steal0 = self.start
        t1, busy1, own1, steal1 = time.monotonic(), *_cpu_seconds()
        capacity = max(t1 - t0, 1e-9) * (os.cpu_count() or 1)
        return {
            "others": max(0.0, (busy1 - busy0) - (own1 - own0)) / capacity,
            "steal": (steal1 - steal0) / capacity,
        }


def wait_for_quiet(max_wait_s: float, threshold: float = 0.1) -> float | None:
    """Wait (up to max_wait_s) until other processes use under 10% of the cores.

    Other processes on a 2-core machine take BLAS threads away mid-GEMM and
    inflate every time, the bound's most of all. Ratios survive some of that,
    not all; the load of others is recorded next to every configuration.
    Returns their share over the last 2 s window.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        probe = OtherLoad()
        time.sleep(2)
        share = probe.fraction()
        if share is None or share["others"] < threshold or time.monotonic() > deadline:
            return None if share is None else share["others"]


def rounded(x: Any) -> Any:
    """4 significant digits: the noise is far larger, and the diffs stay readable."""
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x
