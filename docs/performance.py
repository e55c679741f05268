# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Performance
#
# Is the derived code also the code you would want to run? This page compares
# one forward + backward pass of `Network.gradients(X, Y)` with the honest
# yardsticks:
#
# - **the bare GEMMs** of the same pass: the matrix products a backward pass
#   cannot avoid (forward $Z_l = A_{l-1} W_l^\top$, backward
#   $dW_l = dZ_l^\top A_{l-1}$, and $dA_{l-1} = dZ_l W_l$ for every layer but
#   the first), into preallocated buffers and nothing else. No backprop can be
#   faster, so this is the bound, and every ratio below is to it;
# - a **hand-written NumPy** backprop of the same math, as a careful tutorial
#   writes it;
# - **PyTorch CPU autograd** on the same weights and dtype, with as many
#   threads as NumPy's BLAS;
# - the **per-example loop** of the Coursera notes, one example at a time.
#
# Before any timing, the benchmark checks that every contender computes the
# same loss and gradients as a float64 reference. The machine is shared and
# noisy, so the contenders are timed interleaved, round by round, and each
# bar is the median of the per-round ratios (the whiskers span the middle
# half of the rounds). Whenever the next sample switches between NumPy and
# PyTorch the benchmark pauses briefly and makes one untimed call: both keep
# their worker threads spinning for a while after a call (OpenBLAS for about
# 0.1 s), and on two cores a spinning pool of one slowed the other's GEMMs
# nearly threefold. The figures come from `benchmarks/results.json`,
# written by `make bench`; building this page does not rerun the benchmark.
# Each panel's title says what share of the two cores other processes used
# while its configuration ran: the more, the more BLAS threads were taken away
# mid-GEMM and the less the absolute figures mean.

# %% tags=["hide-input"]
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt

from backprop_derived.symbolic.pages import show_markdown as show


def find_results() -> Path | None:
    """The results JSON: $BENCHMARK_RESULTS, else benchmarks/results.json from the repo root."""
    candidates = (
        [Path(os.environ["BENCHMARK_RESULTS"])] if "BENCHMARK_RESULTS" in os.environ else []
    )
    candidates += [Path("benchmarks/results.json"), Path("../benchmarks/results.json")]
    return next((p for p in candidates if p.is_file()), None)


path = find_results()
results = json.loads(path.read_text()) if path else None
if results is None:
    show("**No benchmark results yet**: run `make bench` to write `benchmarks/results.json`.")

# %% [markdown]
# ## The machine

# %% tags=["hide-input"]
if results:
    machine = results["machine"]
    blas = "; ".join(
        f"{b.get('internal_api', b.get('name', '?'))} {b.get('version', '')} "
        f"({b.get('num_threads', '?')} threads, {b.get('architecture', '?')})"
        for b in machine["blas"]
    )
    show(
        "\n".join(
            [
                "| | |",
                "| --- | --- |",
                f"| CPU | {machine['cpu']}, {machine['cores']} cores |",
                f"| Python | {machine['python']} |",
                f"| NumPy | {machine['numpy']}; BLAS: {blas} |",
                f"| PyTorch | {machine['torch']} |",
                f"| measured | {results['created']}, `{results['command']}` |",
            ]
        )
    )

# %% [markdown]
# ## Time of one forward + backward pass, relative to the bare GEMMs
#
# Lower is better; 1 is the bound. The x-axis is logarithmic, because the
# per-example loop is one to two orders of magnitude slower than the rest. The
# dashed line is the target for the derived kernels, 1.15 times the GEMMs.


# %% tags=["hide-input"]
def others(cfg: dict) -> str:
    share = cfg["other_load"]["during"]
    return "?" if share is None else f"{share['others']:.0%}"


COLORS = {
    "bare_gemms": "0.6",
    "network": "tab:blue",
    "numpy": "tab:orange",
    "pytorch": "tab:red",
    "loop": "tab:purple",
}

