"""The layer benchmark (issue 10): right answers and a working pipe, no timings.

Nothing here asserts how fast anything is. What is tested is that the
benchmark's checks pass for every layer at tiny sizes (without PyTorch when it
is absent: only the comparison with it is skipped), that a contender which
disagrees is reported as such and not timed, and that the page
docs/layers/speed.py reads what the benchmark writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks import layers as bl
from benchmarks.contenders import torch_version

ROOT = Path(__file__).resolve().parent.parent
HAVE_TORCH = torch_version() is not None
TINY = bl.cases(tiny=True)


@pytest.fixture(scope="module")
def quick_args():
    return bl.parse_args(["--quick"])


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.name)
def test_every_layer_agrees_at_tiny_sizes(case):
    setup = bl.make_setup(case, seed=3)
    contender = bl.torch_contender(setup) if HAVE_TORCH else None
    checks = bl.check_case(setup, contender)
    assert set(checks) == ({"central_differences"}
                           | ({"float64"} if case.dtype == "float32" else set())
                           | ({"torch"} if HAVE_TORCH else set()))
    for name, check in checks.items():
        assert check["ok"], (name, check)


@pytest.mark.parametrize("case", [c for c in TINY if c.dtype == "float32"],
                         ids=lambda c: c.spec.name)
def test_without_a_contender_our_checks_run_and_nothing_is_timed(case, quick_args):
    res = bl.run_case(case, quick_args, factory=None)
    assert "torch" not in res["checks"]
    assert all(c["ok"] for c in res["checks"].values()), res["checks"]
    assert res["status"] == "PyTorch not installed: not timed"
    assert "ratio" not in res


@pytest.mark.parametrize("case", [c for c in TINY if c.spec.handwritten],
                         ids=lambda c: c.name)
def test_the_handwritten_floor_computes_the_same_layer(case):
    """The NumPy-by-hand floor is timed only if it agrees; here it must, with a
    batch whose statistics are far from 0 and 1 (a wrong axis or a dropped
    term shows)."""
    setup = bl.make_setup(case, seed=5)
    setup.X[...] = 3 + 2 * setup.X
    hand = case.spec.handwritten(setup)
    check = bl.agree(hand.result(), setup.ours.result(), case.dtype)
    assert check["ok"], check


def _wrong_numpy_contender(setup: bl.Setup) -> bl.Contender:
    """Our own layer, with one gradient 1% off: must be reported, not timed."""
    honest = bl.ours_contender(setup.layers, setup.X, setup.dY)

    def result():
        out = honest.result()
        key = "dX" if "dX" in out else next(k for k in out if k != "Y")
        out[key] = out[key] * np.asarray(1.01, out[key].dtype)
        return out

    return bl.Contender("wrong", honest.run, honest.forward, honest.make_backward, result,
                       "numpy")


@pytest.mark.parametrize("case", [c for c in TINY if c.dtype == "float32"],
                         ids=lambda c: c.spec.name)
def test_a_wrong_contender_is_reported_as_disagreeing(case, quick_args):
    res = bl.run_case(case, quick_args, factory=_wrong_numpy_contender)
    assert not res["checks"]["torch"]["ok"]
    assert res["status"].startswith("disagrees (") and res["status"].endswith("not timed")
    assert "ratio" not in res and "median_s" not in res


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch not installed")
def test_a_torch_module_with_a_wrong_weight_is_reported(quick_args):
    def off(setup):
        import torch

        contender = bl.torch_contender(setup)
        with torch.no_grad():
            contender.module[0].weight[0, 0] += 0.1
        return contender

    res = bl.run_case(bl.Case(bl.SPEC["Dense + ReLU"], "float64", tiny=True), quick_args, off)
    assert res["status"].startswith("disagrees ("), res["status"]
    assert res["checks"]["torch"]["max_rel_err"] > 1e-3 and "ratio" not in res


def test_ours_failing_its_own_check_is_not_timed(quick_args, monkeypatch):
    """A backward that drops a term fails the central differences before any timing."""
    from backprop_derived.layers import LayerNorm

    original = LayerNorm.backward

    def without_beta(self, dY):
        dX = original(self, dY)
        self.grads["beta"] = np.zeros_like(self.grads["beta"])
        return dX

    monkeypatch.setattr(LayerNorm, "backward", without_beta)
    res = bl.run_case(bl.Case(bl.SPEC["LayerNorm"], "float64", tiny=True), quick_args, None)
    assert res["checks"]["central_differences"]["worst"] == "d0.beta"
    assert res["status"] == "ours fails central_differences: not timed"


def run(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "error", *argv], cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})},
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("flags", [[], ["--no-torch"]], ids=["torch-if-installed", "no-torch"])
def test_quick_run_and_the_page_read_it(tmp_path, flags):
    out = tmp_path / "layer_results.json"
    proc = run(["-m", "benchmarks.layers", "--quick", "--only", "Dropout", "--output",
                str(out), *flags])
    assert proc.returncode == 0, proc.stderr
    results = json.loads(out.read_text())
    bl.validate(results)
    assert [c["name"] for c in results["cases"]] == ["Dropout float32", "Dropout float64"]
    timed = HAVE_TORCH and not flags
    assert all((c["status"] == "measured") == timed for c in results["cases"])
    page = run([str(ROOT / "docs" / "layers" / "speed.py")], {"LAYER_BENCHMARK_RESULTS": str(out)})
    assert page.returncode == 0, page.stderr
    assert "Dropout" in page.stdout and "No layer benchmark results" not in page.stdout


def test_committed_results_are_a_full_valid_run():
    results = json.loads((ROOT / "benchmarks" / "layer_results.json").read_text())
    bl.validate(results)
    assert results["quick"] is False
    assert [c["name"] for c in results["cases"]] == [c.name for c in bl.cases()]
    assert all(c["status"] == "measured" for c in results["cases"])
