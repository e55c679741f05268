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


def find_results() -> Path | None:
    """$LAYER_BENCHMARK_RESULTS, else benchmarks/layer_results.json above the working directory."""
    if "LAYER_BENCHMARK_RESULTS" in os.environ:
        path = Path(os.environ["LAYER_BENCHMARK_RESULTS"])
        return path if path.is_file() else None
    here = Path.cwd().resolve()
    candidates = [d / "benchmarks" / "layer_results.json" for d in (here, *here.parents)]
    return next((p for p in candidates if p.is_file()), None)


def show(markdown: str) -> None:
    """Markdown in the rendered page, plain text when run as a script."""
    try:
        get_ipython  # noqa: B018 (defined only inside a Jupyter kernel)
    except NameError:
        print(markdown)
        return
    from IPython.display import Markdown, display

    display(Markdown(markdown))


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

# %%
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
# What the figures show, layer by layer. The microseconds and pass counts
# quoted below were measured once, on the same machine, one thread, float32,
# while this page was written; they are not in the JSON.
#
# - **Dense, Residual, SelfAttention: parity, or faster in float64.** Their
#   time is matrix products, and a matrix product costs the same whoever calls
#   it; what is left is which BLAS each library links (NumPy's OpenBLAS,
#   PyTorch's own). PyTorch's attention is the fused
#   `scaled_dot_product_attention`, yet one head at $T = 64$ gains little from
#   fusing: its time, too, is the projections and the two batched products.
# - **LayerNorm and BatchNorm: slower, in both halves.** These are all
#   elementwise work and reductions over a 256 × 512 array, where NumPy makes
#   one pass over memory per operation and allocates every intermediate:
#   $x - \mu$, its square, the sum, the division, the scale, the shift are
#   separate loops, and the backward kernel is a dozen more. PyTorch's
#   normalization kernels compute the statistics and the output in one or two
#   fused loops. Counted in units of one NumPy `add` over the array, our
#   LayerNorm forward took about 20 such passes and its backward 34, PyTorch's
#   4 and 7. A small part is per call: `einsum(..., optimize=True)`, which the
#   LayerNorm backward uses for one row-wise reduction, searches for a
#   contraction order on every call (54 µs against 25 µs without `optimize`
#   here). The input checks (`isfinite` over X) cost one pass.
# - **Embedding: faster, in the backward.** The forward is one `take` in both.
#   The table gradient, the sum of the rows of dY over the positions of each
#   id, is generated as the product of the one-hot matrix of the ids (a SciPy
#   sparse COO array with its ones at $(\mathrm{ids}_s, s)$) with dY: one
#   compiled pass that adds each row of dY into its row of a zeroed table, in
#   dY's dtype. That kernel took 0.31 ms in float32 where PyTorch's whole
#   backward took 0.87 ms (on a loaded machine; our layer's backward adds
#   the `isfinite` check of dY, 0.06 ms).
# - **Conv1d and Conv2d: the input gradient.** Both sides lower a convolution to
#   a matrix product over windows, but ours builds its windows with
#   `sliding_window_view` and `tensordot`, which copies the strided view into a
#   contiguous array first, and the input gradient is the *full* correlation of
#   the zero-padded dY with the flipped kernel: its window array is the largest
#   of the three. That kernel alone took 3.1 ms of our 5.1 ms Conv1d backward
#   and 5.2 ms of our 7.0 ms Conv2d backward (PyTorch's whole backward: 2.8 and
#   3.9 ms). PyTorch multiplies by the kernel first and scatters the result back
#   into the input's shape (col2im), which touches less memory.
# - **RNN: the forward.** The recurrence is 64 steps of small products
#   (32 × 64 by 64 × 64), so the cost is per call, not per flop: each step of our
#   forward is two `einsum(..., optimize=True)` calls, and one took 18 µs where
#   `matmul` on the same operands took 6 µs; over 64 steps that is about the
#   gap to PyTorch's forward. The backward (one `einsum` per step, then three
#   products over all the steps at once) is at parity.
# - **Dropout: faster, for a reason that is not ours.** The arithmetic is the
#   same, one multiplication by a scaled mask. The time is in drawing the mask:
#   NumPy's generator fills the uniform numbers of 131,072 entries far faster
#   than PyTorch's CPU `bernoulli_`. Our backward, which does no drawing, is
#   about as fast as PyTorch's or slower, because `dY * mask / (1 - p)` is two
#   passes where PyTorch makes one.
#
# The pattern: where the work is a few large matrix products, the generated
# NumPy code is as fast as PyTorch; where it is many cheap elementwise
# operations or many small calls, NumPy's one loop (and one allocation) per
# operation costs a factor of 1.5 to 3. Closing that gap would take either
# generating fused loops (numexpr, Numba) or fewer, larger NumPy calls in the
# generated kernels (`out=` buffers, `matmul` for the per-step products,
# `einsum` without `optimize` where the contraction has only two operands).
#
# The whiskers are wide for some layers: other processes used most of the two
# cores while this ran, and a sample that lost its core to another process
# has a ratio far from the rest. The median of the per-round ratios is robust
# to that; the quartiles show how much of it there was.