if results:
    configs = results["configs"]
    fig, axes = plt.subplots(len(configs), 1, figsize=(8, 1.9 * len(configs) + 0.6), sharex=True)
    axes = [axes] if len(configs) == 1 else list(axes)
    for ax, cfg in zip(axes, configs, strict=True):
        names = list(cfg["contenders"])[::-1]  # first contender on top
        for y, name in enumerate(names):
            c = cfg["contenders"][name]
            if c["status"] != "measured":
                ax.text(1, y, f"  {c['label']}: {c['status']}", va="center", fontsize=8)
                continue
            r = c["ratio_to_gemms"]
            ax.barh(y, r["median"], color=COLORS.get(name, "0.3"),
                    xerr=[[r["median"] - r["q25"]], [r["q75"] - r["median"]]], capsize=2)  # fmt: skip
            ax.text(r["q75"] * 1.06, y, f"{r['median']:.2f}x", va="center", fontsize=8)
        ax.set_yticks(range(len(names)), [cfg["contenders"][n]["label"] for n in names], fontsize=8)
        ax.axvline(1.15, color="k", linestyle="--", linewidth=0.8)
        gemm = cfg["contenders"]["bare_gemms"]
        ax.set_title(
            f"{cfg['name']}: GEMMs {gemm['median_s'] * 1e3:.3g} ms, "
            f"{cfg['gemm_gflops']:.3g} GFLOP/s; others used {others(cfg)} of the cores",
            fontsize=9,
        )
    axes[-1].set_xscale("log")
    axes[-1].set_xlabel("time / time of the bare GEMMs (median of per-round ratios)")
    fig.tight_layout()

# %% [markdown]
# The same figures as numbers: absolute medians (these drift with the load
# of the machine, the ratios much less), the ratio to the GEMMs and to the
# hand-written NumPy with the interquartile range of the rounds; below it, how
# many rounds the contenders were timed in (the per-example loop in only a
# few, on the full batch: its ratios are measured, not extrapolated).

