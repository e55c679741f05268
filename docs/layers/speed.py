# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Speed of the layers against PyTorch
#
# Each layer of `backprop_derived.layers` runs on kernels generated from its
# derivation. Here each one is timed against the equivalent PyTorch CPU module
# with autograd, on the same parameters, data and dtype, at a moderate size:
#
# - **ours**: `Y = layer.forward(X); dX = layer.backward(dY)` with a fixed
#   `dY`, through the public methods (which check their input on every call);
# - **PyTorch**: the `torch.nn` module with our parameters copied in, every
#   `p.grad` reset to `None`, then `y = module(x); y.backward(dy)`.
#
# Before anything is timed, our layer's gradients are checked against central
# differences (float64, tiny sizes), our float32 result against our float64
# result, and PyTorch's output and every gradient against ours at the timed
# sizes; a contender that disagreed would be listed as such and not timed. Both
# sides are then timed *interleaved*: every round times each side's whole pass,
# its forward alone and its backward alone (repeated after one forward), in a
# shuffled order, and each figure below is the **median over rounds of the
# per-round ratio ours / PyTorch**. The machine is shared and busy, so absolute
# times drift from minute to minute; two things timed within the same few
# milliseconds see the same machine, and their ratio drifts much less.
#
# The figures come from `benchmarks/layer_results.json`, written by
# `python -m benchmarks.layers` (part of `make bench`); building this page does
# not rerun the benchmark.

# %% tags=["hide-input"]
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt

from backprop_derived.symbolic.pages import show_markdown as show


def find_results() -> Path | None:
    """$LAYER_BENCHMARK_RESULTS, else benchmarks/layer_results.json above the working directory."""
    if "LAYER_BENCHMARK_RESULTS" in os.environ:
        path = Path(os.environ["LAYER_BENCHMARK_RESULTS"])
        return path if path.is_file() else None
    here = Path.cwd().resolve()
    candidates = [d / "benchmarks" / "layer_results.json" for d in (here, *here.parents)]
    return next((p for p in candidates if p.is_file()), None)


path = find_results()
results = json.loads(path.read_text()) if path else None
cases = results["cases"] if results else []
measured = [c for c in cases if c["status"] == "measured"]
if results is None:
    show("**No layer benchmark results yet**: run `make bench` to write "
         "`benchmarks/layer_results.json`.")

# %% [markdown]
# ## The measurement

# %%
if results:
    machine, git = results["machine"], results["git"]
    blas = "; ".join(
        f"{b.get('internal_api', b.get('name', '?'))} {b.get('version', '')}"
        for b in machine["blas"] if b.get("user_api", "blas") == "blas"
    )
    commit = (git["commit"] or "unknown")[:10]
    dirty = (f" (with uncommitted changes to {', '.join(f'`{f}`' for f in git['uncommitted'])})"
             if git["uncommitted"] else "")
    loads = [c["other_load"]["others"] for c in cases if c.get("other_load")]
    busy = (f"other processes used {min(loads):.0%} to {max(loads):.0%} of the cores "
            "while the cases ran" if loads else "not measured")
    show("\n".join([
        "| | |",
        "| --- | --- |",
        f"| measured | {results['created']}, commit `{commit}`{dirty} |",
        f"| command | `{results['command']}` |",
        f"| CPU | {machine['cpu']}, {machine['cores']} cores; {busy} |",
        f"| threads | {results['threads']['setting']} |",
        f"| NumPy | {machine['numpy']} ({blas}), Python {machine['python']} |",
        f"| PyTorch | {machine['torch']} |",
    ]))

# %% [markdown]
# ## Our time / PyTorch's time, per layer
#
# Below 1 (left of the dashed line) we are faster, above 1 slower; the axis is
# logarithmic, so 2 and 0.5 are equally far from parity. The bar is the whole
# forward + backward pass, the whiskers span the middle half of the rounds, and
# the two marks on each bar are the forward alone (▲) and the backward alone
# (●), each also a median of per-round ratios: they show which half of the pass
# a ratio comes from.

# %%
COLORS = {"float32": "tab:blue", "float64": "tab:orange"}

