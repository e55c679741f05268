# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Any depth
#
# The hidden-layer page derives $\delta_j$ from $\delta_k$ for one particular
# pair of layers. Backpropagation needs the same step between *any* layer $l$
# and the layer $l+1$ after it, whatever comes after that. We prove it as an
# induction:
#
# * **base case**: the output layer's $\delta^{L}_k = \partial E/\partial z^{L}_k$,
#   derived for every (activation, loss) pair on *Losses × activations*;
# * **inductive step**: if $\delta^{l+1}_k = \partial E / \partial z^{l+1}_k$,
#   then $\delta^{l}_j = \partial E / \partial z^{l}_j = g'(z^l_j) \sum_k w^{l+1}_{jk}\,\delta^{l+1}_k$.
#
# Then $\partial E / \partial w^{l}_{ij} = \delta^{l}_j\, a^{l-1}_i$ and
# $\partial E / \partial b^{l}_j = \delta^{l}_j$ follow as on the earlier pages.
#
# ## The inductive step
#
# Everything downstream of layer $l+1$ (more layers, the loss, the targets)
# is one arbitrary function $F$ of that layer's pre-activations. SymPy
# differentiates $F$ through $z^{l+1}_k = b_k + \sum_j w_{jk}\, g(z^l_j)$ by
# its own chain rule and compares the result with the recurrence. Both $F$
# and $g$ are undefined functions, so the step holds for every network that
# can follow, which is what an induction needs. The check is exact on a
# layer of 3 units feeding 2, for every $j$.

# %%
import itertools

import sympy as sp
from sympy import Function, IndexedBase, Sum, oo

from backprop_derived.symbolic.checked import Chain, prove_equal
from backprop_derived.symbolic.pages import show

g, F = Function("g"), Function("F")
n_l, n_next = 3, 2
z = sp.symbols(f"z_0:{n_l}", real=True)
w = sp.Matrix(n_l, n_next, lambda r, c: sp.Symbol(f"w_{r}{c}", real=True))
b = sp.symbols(f"b_0:{n_next}", real=True)
z_next = [b[c] + sum(w[r, c] * g(z[r]) for r in range(n_l)) for c in range(n_next)]
E = F(*z_next)  # whatever the rest of the network computes


def delta_next(c):
    """delta^{l+1}_c = dE/dz^{l+1}_c: F's c-th partial derivative at z^{l+1}."""
    u = sp.symbols(f"u_0:{n_next}")
    return sp.Subs(sp.Derivative(F(*u), u[c]), u, z_next)


for unit in range(n_l):
    recurrence = sp.diff(g(z[unit]), z[unit]) * sum(w[unit, c] * delta_next(c)
                                                     for c in range(n_next))
    proof = prove_equal(sp.diff(E, z[unit]), recurrence)
    if proof is None:
        raise AssertionError(f"the recurrence fails for unit {unit}")
print(f"delta^l_j = g'(z_j) sum_k w_jk delta^(l+1)_k holds for j = 0..{n_l - 1}")

# %% [markdown]
# The same step in index form, for any number of units: SymPy differentiates
# $z^{l+1}_k$ with respect to $z^l_j$ (the Kronecker delta collapses the sum),
# and the multivariable chain rule
# $\frac{\partial E}{\partial z^l_j} = \sum_k \frac{\partial E}{\partial z^{l+1}_k}\frac{\partial z^{l+1}_k}{\partial z^l_j}$
# gives the recurrence:

# %%
j, k, jj = sp.symbols("j k j'", integer=True)
zl, zn, wl, bl, dl = (IndexedBase(n) for n in ("z", "z^{(l+1)}", "w", "b", r"\delta^{(l+1)}"))
local = sp.diff(bl[k] + Sum(wl[jj, k] * g(zl[jj]), (jj, -oo, oo)), zl[j]).doit()
step = Chain(sp.Symbol(r"\delta^{(l)}_j"), Sum(dl[k] * local, (k, -oo, oo)),
             r"chain rule, $\partial z^{(l+1)}_k/\partial z^{(l)}_j$ from sympy.diff")
