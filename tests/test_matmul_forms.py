"""numpy.matmul forms of two-operand contractions, checked against numpy.einsum.

The index printer's one contraction writer chooses ``numpy.matmul`` where two
arrays are contracted with a free index on each side (:func:`matmul_form`), and
``numpy.einsum`` otherwise; the einsum form is the reference here.
"""

import string

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, Sum

from backprop_derived.symbolic import index_printer
from backprop_derived.symbolic.catalog import (
    ATT_X,
    SELF_ATTENTION,
    ATT_Wk,
    ATT_Wo,
    ATT_Wq,
    ATT_Wv,
)
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter, matmul_form

# The contractions of the attention kernels, then other layouts.
SPECS = ["ab,cdb->cda", "abc,adc->adb", "abc,acd->abd", "abc,abd->acd", "abc,abd->adc",
         "abc,abd->dc", "ab,cda->cdb", "abcd,abed->abce", "abcd,aecd->aeb", "ab,bc->ac",
         "ab,bc->ca", "abc,cd->abd", "abcd,bde->cae"]


def matmul_code(spec, names):
    """``matmul_form`` for an einsum specification: one letter per axis."""
    inputs, _, out = spec.partition("->")
    a, b = inputs.split(",")
    return matmul_form([(names[0], tuple(a)), (names[1], tuple(b))], tuple(out))


def run(spec, arrays):
    code = matmul_code(spec, ["x", "y"])
    assert code is not None, spec
    return eval(code, {"numpy": np}, dict(zip("xy", arrays, strict=True)))


def random_operands(spec, rng):
    inputs = spec.split("->")[0].split(",")
    sizes = {c: int(rng.integers(1, 5)) for c in set("".join(inputs))}
    return [rng.normal(size=tuple(sizes[c] for c in op)) for op in inputs]


@pytest.mark.parametrize("spec", SPECS)
def test_matmul_form_equals_einsum(spec):
    rng = np.random.default_rng(len(spec))
    for _ in range(5):
        arrays = random_operands(spec, rng)
        got = run(spec, arrays)
        want = np.einsum(spec, *arrays)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_random_contractions():
    """Random batch / contracted / free indices in random orders."""
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        letters = list(string.ascii_lowercase[:8])
        rng.shuffle(letters)
        nb, nk, nfa, nfb = (int(x) for x in rng.integers((0, 1, 1, 1), (3, 3, 3, 3)))
        batch, rest = letters[:nb], letters[nb:]
        k, fa, fb = rest[:nk], rest[nk:nk + nfa], rest[nk + nfa:nk + nfa + nfb]
        a = "".join(rng.permutation(batch + k + fa))
        b = "".join(rng.permutation(batch + k + fb))
        out = "".join(rng.permutation(batch + fa + fb))
        spec = f"{a},{b}->{out}"
        arrays = random_operands(spec, rng)
        np.testing.assert_allclose(run(spec, arrays), np.einsum(spec, *arrays),
                                   rtol=1e-12, atol=1e-12, err_msg=spec)
        checked += 1
    assert checked == 200


@pytest.mark.parametrize("spec", ["abc,abc->ab", "ab,ab->", "abc,ab->c", "ab,b->a",
                                  "aab,bc->ac"])
def test_no_matmul_form(spec):
    assert matmul_code(spec, ["x", "y"]) is None


def test_expressions_and_windows_are_left_to_einsum():
    """Only plain array entries are contracted with matmul: an expression, or a window
    (a ``sliding_window_view``), would be evaluated once per use of its name."""
    i, j, k = (sp.Symbol(c, integer=True) for c in "ijk")
    m, n, o = (sp.Symbol(c, integer=True, positive=True) for c in "mno")
    x, y = IndexedBase("X", shape=(m, n)), IndexedBase("Y", shape=(n, o))
    plain = [Assignment("Z", (i, k), Sum(x[i, j] * y[j, k], (j, 0, n - 1)))]
    assert "numpy.matmul(x, y)" in "\n".join(IndexPrinter().statements(plain))
    expression = [Assignment("Z", (i, k), Sum(sp.exp(x[i, j]) * y[j, k], (j, 0, n - 1)))]
    code = "\n".join(IndexPrinter().statements(expression))
    assert "einsum" in code and "matmul" not in code
    three = [Assignment("Z", (i, k), Sum(x[i, j] * y[j, k] * y[j, k], (j, 0, n - 1)))]
    assert "matmul" not in "\n".join(IndexPrinter().statements(three))


def test_pinned_forms():
    assert matmul_code("abc,adc->adb", ["k", "q"]) == "numpy.matmul(q, k.swapaxes(-1, -2))"
    assert matmul_code("abc,abd->dc", ["x", "dq"]) == (
        "numpy.matmul(dq.reshape(dq.shape[0] * dq.shape[1], dq.shape[2]).T, "
        "x.reshape(x.shape[0] * x.shape[1], x.shape[2]))")


def test_attention_backward_printed_both_ways():
    """The engine's attention gradients, printed with einsum and with matmul, agree."""
    grads = backward(SELF_ATTENTION, [ATT_X, ATT_Wq, ATT_Wk, ATT_Wv, ATT_Wo])
    body = [Assignment(str(g.grad.label), g.indices, g.expr) for g in grads.values()]
    forward = [Assignment(str(lhs.base.label), lhs.indices, rhs) for lhs, rhs in SELF_ATTENTION]
    rng = np.random.default_rng(1)
    N, T, D, H = 3, 5, 4, 2
    inputs = {"x": rng.normal(size=(N, T, D)), "m": np.tril(np.ones((T, T))),
              "wq": rng.normal(size=(H, D)), "wk": rng.normal(size=(H, D)),
              "wv": rng.normal(size=(H, D)), "wo": rng.normal(size=(D, H)),
              "dy": rng.normal(size=(N, T, D))}
    results = []
    for matmul in (False, True):  # the einsum form, then the printer's own choice
        printer = IndexPrinter()
        with pytest.MonkeyPatch.context() as patch:
            if not matmul:
                patch.setattr(index_printer, "matmul_form", lambda operands, out: None)
            code = "\n".join(printer.statements(forward) + printer.statements(body))
        env = {"numpy": np, **inputs}
        exec(code, env)  # noqa: S102
        results.append(env)
        assert ("matmul" in code) == matmul
    for name in ("y", "dx", "dwq", "dwk", "dwv", "dwo"):
        np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-12, atol=1e-12)
