"""Each generated kernel, called directly, against SymPy's own results.

``Network`` reaches every kernel in ``test_catalog_gradients.py``; this file
pins each one on its own, so a wrong kernel is named by the failure. Every
function of the generated modules is looked up by name with ``getattr``.
"""

import numpy as np
import pytest
import sympy as sp

from backprop_derived._generated import ACTIVATIONS, OUTPUTS, activations, layers, losses
from backprop_derived.symbolic.catalog import ACTIVATIONS as CATALOG
from backprop_derived.symbolic.catalog import fix_heaviside, kinks, z

ELEMENTWISE = [name for name, act in ACTIVATIONS.items() if act.elementwise]
MODULES = ["scipy", "numpy"]  # erf is SciPy's
EPS = np.finfo(np.float64).eps
rng = np.random.default_rng(7)
Z = rng.normal(scale=3, size=(6, 5))


def with_kinks(name):
    """Z with the activation's kinks themselves among the points (their value is the catalog's)."""
    points = sorted({float(p) for k in kinks(CATALOG[name]) for p in sp.solve(k, z)
                     if p.is_real})
    out = Z.copy()
    out.flat[: len(points)] = points
    return out


def scratch_for(n, like):
    return [np.empty_like(like) for _ in range(max(n, 1))]


def assert_close(got, want, scale):
    """Within a few ulps of the magnitudes involved: ``want`` may be a small difference
    of larger terms (gelu's ``1 + erf(z)`` at z = -7), whose rounding is of ``scale``."""
    bound = 1e-13 * np.abs(want) + 64 * EPS * scale
    ok = np.abs(got - want) <= bound  # False for NaN
    assert ok.all(), f"kernel {got[~ok]} vs SymPy {want[~ok]} (bound {bound[~ok]})"


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_forward_and_derivative_kernels_match_sympy(name):
    Zk = with_kinks(name)
    g = sp.lambdify(z, CATALOG[name], MODULES)
    g_prime = sp.lambdify(z, fix_heaviside(sp.diff(CATALOG[name], z)), MODULES)
    n = ACTIVATIONS[name].scratch
    A = getattr(activations, name)(Zk, np.empty_like(Zk), scratch_for(n, Zk))
    scale = 1 + np.abs(Zk)
    assert_close(A, g(Zk) + 0 * Zk, scale)
    D = getattr(activations, f"{name}_derivative")(A, Zk, np.empty_like(Zk), scratch_for(n, Zk))
    assert_close(D, g_prime(Zk) + 0 * Zk, scale * (1 + np.abs(D)))
    dA = rng.normal(size=Zk.shape)
    dZ = getattr(activations, f"{name}_backward")(dA, A, Zk, np.empty_like(Zk),
                                                  scratch_for(n, Zk))
    np.testing.assert_allclose(dZ, dA * D, rtol=1e-13, atol=1e-15)  # (BP4)


def test_softmax_kernel_rows_sum_to_one_and_match_the_definition():
    A = activations.softmax(Z, np.empty_like(Z), [])
    E = np.exp(Z)
    np.testing.assert_allclose(A, E / E.sum(axis=1, keepdims=True), rtol=1e-14)


FUSED = sorted(pair for pair, out in OUTPUTS.items() if out.fused is not None)


def test_every_non_elementwise_output_has_a_fused_pass():
    assert FUSED == sorted(pair for pair in OUTPUTS if not ACTIVATIONS[pair[0]].elementwise)


@pytest.mark.parametrize(("act", "loss"), FUSED)
def test_fused_output_pass_equals_the_separate_kernels(act, loss):
    out = OUTPUTS[act, loss]
    Y = rng.random(Z.shape)
    a, d = np.empty_like(Z), np.empty_like(Z)
    n = out.scratch
    rows = [np.empty((Z.shape[0], 1)) for _ in range(out.rows)]
    m = Z.shape[0]
    total = getattr(losses, f"{loss}__{act}_output")(
        Z, Y, m, a, d, scratch_for(n, Z), rows, np.ones((Z.shape[1], 1)), np.empty(Z.T.shape))
    a_sep = ACTIVATIONS[act].forward(Z, np.empty_like(Z), scratch_for(n, Z))
    d_sep = getattr(losses, f"{loss}__{act}_delta")(a_sep, Z, Y, m, np.empty_like(Z),
                                                     scratch_for(n, Z))
    np.testing.assert_allclose(a, a_sep, rtol=1e-14)
    np.testing.assert_allclose(d, d_sep, rtol=1e-13, atol=1e-16)
    assert total == pytest.approx(getattr(losses, f"{loss}__{act}")(a_sep, Z, Y, m), rel=1e-13)


def test_layer_kernels_are_the_matrix_equations():
    A, W, b = rng.normal(size=(6, 4)), rng.normal(size=(3, 4)), rng.normal(size=3)
    dZ = rng.normal(size=(6, 3))
    np.testing.assert_allclose(layers.affine(A, W, b, np.empty((6, 3))),
                               A @ W.T + b, rtol=1e-14)
    np.testing.assert_allclose(layers.weight_gradient(dZ, A, np.empty((3, 4))),
                               dZ.T @ A, rtol=1e-14)
    np.testing.assert_allclose(
        layers.bias_gradient(dZ, np.ones(6), np.empty(3)), dZ.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(layers.backpropagate(dZ, W, np.empty((6, 4))),
                               dZ @ W, rtol=1e-14)
    lam, m = 0.5, 4  # lambda / m and lambda / 2m: the derivative of the penalty and itself
    np.testing.assert_allclose(
        layers.weight_gradient_l2(dZ, A, W, lam, m, np.empty((3, 4))),
        dZ.T @ A + lam / m * W, rtol=1e-14)
    assert layers.l2_penalty(W, lam, m) == pytest.approx(lam / (2 * m) * (W**2).sum(), rel=1e-14)
    np.testing.assert_allclose(layers.l2_gradient(W, lam, m, np.empty((3, 4))),
                               lam / m * W, rtol=1e-14)
