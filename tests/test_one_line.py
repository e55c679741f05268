"""One line, robustly: activations and losses that are NOT in the catalog.

Each entry goes through the functions the Activations and Losses ×
activations pages call for every catalog entry (``symbolic/entries.py``):
derived, proven, printed to NumPy by the code generator, executed. The
printed kernels are then compared, in float64, with the definition itself
(evaluated by ``sympy.lambdify``) and with central differences of it, at
points kept away from the entry's kinks. Nothing here edits the catalog.
"""

import numpy as np
import pytest
import scipy.special
import sympy as sp
from sympy import Abs, Max, Min, Piecewise, Sum, asinh, atan, cosh, erf, exp, log, oo, tanh

from backprop_derived.symbolic.catalog import LOSSES, a, k, kinks, y, z
from backprop_derived.symbolic.codegen import render_kernel
from backprop_derived.symbolic.entries import (
    activation_exports,
    cost_factor,
    derive_delta,
    loss_value,
    output_exports,
    per_element,
)
from backprop_derived.symbolic.kernels import Kernel

# Written the way a user would, floats included; none of them is in the catalog.
ACTIVATIONS = {
    "leaky_relu_tenth": Piecewise((z, z > 0), (0.1 * z, True)),
    "selu_like": Piecewise((1.0507 * z, z > 0), (1.0507 * 1.67326 * (exp(z) - 1), True)),
    "arctan": atan(z),
    "z_erf": z * erf(z),
    "log_cosh": log(cosh(z)),
    "hardtanh": Min(Max(z, -1), 1),
    "arcsinh": asinh(z),
    "gaussian": exp(-z**2),
    "scaled_tanh": 1.5 * tanh(0.5 * z),
    "softsign": z / (1 + Abs(z)),
}
NEW_LOSSES = {
    "log_cosh_error": Sum(log(cosh(a[k] - y[k])), (k, -oo, oo)),
    "half_squares": Sum(0.5 * (a[k] - y[k]) ** 2, (k, -oo, oo)),
    "power_error": Sum(Abs(a[k] - y[k]) ** 1.5, (k, -oo, oo)),
    "log_loss_of_squares": Sum(log(1 + (a[k] - y[k]) ** 2), (k, -oo, oo)),
}
# The catalog's sigmoid, written out again (the new losses with a log are
# split by the sign of z with it); every new loss with two new activations.
SIGMOID = 1 / (1 + exp(-z))
PAIRS = [(act, loss) for loss in NEW_LOSSES for act in ("sigmoid", "arctan", "softsign")]
PAIRS += [(act, "squared_error") for act in ACTIVATIONS]
PAIRS += [("selu_like", "huber"), ("log_cosh", "absolute_error")]

rng = np.random.default_rng(17)
SHAPE = (5, 4)


def compiled(kernel: Kernel):
    """The kernel as ``regenerate`` prints it, executed: (function, scratch buffers)."""
    text, scratch, _ = render_kernel(kernel)
    namespace = {"numpy": np, "scipy": scipy}
    exec(text, namespace)  # the generated module imports exactly these two
    return namespace[kernel.name], [np.empty(SHAPE) for _ in range(max(scratch, 1))]


def kernels(exports) -> dict:
    return {e.name: compiled(e) for e in exports if isinstance(e, Kernel)}


def away_from_kinks(expr, var, scale=2.0):
    """Random points at least 1e-3 from every kink of ``expr`` in ``var``."""
    points = scale * rng.standard_normal(SHAPE)
    for kink in kinks(expr):
        for root in sp.solve(kink, var):
            if root.is_real:
                near = np.abs(points - float(root)) < 1e-3
                points[near] += 1e-2
    return points


def central(f, x, h=1e-6):
    """Elementwise central differences of an elementwise ``f`` (step h, error O(h^2))."""
    return (f(x + h) - f(x - h)) / (2 * h)


