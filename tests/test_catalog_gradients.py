"""Symbolic, generated and finite-difference gradients agree over the catalog.

Three independent routes to the same gradient:

* **symbolic**: SymPy's own results evaluated numerically: the catalog
  definitions of g and their ``sympy.diff`` derivatives (in z, not the
  a-forms the generator uses), the output deltas as derived on the
  *Losses × activations* page (index form, on a concrete layer), and the
  recurrences of the *Any depth* and *Vectorized* pages;
* **generated**: ``Network.gradients`` on the generated kernels;
* **numerical**: central finite differences of ``Network.loss``, each with an
  estimate of its own error (see :func:`finite_differences`).

Every list comes from the catalog, so an entry added there is tested here
without an edit; points are drawn away from the kinks the catalog reports.
"""

import itertools
import zlib
from functools import cache

import numpy as np
import pytest
import sympy as sp

from backprop_derived import Network
from backprop_derived.symbolic.catalog import (
    ACTIVATIONS,
    LOSSES,
    REQUIRED_OUTPUT,
    a,
    fix_heaviside,
    is_elementwise,
    kinks,
    output_pairs,
    y,
    z,
    zv,
)

HIDDEN = [name for name in ACTIVATIONS if is_elementwise(name)]
PAIRS = output_pairs()
MODULES = ["scipy", "numpy"]  # erf is SciPy's
EPS = np.finfo(np.float64).eps
KINK_MARGIN = 1e-2  # far larger than any finite-difference step's effect on z or a
k = sp.Symbol("k", integer=True)


@cache
def activation_function(name):
    return sp.lambdify(z, ACTIVATIONS[name], MODULES)


@cache
def derivative_function(name):
    return sp.lambdify(z, fix_heaviside(sp.diff(ACTIVATIONS[name], z)), MODULES)


def index_form(expr, K):
    """A per-unit index-form expression (sums over the units) on a layer of K units."""
    return expr.replace(
        lambda e: isinstance(e, sp.Sum),
        lambda e: sp.Sum(e.function, (e.variables[0], 0, K - 1)).doit())


def evaluate_units(expr, K, **arrays):
    """Evaluate ``expr`` (free index k, bases a, y, z) for every unit k, row by row."""
    bases = {"a": a, "y": y, "z": zv}
    finite = index_form(expr, K)
    syms = {name: [sp.Symbol(f"{name}{i}") for i in range(K)] for name in arrays}
    out = np.empty_like(next(iter(arrays.values())))
    for unit in range(K):
        e = finite.subs(k, unit).doit()
        for name in arrays:
            e = e.xreplace({bases[name][i]: syms[name][i] for i in range(K)})
        f = sp.lambdify([s for name in arrays for s in syms[name]], e, MODULES)
        out[:, unit] = f(*[col for arr in arrays.values() for col in arr.T])
    return out


def forward(name, Z):
    if is_elementwise(name):
        return activation_function(name)(Z) + 0 * Z
    return evaluate_units(ACTIVATIONS[name], Z.shape[1], z=Z)


def distance_to_kinks(expr, **arrays):
    """The smallest |kink expression| over the arrays (inf without kinks)."""
    plain = {name: sp.Symbol(name) for name in arrays}
    to_plain = {a[k]: sp.Symbol("a"), y[k]: sp.Symbol("y"), zv[k]: sp.Symbol("z"),
                z: sp.Symbol("z")}
    worst = np.inf
    for kink in kinks(expr):
        f = sp.lambdify(list(plain.values()), kink.xreplace(to_plain), MODULES)
        worst = min(worst, float(np.abs(f(*arrays.values())).min()))
    return worst


def output_delta(delta_expr, A, Zo, Y):
    """Evaluate a derived delta_k (index form) on a concrete layer of K units."""
    return evaluate_units(delta_expr, A.shape[1], a=A, y=Y, z=Zo)


def symbolic_gradients(net, X, Y, deltas):
    """Backprop from the derived equations, evaluated numerically."""
    m = X.shape[0]
    As, Zs = [X], []
    for W, b, name in zip(net.weights, net.biases, net.activations, strict=True):
        Zl = As[-1] @ W.T + b  # z_j = b_j + sum_i a_i w_ij
        Zs.append(Zl)
        As.append(forward(name, Zl))
    pair = (net.activations[-1], net.loss_name)
    delta = output_delta(deltas[pair], As[-1], Zs[-1], Y)  # dE/dz_k per example
    dW, db = [], []
    for l in range(len(net.weights) - 1, -1, -1):
        dW.insert(0, delta.T @ As[l] / m + net.l2 / m * net.weights[l])  # dE/dw_jk = delta_k a_j
        db.insert(0, delta.sum(axis=0) / m)  # dE/db_k = delta_k
        if l:
            g_prime = derivative_function(net.activations[l - 1])(Zs[l - 1]) + 0 * Zs[l - 1]
            delta = g_prime * (delta @ net.weights[l])  # delta_j = g'(z_j) sum_k delta_k w_jk
    return dW, db


