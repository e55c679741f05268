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
# # Errata
#
# The three tutorials this site starts from (the Clever Machine's scalar
# derivation, the Coursera ML wiki notes and EFAVDB's vectorized derivation,
# named and linked on the [Sources](../../sources/) page, which also lists the
# equations by number) are popular and, for the most part, right. They also contain slips that a careful reader can trip over.
# Errata 1–3 were pointed out by a reader in the first comment under the
# [Clever Machine's post](https://theclevermachine.wordpress.com/2014/09/06/derivation-error-backpropagation-gradient-descent-for-neural-networks/);
# the post, in the copy this site was built from, still prints all three. (Its
# author has since moved the material to his GitHub pages site, which these
# errata have not been checked against.)
# Each slip below is encoded **exactly as published**. SymPy then shows
# it false by evaluating both sides on a small concrete network and getting
# different numbers. The corrected form sits next to it and is proven
# equal (✓) like every other step on this site.
#
# All examples use a network with 2 inputs, 2 hidden units and 2 outputs,
# $g = \tanh$, and fixed rational values for every input, weight and bias.

# %%
import sympy as sp

from backprop_derived.symbolic.checked import Chain, prove_equal
from backprop_derived.symbolic.pages import show

n = 2
g = sp.tanh
a_in = sp.symbols("a_1:3", real=True)  # inputs a_i
w_ij = sp.Matrix(n, n, lambda r, c: sp.Symbol(f"w_{r + 1}{c + 1}", real=True))
w_jk = sp.Matrix(n, n, lambda r, c: sp.Symbol(f"v_{r + 1}{c + 1}", real=True))  # w_jk
b_j = sp.symbols("b_1:3", real=True)
b_k = sp.symbols("c_1:3", real=True)
t = sp.symbols("t_1:3", real=True)
z_j = [b_j[j] + sum(a_in[i] * w_ij[i, j] for i in range(n)) for j in range(n)]
a_j = [g(z) for z in z_j]
z_k = [b_k[k] + sum(a_j[j] * w_jk[j, k] for j in range(n)) for k in range(n)]
a_k = [g(z) for z in z_k]
E = sum((a_k[k] - t[k]) ** 2 for k in range(n)) / 2

values = dict(zip(
    [*a_in, *w_ij, *w_jk, *b_j, *b_k, *t],
    [sp.Rational(v, 10) for v in (3, -7, 5, 1, -4, 8, 6, -2, 9, -5, 2, 7, -3, 4, 1, -6)],
    strict=True,
))


def refute(published, correct, what):
    """Show ``published != correct`` by a concrete evaluation (printed, not returned)."""
    left = sp.N(published.subs(values), 12)
    right = sp.N(correct.subs(values), 12)
    if abs(left - right) < 1e-9:
        raise AssertionError(f"{what}: the published form is not refuted here")
    print(f"{what}\n  as published: {left}\n  correct:      {right}")


# %% [markdown]
# ## 1. Eq. (8) sums over $z_i$ where $a_i$ is meant
#
# The last line of eq. (8) reads
# $z_k = b_k + \sum_j g_j\!\left(b_i + \sum_i z_i w_{ij}\right) w_{jk}$.
# The hidden pre-activation is built from the *inputs* $a_i$, not from
# pre-activations $z_i$. The input layer has no $z_i$ at all; if $z_i$ is read
# as the input-layer pre-activation whose activation is $a_i$, it equals
# $g^{-1}(a_i)$. The bias should also be $b_j$. As published, with
# $z_i = \operatorname{artanh} a_i$:

# %%
z_i = [sp.atanh(a) for a in a_in]
published_8 = b_k[0] + sum(g(b_j[j] + sum(z_i[i] * w_ij[i, j] for i in range(n))) * w_jk[j, 0]
                           for j in range(n))
refute(published_8, z_k[0], "eq. (8), z_1 of the output layer")
corrected_8 = b_k[0] + sum(g(b_j[j] + sum(a_in[i] * w_ij[i, j] for i in range(n))) * w_jk[j, 0]
                           for j in range(n))
show(Chain(sp.Symbol("z_k"), z_k[0], "definition").step(corrected_8, r"eq. (8) corrected: $a_i$"),
     caption="Eq. (8) corrected")

# %% [markdown]
# ## 2. Between eq. (3) and (4): $z_k$ written with $b_j$
#
# The text says "recall that $z_k = b_j + \sum_j g_j(z_j) w_{jk}$". With $b_j$ in
# place of $b_k$, the output unit's own bias drops out of its
# pre-activation. $\partial z_k/\partial b_k$ would then be 0, and eq. (6)
# ($\partial E/\partial b_k = \delta_k$) could not follow. Reading $b_j$ as
# the bias of hidden unit 1 (the free $j$ outside the sum):

# %%
published_zk = b_j[0] + sum(a_j[j] * w_jk[j, 0] for j in range(n))
print("dz_k/db_k as published:", sp.diff(published_zk, b_k[0]), "  correct:", sp.diff(z_k[0], b_k[0]))
assert sp.diff(published_zk, b_k[0]) == 0 and sp.diff(z_k[0], b_k[0]) == 1
refute(published_zk, z_k[0], "z_k with b_j")