def definition(expr):
    return sp.lambdify(z, expr, ["scipy", "numpy"])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_an_activation_not_in_the_catalog_regenerates_and_is_right(name):
    g = ACTIVATIONS[name]
    _, exports = activation_exports(name, g)
    ks = kernels(exports)
    Z = away_from_kinks(g, z)
    forward, s = ks[name]
    A = forward(Z, np.empty(SHAPE), s).copy()
    g_num = definition(g)
    np.testing.assert_allclose(A, g_num(Z) + 0 * Z, rtol=1e-13, atol=1e-15)
    derivative, s = ks[f"{name}_derivative"]
    D = derivative(A, Z, np.empty(SHAPE), s).copy()
    # central differences of the definition: error ~h^2 g''' + eps/h
    np.testing.assert_allclose(D, central(g_num, Z), rtol=1e-6, atol=1e-8)
    backward, s = ks[f"{name}_backward"]
    dA = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(backward(dA, A, Z, np.empty(SHAPE), s), dA * D,
                               rtol=1e-13, atol=1e-15)


def test_no_overflow_where_the_split_applies():
    """selu_like's exp(z) only for z <= 0: at z = +-1000 the kernels stay finite."""
    name = "selu_like"
    _, exports = activation_exports(name, ACTIVATIONS[name])
    ks = kernels(exports)
    Z = np.full(SHAPE, 1000.0)
    Z[0] = -1000.0
    forward, s = ks[name]
    A = forward(Z, np.empty(SHAPE), s).copy()
    derivative, s = ks[f"{name}_derivative"]
    assert np.isfinite(A).all() and np.isfinite(derivative(A, Z, np.empty(SHAPE), s)).all()


def expression(name):
    return SIGMOID if name == "sigmoid" else ACTIVATIONS[name]


def loss_expression(name):
    return NEW_LOSSES.get(name) or LOSSES[name]


@pytest.mark.parametrize(("act", "loss"), PAIRS)
def test_a_new_pair_regenerates_and_its_delta_is_the_derivative_of_its_loss(act, loss):
    g, E = expression(act), loss_expression(loss)
    delta = derive_delta(act, g, loss, E)[-1].result
    _, value = loss_value(act, g, loss, E)
    ks = kernels(output_exports(act, g, loss, delta, value, cost_factor().result))
    Z = away_from_kinks(g, z)
    Y = rng.uniform(-0.5, 1.5, SHAPE)
    # keep a - y away from the loss's kinks (|a - y| = 0, 1) too
    g_num = definition(g)
    u = sp.Symbol("u", real=True)
    term = per_element(E, k)  # the loss of one unit
    per_unit = term.subs(a[k], u + y[k])
    for kink in kinks(per_unit):
        for root in sp.solve(kink, u):
            near = np.abs(g_num(Z) - Y - float(root)) < 1e-2
            Y[near] += 5e-2
    m = SHAPE[0]
    cost, _ = ks[f"{loss}__{act}"]

    def value_of(Zs):
        return cost(g_num(Zs), Zs, Y, m)

    # the cost's value: mean over the batch of the loss of each example, from the definition
    per_example = sp.lambdify((z, sp.Symbol("y", real=True)),
                              term.subs({a[k]: g, y[k]: sp.Symbol("y", real=True)}),
                              ["scipy", "numpy"])
    assert np.isclose(value_of(Z), np.sum(per_example(Z, Y)) / m, rtol=1e-12, atol=1e-14)
    delta_kernel, s = ks[f"{loss}__{act}_delta"]
    got = delta_kernel(g_num(Z), Z, Y, m, np.empty(SHAPE), s)
    want = np.empty(SHAPE)
    h = 1e-6
    for idx in np.ndindex(SHAPE):
        plus, minus = Z.copy(), Z.copy()
        plus[idx] += h
        minus[idx] -= h
        want[idx] = (value_of(plus) - value_of(minus)) / (2 * h)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