if measured:
    layers = list(dict.fromkeys(c["layer"] for c in cases))
    dtypes = list(dict.fromkeys(c["dtype"] for c in cases))
    fig, ax = plt.subplots(figsize=(8, 0.62 * len(layers) + 1.3))
    height = 0.8 / len(dtypes)
    for i, layer in enumerate(layers[::-1]):
        for j, dtype in enumerate(dtypes):
            y = i - (j - (len(dtypes) - 1) / 2) * height  # first dtype on top
            c = next((c for c in measured if c["layer"] == layer and c["dtype"] == dtype), None)
            if c is None:
                ax.text(1, y, "  not timed", va="center", fontsize=7)
                continue
            r = c["ratio"]
            ax.barh(y, r["median"], height=height * 0.9, color=COLORS.get(dtype, "0.5"),
                    xerr=[[r["median"] - r["q25"]], [r["q75"] - r["median"]]], capsize=2,
                    error_kw={"linewidth": 0.8}, label=dtype if i == 0 else None)
            ax.plot(c["forward_ratio"]["median"], y, "^", color="k", markersize=3.5)
            ax.plot(c["backward_ratio"]["median"], y, "o", color="k", markersize=3)
            right = max(r["q75"], c["forward_ratio"]["median"], c["backward_ratio"]["median"])
            ax.text(right * 1.12, y, f"{r['median']:.2f}", va="center", fontsize=7)
    ax.axvline(1.0, color="k", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(range(len(layers)), layers[::-1], fontsize=8)
    ax.set_xlabel("our time / PyTorch's time, forward + backward (median of per-round ratios)")
    ax.legend(fontsize=8, loc="lower right", title="bar: pass; ▲ forward, ● backward",
              title_fontsize=7)
    fig.tight_layout()

# %% [markdown]
# ## The numbers
#
# Absolute medians (these drift with the load of the machine; the ratios much
# less), the ratio of the pass with its interquartile range, the forward and
# backward ratios, and the largest disagreement with PyTorch over the output
# and all the gradients, relative to each array's largest entry.

# %%
if cases:
    # three narrow tables that fit the column: times, spread, and what was timed
    rows = ["| layer | dtype | ours | PyTorch | ours / PyTorch |",
            "| --- | --- | ---: | ---: | ---: |"]
    spread = ["| layer | dtype | ratio IQR | forward | backward |",
              "| --- | --- | ---: | ---: | ---: |"]
    sizes = ["| layer | dtype | size | rounds | max rel. diff. |", "| --- | --- | --- | ---: | ---: |"]
    for c in cases:
        diff = c["checks"].get("torch")
        diff = "" if diff is None else f"{diff['max_rel_err']:.1e}"
        measured_case = c["status"] == "measured"
        sizes.append(f"| {c['layer']} | {c['dtype']} | {c['shape']} "
                     f"| {c['rounds'] if measured_case else ''} | {diff} |")
        if not measured_case:
            rows.append(f"| {c['layer']} | {c['dtype']} | {c['status']} | | |")
            continue
        med, r = c["median_s"], c["ratio"]
        rows.append(f"| {c['layer']} | {c['dtype']} | {med['ours pass'] * 1e3:.3g} ms "
                    f"| {med['torch pass'] * 1e3:.3g} ms | {r['median']:.2f} |")
        spread.append(f"| {c['layer']} | {c['dtype']} | {r['q25']:.2f}–{r['q75']:.2f} "
                      f"| {c['forward_ratio']['median']:.2f} "
                      f"| {c['backward_ratio']['median']:.2f} |")
    show("\n".join(rows))
    show("\n".join(spread))
    show("\n".join(sizes))
    show("PyTorch side of each row: " + "; ".join(
        f"{layer}: `{next(c['contender'] for c in cases if c['layer'] == layer)[9:]}`"
        for layer in dict.fromkeys(c["layer"] for c in cases)) + ".")

# %% [markdown]
# ## How fast NumPy itself can be
#
# For the normalization layers, whose work is elementwise passes and
# reductions rather than matrix products, the benchmark also times the same
# layer written by hand in NumPy with the fewest passes we found (the
# deviations computed once, sums as products with a vector of ones, in-place
# updates), checked against ours and timed in the same rounds. Its ratio to
# PyTorch is how close *any* NumPy code of this shape gets; ours against it is
# what the generated kernels leave on the table.

# %% tags=["hide-input"]
floors = [c for c in measured if "handwritten_ratio" in c]
if floors:
    table = ["| layer | dtype | NumPy by hand / PyTorch | ours / NumPy by hand |",
             "| --- | --- | ---: | ---: |"]
    for c in floors:
        h, o = c["handwritten_ratio"], c["ours_vs_handwritten"]
        table.append(f"| {c['layer']} | {c['dtype']} | {h['median']:.2f} "
                     f"[{h['q25']:.2f}–{h['q75']:.2f}] | {o['median']:.2f} "
                     f"[{o['q25']:.2f}–{o['q75']:.2f}] |")
    show("\n".join(table))
elif measured:
    show("These results have no hand-written NumPy floor: they predate it.")

# %% [markdown]
# ## Where we are slower, and why

# %%
if measured:
    slower = [c for c in measured if c["ratio"]["median"] > 1.1]
    faster = [c for c in measured if c["ratio"]["median"] < 0.9]
    show(
        f"Of {len(measured)} cases, we are slower than PyTorch by more than 10 % in "
        f"{len(slower)}"
        + (": " + ", ".join(f"{c['name']} ({c['ratio']['median']:.2f}×)" for c in slower)
           if slower else "")
        + f"; faster by more than 10 % in {len(faster)}"
        + (": " + ", ".join(f"{c['name']} ({c['ratio']['median']:.2f}×)" for c in faster)
           if faster else "")
        + "."
    )

# %% [markdown]
# What the figures show, layer by layer, and what the generated kernels do
# (each is printed from its derivation page; the pages say why each form is
# the same sum as the derived one).
#
# - **Dense, Residual, SelfAttention: parity, or faster.** Their time is
#   matrix products, and a matrix product costs about the same whoever calls
#   it; what is left is which BLAS each library links (NumPy's OpenBLAS,
#   PyTorch's own). PyTorch's attention is the fused
#   `scaled_dot_product_attention`, yet one head at $T = 64$ gains little from
#   fusing: its time, too, is the projections and the two batched products,
#   which ours calls as `numpy.matmul`.
# - **RNN: faster.** The printer moves every term of the recurrence that
#   reads nothing the loop writes out of the time loop, so the input
#   projection $x_t W_{ih}^\top + b$ is one matrix product over all steps;
#   each step is then one small product, an addition and a `tanh`, written in
#   place into time-major buffers. The backward loop has the same shape, and
#   the weight gradients are one product each over all the steps.
# - **Embedding: faster, in the backward.** The forward is one `take` in
#   both. The table gradient, the rows of dY summed over the positions of each
#   id, is the product of the one-hot matrix of the ids (a SciPy sparse COO
#   array with its ones at $(\mathrm{ids}_s, s)$) with dY: one compiled pass
#   that adds each row of dY into its row of a zeroed table, in dY's dtype.
# - **Dropout: faster, for a reason that is not ours.** The arithmetic is the
#   same, one multiplication by a scaled mask. The time is in drawing the
#   mask, and NumPy's generator draws 131,072 uniform numbers far faster than
#   PyTorch's CPU `bernoulli_`. The backward alone, which draws nothing, is no
#   faster than PyTorch's: `dY * mask / (1 - p)` is two passes where a fused
#   kernel makes one.
# - **Conv1d and Conv2d: matrix products into the output.** The forward
#   copies the input's windows once (*im2col*) and makes one `matmul` straight
#   into the output; the weight gradient is a `matmul` per kernel tap in 1-d
#   (each tap's slice of the input is already a matrix) and im2col in 2-d; the
#   input gradient is, per tap, one `matmul` of that tap's kernel slice with
#   dY added into dX at the tap's offset (*col2im*), with no padded copy of
#   dY. What remains in the float32 Conv1d is its forward product itself.
# - **BatchNorm and LayerNorm: slower, and so is the best NumPy we could
#   write.** These layers are elementwise passes and reductions over a
#   256 × 512 array. NumPy makes one pass over memory per operation; the
#   kernels already name the deviations once, take every sum as a product
#   with a vector of ones or one `einsum`, and accumulate in place, which
#   leaves six passes forward and six (batch norm) or nine (layer norm)
#   backward, counting a reduction as one. PyTorch's
#   normalization kernels fuse the statistics and the output into fewer
#   loops. The table above measures the consequence: the same layers written
#   by hand in NumPy, with the fewest passes we found and no input checks, are
#   themselves slower than PyTorch.

# %% tags=["hide-input"]
if floors:
    worst = max(floors, key=lambda c: c["handwritten_ratio"]["median"])
    best = min(floors, key=lambda c: c["handwritten_ratio"]["median"])
    ours = [c["ours_vs_handwritten"]["median"] for c in floors]
    show(f"In this run, NumPy by hand took {best['handwritten_ratio']['median']:.2f}× "
         f"({best['name']}) to {worst['handwritten_ratio']['median']:.2f}× "
         f"({worst['name']}) PyTorch's time, and ours {min(ours):.2f}× to "
         f"{max(ours):.2f}× the hand-written time, which skips the input checks "
         "and, for batch norm, the running statistics.")

# %% [markdown]
# The pattern: where the work is a few large matrix products, or where a
# loop can be rewritten as one, the generated NumPy code is as fast as
# PyTorch or faster; where it is many cheap elementwise operations, NumPy's
# one loop per operation sets a floor above PyTorch's fused kernels. Going
# below it takes generated fused loops: the optional Numba backend, next.
#
# The whiskers are wide for some layers: other processes used most of the two
# cores while this ran, and a sample that lost its core to another process
# has a ratio far from the rest. The median of the per-round ratios is robust
# to that; the quartiles show how much of it there was.

# %% [markdown]
# ## Two backends: NumPy and Numba
#
# With `numba` installed (`pip install backprop-derived[fast]`) the runtime
# uses a second set of kernels, printed by `symbolic/numba_printer.py` from
# the same kernel definitions as the NumPy ones into
# `_generated/fused/`: one loop nest per group of elementwise operations and
# reductions over the same rows, so layer norm reads each row once per
# statistic and once for the output, with accumulators in the array's dtype.
# `BACKPROP_DERIVED_BACKEND=numpy|numba|auto` chooses (default `auto`: Numba
# when it imports); `backprop_derived.backend()` tells which is active.
# Per model: `Sequential(layers, backend="numpy")` and `Network(...,
# backend="numba")` run their own choice, and `with backend.use("numpy"):`
# overrides it for the code inside (per thread).
# Kernels the printer cannot fuse (the GEMMs, the convolutions, attention, the
# recurrence, the embedding) stay NumPy's, and so do the ones listed below
# where the benchmark measured NumPy faster.
#
# The figures come from `benchmarks/backend_results.json`, written by
# `python -m benchmarks.backends` (part of `make bench`): each layer's forward +
# backward with the backend set to NumPy, to Numba, and PyTorch's module,
# interleaved round by round; each cell is the median of per-round ratios to
# PyTorch, with the quartiles in brackets.

# %% tags=["hide-input"]
def find_backend_results() -> Path | None:
    """$BACKEND_BENCHMARK_RESULTS, else benchmarks/backend_results.json above the working directory."""
    if "BACKEND_BENCHMARK_RESULTS" in os.environ:
        p = Path(os.environ["BACKEND_BENCHMARK_RESULTS"])
        return p if p.is_file() else None
    here = Path.cwd().resolve()
    candidates = [d / "benchmarks" / "backend_results.json" for d in (here, *here.parents)]
    return next((p for p in candidates if p.is_file()), None)


def cell(stats) -> str:
    if not stats:
        return "—"
    return f"{stats['median']:.2f} [{stats['q25']:.2f}–{stats['q75']:.2f}]"


backend_path = find_backend_results()
backends = json.loads(backend_path.read_text()) if backend_path else None
if backends is None:
    show("**No backend benchmark results yet**: run `make bench` to write "
         "`benchmarks/backend_results.json`.")
else:
    git, machine = backends["git"], backends["machine"]
    load = backends.get("other_load") or {}
    show("\n".join([
        "| | |",
        "| --- | --- |",
        f"| measured | {backends['started']}, commit `{(git['commit'] or 'unknown')[:10]}` |",
        f"| CPU | {machine['cpu']}, {machine['cores']} cores; other processes used "
        f"{load.get('others', float('nan')):.0%} of the cores during the run |",
        f"| Numba | {backends['numba']}, fastmath flags {', '.join(backends['fastmath'])} |",
        f"| PyTorch | {machine['torch']} |",
    ]))
    rows = ["| threads | case | NumPy backend / PyTorch | Numba backend / PyTorch "
            "| Numba / NumPy |", "| --- | --- | --- | --- | --- |"]
    for config in backends["configs"]:
        for case in config["cases"]:
            ratio = case.get("ratio_to_torch", {})
            rows.append(f"| {config['n_threads']} | {case['name']} ({case['shape']}) "
                        f"| {cell(ratio.get('numpy'))} | {cell(ratio.get('numba'))} "
                        f"| {cell(case.get('numba_over_numpy'))} |")
    show("\n".join(rows))

# %% [markdown]
# Read the two-thread rows with care: on two cores already busy with other
# processes, PyTorch's two-thread pool sometimes waited far longer than its
# work took, and a ratio to PyTorch far below 1 there measures that
# contention, not the kernels. The Numba / NumPy column compares two sides
# that both run these loops on one thread (only the GEMMs of
# `Network.gradients` use BLAS threads), timed within the same rounds.
#
# Kept on NumPy although a fused kernel exists (`backend.NUMPY_IS_FASTER`),
# and why; the last rows of the table time those kernels directly, the NumPy
# one against the fused one:

# %% tags=["hide-input"]
if backends:
    show("\n".join(f"- `{name}`: {why}" for name, why in backends["numpy_is_faster"].items()))

# %% [markdown]
# Kept serial (`backend.NOT_PARALLEL`): a `numba.prange` on the row loop was
# tried for kernels whose rows are independent, by timing each printed kernel
# against the same loops with the row loop made parallel. Ratios to the serial
# kernel, median [quartiles] of interleaved rounds:

# %% tags=["hide-input"]
if backends and backends.get("prange"):
    rows = ["| kernel | shape | dtype | prange, 1 thread / serial | prange, 2 threads / serial |",
            "| --- | --- | --- | --- | --- |"]
    for p in backends["prange"]:
        rows.append(f"| `{p['kernel']}` | {p['shape']} | {p['dtype']} "
                    f"| {cell(p.get('prange_1_thread_over_serial'))} "
                    f"| {cell(p.get('prange_2_threads_over_serial'))} |")
    show("\n".join(rows))
    show("\n".join(f"- `{name}`: {why}" for name, why in backends.get("not_parallel", {}).items()))

# %% [markdown]
# ### What the second backend costs
#
# Compiling: each kernel is compiled by Numba on its first call for each dtype
# and array layout, and written to Numba's on-disk cache (`cache=True`; the
# directory is `BACKPROP_DERIVED_CACHE_DIR` where the package directory is
# read-only). Below, the first forward + backward of each case in a fresh
# process, minus a second one: *cold* with an empty cache, *warm* reading it;
# and the first one-epoch `fit` of a new small `Network(backend="numba")` in
# that process (the second epoch in brackets).

# %% tags=["hide-input"]
if backends and "compile" in backends:
    comp = backends["compile"]
    cold, warm = comp.get("cold", {}), comp.get("warm", {})
    if "first_call_s" in cold and "first_call_s" in warm:
        rows = ["| case | first call, cold cache | first call, warm cache |", "| --- | --- | --- |"]
        rows.append(f"| `import numba` | {cold['import_numba_s']:.2f} s "
                    f"| {warm['import_numba_s']:.2f} s |")
        for name, seconds in cold["first_call_s"].items():
            rows.append(f"| {name} | {seconds:.2f} s | {warm['first_call_s'][name]:.3f} s |")
        for name, first in cold.get("fit_epoch", {}).items():
            again = warm.get("fit_epoch", {}).get(name)
            if again:
                rows.append(f"| {name}, first (second) | {first['first_s']:.3f} s "
                            f"({first['second_s']:.4f} s) | {again['first_s']:.3f} s "
                            f"({again['second_s']:.4f} s) |")
        size = backends.get("installed_mb", {})
        show("\n".join(rows) + "\n\nInstalled size: " + ", ".join(
            f"{name} {mb:.0f} MB" for name, mb in size.items() if mb) + ".")
