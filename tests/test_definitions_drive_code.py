"""Editing a definition in the catalog changes the generated code (derived, not typed).

In a temporary copy of the repository, the dense layer's forward map, the L2
penalty and the squared-error loss are changed in `catalog.py`; `regenerate`
must rewrite the kernels, and the gradients of the regenerated runtime must
match central differences of an independent NumPy implementation of the
*changed* definitions, written here.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from backprop_derived.symbolic.codegen import GENERATED_DOCS, GENERATED_PACKAGE

# (old text, new text) in symbolic/catalog.py
EDITS = [
    # Z = 2 A W^T + 1 b^T
    ("(Z[i, r], Sum(A[i, t] * W[r, t], (t, 0, n_in - 1)) + b[r])",
     "(Z[i, r], 2 * Sum(A[i, t] * W[r, t], (t, 0, n_in - 1)) + b[r])"),
    # the penalty without its 1/2
    ("PENALTY = lam / (2 * m) * Sum(", "PENALTY = lam / m * Sum("),
    # squared error without its 1/2
    ('"squared_error": Sum((a[k] - y[k]) ** 2, (k, -oo, oo)) / 2,',
     '"squared_error": Sum((a[k] - y[k]) ** 2, (k, -oo, oo)),'),
]

CHECK = r"""
import json, sys
import numpy as np
import backprop_derived
from backprop_derived import Network
assert backprop_derived.__file__.startswith(sys.argv[1]), backprop_derived.__file__

lam = 0.3
net = Network([3, 4, 2], ["tanh", "identity"], loss="squared_error", l2=lam, seed=0)
rng = np.random.default_rng(1)
X, Y = rng.normal(size=(5, 3)), rng.normal(size=(5, 2))
m = X.shape[0]


def independent_cost(Ws, bs):
    # The changed definitions, written plainly: Z = 2 A W^T + b, L = sum (a - y)^2,
    # J = mean L + (lam / m) sum W^2 over the layers.
    a = X
    for l, (W, b) in enumerate(zip(Ws, bs)):
        z = 2 * a @ W.T + b
        a = np.tanh(z) if l == 0 else z
    return ((a - Y) ** 2).sum() / m + lam / m * sum((W ** 2).sum() for W in Ws)


loss, dW, db = net.gradients(X, Y)
Ws = [w.copy() for w in net.weights]
bs = [b.copy() for b in net.biases]
errors = {"loss": abs(loss - independent_cost(Ws, bs)) / abs(loss)}
eps = 1e-6
worst = 0.0
for params, grads in ((Ws, dW), (bs, db)):
    for P, G in zip(params, grads):
        for idx in np.ndindex(P.shape):
            old = P[idx]
            P[idx] = old + eps
            up = independent_cost(Ws, bs)
            P[idx] = old - eps
            down = independent_cost(Ws, bs)
            P[idx] = old
            worst = max(worst, abs((up - down) / (2 * eps) - G[idx]))
errors["gradient"] = worst
print(json.dumps(errors))
"""


# Pages 02-05 follow the seed's scalar derivation of the textbook layer
# z = b + sum a w, and prove their results equal to the engine's.
SCALAR_PAGES = ("02_output_layer.py", "03_hidden_layer.py", "04_biases.py", "05_any_depth.py")


def edited_copy(tmp_path, root):
    dst = tmp_path / "repo"
    shutil.copytree(root / "derivations", dst / "derivations",
                    ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copytree(root / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(root / GENERATED_DOCS, dst / GENERATED_DOCS)
    catalog = dst / "src" / "backprop_derived" / "symbolic" / "catalog.py"
    text = catalog.read_text()
    for old, new in EDITS:
        assert text.count(old) == 1, f"catalog.py no longer contains {old!r}"
        text = text.replace(old, new)
    catalog.write_text(text)
    return dst


def regenerate(dst):
    env = {**os.environ, "PYTHONPATH": str(dst / "src")}
    return subprocess.run(
        [sys.executable, "-m", "backprop_derived", "regenerate", "--root", str(dst)],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.mark.slow
def test_a_changed_layer_stops_the_textbook_pages_loudly(tmp_path, root):
    """The scalar pages no longer agree with a dense layer of 2 A W^T: regenerate says so."""
    dst = edited_copy(tmp_path, root)
    for page in (dst / "derivations").glob("[0-9][0-9]_*.py"):
        if page.name not in SCALAR_PAGES:
            page.unlink()  # only the pages under test, to keep this fast
    before = (dst / GENERATED_PACKAGE / "layers.py").read_bytes()
    result = regenerate(dst)
    assert result.returncode != 0
    assert "StepNotVerified" in result.stderr, result.stderr
    assert (dst / GENERATED_PACKAGE / "layers.py").read_bytes() == before


@pytest.mark.slow
def test_changed_definitions_change_the_generated_code(tmp_path, root):
    dst = edited_copy(tmp_path, root)
    for name in SCALAR_PAGES:
        (dst / "derivations" / name).unlink()
    before = (dst / GENERATED_PACKAGE / "layers.py").read_text()
    env = {**os.environ, "PYTHONPATH": str(dst / "src")}
    regen = regenerate(dst)
    assert regen.returncode == 0, regen.stderr
    after = (dst / GENERATED_PACKAGE / "layers.py").read_text()
    assert after != before

    run = subprocess.run([sys.executable, "-c", CHECK, str(dst)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    errors = json.loads(run.stdout)
    # float64 central differences with eps = 1e-6 on a cost of order 1:
    # truncation ~ eps^2 and rounding ~ 1e-16 / eps, both far below 1e-7.
    assert errors["loss"] < 1e-12, errors
    assert errors["gradient"] < 1e-7, errors


def test_the_edits_still_apply(root):
    """The anchors of the test above are still in the catalog (or it tests nothing)."""
    text = (Path(root) / "src" / "backprop_derived" / "symbolic" / "catalog.py").read_text()
    for old, _ in EDITS:
        assert text.count(old) == 1, old
