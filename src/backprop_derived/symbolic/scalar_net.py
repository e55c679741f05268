"""The one-hidden-layer network of the scalar derivation (seed 000), in index form.

Notation of the seed: input activations ``a_i``, weights ``w_ij`` into hidden
pre-activations ``z_j``, hidden activations ``a_j = g(z_j)``, weights ``w_jk``
into output pre-activations ``z_k``, outputs ``a_k = g(z_k)``, targets
``t_k``. The same letter on two layers is two SymPy objects (the seed tells
them apart by the index letter): they print alike and never collide.

Free indices are ``i, j, k``; the sums inside the definitions use their own
bound indices, so no summation dummy can leak into a free index (the pitfall
the issue saw with ``simplify``).
"""

from __future__ import annotations

import sympy as sp
from sympy import Function, IndexedBase, Sum, oo

i, j, k = sp.symbols("i j k", integer=True)
_i, _j, _k = (sp.Symbol(f"{n}'", integer=True) for n in "ijk")

g = Function("g")
g_prime = Function("g'")

# One object per layer; the assumption only separates them.
a_in = IndexedBase(sp.Symbol("a", positive=True))
w_in = IndexedBase(sp.Symbol("w"))
b_hid = IndexedBase(sp.Symbol("b"))
z_hid = IndexedBase(sp.Symbol("z"))
a_hid = IndexedBase(sp.Symbol("a"))
w_out = IndexedBase(sp.Symbol("w", real=True))
b_out = IndexedBase(sp.Symbol("b", real=True))
z_out = IndexedBase(sp.Symbol("z", real=True))
a_out = IndexedBase(sp.Symbol("a", real=True))
t = IndexedBase(sp.Symbol("t"))
delta_out = IndexedBase(sp.Symbol(r"\delta", real=True))
delta_hid = IndexedBase(sp.Symbol(r"\delta"))


def z_out_def(unit):
    """z_k = b_k + sum_j a_j w_jk (the seed writes b_j here: see Errata)."""
    return b_out[unit] + Sum(a_hid[_j] * w_out[_j, unit], (_j, -oo, oo))


def z_hid_def(unit):
    """z_j = b_j + sum_i a_i w_ij."""
    return b_hid[unit] + Sum(a_in[_i] * w_in[_i, unit], (_i, -oo, oo))


def error():
    """Eq. (1): E = 1/2 sum_k (a_k - t_k)^2."""
    return Sum((a_out[_k] - t[_k]) ** 2, (_k, -oo, oo)) / 2


def _on(base):
    return lambda x: isinstance(x, sp.Indexed) and x.base == base


def expand_definitions(e: sp.Basic) -> sp.Basic:
    """Substitute every definition down to the inputs, weights and biases."""
    e = e.replace(_on(delta_out), lambda x: (a_out[x.indices[0]] - t[x.indices[0]])
                  * g_prime(z_out[x.indices[0]]))
    e = e.replace(_on(delta_hid), lambda x: g_prime(z_hid[x.indices[0]]) * Sum(
        delta_out[_k] * w_out[x.indices[0], _k], (_k, -oo, oo)))
    e = e.replace(_on(delta_out), lambda x: (a_out[x.indices[0]] - t[x.indices[0]])
                  * g_prime(z_out[x.indices[0]]))
    e = e.replace(_on(a_out), lambda x: g(z_out[x.indices[0]]))
    e = e.replace(_on(z_out), lambda x: z_out_def(x.indices[0]))
    e = e.replace(_on(a_hid), lambda x: g(z_hid[x.indices[0]]))
    e = e.replace(_on(z_hid), lambda x: z_hid_def(x.indices[0]))
    xi = sp.Dummy("xi")
    return e.replace(
        lambda x: isinstance(x, sp.core.function.AppliedUndef) and x.func == g_prime,
        lambda x: sp.Subs(sp.Derivative(g(xi), xi), xi, x.args[0]),
    )


def d(expr, wrt):
    """An unevaluated derivative, for display; proofs evaluate it."""
    return sp.Derivative(expr, wrt)