def finite_differences(net, X, Y):
    """Central differences of the cost and a bound on their error, entry by entry.

    Step h = eps^(1/3) max(1, |p|) balances truncation (~h^2) against rounding
    (~eps |J| / h). The truncation error is estimated from the data, by the
    difference between the steps h and 2h; rounding from the cost's size.
    """
    h0 = EPS ** (1 / 3)
    J = net.loss(X, Y)
    grads, errors = [], []
    for P in (net.weights, net.biases):
        for p in P:
            g, err = np.empty_like(p), np.empty_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                h = h0 * max(1.0, abs(old))
                values = {}
                for s in (-2, -1, 1, 2):
                    p[idx] = old + s * h
                    values[s] = net.loss(X, Y)
                p[idx] = old
                d1 = (values[1] - values[-1]) / (2 * h)
                d2 = (values[2] - values[-2]) / (4 * h)
                g[idx] = d1
                err[idx] = abs(d1 - d2) + 64 * EPS * max(abs(J), 1.0) / h
            grads.append(g)
            errors.append(err)
    n = len(net.weights)
    return grads[:n], grads[n:], errors


def relative_error(got, ref):
    return max(np.abs(g - r).max() / max(np.abs(r).max(), 1e-300) for g, r in zip(got, ref, strict=True))


def targets(loss, m, K, rng):
    """Targets a loss accepts: in the range of the output activation it requires, if any."""
    required = REQUIRED_OUTPUT.get(loss)
    Zt = rng.normal(scale=2, size=(m, K))
    return Zt if required is None else forward(required, Zt)


def make_case(hidden, pair, depth, m, l2, seed):
    """A network and data away from every kink of its activations and loss."""
    out_act, loss = pair
    rng = np.random.default_rng(seed)
    widths = [3, *[4, 3, 4][: depth - 1], 3]
    acts = [hidden[i % len(hidden)] for i in range(depth - 1)] + [out_act]
    for _ in range(100):
        net = Network(widths, acts, loss=loss, l2=l2, seed=int(rng.integers(1 << 30)))
        X = rng.normal(size=(m, widths[0]))
        Y = targets(loss, m, widths[-1], rng)
        A, near = X, np.inf
        for W, b, name in zip(net.weights, net.biases, acts, strict=True):
            Zl = A @ W.T + b
            near = min(near, distance_to_kinks(ACTIVATIONS[name], z=Zl))
            A = forward(name, Zl)
        near = min(near, distance_to_kinks(LOSSES[loss], a=A, y=Y))
        if near > KINK_MARGIN:
            return net, X, Y
    raise RuntimeError("could not draw a case away from the kinks")


N = len(HIDDEN)
CASES = (
    # every output pair, l2 on and off; the hidden activation rotates
    [((HIDDEN[i % N],), pair, 2, 3, l2)
     for i, (pair, l2) in enumerate(itertools.product(PAIRS, (0.0, 0.1)))]
    # every hidden activation in a two-hidden-layer network; the pair rotates
    + [((h, HIDDEN[(i + 1) % N]), PAIRS[i % len(PAIRS)], 3, 4, 0.05)
       for i, h in enumerate(HIDDEN)]
    # depths 1-4 and batch sizes 1 and >1; activations and pairs rotate
    + [(tuple(HIDDEN[d:] + HIDDEN[:d]), PAIRS[(5 * i) % len(PAIRS)], d, m, 0.05)
       for i, (d, m) in enumerate(itertools.product((1, 2, 3, 4), (1, 5)))]
)


def test_every_entry_is_covered():
    hidden_seen = {h for hs, _, d, _, _ in CASES for h in hs[: d - 1]}
    assert hidden_seen == set(HIDDEN)
    assert {pair for _, pair, *_ in CASES} == set(PAIRS)


@pytest.mark.parametrize(
    ("hidden", "pair", "depth", "m", "l2"), CASES,
    ids=[f"{'-'.join(h[: d - 1]) or 'none'}|{p[0]}+{p[1]}|depth{d}|m{m}|l2={l2}"
         for h, p, d, m, l2 in CASES])
def test_three_routes_agree(hidden, pair, depth, m, l2, output_deltas):
    net, X, Y = make_case(list(hidden), pair, depth, m, l2,
                          seed=zlib.crc32(repr((hidden, pair, depth, m, l2)).encode()))
    loss, dW, db = net.gradients(X, Y)
    sW, sb = symbolic_gradients(net, X, Y, output_deltas)
    fW, fb, errors = finite_differences(net, X, Y)
    assert np.isfinite(loss)
    assert relative_error(dW + db, sW + sb) < 1e-12, "generated vs symbolic"
    for got, numeric, err in zip(dW + db, fW + fb, errors, strict=True):
        excess = np.abs(got - numeric) - 4 * err
        assert (excess <= 0).all(), (
            f"generated vs finite differences: {got} vs {numeric} (error bound {err})")
