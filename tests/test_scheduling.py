"""Time loops scheduled from the equations (symbolic/scheduling.py).

The RNN's loops are checked by their shape (which statements run in which
loop, in which direction). Two recurrences that no issue names and no module
mentions, a learned leaky integrator and the same running backwards in time,
are declared here, go through ``declared_kernels`` unchanged, and their
printed kernels are compared with a plain loop written here and with central
differences in float64.
"""

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, Piecewise

from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.catalog import LayerDeclaration
from backprop_derived.symbolic.codegen import render_kernel
from backprop_derived.symbolic.declared import declared_kernels
from backprop_derived.symbolic.index_printer import Assignment, Loop
from backprop_derived.symbolic.scheduling import schedule

N, T, E = sp.symbols("N T E", integer=True, positive=True)
n, t, e = sp.symbols("n t e", integer=True)
X = IndexedBase("X", shape=(N, T, E), real=True)
Y = IndexedBase("Y", shape=(N, T, E), real=True)
a = IndexedBase("a", shape=(E,), real=True)


def integrator(ahead: bool) -> LayerDeclaration:
    """y_t = a * y_(t-1) + x_t, y_(-1) = 0 (``ahead``: y_t = a * y_(t+1) + x_t, y_T = 0)."""
    shifted = (Piecewise((Y[n, t + 1, e], t + 1 <= T - 1), (0, True)) if ahead
               else Piecewise((Y[n, t - 1, e], t >= 1), (0, True)))
    return LayerDeclaration("leaky_ahead" if ahead else "leaky",
                            ((Y[n, t, e], a[e] * shifted + X[n, t, e]),),
                            inputs=(X,), params=(a,), saved=(Y,), outputs=(Y,))


def compiled(kernel):
    source, _, _ = render_kernel(kernel)
    env = {"numpy": np}
    exec(source, env)  # noqa: S102
    return env[kernel.name]


def reference(x, a_, ahead):
    y = np.zeros_like(x)
    steps = range(x.shape[1] - 1, -1, -1) if ahead else range(x.shape[1])
    prev = np.zeros((x.shape[0], x.shape[2]))
    for s in steps:
        y[:, s] = a_ * prev + x[:, s]
        prev = y[:, s]
    return y


def loops(kernel):
    return [s for s in kernel.expr if isinstance(s, Loop)]


def test_the_rnn_loops_forwards_in_its_equations_and_backwards_in_its_gradient():
    _, fwd, bwd = declared_kernels(catalog.RNN_LAYER, "recurrent", "test", "RNN")
    (f,), (b,) = loops(fwd), loops(bwd)
    assert not f.reverse and [s.target for s in f.body] == ["A", "H"]
    # dH_t reads dA_(t+1), dA_t reads dH_t: dH first in each step, the loop from the end
    assert b.reverse and [s.target for s in b.body] == ["dH", "dA"]
    after = [s.target for s in bwd.expr[bwd.expr.index(b) + 1:]]
    assert sorted(after) == ["dW_hh", "dW_ih", "dX", "db"]


def test_a_declaration_without_a_carried_read_is_not_looped():
    _, fwd, bwd = declared_kernels(catalog.RMS_NORM, "norm", "test", "RMS norm")
    assert not loops(fwd) and not loops(bwd)


def test_statements_reading_each_other_at_the_same_step_are_refused():
    u, v = IndexedBase("U", shape=(T,), real=True), IndexedBase("V", shape=(T,), real=True)
    cycle = (Assignment("U", (t,), Piecewise((v[t - 1], t >= 1), (0, True)) + v[t], shape=(T,)),
             Assignment("V", (t,), u[t], shape=(T,)))
    with pytest.raises(NotImplementedError, match="same step"):
        schedule(cycle)


@pytest.mark.parametrize("ahead", [False, True], ids=["looks back", "looks ahead"])
@pytest.mark.parametrize("sizes", [(1, 1, 1), (2, 4, 3), (3, 1, 2)])
def test_an_undeclared_recurrence_is_looped_derived_and_agrees_with_central_differences(
        ahead, sizes):
    _, fwd, bwd = declared_kernels(integrator(ahead), "test", "test", "leaky integrator")
    assert [lp.reverse for lp in loops(fwd)] == [ahead]
    assert [lp.reverse for lp in loops(bwd)] == [not ahead]
    forward, backward = compiled(fwd), compiled(bwd)
    rng = np.random.default_rng(7)
    x, a_ = rng.normal(size=sizes), rng.uniform(-0.9, 0.9, size=sizes[2])
    g = rng.normal(size=sizes)  # the upstream gradient: J = sum(g * y)
    y = forward(x=x, a=a_)
    np.testing.assert_allclose(y, reference(x, a_, ahead), rtol=1e-13, atol=1e-14)
    given = {bwd.params[0]: g, "x": x, "y": y, "a": a_}  # the upstream is the first parameter
    dx, da = backward(**{p: given[p] for p in bwd.params})

    def J(x_, a__):
        return float(np.sum(g * reference(x_, a__, ahead)))

    h = 1e-6
    num_dx = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[k] = h
        num_dx[k] = (J(x + step, a_) - J(x - step, a_)) / (2 * h)
    num_da = np.array([(J(x, a_ + h * np.eye(len(a_))[k]) - J(x, a_ - h * np.eye(len(a_))[k]))
                       / (2 * h) for k in range(len(a_))])
    np.testing.assert_allclose(dx, num_dx, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(da, num_da, rtol=1e-7, atol=1e-8)


def test_the_add_your_own_layer_page_declares_the_integrator_tested_here():
    """The page's recurrence example, run as written, is this file's integrator."""
    import pathlib
    import re

    page = pathlib.Path(__file__).parents[1] / "docs" / "add-your-own-layer.md"
    section = page.read_text(encoding="utf-8").split("## A layer that carries a state")[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    env = {"sp": sp, "IndexedBase": IndexedBase, "LayerDeclaration": LayerDeclaration}
    exec(code, env)  # noqa: S102
    assert env["LEAKY"].equations == integrator(ahead=False).equations
    _, fwd, bwd = declared_kernels(env["LEAKY"], "test", "test", "leaky integrator")
    assert [lp.reverse for lp in loops(fwd)] == [False]
    assert [lp.reverse for lp in loops(bwd)] == [True]
