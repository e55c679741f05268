"""The benchmark harness (issue 5): right answers and a working pipe, no timings.

Nothing here asserts how fast anything is: the machine is shared and noisy.
What is tested is that every contender computes the same gradients as the
reference, that the reference itself agrees with finite differences, that
``python -m benchmarks --quick`` runs end to end, and that the page
docs/performance.py reads what the harness writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
# benchmarks/ is a top-level package of the repository, not of the installed
# distribution: make it importable however pytest was started.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import contenders as bc
from benchmarks import harness, loops
from benchmarks.prototype import PrototypePass

SMALL = [
    bc.Config("2-3-2 f64", (2, 3, 2), ("tanh", "softmax"), "cross_entropy", "float64", 7),
    bc.Config("5-4-3-3 f64", (5, 4, 3, 3), ("tanh", "tanh", "softmax"), "cross_entropy", "float64", 6),
    bc.Config("6-5-4 f32", (6, 5, 4), ("tanh", "softmax"), "cross_entropy", "float32", 9),
]  # fmt: skip


def network_importable() -> bool:
    try:
        from backprop_derived import Network  # noqa: F401
    except ImportError:
        return False
    return True


def contender_fns(problem: bc.Problem) -> dict:
    fns = {
        "numpy": bc.handwritten_numpy(problem),
        "loop": bc.per_example_loop(problem),
    }
    for fresh in (False, True):  # the kernel sequence recommended to the generator
        proto = PrototypePass(problem.weights, problem.biases, problem.config.m, fresh)
        fns[f"prototype fresh={fresh}"] = lambda proto=proto: proto(problem.X, problem.Y)
    if network_importable():
        fns["network"] = bc.derived_network(problem)
    if bc.torch_version() is not None:
        fns["pytorch"] = bc.pytorch_autograd(problem, num_threads=1)
    return fns


@pytest.mark.parametrize("config", SMALL, ids=lambda c: c.name)
def test_contenders_agree_with_reference(config):
    problem = bc.make_problem(config, seed=3)
    reference = bc.reference_gradients(problem)
    for name, fn in contender_fns(problem).items():
        report = bc.compare(fn(), reference, problem.dtype)
        assert report["ok"], (name, report)
        assert report["dtype_preserved"], name


def test_reference_agrees_with_finite_differences():
    """The reference is itself checked, independently, by central differences."""
    problem = bc.make_problem(SMALL[1], seed=4)
    loss, dW, db = bc.reference_gradients(problem)
    params = [*problem.weights, *problem.biases]
    grads = [*dW, *db]
    eps = 1e-6
    for p, g in zip(params, grads, strict=True):
        for idx in np.ndindex(p.shape):
            saved = p[idx]
            p[idx] = saved + eps
            plus = bc.reference_gradients(problem)[0]
            p[idx] = saved - eps
            minus = bc.reference_gradients(problem)[0]
            p[idx] = saved
            assert (plus - minus) / (2 * eps) == pytest.approx(g[idx], rel=1e-6, abs=1e-9)
    assert np.isfinite(loss)


def test_compare_catches_wrong_gradients_and_upcasts():
    problem = bc.make_problem(SMALL[2])
    reference = bc.reference_gradients(problem)
    loss, dW, db = bc.handwritten_numpy(problem)()
    assert bc.compare((loss, dW, db), reference, problem.dtype)["ok"]

    wrong = [w.copy() for w in dW]
    wrong[0][0, 0] += 1e-2 * np.abs(wrong[0]).max()
    report = bc.compare((loss, wrong, db), reference, problem.dtype)
    assert not report["ok"]
    assert report["worst"] == "dW[0]"

    upcast = [w.astype(np.float64) for w in dW]
    report = bc.compare((loss, upcast, db), reference, problem.dtype)
    assert not report["ok"]
    assert not report["dtype_preserved"]

    nan = [w.copy() for w in dW]
    nan[1][0, 0] = np.nan
    assert not bc.compare((loss, nan, db), reference, problem.dtype)["ok"]


LOOPS = [
    loops.LoopConfig("5-4-3 f64", (5, 4, 3), "float64", 4, 18),  # a short last batch of 2
    loops.LoopConfig("6-5-4-3 f32", (6, 5, 4, 3), "float32", 8, 32),
]


@pytest.mark.parametrize("config", LOOPS, ids=lambda c: c.name)
def test_training_loops_end_with_the_same_weights(config):
    problem = loops.make_loop_problem(config)
    initial = [p.copy() for p in (*problem.weights, *problem.biases)]
    reference = loops._copy(loops.numpy_loop(problem)())
    # the epoch really trained: the hand-written loop moved every weight matrix
    assert all(not np.array_equal(a, b) for a, b in zip(reference[0], initial, strict=False))
    fns = {"fit": loops.network_fit(problem)}
    if bc.torch_version() is not None:
        fns["pytorch"] = loops.pytorch_loop(problem, num_threads=1)
    for name, fn in fns.items():
        for _ in range(2):  # every call starts again from the initial weights
            check = loops.same_weights(fn(), reference, problem.dtype)
            assert check["ok"], (name, check)


def test_same_weights_catches_a_different_epoch():
    config = LOOPS[0]
    problem = loops.make_loop_problem(config)
    reference = loops._copy(loops.numpy_loop(problem)())
    shuffled = loops.make_loop_problem(loops.LoopConfig(**{**config.__dict__, "seed": 1}))
    # different data and shuffling: the weights must not pass as the same
    assert not loops.same_weights(loops.numpy_loop(shuffled)(), reference, problem.dtype)["ok"]
    W, b = reference
    nudged = ([W[0] * (1 + 1e-6), *W[1:]], b)
    assert not loops.same_weights(nudged, reference, problem.dtype)["ok"]


def test_gemm_flops_counts_each_product_once():
    # 784-256-128-10: forward and dW products 784*256 + 256*128 + 128*10 each,
    # dA products for the two layers above the input only; 2 flops per multiply-add.
    m = 256
    forward = m * (784 * 256 + 256 * 128 + 128 * 10)
    dA = m * (256 * 128 + 128 * 10)
    assert bc.gemm_flops((784, 256, 128, 10), m) == 2 * (2 * forward + dA)


def test_bare_gemms_do_the_products_of_the_pass():
    problem = bc.make_problem(SMALL[1])
    bc.bare_gemms(problem)()  # runs, shapes line up, returns nothing


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> Path:
    """One end-to-end run of `python -m benchmarks --quick`, in a subprocess as make bench does."""
    out = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_quick_run_writes_valid_results(quick_results):
    results = json.loads(quick_results.read_text())
    harness.validate(results)
    assert results["quick"] is True
    assert [c["name"] for c in results["configs"]] == [c.name for c in harness.QUICK_CONFIGS]
    for cfg in results["configs"]:
        contenders = cfg["contenders"]
        for name in ("bare_gemms", "numpy", "loop"):
            assert contenders[name]["status"] == "measured"
        assert contenders["bare_gemms"]["ratio_to_gemms"]["median"] == 1.0
        assert contenders["numpy"]["ratio_to_numpy"]["median"] == 1.0
        torch_status = contenders["pytorch"]["status"]
        assert torch_status == ("not installed" if bc.torch_version() is None else "measured")
        if network_importable():
            assert contenders["network"]["status"] == "measured"
            assert contenders["network"]["check"]["ok"]
            assert cfg["memory"]["network"]["peak"] >= 0
    assert results["tooling"]["regenerate"].startswith("skipped")
    assert [c["name"] for c in results["training"]] == [c.name for c in loops.QUICK_LOOP_CONFIGS]
    for cfg in results["training"]:
        contenders = cfg["contenders"]
        assert contenders["numpy"]["ratio_to_numpy"]["median"] == 1.0
        if network_importable():
            assert contenders["fit"]["status"] == "measured"
            assert contenders["fit"]["check"]["ok"]
        torch_status = contenders["pytorch"]["status"]
        assert torch_status == ("not installed" if bc.torch_version() is None else "measured")


def test_no_torch_flag_records_the_skip(tmp_path):
    out = tmp_path / "results.json"
    assert harness.main(["--quick", "--no-torch", "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    harness.validate(results)
    for cfg in results["configs"]:
        assert cfg["contenders"]["pytorch"] == {
            "label": harness.LABELS["pytorch"],
            "status": "skipped (--no-torch)",
        }
    for cfg in results["training"]:
        assert cfg["contenders"]["pytorch"]["status"] == "skipped (--no-torch)"
        assert cfg["contenders"]["fit"]["ratio_to_pytorch"] is None


def run_page(results_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCHMARK_RESULTS": str(results_path), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-W", "error", str(ROOT / "docs" / "performance.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_page_reads_what_the_harness_writes(quick_results):
    proc = run_page(quick_results)
    assert proc.returncode == 0, proc.stderr
    assert "Network.gradients (derived)" in proc.stdout
    assert "Network.fit (derived)" in proc.stdout and "hand-written NumPy loop" in proc.stdout
    assert "No benchmark results" not in proc.stdout


def test_committed_results_are_a_full_valid_run():
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    harness.validate(results)
    assert results["quick"] is False
    assert [c["name"] for c in results["configs"]] == [c.name for c in harness.CONFIGS]
    assert [c["name"] for c in results["training"]] == [c.name for c in loops.LOOP_CONFIGS]
