"""What the hand-written pages say about the runtime, checked against it.

The runtime column of the Notation table is not typed: the build hook replaces
each `<!-- kernel:module.name -->` with the statements of that generated
function. These tests check that the built page shows them, and that the
claims the prose makes around them (the 1/m is inside dZ and no backward
kernel divides by m again; the bias gradient is a product with a ones vector)
hold for the code that runs.
"""

from __future__ import annotations

import ast
import html
import inspect
import re

import numpy as np
import pytest
from _sitebuild import REPO_ROOT, BuiltSite

from backprop_derived import Network
from backprop_derived._generated import layers

pytestmark = pytest.mark.site

KERNEL_MARKER = re.compile(r"<!-- kernel(-doc)?:(\w+)\.(\w+) -->")


def _statements(module: str, name: str) -> str:
    source = (REPO_ROOT / "src/backprop_derived/_generated" / f"{module}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            body = [s for s in node.body
                    if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                    and not isinstance(s, ast.Return)]
            return "; ".join(ast.unparse(s) for s in body)
    raise AssertionError(f"{module}.{name} is not a generated function")


def test_notation_runtime_column_is_the_generated_code(built_site: BuiltSite) -> None:
    page_source = (REPO_ROOT / "docs" / "notation.md").read_text(encoding="utf-8")
    markers = KERNEL_MARKER.findall(page_source)
    assert len(markers) >= 4, "the Notation table no longer pulls its runtime column from code"
    built = html.unescape((built_site.path / "notation" / "index.html").read_text())
    for doc, module, name in markers:
        if doc:
            continue
        assert _statements(module, name) in built, (
            f"the built Notation page does not show the statements of {module}.{name}")


def _call(kernel, **arrays):
    """Call a generated kernel by parameter name (signatures are generated too)."""
    params = inspect.signature(kernel).parameters
    missing = set(params) - set(arrays)
    assert not missing, f"{kernel.__name__} now takes {sorted(missing)}; update the page"
    return kernel(**{p: arrays[p] for p in params})


def test_the_weight_and_bias_kernels_do_not_divide_by_m() -> None:
    rng = np.random.default_rng(0)
    dz, a_prev = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    dw = _call(layers.weight_gradient, dz=dz, a_prev=a_prev, out=np.empty((3, 4)))
    np.testing.assert_allclose(dw, dz.T @ a_prev, rtol=1e-12)
    db = _call(layers.bias_gradient, dz=dz, ones=np.ones(5), out=np.empty(3))
    np.testing.assert_allclose(db, dz.sum(axis=0), rtol=1e-12)


def test_dz_is_the_derivative_of_the_mean_cost() -> None:
    # With the 1/m inside dZ, m copies of one example give the gradient of that
    # one example: the mean of equal terms. A kernel that divided by m again,
    # or a dZ without the 1/m, would scale it by m.
    net = Network(layer_sizes=[3, 4, 2], activations=["tanh", "softmax"],
                  loss="cross_entropy", seed=1)
    x = np.array([[0.3, -1.2, 0.8]])
    label = np.array([1])
    loss_1, dW_1, db_1 = net.gradients(x, label)
    loss_m, dW_m, db_m = net.gradients(np.repeat(x, 7, axis=0), np.repeat(label, 7))
    assert loss_m == pytest.approx(loss_1, rel=1e-12)
    for one, many in zip(dW_1 + db_1, dW_m + db_m, strict=True):
        np.testing.assert_allclose(many, one, rtol=1e-10, atol=1e-15)
