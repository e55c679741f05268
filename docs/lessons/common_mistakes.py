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
# # Common mistakes
#
# Six wrong versions of the backpropagation equations that are easy to write
# when implementing Nielsen's chapter 2 or the Coursera exercise from the
# formulas. Each one looks plausible, and several even have the
# right shape, so NumPy runs them without complaint. For each, SymPy computes
# the right answer by differentiating the definition, evaluates the wrong
# variant on the same small example, and the page shows the two numbers side
# by side. The page fails to build if a wrong variant ever agrees with the
# right answer on its example.

# %% tags=["hide-input"]
import sympy as sp
from IPython.display import Markdown, display

from backprop_derived.symbolic.catalog import ACTIVATIONS, z


def num(v) -> str:
    return f"{float(v):.6g}"


def refute(what: str, rows) -> None:
    """Show right and wrong values; fail the build unless some row differs."""
    lines = ["| " + what + " | right (SymPy) | wrong variant |", "|---|---|---|"]
    differs = False
    for label, right, wrong in rows:
        right, wrong = sp.nsimplify(right), sp.nsimplify(wrong)
        same = sp.simplify(right - wrong) == 0
        differs |= not same
        lines.append(f"| {label} | {num(right)} | {num(wrong)}{'' if same else ' ✗'} |")
    assert differs, f"{what}: the wrong variant agrees with the right answer on this example"
    display(Markdown("\n".join(lines)))


# %% [markdown]
# ## 1. The slope taken at the output instead of the input
#
# Wrong: $\delta_k = (a_k - t_k)\, g'(a_k)$. Right: $g'(z_k)$. The slope of
# the activation belongs at the point the activation was applied to, the
# pre-activation $z$. The mix-up comes from the sigmoid's convenient form
# $g'(z) = a(1 - a)$, which *is* written with $a$, but it is $g'$ at $z$
# expressed through $a$, not $g'$ at $a$. Below, $g'$ is SymPy's derivative
# of each catalog activation, evaluated at $z = 1$ and at $a = g(1)$:

# %% tags=["hide-input"]
rows, agree = [], []
for name in ("sigmoid", "tanh", "softplus", "relu"):
    g = ACTIVATIONS[name]
    g_prime = sp.diff(g, z)
    at = sp.Rational(1)
    right = g_prime.subs(z, at)
    wrong = g_prime.subs(z, g.subs(z, at))
    if sp.simplify(right - wrong) == 0:
        agree.append(name)
    rows.append((f"`{name}`: $g'(z)$ at $z = 1$ vs $g'(a)$", right.evalf(), wrong.evalf()))
refute("activation", rows)
if agree:
    display(Markdown(
        f"For {', '.join(f'`{n}`' for n in agree)} the two agree at $z = 1$: the ReLU's "
        "slope is 1 wherever its output is positive, so $g'(a) = g'(z)$ for $z > 0$ (and "
        "both are 0 for $z < 0$). For the ReLU the mistake is harmless; for the smooth "
        "activations above it gives a wrong gradient at every $z$ tested."))

# %% [markdown]
# ## 2. The bias gradient as a mean over units
#
# Wrong: `db = dZ.mean(axis=1)`, averaging each example's errors over the
# units of the layer. Right: $\partial E/\partial b_r = \sum_{t=0}^{m-1} dZ_{tr}$, the
# sum of unit $r$'s errors over the $m$ examples $t$ of the batch (with the
# $\frac{1}{m}$ of the mean cost inside $dZ$). A bias is shared by all
# examples, not by all units. With as many examples as units, as below, the
# wrong version even has the right shape.

# %% tags=["hide-input"]
m, n = 2, 2
A = sp.Matrix(m, n, sp.symbols("A_:2:2"))
W = sp.Matrix(n, n, sp.symbols("W_:2:2"))
b = sp.Matrix(sp.symbols("b_:2"))
G = sp.Matrix([[sp.Rational(3, 10), -1], [sp.Rational(1, 2), 2]])  # upstream dE/dZ
Z = A * W.T + sp.ones(m, 1) * b.T
E = sum(G[t, r] * Z[t, r] for t in range(m) for r in range(n))  # E is linear in Z: dE/dZ = G
refute("$\\partial E/\\partial b_r$",
       [(f"unit $r = {r}$", sp.diff(E, b[r]), sum(G[r, c] for c in range(n)) / n)
        for r in range(n)])

