"""The live panel's entry point (backprop_derived.live), under CPython.

The browser runs the same module under Pyodide (tests/site/test_live_panel.py). Here:
for the catalog's own activations and losses the kernels it prints must be
the ones `regenerate` committed (the pages derive those independently); for
expressions not in the catalog, the printed kernels are run with NumPy and
compared with central differences of a NumPy definition written in the test;
every kind of bad input gets a message, not an exception.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from backprop_derived import live
from backprop_derived.symbolic.catalog import ACTIVATIONS, LOSSES, REQUIRED_OUTPUT, is_elementwise

GENERATED = Path(live.__file__).parent / "_generated"
ELEMENTWISE = [name for name in ACTIVATIONS if is_elementwise(name)]


def functions(module_text: str) -> dict[str, str]:
    """``{name: source}`` of every top-level function of a generated module."""
    chunks = re.split(r"\n(?=def )", module_text)
    return {re.match(r"def (\w+)", c).group(1): c.rstrip() + "\n"
            for c in chunks if c.startswith("def ")}


def run(module_text: str, name: str, *args):
    """Call the kernel ``name`` of a printed module on float64 arrays, with scratch buffers."""
    namespace: dict = {}
    exec(compile(module_text, "<live kernel>", "exec"), namespace)
    shape = np.shape(args[0])
    scratch = [np.empty(shape) for _ in range(8)]
    kernel = namespace[name]
    params = kernel.__code__.co_varnames[:kernel.__code__.co_argcount]
    named = dict(zip([p for p in params if p not in ("out", "scratch")], args, strict=True))
    if "out" in params:
        named["out"] = np.empty(shape)
    if "scratch" in params:
        named["scratch"] = scratch
    return kernel(**named)


def central(f, x, h=1e-6):
    return (f(x + h) - f(x - h)) / (2 * h)


Z = np.array([-3.1, -1.2, -0.4, 0.3, 0.8, 2.2])


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_catalog_activation_gives_the_committed_kernels(name):
    """The catalog's own definition, typed as text, reproduces regenerate's kernels."""
    text = str(ACTIVATIONS[name])
    assert live.parse(text, live.VARIABLES["activation"]) == ACTIVATIONS[name]
    result = live.derive(text, "activation", name=name)
    assert "error" not in result, result.get("error")
    committed = functions((GENERATED / "activations.py").read_text())
    printed = functions(result["numpy"])
    assert set(printed) == {name, f"{name}_derivative", f"{name}_backward"}
    for kernel, source in printed.items():
        assert source == committed[kernel], kernel
    committed_losses = functions((GENERATED / "losses.py").read_text())
    deltas = functions(result["numpy_deltas"])
    expected = {f"{loss}__{name}_delta" for loss in LOSSES
                if REQUIRED_OUTPUT.get(loss, name) == name}
    assert set(deltas) == expected
    for kernel, source in deltas.items():
        assert source == committed_losses[kernel], kernel


def test_catalog_loss_gives_the_committed_delta_kernels():
    """Squared error typed per unit gives the committed delta kernels of its pairs."""
    result = live.derive("(a - y)**2/2", "loss", name="squared_error")
    assert "error" not in result, result.get("error")
    committed = functions((GENERATED / "losses.py").read_text())
    printed = functions(result["numpy"])
    assert set(printed) == {f"squared_error__{act}_delta" for act in live.LOSS_OUTPUTS}
    for kernel, source in printed.items():
        assert source == committed[kernel], kernel


# Activations that are not in the catalog, each with a NumPy definition
# written here, independently of the engine.
NEW_ACTIVATIONS = {
    "z/(1 + Abs(z))": lambda z: z / (1 + np.abs(z)),  # softsign
    "z*atan(z)": lambda z: z * np.arctan(z),
    "log(1 + exp(-z**2))": lambda z: np.log1p(np.exp(-z * z)),
    "Max(z, z/10)": lambda z: np.maximum(z, z / 10),  # a leaky ReLU written with Max
    "z*tanh(z)": lambda z: z * np.tanh(z),
}


@pytest.mark.parametrize("text", NEW_ACTIVATIONS)
def test_new_activation_kernels_match_finite_differences(text):
    g = NEW_ACTIVATIONS[text]
    assert text not in {str(e) for e in ACTIVATIONS.values()}
    result = live.derive(text, "activation")
    assert "error" not in result, result.get("error")
    module = result["numpy"]
    a = run(module, "mine", Z)
    np.testing.assert_allclose(a, g(Z), rtol=1e-14, atol=1e-15)
    dg = run(module, "mine_derivative", a, Z)
    # central differences in float64 at h = 1e-6: truncation ~1e-12, rounding ~1e-10
    np.testing.assert_allclose(dg, central(g, Z), rtol=1e-7, atol=1e-8)
    da = np.linspace(-1, 1, Z.size)
    np.testing.assert_allclose(run(module, "mine_backward", da, a, Z), da * dg, rtol=1e-14)
    # squared error: delta = (a - y) g'(z) / m, with m the batch size
    y, m = np.full(Z.shape, 0.25), 4.0
    delta = run(result["numpy_deltas"], "squared_error__mine_delta", a, Z, y, m)
    loss = lambda z: (g(z) - y) ** 2 / 2 / m  # noqa: E731
    np.testing.assert_allclose(delta, central(loss, Z), rtol=1e-7, atol=1e-8)
    # the check in 40 digits agrees far below float64 rounding
    assert result["check"]["max_error"] < 1e-15
    assert set(result["check"]["errors"]) >= {"derivative", "forward", "squared_error"}
    assert result["derivative"] and "the definition differentiated by SymPy" in result["html"]


def test_new_loss_deltas_match_finite_differences():
    result = live.derive("(a - y)**4/4", "loss")
    assert "error" not in result, result.get("error")
    assert [d["activation"] for d in result["deltas"]] == list(live.LOSS_OUTPUTS)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    y, m = np.full(Z.shape, 0.6), 3.0
    a = sigmoid(Z)
    delta = run(result["numpy"], "my_loss__sigmoid_delta", a, Z, y, m)
    loss = lambda z: (sigmoid(z) - y) ** 4 / 4 / m  # noqa: E731
    np.testing.assert_allclose(delta, central(loss, Z), rtol=1e-7, atol=1e-9)
    assert result["check"]["max_error"] < 1e-15


def test_a_softmax_output_is_derived_on_request():
    result = live.derive("(a - y)**4/4", "loss", softmax=True)
    assert "error" not in result, result.get("error")
    assert [d["activation"] for d in result["deltas"]] == [*live.LOSS_OUTPUTS, "softmax"]
    # the printed kernel on a batch of two examples of three units, against central
    # differences of the cost written here in NumPy: C = (1/m) sum (softmax(z) - y)^4 / 4
    Zb = np.array([[0.3, -1.2, 0.8], [-0.5, 0.1, 1.7]])
    y, m = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5]]), 2.0

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def cost(z):
        return ((softmax(z) - y) ** 4 / 4).sum() / m

    delta = run(result["numpy"], "my_loss__softmax_delta", softmax(Zb), Zb, y, m)
    numeric = np.zeros_like(Zb)
    for index in np.ndindex(Zb.shape):
        step = np.zeros_like(Zb)
        step[index] = 1e-6
        numeric[index] = (cost(Zb + step) - cost(Zb - step)) / 2e-6
    np.testing.assert_allclose(delta, numeric, rtol=1e-7, atol=1e-10)
    assert result["check"]["errors"]["softmax"] < 1e-15
    assert "softmax" not in live.derive("(a - y)**4/4", "loss")["check"]["errors"]


def test_the_softmax_check_catches_a_wrong_delta():
    a, y, k = live.a_vec, live.y_vec, live.unit
    term = live.parse("-y*log(a)", live.VARIABLES["loss"])
    right = a[k] - y[k]  # softmax with cross-entropy, one-hot or soft targets summing to 1
    assert live._softmax_delta_error(term, right) < 1e-15
    assert live._softmax_delta_error(term, a[k] * (a[k] - y[k])) > 1e-3


def test_the_numeric_check_catches_a_wrong_derivative(monkeypatch):
    """A derivative that is off by a factor is reported, at the order of its error."""
    from backprop_derived.symbolic import entries

    real = entries.derive_activation

    def wrong(name, g, a):
        chains, forward, derivative = real(name, g, a)
        return chains, forward, derivative * (1 + live.sp.Rational(1, 1000))

    monkeypatch.setattr(entries, "derive_activation", wrong)
    result = live.derive("z*atan(z)", "activation", name="wrong_one")
    assert 1e-4 < result["check"]["errors"]["derivative"] < 1e-2


@pytest.mark.parametrize(("text", "kind", "message"), [
    ("z*", "activation", "syntax error"),
    ("", "activation", "empty"),
    ("sigmoid(z)", "activation", "unknown function 'sigmoid'"),
    ("x + 1", "activation", "unknown name 'x'"),
    ("exp", "activation", "exp is a function"),
    ("z.__class__", "activation", "not part of an expression"),
    ("__import__('os').system('true')", "activation", "unknown function"),
    ("(lambda: 1)()", "activation", "unknown function"),
    ("sqrt(z)", "activation", "not real at z = -2.3"),
    ("log(z**2)", "activation", "not defined at z = 0"),
    ("Heaviside(z)", "activation", "jumps"),
    ("sqrt(Abs(z))", "activation", "not differentiable at z = 0"),
    ("3", "activation", "does not depend on z"),
    ("z" * 401, "activation", "at most 400"),
    ("(a - y)**2", "activation", "unknown name 'a'"),
    ("y**2", "loss", "does not depend on a"),
    ("log(a - 2)", "loss", "not real"),
    ("z**2", "loss", "unknown name 'z'"),
    ("z", "relu", "kind must be one of"),
])
def test_bad_input_gets_a_message(text, kind, message):
    result = live.derive(text, kind)
    assert set(result) == {"error"}
    assert message in result["error"]


def test_bad_names_and_outputs_get_a_message():
    assert "lowercase" in live.derive("z**3", name="My Act")["error"]
    assert "another definition" in live.derive("z**3", name="sigmoid")["error"]
    assert "not elementwise" in live.derive("(a-y)**2", "loss", outputs=("softmax",))["error"]


def test_decimals_are_read_exactly():
    assert live.parse("0.1*z", {"z": live.z_catalog}) == live.z_catalog / 10


def test_check_answer():
    assert live.check_answer("a*(1 - a)", "a - a**2")["ok"] is True
    assert live.check_answer("a^2", "a**2")["ok"] is True
    wrong = live.check_answer("a*(a - 1)", "a - a**2")
    assert wrong == {"ok": False, "hint": "the sign is wrong"}
    scaled = live.check_answer("(a - y)", "(a - y)/m", "a y m")
    assert scaled == {"ok": False, "hint": "off by a factor: your answer is m times the "
                                           "expected one"}
    half = live.check_answer("2*(a - y)", "a - y")
    assert half["ok"] is False and "2 times" in half["hint"]
    assert "depend on y" in live.check_answer("a", "a - y")["hint"]
    assert "syntax error" in live.check_answer("a -", "a")["error"]
    # a kink: proven case by case
    assert live.check_answer("Heaviside(z)", "(sign(z) + Abs(sign(z)))/2")["ok"] is True


# The batch forms of a dense layer: dW = dZ^T A, dA = dZ W (EFAVDB's eq. (5) and
# (11)); sizes as the derivation page names them.
MATRICES = "A[m,n_in] dZ[m,n_out] W[n_out,n_in]"


@pytest.mark.parametrize(("answer", "ok"), [
    ("dZ.T @ A", True),
    ("dZ.T * A", True),          # SymPy's * is the matrix product as well
    ("(A.T @ dZ).T", True),      # (A^T dZ)^T = dZ^T A
    ("dZ.T @ (A + A) / 2", True),
    ("A.T @ dZ", False),
    ("dZ @ W", False),
])
def test_matrix_answers_are_proven_for_every_size(answer, ok):
    result = live.check_answer(answer, "dZ.T*A", MATRICES)
    assert result["ok"] is ok, result
    if ok:
        assert "every size" in result["proof"]


@pytest.mark.parametrize(("answer", "expected", "hint"), [
    ("A @ dZ", "dZ.T*A", "A is m×n_in and dZ is m×n_out: a product needs the columns of the "
                         "left factor to match the rows of the right one. Is a transpose missing?"),
    ("dZ @ W.T", "dZ*W", "dZ is m×n_out and W.T is n_in×n_out: a product needs the columns of "
                         "the left factor to match the rows of the right one. Is a transpose "
                         "missing?"),
    ("A.T @ dZ", "dZ.T*A", "this is the transpose of the answer"),
    ("-dZ.T @ A", "dZ.T*A", "the sign is wrong"),
    ("dZ.T @ A", "dZ.T*A/m", "off by a factor: your answer is m times the expected one"),
    ("dZ.T + A", "dZ.T*A", "A is m×n_in and dZ.T is n_out×m: the terms of a sum need one shape"),
    ("dZ @ W", "dZ.T*A", "your result is m×n_in; the answer is n_out×n_in"),
    ("m", "dZ.T*A", "the answer is a matrix of size n_out×n_in; write it with the matrices, "
                    "@ and .T"),
])
def test_a_wrong_matrix_answer_says_what_is_off(answer, expected, hint):
    assert live.check_answer(answer, expected, MATRICES) == {"ok": False, "hint": hint}


@pytest.mark.parametrize(("answer", "message"), [
    ("A.x", "only a matrix's transpose .T is accepted"),
    ("2 @ A", "@ multiplies two matrices"),
    ("A @ dZ @", "syntax error"),
])
def test_bad_matrix_input_gets_a_message(answer, message):
    assert message in live.check_answer(answer, "dZ.T*A", MATRICES)["error"]


def test_matrix_exercise_markup():
    import sympy as sp

    from backprop_derived.symbolic.checked import StepNotVerified
    from backprop_derived.symbolic.exercises import Exercise, exercises_html

    m, n = sp.symbols("m n", integer=True, positive=True)
    A, dZ = sp.MatrixSymbol("A", m, n), sp.MatrixSymbol("dZ", m, 3)
    html = exercises_html([Exercise("p", dZ.T * A, typed="dZ.T @ A")])
    assert 'data-expected="dZ.T*A"' in html and 'data-variables="A[m,n] dZ[m,3]"' in html
    with pytest.raises(StepNotVerified, match="is not the derived"):
        exercises_html([Exercise("p", dZ.T * A, typed="A.T @ dZ")])


# --- The exercises' markup and the panel's ------------------------------------------


def test_exercise_answers_are_checked_when_the_page_is_built():
    from backprop_derived.symbolic.catalog import a as a_vec
    from backprop_derived.symbolic.catalog import k
    from backprop_derived.symbolic.checked import StepNotVerified
    from backprop_derived.symbolic.exercises import Exercise, exercises_html

    delta = (a_vec[k] - live.y_vec[k]) * a_vec[k]
    html = exercises_html([Exercise("p", delta, typed="a**2 - a*y"), Exercise("n", 0.25)])
    assert html.count("data-exercise=") == 2
    assert 'data-expected="a*(a - y)"' in html and 'data-variables="a y"' in html
    assert 'data-answer-kind="number" data-expected="0.25"' in html
    for contract in ('data-live="answer"', 'data-live="check-answer"', 'data-live="verdict"'):
        assert html.count(contract) == 2
    # the expected text is what the browser's checker proves the reader's answer against
    expected = Exercise("p", delta).expected_text()
    assert live.check_answer("a*a - y*a", *expected)["ok"] is True
    with pytest.raises(StepNotVerified, match="is not the derived"):
        exercises_html([Exercise("p", delta, typed="a - y")])


def test_the_panel_markup_holds_the_contract():
    import importlib.util

    path = Path(__file__).parents[1] / "docs" / "hooks" / "live_assets.py"
    spec = importlib.util.spec_from_file_location("live_assets", path)
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    panel = hook.panel_html("loss", "(a - y)**4/4")
    for name in ("panel", "expr", "kind", "run", "derivative", "numpy", "check", "error"):
        assert f'data-live="{name}"' in panel, name
    assert 'data-max-error=""' in panel and hook.LOAD_LABEL in panel
    assert '<option value="loss" selected>' in panel
    assert 'value="(a - y)**4/4"' in panel
    assert set(hook.LIVE_PAGES) >= {"derivations/01_activations.py",
                                    "derivations/07_losses_x_activations.py",
                                    "add-your-own-activation.md"}
