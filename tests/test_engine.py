"""The derivation engine on layers other than the dense one.

Each layer is written in index form, the engine differentiates it, and its
result is evaluated on concrete sizes and compared with central differences
of ``sum(dY * Y(X))``, whose gradient with respect to X is dX by definition.
The forward maps are evaluated by SymPy from the same equations, so the
check is independent of the engine's chain rule and delta collapsing.
"""

import itertools

import numpy as np
import pytest
import sympy as sp
from sympy import IndexedBase, Sum, exp

from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.engine import (
    backward,
    gradient_chain,
    matrix_chain,
    to_elementwise,
    to_matrix,
)

m, n, T, K = sp.symbols("m n T K", integer=True, positive=True)
i, r, s, j, c, p, q = sp.symbols("i r s j c p q", integer=True)


def numeric(expr, sizes, arrays, rng_entry):
    """``expr`` on concrete sizes, arrays and index values, as a float."""
    e = expr.xreplace(sizes).xreplace(rng_entry).doit()
    by_name = {str(b.label): v for b, v in arrays.items()}  # sizes changed the bases' shapes
    e = e.replace(lambda x: isinstance(x, sp.Indexed),
                  lambda x: sp.Float(by_name[str(x.base.label)][tuple(int(v) for v in x.indices)]))
    return float(e)


def forward_values(equations, sizes, arrays):
    """Every left-hand side of the equations, evaluated in order."""
    values = dict(arrays)
    for lhs, rhs in equations:
        base = lhs.base
        shape = tuple(int(d.xreplace(sizes)) for d in base.shape)
        out = np.empty(shape)
        for idx in itertools.product(*map(range, shape)):
            out[idx] = numeric(rhs, sizes, values, dict(zip(lhs.indices, idx, strict=True)))
        values[base] = out
    return values


def check_layer(equations, inputs, sizes, seed=0, tol=1e-7):
    rng = np.random.default_rng(seed)
    out_base = equations[-1][0].base
    arrays = {x: rng.normal(size=tuple(int(d.xreplace(sizes)) for d in x.shape))
              for x in inputs}
    d_out = IndexedBase("d" + str(out_base.label), shape=out_base.shape, real=True)
    upstream = rng.normal(size=tuple(int(d.xreplace(sizes)) for d in out_base.shape))
    grads = backward(equations, inputs)

    def objective(values):
        return float((forward_values(equations, sizes, values)[out_base] * upstream).sum())

    values = forward_values(equations, sizes, arrays)
    values[d_out] = upstream
    for lhs, _ in reversed(equations[:-1]):  # intermediates' gradients, in order
        g = grads[lhs.base]
        shape = tuple(int(d.xreplace(sizes)) for d in lhs.base.shape)
        values[g.grad] = np.array(
            [numeric(g.expr, sizes, values, dict(zip(g.indices, idx, strict=True)))
             for idx in itertools.product(*map(range, shape))]).reshape(shape)
    eps = 1e-6
    for x in inputs:
        g = grads[x]
        for idx in itertools.product(*map(range, arrays[x].shape)):
            derived = numeric(g.expr, sizes, values, dict(zip(g.indices, idx, strict=True)))
            plus, minus = dict(arrays), dict(arrays)
            plus[x], minus[x] = arrays[x].copy(), arrays[x].copy()
            plus[x][idx] += eps
            minus[x][idx] -= eps
            fd = (objective(plus) - objective(minus)) / (2 * eps)
            assert abs(derived - fd) <= tol * max(1.0, abs(fd)), (x, idx, derived, fd)
    return grads