# %% [markdown]
# ## 3. A regularized bias
#
# Wrong: adding $\frac{\lambda}{m} b$ to the bias gradient, as for the
# weights. The L2 penalty $\frac{\lambda}{2m}\sum W^2$ of the Coursera cost
# contains no bias (column 0 of $\Theta$ is left out), so its derivative with
# respect to a bias is 0 and the bias gradient is unchanged.

# %% tags=["hide-input"]
lam, mm = sp.Rational(1, 10), 2
penalty = lam / (2 * mm) * sum(w**2 for w in W)
point = {b[0]: sp.Rational(1, 2), b[1]: -2, **{w: 1 for w in W}}
refute("$\\partial P/\\partial b_r$",
       [(f"bias $b_{r}$ $= {point[b[r]]}$", sp.diff(penalty, b[r]).subs(point),
         (lam / mm * b[r]).subs(point)) for r in range(n)])

# %% [markdown]
# ## 4. A missing (or misplaced) transpose
#
# Wrong: `dA_prev = dZ @ W.T`. Right: `dA_prev = dZ @ W` in this project's
# batch-first layout, where `Z = A_prev @ W.T + b` (textbook form:
# $dA^{[l-1]} = W^{[l]T} dZ^{[l]}$). With a square weight matrix both
# products run, and only the numbers tell them apart. SymPy differentiates
# $E$ with respect to each $A_{ts}$ directly:

# %% tags=["hide-input"]
values = {w: v for w, v in zip(W, (1, 2, -1, sp.Rational(1, 2)), strict=True)}
wrong = (G * W.T).subs(values)
refute("$\\partial E/\\partial A_{ts}$",
       [(f"$t = {t}$, $s = {s}$", sp.diff(E, A[t, s]).subs(values), wrong[t, s])
        for t in range(m) for s in range(n)])

# %% [markdown]
# ## 5. `=` where `+=` is needed
#
# Wrong: `Delta = delta @ a.T` inside the loop over examples. Right:
# `Delta += delta @ a.T`, Coursera's accumulator
# $\Delta^{(l)} := \Delta^{(l)} + \delta^{(l+1)} (a^{(l)})^T$. The weight
# gradient is a sum over examples; assigning instead of adding keeps only the
# last example's share. The same slip inside one example drops paths: a unit
# that feeds several units must *add* the error that comes back along each.
# Below, $dW = \partial E/\partial W$ from SymPy against the loop with `=`:

# %% tags=["hide-input"]
a_rows = {A[0, 0]: 1, A[0, 1]: 2, A[1, 0]: -1, A[1, 1]: 3}
Delta = sp.zeros(n, n)
for t in range(m):  # the wrong loop: assignment
    Delta = G[t, :].T * A[t, :]
right = sp.Matrix(n, n, lambda r, s: sp.diff(E, W[r, s]))
refute("$\\partial E/\\partial W_{rs}$",
       [(f"$r = {r}$, $s = {s}$", right[r, s].subs(a_rows), Delta[r, s].subs(a_rows))
        for r in range(n) for s in range(n)])

# %% [markdown]
# ## 6. Only the diagonal of the softmax Jacobian
#
# Wrong: $\delta_k = \frac{\partial E}{\partial a_k}\, a_k (1 - a_k)$, the
# elementwise rule applied to softmax. Right:
# $\delta_k = \sum_p \frac{\partial E}{\partial a_p}\frac{\partial a_p}{\partial z_k}$.
# Every softmax output depends on every $z_k$, so the off-diagonal terms
# $\partial a_p/\partial z_k = -a_p a_k$ count too. With cross-entropy and a
# one-hot target, the wrong version gives 0 for every unit but the labelled
# one: the network would never be told to lower the wrong classes.

# %% tags=["hide-input"]
zs = sp.symbols("z_:3")
ys = (0, 1, 0)
soft = [sp.exp(zi) / sum(sp.exp(zj) for zj in zs) for zi in zs]
E_ce = -sum(yk * sp.log(ak) for yk, ak in zip(ys, soft, strict=True))
at = dict(zip(zs, (1, 2, sp.Rational(1, 2)), strict=True))
rows = []
for k in range(3):
    right = sp.diff(E_ce, zs[k]).subs(at)
    dE_da = -ys[k] / soft[k]
    wrong = (dE_da * soft[k] * (1 - soft[k])).subs(at)
    rows.append((f"unit $k = {k}$, target {ys[k]}", right.evalf(), wrong.evalf()))
refute("$\\delta_k$", rows)

# %% [markdown]
# The right column is $a_k - y_k$, as derived on the
# [Losses × activations](../derivations/07_losses_x_activations.py) page; the
# wrong one keeps only the labelled unit's share.
