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
import sys
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


# --- Generated code: what docs/generated-code.md says about it ---------------

GENERATED = REPO_ROOT / "src/backprop_derived/_generated"


def _public_generated_functions() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(GENERATED.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                found.add((path.stem, node.name))
    return found


def _functions_the_runtime_calls() -> set[tuple[str, str]]:
    """(module, function) of every generated function that the runtime calls when
    `Network` and each layer class run forward and backward over the catalog."""
    from backprop_derived import layers as L
    from backprop_derived.symbolic import catalog
    from layer_examples import EXAMPLES

    called: set[tuple[str, str]] = set()
    prefix = str(GENERATED.resolve())

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(prefix):
            called.add((frame.f_code.co_filename.rsplit("/", 1)[-1][:-3], frame.f_code.co_name))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))

    def targets(loss: str, n: int) -> np.ndarray:
        if loss == "cross_entropy":
            return np.arange(6) % n
        if loss == "binary_cross_entropy":
            return (rng.uniform(size=(6, n)) > 0.5).astype(float)
        return rng.normal(size=(6, n))

    def forward_backward(layer, x, train=True):
        y = layer.forward(x, train=train)
        layer.backward(np.ones_like(y))

    sys.setprofile(profile)
    try:
        hidden = [a for a in catalog.ACTIVATIONS if catalog.is_elementwise(a)]
        for output, loss in catalog.output_pairs():
            for act in hidden:
                net = Network(layer_sizes=[3, 4, 2], activations=[act, output], loss=loss,
                              l2=0.1, seed=0)
                Y = targets(loss, 2)
                net.gradients(X, Y)
                net.loss(X, Y)  # the loss value and the forward pass call kernels
                net.forward(X)  # of their own (softmax, the plain loss)
            model = L.Sequential([L.Dense(3, 2, seed=0), L.Activation(output)], loss=loss)
            model.gradients(X, targets(loss, 2))
        for act in hidden:
            forward_backward(L.Activation(act), X)
        for make in EXAMPLES.values():
            layer, x = make(rng)
            forward_backward(layer, x)
            if hasattr(layer, "running_mean"):  # evaluation mode: the running statistics
                forward_backward(layer, x, train=False)
    finally:
        sys.setprofile(None)
    return called


_TABLE_ROW = re.compile(r"<tr>\s*<td><code>(\w+)</code></td>(.*?)</tr>", re.DOTALL)


def test_every_generated_function_runs_in_the_runtime_or_in_a_test(
        built_site: BuiltSite) -> None:
    # The page lists the tests that call a function directly, and says
    # "through the runtime" for the others: those must be called by Network
    # or by a layer class.
    page = (built_site.path / "generated-code" / "index.html").read_text(encoding="utf-8")
    public = _public_generated_functions()
    modules = {module for module, _ in public}
    sections = re.split(r'<h2 id="([^"]+)">', page)[1:]
    through_runtime, listed = set(), set()
    for module, body in zip(sections[::2], sections[1::2], strict=True):
        if module not in modules:  # the LaTeX tables and the other sections
            continue
        for name, cells in _TABLE_ROW.findall(body):
            listed.add((module, name))
            if "through the runtime" in cells:
                through_runtime.add((module, name))
    assert listed == public, f"functions missing from the page: {sorted(public - listed)}"
    assert through_runtime, "no function is marked 'through the runtime'"
    not_called = sorted(through_runtime - _functions_the_runtime_calls())
    assert not not_called, ("marked 'through the runtime' but called neither by the runtime "
                            f"nor directly by a test: {not_called}")


# Modules of symbolic/ that print Python code; the page says none of them edits
# printed text. LaTeX printing (display.py, DerivationLatexPrinter, the
# Markdown tables of render_latex) is not code.
_LATEX_ONLY = {"DerivationLatexPrinter", "render_latex"}


def _edits_of_text(path) -> list[str]:
    """Calls that rewrite text: re.sub / pattern.sub, and str.replace("old", ...)."""
    found = []

    def visit(node, latex: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = latex or (isinstance(child, ast.ClassDef | ast.FunctionDef)
                               and child.name in _LATEX_ONLY)
            if not inside and isinstance(child, ast.Call) and \
                    isinstance(child.func, ast.Attribute):
                attr, args = child.func.attr, child.args
                if attr in ("sub", "subn"):
                    found.append(f"{path.name}:{child.lineno} .{attr}(")
                # SymPy's expr.replace(query, value) takes callables, str.replace strings.
                if attr == "replace" and args and isinstance(args[0], ast.Constant) \
                        and isinstance(args[0].value, str):
                    found.append(f"{path.name}:{child.lineno} .replace({args[0].value!r}, ...)")
            visit(child, inside)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def test_the_code_printers_never_edit_printed_text() -> None:
    symbolic = REPO_ROOT / "src/backprop_derived/symbolic"
    printers = [p for p in sorted(symbolic.glob("*.py"))
                if p.name != "display.py" and "numpy." in p.read_text(encoding="utf-8")]
    assert any(p.name == "printers.py" for p in printers)
    edits = [e for p in printers for e in _edits_of_text(p)]
    assert not edits, "printed code edited as text:\n" + "\n".join(edits)


def test_convolution_page_describes_the_generated_bias_gradient() -> None:
    page = (REPO_ROOT / "derivations/13_convolution.py").read_text(encoding="utf-8")
    claim = page[page.index("**Bias gradient.**"):].split("\n# *")[0]
    assert "numpy.ones" in claim and "numpy.matmul" in claim, claim
    for name in ("conv1d_bias_gradient", "conv2d_bias_gradient"):
        body = _statements("conv", name)
        assert "numpy.ones" in body and "numpy.matmul" in body, f"{name}: {body}"
        assert "add.reduce" not in body, f"{name} reduces again: {body}"


def test_pooling_page_describes_the_generated_kernels() -> None:
    # The "Kernels" section of the Pooling page is prose about the printed code:
    # each of its claims is checked here against the generated module.
    page = (REPO_ROOT / "derivations/15_pooling.py").read_text(encoding="utf-8")
    claim = page[page.index("# ## Kernels"):].split("# %%")[0]
    for said in ("sliding_window_view", "numpy.argmax", "identity matrix", "tap scatter"):
        assert said in claim, said
    source = (REPO_ROOT / "src/backprop_derived/_generated/pool.py").read_text()
    functions = {node.name: node for node in ast.parse(source).body
                 if isinstance(node, ast.FunctionDef)}
    for dims in (1, 2):
        for kind in ("avg", "max"):
            forward = _statements("pool", f"{kind}_pool{dims}d_forward")
            assert "sliding_window_view" in forward, forward
            if kind == "max":  # the selection: rows of an identity matrix at the argmax
                assert "numpy.eye" in forward and "numpy.argmax" in forward, forward
            backward = functions[f"{kind}_pool{dims}d_backward"]
            loops = [n for n in ast.walk(backward) if isinstance(n, ast.For)]
            adds = [n for n in ast.walk(backward) if isinstance(n, ast.AugAssign)]
            # one loop per spatial axis over the taps, one strided += per tap
            assert len(loops) == dims and len(adds) == 1, ast.unparse(backward)
            target = adds[0].target
            assert isinstance(target, ast.Subscript) and ":stride" in ast.unparse(target), (
                ast.unparse(target))