def test_centering_over_the_batch():
    """y = x - mean(x): two equations, a sum over the batch (the issue's example)."""
    X = IndexedBase("X", shape=(m, n), real=True)
    mu = IndexedBase("mu", shape=(n,), real=True)
    Y = IndexedBase("Y", shape=(m, n), real=True)
    eqs = ((mu[r], Sum(X[s, r], (s, 0, m - 1)) / m), (Y[i, r], X[i, r] - mu[r]))
    grads = check_layer(eqs, [X], {m: 4, n: 3})
    # dX = dY + dmu / m with dmu = -sum_i dY: each is proven by SymPy
    for g in grads.values():
        gradient_chain(g, eqs)
    dY = IndexedBase("dY", shape=(m, n), real=True)
    u, v = grads[X].indices
    assert sp.expand(grads[X].expr.subs(grads[mu].grad[v], grads[mu].expr.xreplace(
        {grads[mu].indices[0]: v})) - (dY[u, v] - Sum(dY[i, v], (i, 0, m - 1)) / m)) == 0


def test_batch_norm_four_nodes():
    X = IndexedBase("X", shape=(m, n), real=True)
    mu = IndexedBase("mu", shape=(n,), real=True)
    var = IndexedBase("var", shape=(n,), real=True)
    xh = IndexedBase("xhat", shape=(m, n), real=True)
    gam = IndexedBase("gamma", shape=(n,), real=True)
    bet = IndexedBase("beta", shape=(n,), real=True)
    Y = IndexedBase("Y", shape=(m, n), real=True)
    eps = sp.Rational(1, 100)
    eqs = (
        (mu[r], Sum(X[s, r], (s, 0, m - 1)) / m),
        (var[r], Sum((X[s, r] - mu[r]) ** 2, (s, 0, m - 1)) / m),
        (xh[i, r], (X[i, r] - mu[r]) / sp.sqrt(var[r] + eps)),
        (Y[i, r], gam[r] * xh[i, r] + bet[r]),
    )
    check_layer(eqs, [X, gam, bet], {m: 4, n: 2})


def test_softmax_over_keys():
    """Attention's softmax: a sum over the keys in the denominator."""
    S = IndexedBase("S", shape=(T, K), real=True)
    P = IndexedBase("P", shape=(T, K), real=True)
    eqs = ((P[i, r], exp(S[i, r]) / Sum(exp(S[i, j]), (j, 0, K - 1))),)
    check_layer(eqs, [S], {T: 2, K: 3})


def test_convolution_shifted_index():
    """A 1-d cross-correlation: the input gradient keeps its range condition."""
    L, k = sp.symbols("L k", integer=True, positive=True)
    X = IndexedBase("X", shape=(L,), real=True)
    Wk = IndexedBase("Wk", shape=(k,), real=True)
    Y = IndexedBase("Y", shape=(L - k + 1,), real=True)
    eqs = ((Y[p], Sum(X[p + j] * Wk[j], (j, 0, k - 1))),)
    grads = check_layer(eqs, [X, Wk], {L: 5, k: 2})
    assert grads[X].expr.has(sp.Piecewise)  # the boundary of the full correlation


def test_dense_layer_matrix_forms_are_proven():
    grads = backward(catalog.DENSE, [catalog.W, catalog.b, catalog.A])
    forms = {x: to_matrix(grads[x]) for x in (catalog.W, catalog.b, catalog.A)}
    assert str(forms[catalog.W]) == "dZ.T*A"
    assert str(forms[catalog.b]) == "ones*dZ"
    assert str(forms[catalog.A]) == "dZ*W"
    for x, form in forms.items():
        g = grads[x]
        chain = matrix_chain(g.lhs, g.expr, g.indices, form)
        assert chain.steps[-1].proof not in ("given", None)


def test_a_wrong_matrix_form_is_refused():
    grads = backward(catalog.DENSE, [catalog.W])
    g = grads[catalog.W]
    dZ = sp.MatrixSymbol("dZ", catalog.m, catalog.n_out)
    A = sp.MatrixSymbol("A", catalog.m, catalog.n_in)
    with pytest.raises(AssertionError):  # StepNotVerified
        matrix_chain(g.lhs, g.expr, g.indices, 2 * dZ.T * A)


def test_activation_layer_is_elementwise():
    g = backward(catalog.ACTIVATION_LAYER, [catalog.Z])[catalog.Z]
    assert str(to_elementwise(g, {"dA": "da", "Z": "z"})) == "da*g'(z)"