# %% [markdown]
# ## 3. The hidden-bias section: title and index
#
# The last section, which derives the *hidden* bias gradient, is titled
# "output layer biases, $w_{ij}$" and writes the hidden bias as $b_i$, as in
# $\partial z_j / \partial b_i$ with $z_j = b_i + \sum_i a_i w_{ij}$. On
# the Clever Machine's own notation list, $i$ indexes the *input* layer. A $b_i$ would be
# a bias per input unit, and inside $\sum_i$ the same letter is the summation
# index. What the section computes is $\partial E/\partial b_j = \delta_j$
# (eq. 12). With the published $z_j$, read as a bias per input unit that is
# added in once, the derivative with respect to the hidden unit's own bias
# vanishes:

# %%
b_i = sp.symbols("beta_1:3", real=True)  # one bias per input unit, as the letter says
published_zj = [b_i[0] + sum(a_in[i] * w_ij[i, j] for i in range(n)) for j in range(n)]
published_E = sum((g(b_k[k] + sum(g(published_zj[j]) * w_jk[j, k] for j in range(n))) - t[k]) ** 2
                  for k in range(n)) / 2
print("dE/db_j (hidden unit 1) as published:", sp.diff(published_E, b_j[0]))
delta_k = [(a_k[k] - t[k]) * sp.diff(g(sp.Symbol("u")), sp.Symbol("u")).subs(sp.Symbol("u"), z_k[k])
           for k in range(n)]
delta_j = sp.diff(g(z_j[0]), b_j[0]) * sum(delta_k[k] * w_jk[0, k] for k in range(n))
eq12 = Chain(sp.Symbol(r"\partial E/\partial b_j"), sp.diff(E, b_j[0]), "sympy.diff of E")
eq12.step(delta_j, r"eq. (12) with $b_j$: $\delta_j$")
show(eq12, caption="Eq. (12)")

# %% [markdown]
# ## 4. Eq. (2) and (7) drop the derivative
#
# Both equations open with $\frac{\partial E}{\partial w} = \frac12 \sum_k (a_k - t_k)^2$,
# which sets a derivative equal to the error itself. The derivative operator
# is missing on the right. Two numbers, and the corrected first step:

# %%
refute(E, sp.diff(E, w_jk[0, 0]), "eq. (2): dE/dw_jk written as E")
eq2 = Chain(sp.Symbol(r"\partial E/\partial w_{jk}"), sp.diff(E, w_jk[0, 0]), "sympy.diff of E")
eq2.step((a_k[0] - t[0]) * sp.diff(a_k[0], w_jk[0, 0]), r"eq. (2) corrected: $(a_k - t_k)\, \partial a_k/\partial w_{jk}$")
show(eq2, caption="Eq. (2)")

# %% [markdown]
# ## 5. Coursera notes: the intuition section's cost has lost its sign
#
# "Backpropagation Intuition"
# ([section of the notes](../../sources/#coursera-intuition)) writes
# $\text{cost}(t) = y^{(t)}\log h + (1-y^{(t)})\log(1-h)$. The cost function
# two lines above has a leading minus sign, and without it this "cost" is
# the log-likelihood, which training *maximizes*. For a confident, correct
# prediction it should be near 0 from above:

# %%
h, yv = sp.symbols("h y", positive=True)
published_cost = yv * sp.log(h) + (1 - yv) * sp.log(1 - h)
cost = -(yv * sp.log(h) + (1 - yv) * sp.log(1 - h))
print("h = 0.9, y = 1:  as published", sp.N(published_cost.subs({h: sp.Rational(9, 10), yv: 1}), 6),
      "  correct", sp.N(cost.subs({h: sp.Rational(9, 10), yv: 1}), 6))
assert prove_equal(published_cost, cost) is None

# %% [markdown]
# ## 6. Coursera notes: three Theta matrices for a three-layer network
#
# The unrolling section ([of the notes](../../sources/#coursera-unrolling))
# unrolls `Theta1`, `Theta2` and `Theta3` for "a network with 3 layers". The notes correct this themselves: three layers have two
# weight matrices, `Theta1` (10×11) and `Theta2` (1×11). Our `unroll`
# (see *Gradient checking*) takes one matrix per layer transition.
#
# ## 7. Coursera notes: the regularized gradient on the lecture slide
#
# The slide quoted in the algorithm section
# ([of the notes](../../sources/#coursera-backprop)) writes
# $D = \frac1m\Delta + \lambda\Theta$, and the notes fix it to
# $\frac1m(\Delta + \lambda\Theta)$. The *Regularization* page shows SymPy
# telling the two apart.

# %% [markdown]
# ## Exercises
#
# The numbers are this page's network at its values (listed in the first
# exercise); the expression is checked by the live engine. The answers are
# one click away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, show_exercises

listed = ", ".join(rf"\({sp.latex(s)} = {float(v):g}\)" for s, v in values.items())
show_exercises(
    Exercise(rf"\(\partial E/\partial b_1\) of the first hidden unit (eq. 12, corrected), at "
             rf"{listed}.", float(eq12.result.subs(values)), tolerance=1e-9),
    Exercise(r"\(\partial E/\partial v_{11}\), the weight from hidden unit 1 to output 1 "
             r"(eq. 2, corrected), at the same values.", float(eq2.result.subs(values)),
             tolerance=1e-9),
    Exercise(r"The cost of one example, with its sign restored, in terms of the prediction "
             r"<code>h</code> and the label <code>y</code>.", cost,
             typed="-y*log(h) - (1 - y)*log(1 - h)"),
)