# %% tags=["hide-input"]
if results:
    rows = [
        "| configuration | contender | median | x GEMMs [IQR] | x NumPy [IQR] |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    few = []
    for cfg in results["configs"]:
        for c in cfg["contenders"].values():
            if c["status"] != "measured":
                rows.append(f"| {cfg['name']} | {c['label']} | {c['status']} | | |")
                continue
            g, n = c["ratio_to_gemms"], c["ratio_to_numpy"]
            rows.append(
                f"| {cfg['name']} | {c['label']} | {c['median_s'] * 1e3:.3g} ms "
                f"| {g['median']:.3g} [{g['q25']:.3g}-{g['q75']:.3g}] "
                f"| {n['median']:.3g} [{n['q25']:.3g}-{n['q75']:.3g}] |"
            )
            few.append(c["rounds"])
    show("\n".join(rows))
    show(f"Rounds per contender: {min(few)} to {max(few)}.")

# %% [markdown]
# ## Training: one epoch of `fit` against the loops people write
#
# `Network.gradients` checks its input on every call; that is its contract.
# `Network.fit` checks its data and the parameters once, then runs the same
# generated kernels on every minibatch without those checks, with the
# learning rate folded into the $1/m$ the output delta already carries, so
# that a step is one subtraction over all the parameters. Here one epoch of
# plain minibatch SGD (no momentum, no L2) is timed three ways, on the same
# data, from the same weights, with the same shuffling:
#
# - `net.fit(X, Y, epochs=1, batch_size=..., progress=False)`, with all it does
#   once per call (checking the data and the parameters, setting up its
#   buffers) counted in every epoch;
# - the **hand-written NumPy loop** of a careful tutorial: `X[rows]`, the
#   hand-written pass above, `W -= lr * dW`;
# - the idiomatic **PyTorch CPU loop**: `nn.Linear` and `nn.Tanh` layers,
#   `nn.CrossEntropyLoss`, `optim.SGD`.
#
# Before timing, one epoch of each must end with the weights of the
# hand-written loop (to 1e-4 of the largest weight in float32, 1e-10 in
# float64). Each runtime runs on whichever of one thread or all the cores made
# its loop faster just before the timing (the labels say which): on two cores
# that other processes keep busy, a second thread made PyTorch's small-net
# epoch fifty times slower, and each yardstick should be taken at its best.
# `fit` and the hand-written loop always share NumPy's setting. Each bar is the median over rounds of the per-round ratio of
# `fit`'s epoch to the other loop's; 1 is parity and lower is better for `fit`.

# %% tags=["hide-input"]
training = results.get("training") if results else None
if results and not training:
    show("**No training-loop figures in these results**: rerun `make bench`.")
if training:
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(training) + 1.2))
    labels, offsets = [], {"ratio_to_numpy": -0.18, "ratio_to_pytorch": 0.18}
    colors = {"ratio_to_numpy": "tab:orange", "ratio_to_pytorch": "tab:red"}
    names = {"ratio_to_numpy": "fit / hand-written NumPy loop",
             "ratio_to_pytorch": "fit / PyTorch CPU loop"}
    for y, cfg in enumerate(training[::-1]):
        fit = cfg["contenders"]["fit"]
        labels.append(cfg["name"])
        for key, dy in offsets.items():
            r = fit.get(key) if fit["status"] == "measured" else None
            if r is None:
                continue
            ax.barh(y + dy, r["median"], height=0.34, color=colors[key],
                    xerr=[[r["median"] - r["q25"]], [r["q75"] - r["median"]]], capsize=2,
                    label=names[key] if y == 0 else None)
            ax.text(r["q75"] * 1.02, y + dy, f"{r['median']:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="k", linestyle="--", linewidth=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("epoch time of fit / epoch time of the other loop (median of per-round ratios)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()

# %% tags=["hide-input"]
if training:
    rows = [
        "| configuration | loop | epoch | x NumPy loop [IQR] | x PyTorch loop [IQR] |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    same_rows = ["| configuration | loop | same weights after one epoch (max rel. diff.) |",
                 "| --- | --- | ---: |"]

    def iqr(r):
        return "" if r is None else f"{r['median']:.3g} [{r['q25']:.3g}-{r['q75']:.3g}]"

    for cfg in training:
        where = f"{cfg['name']}, {cfg['examples']} examples"
        for c in cfg["contenders"].values():
            if c["status"] != "measured":
                rows.append(f"| {where} | {c['label']} | {c['status']} | | |")
                continue
            check = c["check"]
            same = "reference" if check is None else f"{check['max_rel_err']:.1e}"
            rows.append(
                f"| {where} | {c['label']} | {c['median_epoch_s'] * 1e3:.3g} ms "
                f"| {iqr(c['ratio_to_numpy'])} | {iqr(c['ratio_to_pytorch'])} |"
            )
            same_rows.append(f"| {where} | {c['label']} | {same} |")
    show("\n".join(rows))
    show("\n".join(same_rows))

# %% [markdown]
# ## Memory of one call
#
# Extra memory NumPy allocates during one `gradients` call, measured with
# `tracemalloc` after two warm-up calls (so workspaces reused between calls
# with the same batch size do not count), next to the size of the stored
# activations $A_1 \dots A_L$ and of the largest delta. "Retained" is what is
# still held after the call, i.e. the returned gradients when they are fresh
# arrays.

# %% tags=["hide-input"]
if results:
    rows = [
        (
            "| configuration | activations | largest delta | Network peak (retained) "
            "| hand-written NumPy peak (retained) |"
        ),
        "| --- | ---: | ---: | ---: | ---: |",
    ]

    def mb(x: float) -> str:
        return f"{x / 1e6:.3g} MB"

    for cfg in results["configs"]:
        mem = cfg["memory"]
        net = mem["network"]
        net_text = f"{mb(net['peak'])} ({mb(net['retained'])})" if net else "not measured"
        rows.append(
            f"| {cfg['name']} | {mb(mem['activations_bytes'])} | {mb(mem['largest_delta_bytes'])} "
            f"| {net_text} | {mb(mem['numpy']['peak'])} ({mb(mem['numpy']['retained'])}) |"
        )
    show("\n".join(rows))

# %% [markdown]
# ## Where the time goes: the elementwise work next to the GEMMs
#
# Each piece of elementwise work the 784-256-128-10 pass needs at m = 256,
# timed interleaved with the bare GEMMs and shown as a fraction of their
# time. NumPy's ufuncs run on one core while the GEMMs use all of BLAS's
# threads, so these fractions are what separates any NumPy backprop from the
# bound. Adding the cheapest variant of each needed piece gives the floor a
# NumPy implementation can reach.

# %% tags=["hide-input"]
if results:
    tables = results["elementwise"]
    fig, axes = plt.subplots(1, len(tables), figsize=(10, 5.5), sharey=True)
    axes = [axes] if len(tables) == 1 else list(axes)
    for ax, res in zip(axes, tables, strict=True):
        items = {k: v for k, v in res["items"].items() if v["ratio_to_gemms"] < 0.25}
        names = list(items)[::-1]
        ax.barh(range(len(names)), [items[n]["ratio_to_gemms"] for n in names], color="tab:blue")
        ax.set_yticks(range(len(names)), [items[n]["label"] for n in names], fontsize=7)
        ax.set_title(
            f"{res['dtype']}: GEMMs {res['gemm_median_s'] * 1e3:.3g} ms; "
            f"elementwise floor {res['floor_ratio']:.3f}x",
            fontsize=9,
        )
        ax.set_xlabel("time / time of the bare GEMMs")
    fig.tight_layout()

# %% tags=["hide-input"]
if results:
    rows = ["| piece | " + " | ".join(r["dtype"] for r in tables) + " |",
            "| --- |" + " ---: |" * len(tables)]  # fmt: skip
    for name, item in tables[0]["items"].items():
        cells = [
            f"{r['items'][name]['median_s'] * 1e6:.1f} us ({r['items'][name]['ratio_to_gemms']:.3f}x)"
            for r in tables
        ]
        rows.append(f"| {item['label']} | " + " | ".join(cells) + " |")
    show("\n".join(rows))

# %% [markdown]
# ### Fixed costs per call, which decide the tiny nets
#
# On a 2-3-2 net with m = 64 the arithmetic is nothing; what counts is how
# many NumPy calls a pass makes and what each costs. Relative to one whole
# hand-written pass on that net:

# %% tags=["hide-input"]
if results:
    over = results["overheads"]
    rows = ["| piece | median | x hand-written pass |", "| --- | ---: | ---: |"]
    for item in over["items"].values():
        rows.append(
            f"| {item['label']} | {item['median_s'] * 1e6:.2f} us | {item['ratio_to_numpy']:.3f} |"
        )
    show("\n".join(rows))

# %% [markdown]
# ### The same kind of calls right after the GEMMs
#
# The timings above are of calls made back to back, with their code and data
# in the caches. In a pass nothing runs back to back: the GEMMs stream
# megabytes through the caches, and the next call fetches NumPy's and
# Python's code again. Each row below runs the bare GEMMs of the
# 784-256-128-10 pass, then times one call ("cold") and the same call again
# ("warm"). This is why the input checks `Network.gradients` makes at the
# start of every call (the hand-written contender makes none) cost more in a
# pass than their warm timings suggest, and why the derived kernels count
# NumPy calls rather than only passes over memory.

# %% tags=["hide-input"]
if results:
    cold = results["cold_calls"]
    rows = ["| call | cold | warm | cold / warm |", "| --- | ---: | ---: | ---: |"]
    for item in cold["items"].values():
        rows.append(
            f"| {item['label']} | {item['cold_s'] * 1e6:.2f} us | {item['warm_s'] * 1e6:.2f} us "
            f"| {item['cold_s'] / item['warm_s']:.1f} |"
        )
    show("\n".join(rows))

# %% [markdown]
# ## Tooling

# %% tags=["hide-input"]
if results:
    rows = ["| step | wall time |", "| --- | ---: |"]
    for step, t in results["tooling"].items():
        if isinstance(t, str):
            rows.append(f"| {step} | {t} |")
        else:
            failed = "" if t["returncode"] == 0 else f" (failed, exit {t['returncode']})"
            rows.append(f"| `{t['command']}` | {t['seconds']:.1f} s{failed} |")
    show("\n".join(rows))