step.step(sp.Derivative(g(zl[j]), zl[j]) * Sum(wl[j, k] * dl[k], (k, -oo, oo)),
          r"factors free of $k$ leave the sum")
show(step, caption="The inductive step")

# %% [markdown]
# ## Exact confirmation on concrete networks
#
# For small networks, SymPy can expand the whole loss in explicit scalar
# symbols, differentiate it with respect to every weight and bias, and compare
# each result with backpropagation's answer. The difference must expand to
# exactly 0. `simplify` is far too slow for this (55 s for a 2-3-2 sigmoid
# net). Instead, each activation is a SymPy `Function` whose derivative is
# written through itself ($\sigma' = \sigma(1-\sigma)$, $\tanh' = 1-\tanh^2$),
# and `expand` decides. Those two derivative identities are checked against
# the exponential definitions first.


# %%
class S(Function):
    """Sigmoid whose derivative SymPy writes through itself."""

    def fdiff(self, argindex=1):
        return S(self.args[0]) * (1 - S(self.args[0]))


class T(Function):
    """tanh whose derivative SymPy writes through itself."""

    def fdiff(self, argindex=1):
        return 1 - T(self.args[0]) ** 2


x = sp.Symbol("x", real=True)
for name, f, definition in (("sigmoid", S, 1 / (1 + sp.exp(-x))), ("tanh", T, sp.tanh(x))):
    identity = sp.diff(f(x), x).subs(f(x), definition) - sp.diff(definition, x)
    assert sp.simplify(identity.rewrite(sp.exp)) == 0, name


def confirm(sizes, acts, seed_names="xtw"):
    """Whole-loss derivatives vs backprop, exactly, for one concrete network."""
    L = len(sizes) - 1
    W = [sp.Matrix(sizes[l + 1], sizes[l], lambda r, c, l=l: sp.Symbol(f"w{l + 1}_{r}{c}"))
         for l in range(L)]
    B = [sp.Matrix(sizes[l + 1], 1, lambda r, _, l=l: sp.Symbol(f"b{l + 1}_{r}"))
         for l in range(L)]
    X = sp.Matrix(sizes[0], 1, lambda r, _: sp.Symbol(f"x_{r}"))
    Tg = sp.Matrix(sizes[-1], 1, lambda r, _: sp.Symbol(f"t_{r}"))
    A, Z = [X], []
    for l in range(L):
        Z.append(W[l] * A[-1] + B[l])
        A.append(Z[-1].applyfunc(acts[l]))
    E = sum((A[-1][r] - Tg[r]) ** 2 for r in range(sizes[-1])) / 2
    # backprop: output delta, then the recurrence, then delta a^T and delta
    d_act = [lambda zz, f=f: sp.diff(f(x), x).subs(x, zz) for f in acts]
    delta = (A[-1] - Tg).multiply_elementwise(Z[-1].applyfunc(d_act[-1]))
    checked = 0
    for l in range(L - 1, -1, -1):
        dW, db = delta * A[l].T, delta
        for r, c in itertools.product(range(sizes[l + 1]), range(sizes[l])):
            assert sp.expand(sp.diff(E, W[l][r, c]) - dW[r, c]) == 0, (sizes, l, r, c)
            checked += 1
        for r in range(sizes[l + 1]):
            assert sp.expand(sp.diff(E, B[l][r]) - db[r]) == 0, (sizes, l, r)
            checked += 1
        if l:
            delta = (W[l].T * delta).multiply_elementwise(Z[l - 1].applyfunc(d_act[l - 1]))
    return checked


for sizes, acts in (([2, 2, 2], [S, S]), ([1, 2, 2, 1], [T, T, S]), ([2, 2, 2, 2], [S, T, S])):
    n = confirm(sizes, acts)
    print(f"{'-'.join(map(str, sizes))} ({', '.join(f.__name__ for f in acts)}): "
          f"{n} derivatives equal exactly")