def test_bad_layers_are_rejected_with_a_reason():
    X = IndexedBase("X")  # no shape
    Y = IndexedBase("Y", shape=(m,))
    with pytest.raises(ValueError, match="shape"):
        backward(((Y[i], 2 * X[i]),), [X])
    X2 = IndexedBase("X2", shape=(m,))
    with pytest.raises(ValueError, match="does not occur"):
        backward(((Y[i], 2 * X2[i]),), [IndexedBase("Q", shape=(m,))])
    with pytest.raises(ValueError, match="defined twice"):
        backward(((Y[i], X2[i]), (Y[i], X2[i])), [X2])


@pytest.mark.parametrize("scalar, at", [
    ("right", ("j", "i")),
    ("transposed", ("i", "j")),
    ("swapped units", ("j", "i")),
    ("doubled", ("j", "i")),
])
def test_scalar_pages_must_agree_with_the_engine(scalar, at):
    """Page 03's result dE/dw_ij = delta_j a_i, read per example, is the engine's dW_ji."""
    from backprop_derived.symbolic.agreement import batch_mean
    from backprop_derived.symbolic.checked import StepNotVerified
    from backprop_derived.symbolic.scalar_net import a_in, delta_hid
    from backprop_derived.symbolic.scalar_net import i as unit_i
    from backprop_derived.symbolic.scalar_net import j as unit_j

    results = {"right": delta_hid[unit_j] * a_in[unit_i],
               "transposed": delta_hid[unit_j] * a_in[unit_i],
               "swapped units": delta_hid[unit_i] * a_in[unit_j],
               "doubled": 2 * delta_hid[unit_j] * a_in[unit_i]}
    units = {"i": unit_i, "j": unit_j}
    dW = backward(catalog.DENSE, [catalog.W])[catalog.W]
    dZ = next(x.base for x in dW.expr.atoms(sp.Indexed) if str(x.base.label) == "dZ")
    example = {delta_hid: lambda e, u: catalog.m * dZ[e, u],
               a_in: lambda e, u: catalog.A[e, u]}
    args = (sp.Symbol("dW"), results[scalar], example, dW, tuple(units[x] for x in at), "V1")
    if scalar == "right":
        assert batch_mean(*args).steps[-1].proof != "given"
    else:
        with pytest.raises(StepNotVerified):
            batch_mean(*args)


def test_an_example_only_result_cannot_feed_an_index_kernel():
    from backprop_derived.symbolic.checked import CheckedOnExample, StepNotVerified
    from backprop_derived.symbolic.index_printer import Assignment
    from backprop_derived.symbolic.kernels import Kernel

    X = IndexedBase("X", shape=(m,))
    with pytest.raises(StepNotVerified, match="only checked on an example"):
        Kernel("m", "k", ("x",), (Assignment("Y", (i,), CheckedOnExample(2 * X[i])),),
               "doc", "eq", "src", style="index", returns=("Y",))


def test_the_collapsing_step_names_its_brackets():
    # Y_ij = sum_k X_ik W_jk: the gradient of W at (u, v) sums the brackets
    # [j = u] and [k = v]; the step's reason names both (not a generic example).
    from backprop_derived.symbolic.engine import gradient_chain

    i, j, k = sp.symbols("i j k", integer=True)
    m, n, o = sp.symbols("m n o", integer=True, positive=True)
    X = sp.IndexedBase("X", shape=(m, n))
    W = sp.IndexedBase("W", shape=(o, n))
    Y = sp.IndexedBase("Y", shape=(m, o))
    equations = ((Y[i, j], sp.Sum(X[i, k] * W[j, k], (k, 0, n - 1))),)
    gradient = backward(equations, [W])[W]
    why = gradient_chain(gradient, equations).steps[-1].why
    u, v = gradient.indices
    assert f"[j = {u}]" in why and f"[k = {v}]" in why, why
