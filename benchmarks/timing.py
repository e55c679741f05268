"""Interleaved timing: every round times every contender once, in a new order.

The machine is shared and noisy: absolute times drift by tens of percent
within a minute, while two things timed within the same few milliseconds see
the same conditions. So contenders are timed side by side, round by round,
and what is reported is the median over rounds of the per-round ratios.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


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