# %% [markdown]
# Exact expansion grows fast with depth and width. Here, a 2-3-3-3-2 sigmoid
# network did not finish in 400 s. The concrete checks therefore stay small,
# and the induction above carries the result to every depth. The generated
# code is tested numerically on networks up to four layers deep, against these
# formulas and against finite differences (`tests/test_catalog_gradients.py`).

# %% [markdown]
# ## The same recurrence, vectorized
#
# The generated code does not run the recurrence of this page; it runs the
# matrix forms of the *Vectorized* page, which the derivation engine obtains
# from the catalog's definition of a dense layer. The two must agree. Take
# the activation $A_{it} = g(Z^{(l)}_{it})$ of layer $l$ followed by the dense
# layer $l+1$, differentiate both with the engine, and write example $i$ of
# the result in this page's notation: $z^{(l)}_j = Z^{(l)}_{ij}$, the weight
# $w_{jk}$ from unit $j$ to unit $k$ is $W_{kj}$ (the runtime stores $W$ as
# $(n_\text{out}, n_\text{in})$), and $\delta^{(l+1)}_k = m\, dZ_{ik}$,
# because $dZ$ is the derivative of the *mean* over the batch. SymPy proves the
# recurrence above equal to $m$ times the engine's result, for any layer widths,
# so a false step on this page, or a change to the layer's definition that the
# recurrence does not follow, stops `backprop-derived regenerate`.

# %%
from backprop_derived.symbolic import catalog
from backprop_derived.symbolic.engine import backward
from backprop_derived.symbolic.kernels import Agreement

i_, t_ = catalog.i, catalog.t
Z_l = IndexedBase("Z^{(l)}", shape=catalog.A.shape, real=True)
layers = ((catalog.A[i_, t_], catalog.g(Z_l[i_, t_])), *catalog.DENSE)
grads = backward(layers, [Z_l])
dA, dZl = grads[catalog.A], grads[Z_l]
vectorized = dZl.expr.subs(dA.grad[dA.indices], dA.expr).xreplace(
    dict(zip(dZl.indices, (i_, j), strict=True)))
dZ = next(x.base for x in vectorized.atoms(sp.Indexed) if str(x.base.label) == "dZ")
m = catalog.m


def to_batch(e):
    """This page's example-level symbols as entries of example i of the batch."""
    e = e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == dl,
                  lambda x: m * dZ[i_, x.indices[0]])
    e = e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == wl,
                  lambda x: catalog.W[x.indices[1], x.indices[0]])
    e = e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == zl,
                  lambda x: Z_l[i_, x.indices[0]])
    # the formal sum over the units of layer l+1 runs over its n_out units
    return e.replace(lambda x: isinstance(x, Sum) and x.limits[0][1:] == (-oo, oo),
                     lambda x: Sum(x.function, (x.limits[0][0], 0, catalog.n_out - 1)))


agree = Chain(sp.Symbol(r"\delta^{(l)}_j"), step.result, "the recurrence, proven above",
              definitions=to_batch)
agree.step(m * vectorized, r"$m$ times the engine's $dZ^{(l)}_{ij}$ (V3 and V4)")
show(agree, caption="The recurrence is the vectorized (V3) and (V4)")

# %% [markdown]
# ## The Coursera form, vectorized
#
# The Coursera notes keep the bias as column 0 of
# $\Theta^{(l)} = [\,b \mid W\,]$ and prepend a 1 to each activation vector, so
# that $\Theta^{(l)} [1; a] = W a + b$. They loop over examples $t$ and
# accumulate $\Delta^{(l)} \mathrel{+}= \delta^{(t)} (a^{(t)})^T$, then take
# $D = \frac1m(\Delta + \lambda\Theta)$ outside column 0. Their
# $\delta^{(t)}_r$ is the derivative of example $t$'s own loss, so
# $\delta^{(t)}_r = m\,dZ_{tr}$, and $a^{(t)}_s = A_{ts}$. SymPy proves that
# the accumulated sums are V2 (column 0) and V1 (the other columns), for any
# batch size:

# %%
grads = backward(catalog.DENSE, [catalog.W, catalog.b])
W, b, A = catalog.W, catalog.b, catalog.A
t_ = sp.Symbol("t", integer=True)
m = A.shape[0]
delta_c, a_c = sp.IndexedBase(r"\delta", real=True), sp.IndexedBase("a", real=True)
dZ = grads[W].expr.atoms(sp.Indexed)
dZ_base = next(x.base for x in dZ if str(x.base.label) == "dZ")


def coursera_to_batch(e):
    """delta^(t)_r = m dZ_tr and a^(t)_s = A_ts."""
    e = e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == delta_c,
                  lambda x: m * dZ_base[x.indices[0], x.indices[1]])
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a_c,
                     lambda x: A[x.indices[0], x.indices[1]])


u, v = grads[W].indices
column_0 = Chain(sp.Symbol(r"\frac1m \Delta_{u0}"),
                 sp.Sum(delta_c[t_, u] * 1, (t_, 0, m - 1)) / m,
                 "Coursera's accumulator, column 0", definitions=coursera_to_batch)
column_0.step(grads[b].expr.xreplace({grads[b].indices[0]: u}), "(V2)")
columns = Chain(sp.Symbol(r"\frac1m \Delta_{u,v+1}"),
                sp.Sum(delta_c[t_, u] * a_c[t_, v], (t_, 0, m - 1)) / m,
                "Coursera's accumulator, column v + 1", definitions=coursera_to_batch)
columns.step(grads[W].expr, "(V1)")
show(column_0, columns, caption="Coursera's accumulator is (V2) and (V1)")

# %% tags=["hide-input"]
EXPORTS = [Agreement("layers.backpropagate", "derivations/05_any_depth.py",
                     "the delta recurrence of the scalar derivation"),
           Agreement("layers.weight_gradient", "derivations/05_any_depth.py",
                     "Coursera's accumulator Delta, columns 1 on"),
           Agreement("layers.bias_gradient", "derivations/05_any_depth.py",
                     "Coursera's accumulator Delta, column 0")]

# %% [markdown]
# ## Exercises
#
# Layer $l+1$ has two units here. Write $a_j$, $w_{j0}$, $w_{j1}$ and
# $\delta^{(l+1)}_0$, $\delta^{(l+1)}_1$ as `a_j`, `w_j0`, `w_j1`, `d_0`,
# `d_1`. The live engine proves your answer equal to the inductive step above
# with the sum written out; the answer is one click away without it.

# %%
from backprop_derived.symbolic.exercises import (
    Exercise,
    finite_sums,
    show_exercises,
    slope_through_output,
)

a_l = IndexedBase("a")


def delta_l(activation):
    """The inductive step's delta_j for two units in layer l+1, g' of one activation."""
    slope = slope_through_output(activation).subs(sp.Symbol("a", real=True), a_l[j])
    return finite_sums(step.result.subs(sp.Derivative(g(zl[j]), zl[j]), slope), 2)


example = {a_l[j]: 0.3, wl[j, 0]: 1, wl[j, 1]: -2, dl[0]: 0.5, dl[1]: 0.1}
show_exercises(
    Exercise(r"\(\delta^{(l)}_j\) for a sigmoid unit \(j\), in terms of \(a_j\), the weights and "
             r"the two deltas of layer \(l+1\).", delta_l("sigmoid"), indices=True,
             rename=((r"\delta^{(l+1)}", "d"),), typed="a_j*(1 - a_j)*(w_j0*d_0 + w_j1*d_1)"),
    Exercise(r"The same \(\delta^{(l)}_j\) as a number, with \(a_j = 0.3\), \(w_{j0} = 1\), "
             r"\(w_{j1} = -2\), \(\delta^{(l+1)}_0 = 0.5\), \(\delta^{(l+1)}_1 = 0.1\).",
             float(delta_l("sigmoid").subs(example)), tolerance=1e-9),
    Exercise(r"And for a \(\tanh\) unit with the same numbers (now \(a_j = \tanh z_j = 0.3\)).",
             float(delta_l("tanh").subs(example)), tolerance=1e-9),
)
