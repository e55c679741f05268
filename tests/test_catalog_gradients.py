"""Symbolic, generated and finite-difference gradients agree over the catalog.

Three independent routes to the same gradient:

* **symbolic**: SymPy's own results evaluated numerically: the catalog
  definitions of g and their ``sympy.diff`` derivatives (in z, not the
  a-forms the generator uses), the output deltas as derived on the
  *Losses × activations* page (index form, on a concrete layer), and the
  recurrences of the *Any depth* and *Vectorized* pages;
* **generated**: ``Network.gradients`` on the generated kernels;
* **numerical**: central finite differences of ``Network.loss`` (eps = 1e-4).
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
    a,
    fix_heaviside,
    is_elementwise,
    output_pairs,
    y,
    z,
    zv,
)

HIDDEN = [name for name in ACTIVATIONS if is_elementwise(name)]
PAIRS = output_pairs()
k = sp.Symbol("k", integer=True)


@cache
def activation_function(name):
    return sp.lambdify(z, ACTIVATIONS[name], "numpy")


@cache
def derivative_function(name):
    return sp.lambdify(z, fix_heaviside(sp.diff(ACTIVATIONS[name], z)), "numpy")


def softmax(Z):
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def output_delta(delta_expr, A, Zo, Y):
    """Evaluate a derived delta_k (index form) on a concrete layer of K units."""
    K = A.shape[1]
    finite = delta_expr.replace(
        lambda e: isinstance(e, sp.Sum),
        lambda e: sp.Sum(e.function, (e.variables[0], 0, K - 1)).doit())
    out = np.empty_like(A)
    syms_a = [sp.Symbol(f"a{i}") for i in range(K)]
    syms_y = [sp.Symbol(f"y{i}") for i in range(K)]
    syms_z = [sp.Symbol(f"z{i}") for i in range(K)]
    for unit in range(K):
        e = finite.subs(k, unit).doit()
        e = e.xreplace({a[i]: syms_a[i] for i in range(K)})
        e = e.xreplace({y[i]: syms_y[i] for i in range(K)})
        e = e.xreplace({zv[i]: syms_z[i] for i in range(K)})
        f = sp.lambdify(syms_a + syms_y + syms_z, e, "numpy")
        out[:, unit] = f(*A.T, *Y.T, *Zo.T)
    return out


def symbolic_gradients(net, X, Y, deltas):
    """Backprop from the derived equations, evaluated numerically."""
    m = X.shape[0]
    As, Zs = [X], []
    for W, b, name in zip(net.weights, net.biases, net.activations, strict=True):
        Zl = As[-1] @ W.T + b  # z_j = b_j + sum_i a_i w_ij
        Zs.append(Zl)
        As.append(softmax(Zl) if name == "softmax" else activation_function(name)(Zl) + 0 * Zl)
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


def finite_differences(net, X, Y, eps=1e-4):
    grads = []
    for P in (net.weights, net.biases):
        for p in P:
            g = np.empty_like(p)
            for idx in np.ndindex(p.shape):
                old = p[idx]
                p[idx] = old + eps
                plus = net.loss(X, Y)
                p[idx] = old - eps
                minus = net.loss(X, Y)
                p[idx] = old
                g[idx] = (plus - minus) / (2 * eps)
            grads.append(g)
    n = len(net.weights)
    return grads[:n], grads[n:]


def relative_error(got, ref):
    return max(np.abs(g - r).max() / max(np.abs(r).max(), 1e-300) for g, r in zip(got, ref, strict=True))


def make_case(hidden, pair, depth, m, l2, seed):
    """A network and data away from relu's kink (finite differences need that)."""
    out_act, loss = pair
    rng = np.random.default_rng(seed)
    widths = [3, *[4, 3, 4][: depth - 1], 3]
    acts = [hidden[i % len(hidden)] for i in range(depth - 1)] + [out_act]
    for _ in range(100):
        net = Network(widths, acts, loss=loss, l2=l2, seed=int(rng.integers(1 << 30)))
        X = rng.normal(size=(m, widths[0]))
        if loss == "cross_entropy":
            Y = rng.integers(0, widths[-1], size=m)
        elif loss == "binary_cross_entropy":
            Y = rng.integers(0, 2, size=(m, widths[-1])).astype(float)
        else:
            Y = rng.normal(size=(m, widths[-1]))
        A = X
        near_kink = False
        for W, b, name in zip(net.weights, net.biases, acts, strict=True):
            Zl = A @ W.T + b
            near_kink |= name == "relu" and bool((np.abs(Zl) < 1e-2).any())
            A = softmax(Zl) if name == "softmax" else activation_function(name)(Zl) + 0 * Zl
        if not near_kink:
            return net, X, Y
    raise RuntimeError("could not draw a case away from the relu kink")


CASES = (
    # every hidden activation with every output pair, l2 on and off
    [((h,), pair, 2, 3, l2) for h, pair, l2 in itertools.product(HIDDEN, PAIRS, (0.0, 0.1))]
    # depths 1-4 and batch sizes 1 and >1 for every pair, hidden activations rotating
    + [(tuple(HIDDEN[d:] + HIDDEN[:d]), pair, d, m, 0.05)
       for pair, d, m in itertools.product(PAIRS, (1, 2, 3, 4), (1, 5))]
)


@pytest.mark.parametrize(
    ("hidden", "pair", "depth", "m", "l2"), CASES,
    ids=[f"{'-'.join(h[: d - 1]) or 'none'}|{p[0]}+{p[1]}|depth{d}|m{m}|l2={l2}"
         for h, p, d, m, l2 in CASES])
def test_three_routes_agree(hidden, pair, depth, m, l2, output_deltas):
    net, X, Y = make_case(list(hidden), pair, depth, m, l2,
                          seed=zlib.crc32(repr((hidden, pair, depth, m, l2)).encode()))
    if pair[1] == "cross_entropy":
        Y_onehot = np.eye(net.layer_sizes[-1])[Y]
    else:
        Y_onehot = Y
    loss, dW, db = net.gradients(X, Y)
    sW, sb = symbolic_gradients(net, X, Y_onehot, output_deltas)
    fW, fb = finite_differences(net, X, Y)
    assert np.isfinite(loss)
    assert relative_error(dW + db, sW + sb) < 1e-12, "generated vs symbolic"
    assert relative_error(dW + db, fW + fb) < 1e-7, "generated vs finite differences"
