"""Generated files: golden, reproducible, atomic (one-line additions: test_catalog_additions)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backprop_derived.symbolic.codegen import GENERATED_DOCS, GENERATED_PACKAGE
from backprop_derived.symbolic.regenerate import check, render_all


def run_cli(root: Path, *args, hashseed="0", extra_env=None):
    env = {**os.environ, "PYTHONHASHSEED": hashseed, **(extra_env or {})}
    return subprocess.run(
        [sys.executable, "-m", "backprop_derived", "regenerate", "--root", str(root), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )


@pytest.fixture(scope="module")
def fresh(root):
    return render_all(root)


def test_committed_files_equal_a_fresh_regeneration(root, fresh):
    diff = check(root, fresh)
    assert diff == "", "generated files are stale; run `make regenerate`:\n" + diff


def test_every_generated_file_has_the_header(fresh):
    for rel, text in fresh.items():
        head = "\n".join(text.splitlines()[:3])
        assert "@generated" in head and "backprop-derived regenerate" in head, rel
        assert "derivations/" in head, rel


@pytest.fixture
def repo_copy(tmp_path, root):
    """The parts of the repository that regenerate reads and writes."""
    dst = tmp_path / "repo"
    shutil.copytree(root / "derivations", dst / "derivations",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copytree(root / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / GENERATED_DOCS, dst / GENERATED_DOCS)
    return dst


def snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for folder in (GENERATED_PACKAGE, GENERATED_DOCS):
        for p in sorted((root / folder).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def test_check_reports_a_diff_writes_nothing_and_ignores_the_hash_seed(repo_copy):
    """One run under another hash seed: the hand edit and a stale file are the whole diff.

    The golden test above regenerated under this process's (random) hash seed;
    here PYTHONHASHSEED=4242 must reproduce every other byte.
    """
    target = repo_copy / GENERATED_PACKAGE / "layers.py"
    edited = target.read_text().replace("numpy.matmul(dz, w, out=out)",
                                        "numpy.matmul(dz, w, out=out)  # hand edit")
    target.write_text(edited)
    stale = repo_copy / GENERATED_PACKAGE / "stale.py"
    stale.write_text("# left behind\n")
    before = snapshot(repo_copy)
    result = run_cli(repo_copy, "--check", hashseed="4242",
                     extra_env={"PYTHONPATH": str(repo_copy / "src")})
    assert result.returncode == 1
    removed = [line for line in result.stdout.splitlines()
               if line.startswith("-") and not line.startswith("---")]
    added = [line for line in result.stdout.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    assert removed == ["-    numpy.matmul(dz, w, out=out)  # hand edit", "-# left behind"]
    assert added == ["+    numpy.matmul(dz, w, out=out)"]
    assert "stale.py" in result.stdout
    assert snapshot(repo_copy) == before


def test_a_failing_derivation_modifies_no_file(repo_copy):
    # A false step: claim sigmoid' = a (1 + a). The checked chain must refuse it.
    broken = repo_copy / "derivations" / "99_broken.py"
    broken.write_text(
        "import sympy as sp\n"
        "from backprop_derived.symbolic.checked import Chain\n"
        "z, a = sp.symbols('z a', real=True)\n"
        "g = 1 / (1 + sp.exp(-z))\n"
        "Chain(sp.Symbol('g1'), sp.diff(g, z), 'diff', definitions={a: g})"
        ".step(a * (1 + a), 'wrong')\n"
    )
    # A fast derivation that succeeds before the broken one runs.
    for script in (repo_copy / "derivations").glob("[0-9][0-9]_*.py"):
        if script.name not in ("08_regularization.py", "99_broken.py"):
            script.unlink()
    (repo_copy / GENERATED_PACKAGE / "layers.py").write_text("# stale\n")
    before = snapshot(repo_copy)
    result = run_cli(repo_copy, extra_env={"PYTHONPATH": str(repo_copy / "src")})
    assert result.returncode != 0
    assert "StepNotVerified" in result.stderr and "wrong" in result.stderr
    assert snapshot(repo_copy) == before
