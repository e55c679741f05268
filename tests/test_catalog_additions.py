"""Definitions are data: one catalog line adds an entry, an edited definition changes the code.

* In a copy of the repository, one activation and one loss are added as one
  line each; ``regenerate`` succeeds with no page edited, and the project's own
  parametrised tests, which take their lists from the catalog, pass for them.
* Page 07 run on an edited loss and an edited cost exports kernels that
  follow the edit (the 1/m comes out of differentiating the cost).
"""

import os
import runpy
import shutil
import subprocess
import sys

import pytest
import sympy as sp

from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.catalog import L, a, i, k, m, y
from backprop_derived.symbolic.kernels import Kernel

# Entries a user might write, not in the catalog: a smooth activation with |z|
# in it and a loss with a square root. One line each, anchored after the last
# entry of each dictionary.
NEW_ACTIVATION = ("softsign", "z / (1 + Abs(z))")
NEW_LOSS = ("pseudo_huber", "Sum(sqrt(1 + (a[k] - y[k]) ** 2) - 1, (k, -oo, oo))")


NETWORK_CHECK = """
import sys
import numpy as np
import backprop_derived
from backprop_derived import Network
root, name = sys.argv[1], sys.argv[2]
assert backprop_derived.__file__.startswith(root), backprop_derived.__file__
net = Network([3, 4, 2], [name, name], loss="squared_error", seed=0)
rng = np.random.default_rng(0)
X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
loss, dW, db = net.gradients(X, Y)
w, e, worst = net.weights[0], 1e-5, 0.0
for idx in np.ndindex(w.shape):
    old = w[idx]
    w[idx] = old + e
    p = net.loss(X, Y)
    w[idx] = old - e
    q = net.loss(X, Y)
    w[idx] = old
    worst = max(worst, abs((p - q) / (2 * e) - dW[0][idx]))
assert worst < 1e-8 * max(1, abs(dW[0]).max()), worst
"""


def add_line(text: str, dictionary: str, name: str, expr: str) -> str:
    """``text`` with ``"name": expr,`` as the last entry of ``dictionary``."""
    start = text.index(f"{dictionary}: dict[str, sp.Expr] = {{")
    end = text.index("\n}\n", start)
    return text[:end] + f'\n    "{name}": {expr},' + text[end:]


@pytest.mark.slow
def test_one_line_each_adds_an_activation_and_a_loss(tmp_path, root):
    dst = tmp_path / "repo"
    shutil.copytree(root / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / "tests", dst / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "derivations").mkdir()
    for page in sorted((root / "derivations").glob("0[0-9]_*.py")):
        shutil.copy(page, dst / "derivations" / page.name)
    shutil.copy(root / "pyproject.toml", dst / "pyproject.toml")
    source = dst / "src" / "backprop_derived" / "symbolic" / "catalog.py"
    text = add_line(source.read_text(), "ACTIVATIONS", *NEW_ACTIVATION)
    source.write_text(add_line(text, "LOSSES", *NEW_LOSS))
    env = {**os.environ, "PYTHONPATH": str(dst / "src"), "OPENBLAS_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "backprop_derived", "regenerate", "--root", str(dst)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    generated = (dst / "src" / "backprop_derived" / "_generated")
    assert f"def {NEW_ACTIVATION[0]}_backward(" in (generated / "activations.py").read_text()
    assert f"def {NEW_LOSS[0]}__softmax_output(" in (generated / "losses.py").read_text()
    assert NEW_ACTIVATION[0] in (dst / "docs" / "generated" / "activations.md").read_text()
    # The new activation trains in a Network: its weight gradient against
    # central differences (float64, eps 1e-5: truncation ~1e-10, rounding ~1e-11).
    network = subprocess.run([sys.executable, "-c", NETWORK_CHECK, str(dst), NEW_ACTIVATION[0]],
                             capture_output=True, text=True, env=env, timeout=120)
    assert network.returncode == 0, network.stderr
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(dst),
         "-k", f"{NEW_ACTIVATION[0]} or {NEW_LOSS[0]}",
         "tests/test_catalog_gradients.py", "tests/test_generated_kernels.py"],
        cwd=dst, capture_output=True, text=True, env=env, timeout=900)
    assert tests.returncode == 0, tests.stdout[-4000:]
    assert " passed" in tests.stdout and "deselected" in tests.stdout


def exported(namespace, name):
    return next(e for e in namespace["EXPORTS"] if isinstance(e, Kernel) and e.name == name)


@pytest.mark.slow
def test_editing_a_loss_or_the_cost_changes_the_kernels(monkeypatch, root):
    page = str(root / "derivations" / "07_losses_x_activations.py")
    # run the page as `regenerate` does: for its kernels, its exercises unchecked
    from backprop_derived.symbolic import exercises

    monkeypatch.setattr(exercises, "CHECK_ANSWERS", False)
    before = runpy.run_path(page, run_name="__derivation__")
    # the squared error without its 1/2 (x2), the cost a third of the mean (/3)
    monkeypatch.setitem(catalog.LOSSES, "squared_error",
                        sp.Sum((a[k] - y[k]) ** 2, (k, -sp.oo, sp.oo)))
    monkeypatch.setattr(catalog, "COST", sp.Sum(L[i], (i, 0, m - 1)) / (3 * m))
    after = runpy.run_path(page, run_name="__derivation__")
    for name in ("squared_error__identity", "squared_error__identity_delta"):
        old, new = exported(before, name).expr, exported(after, name).expr
        assert sp.simplify(new / old) == sp.Rational(2, 3), name  # both edits took effect
    old = exported(before, "squared_error__identity").expr
    a_, y_ = sp.Symbol("a", real=True), sp.Symbol("y", real=True)
    assert sp.simplify(old - (a_ - y_) ** 2 / (2 * m)) == 0  # the mean: 1/m from the cost
