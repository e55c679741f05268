"""The max-shift pass: softmax and log-sum-exp in index form survive logits of 800.

The kernels are printed by ``codegen.render_kernel``, the route of every
``"index"`` kernel, and executed; the values are compared with SciPy's
``softmax`` / ``logsumexp`` and the engine's gradient with central differences.
"""

import numpy as np
import pytest
import scipy.special
import sympy as sp
from sympy import IndexedBase, Sum, exp, log

from backprop_derived.symbolic.codegen import render_kernel
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.index_printer import Assignment, IndexPrinter
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.max_shift import max_shift

from _finite_differences import assert_close, central_differences

m, n = sp.symbols("m n", integer=True, positive=True)
i, k, j = sp.symbols("i k j", integer=True)
Z = IndexedBase("Z", shape=(m, n), real=True)
Y = IndexedBase("Y", shape=(m, n), real=True)
P = IndexedBase("P", shape=(m, n), real=True)
L = IndexedBase("L", shape=(m,), real=True)
SOFTMAX = (P[i, k], exp(Z[i, k]) / Sum(exp(Z[i, j]), (j, 0, n - 1)))
# cross-entropy of the logits: log-sum-exp minus the target-weighted logits
LOSS = (L[i], log(Sum(exp(Z[i, j]), (j, 0, n - 1))) - Sum(Y[i, j] * Z[i, j], (j, 0, n - 1)))
LOGITS = np.array([[800.0, 0.0, -3.0], [1.0, 2.0, 3.0], [-800.0, -799.0, -805.0]])


def assignment(lhs, rhs):
    return Assignment(str(lhs.base.label), lhs.indices, rhs)


def compiled(name, params, assignments, returns):
    text, _, _ = render_kernel(Kernel("test", name, params, tuple(assignments), "doc", "eq",
                                      "tests/test_max_shift.py", style="index",
                                      returns=returns))
    namespace = {"numpy": np}
    exec(text, namespace)  # noqa: S102
    return namespace[name], text


def test_softmax_and_log_sum_exp_at_logits_of_800():
    targets = np.eye(3)[[0, 2, 1]]
    kernel, text = compiled("forward", ("z", "y"), [assignment(*SOFTMAX), assignment(*LOSS)],
                            ("P", "L"))
    assert "numpy.maximum.reduce" in text
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        p, loss = kernel(LOGITS, targets)  # e^-800 underflows to 0, as it should
    np.testing.assert_allclose(p, scipy.special.softmax(LOGITS, axis=1), rtol=1e-14, atol=1e-300)
    want = scipy.special.logsumexp(LOGITS, axis=1) - np.sum(targets * LOGITS, axis=1)
    np.testing.assert_allclose(loss, want, rtol=1e-14, atol=1e-12)


def test_without_the_pass_the_same_kernel_overflows():
    """What the pass prevents: the index printer alone evaluates exp(800)."""
    code = "\n".join(IndexPrinter().statements([assignment(*SOFTMAX)]))
    env = {"numpy": np, "z": LOGITS}
    with np.errstate(all="ignore"):
        exec(code, env)  # noqa: S102
    assert np.isnan(env["p"][0]).any()


def test_the_engine_gradient_of_the_loss_is_shifted_and_right():
    g = backward([LOSS], [Z])[Z]  # upstream dL[i], one number per example
    kernel, text = compiled("backward", ("dl", "z", "y"),
                            [Assignment(str(g.grad.label), g.indices, g.expr)], ("dZ",))
    assert "numpy.maximum.reduce" in text
    rng = np.random.default_rng(3)
    z, y, dl = rng.normal(size=(4, 3)), rng.random((4, 3)), rng.normal(size=4)

    def loss():
        return np.sum(dl * (scipy.special.logsumexp(z, axis=1) - np.sum(y * z, axis=1)))

    dz = kernel(dl, z, y)
    assert_close("dZ", dz, central_differences(loss, z))
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        dz = kernel(np.ones(3), LOGITS, y[:3])
    # d(log-sum-exp)/dz is the softmax; the second term gives -y
    want = scipy.special.softmax(LOGITS, axis=1) - y[:3]
    np.testing.assert_allclose(dz, want, rtol=1e-12, atol=1e-15)


def test_a_sum_that_is_not_normalising_is_left_alone():
    """sum_j exp(Z[i, j]) by itself: the factor e^c would not cancel."""
    assert max_shift("S", (i,), Sum(exp(Z[i, j]), (j, 0, n - 1))) is None
    assert max_shift("S", (i, k), Z[i, k] ** 2) is None


@pytest.mark.parametrize("lhs_rhs", [SOFTMAX, LOSS])
def test_the_rewrite_is_proven_for_every_size(lhs_rhs):
    lhs, rhs = lhs_rhs
    _, shifted, chain = max_shift(str(lhs.base.label), lhs.indices, rhs, lhs)
    assert chain.steps[-1].proof == "index sums"
    assert shifted != rhs and chain.result == shifted
