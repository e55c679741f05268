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
# # Losses × activations
#
# The backward pass starts at the output layer with
# $\delta_k = \partial E / \partial z_k$, the error at the output
# pre-activations. By the chain rule it is the derivative of the loss with
# respect to the output, times the derivative of the output activation:
# $\delta_k = g'(z_k) \cdot \partial E / \partial a_k$ for an elementwise $g$.
# Readers of Nielsen's [chapter 3](http://neuralnetworksanddeeplearning.com/chap3.html)
# know the surprise: for some pairs of loss and
# activation the factor $g'$ disappears, and $\delta_k$ is simply
# $a_k - y_k$. That matters, because $g'$ is what makes a saturated unit learn
# slowly (the lesson [Why σ′ disappears](../../lessons/sigma_prime/) plots it).
#
# ## Where $g'$ cancels
#
# The table shows the pairs where it happens, and one where it does not. Every
# formula in it is computed on this page: $\partial E/\partial a_k$ by
# differentiating the catalog's loss, $g'$ from the Activations page written
# through the output $a_k$, and $\delta_k$ from the proven chains further down.
# The reason in the last column is checked by SymPy too: the page fails to
# build if the factor it names does not cancel.

# %%
from functools import cache

import sympy as sp
from sympy import KroneckerDelta, Sum

from backprop_derived.symbolic.catalog import (
    ACTIVATIONS,
    LOSSES,
    a,
    is_elementwise,
    m,
    output_pairs,
    y,
    z,
    zv,
)
from backprop_derived.symbolic.checked import Chain, StepNotVerified, expand_sums
from backprop_derived.symbolic.display import text_html
from backprop_derived.symbolic.entries import (
    chain_rule,
    cost_factor,
    derive_delta,
    loss_value,
    output_exports,
)
from backprop_derived.symbolic.pages import show, show_folded, show_html
from backprop_derived.symbolic.printers import latex
from backprop_derived.symbolic.techniques import derive_activation

SOURCE = "derivations/07_losses_x_activations.py"
k, p, q = sp.symbols("k p q", integer=True)
a_sym = sp.Symbol("a", real=True)
# Both routes, and the loss values and kernels below, are functions of
# symbolic/entries.py that take a definition rather than its name in the
# catalog, so they take any one-line activation or loss the same way.


# %%
EXPORTS = []
DELTAS = {}
CHAINS = {}
for act, loss in output_pairs():
    CHAINS[act, loss] = derive_delta(act, ACTIVATIONS[act], loss, LOSSES[loss])
    DELTAS[act, loss] = CHAINS[act, loss][-1].result


@cache
def activation_derivative(act: str):
    """g' of the Activations page (written through a where SymPy finds a form)."""
    return derive_activation(act, ACTIVATIONS[act], a_sym)[2]


def dE_da_k(loss: str) -> sp.Expr:
    """dE/da_k of the catalog's loss, written over one fraction."""
    return sp.factor(sp.together(expand_sums(sp.diff(LOSSES[loss].xreplace({k: q}), a[k]).doit())))


def g_prime_of_a(act: str) -> sp.Expr:
    """g'(z_k) of the Activations page, written through the output a_k."""
    return sp.factor(activation_derivative(act).subs({a_sym: a[k], z: zv[k]}))


def cancels(act: str, loss: str) -> str:
    """Why the g' factor goes (or stays), each claim checked here before it is printed."""
    dE, delta = dE_da_k(loss), DELTAS[act, loss]
    if not is_elementwise(act):
        # softmax: dE/da_p carries 1/a_p, the Jacobian a_p([p = k] - a_k) the a_p
        dE_p = dE.xreplace({a[k]: a[p], y[k]: y[p]})
        if sp.cancel(dE_p * a[p]).has(a[p]) or not dE_p.has(a[p]):
            raise StepNotVerified(f"{act}/{loss}: the a_p of the Jacobian does not cancel")
        return (r"the factor $a_p$ of the Jacobian cancels the $1/a_p$ of "
                r"$\partial E/\partial a_p$; the bracket $[p = k]$ keeps one term of the sum, "
                r"and targets summing to one, $\sum_p y_p = 1$, leave $a_k - y_k$")
    gp = g_prime_of_a(act)
    if gp == 1:
        if sp.expand(delta - dE) != 0:
            raise StepNotVerified(f"{act}/{loss}: delta is not dE/da")
        return r"$g' = 1$: there is nothing to cancel, $\partial E/\partial a_k$ is already $\delta_k$"
    if sp.simplify(sp.denom(dE) / gp) in (1, -1) and not sp.cancel(delta).has(sp.denom(dE)):
        return (r"the denominator of $\partial E/\partial a_k$ is $g'$ written through $a_k$, "
                r"so the two cancel")
    if sp.cancel(delta / gp - dE) != 0:
        raise StepNotVerified(f"{act}/{loss}: delta is neither dE/da with g' cancelled nor times g'")
    return r"nothing cancels: $g'$ stays, and it is near 0 for a saturated unit ($a_k$ near 0 or 1)"


STORY = (("sigmoid", "binary_cross_entropy"), ("softmax", "cross_entropy"),
         ("identity", "squared_error"), ("sigmoid", "squared_error"))


def cell(tex: str) -> str:
    return rf"\(\displaystyle {tex}\)"


def story_table() -> str:
    """The cancellation table, every formula printed from this page's results;
    under each pair, the reason its factor cancels (or stays)."""
    head = ("<tr><th>output, loss</th><th>\\(\\partial E/\\partial a_k\\)</th>"
            "<th>\\(g'\\) through \\(a\\)</th><th>\\(\\delta_k\\)</th></tr>")
    rows = []
    for act, loss in STORY:
        if is_elementwise(act):
            dE, local = cell(latex(dE_da_k(loss))), cell(latex(g_prime_of_a(act)))
        else:
            dE = cell(r"\frac{\partial E}{\partial a_p} = " + latex(
                dE_da_k(loss).xreplace({a[k]: a[p], y[k]: y[p]})))
            local = cell(r"\frac{\partial a_p}{\partial z_k} = "
                         + latex(a[p] * (KroneckerDelta(p, k) - a[k])))
        delta = latex(DELTAS[act, loss])
        rows.append(f'<tr class="pair"><td><code>{act}</code>, <code>{loss}</code></td>'
                    f"<td>{dE}</td><td>{local}</td><td>{cell(delta)}</td></tr>"
                    f'<tr class="why"><td colspan="4">Why: {text_html(cancels(act, loss))}'
                    "</td></tr>")
    caption = ("The output error \\(\\delta_k\\) of four pairs. In the first three the "
               "factor \\(g'\\) is gone and \\(\\delta_k = a_k - y_k\\); in the last it "
               "stays.")
    return (f'<figure class="cancellations"><figcaption>{caption}</figcaption>'
            f'<table><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table></figure>')


show_html(story_table())

# %% [markdown]
# The proofs behind the table. For each pair, the first line is the chain rule
# through $a_k$ with the activation's $g'$ put in, and the next line is the
# cancellation. For softmax the Jacobian comes first: each output $a_p$ depends
# on every $z_k$, so the chain rule sums over $p$.

# %%
for act, loss in STORY:
    show(*CHAINS[act, loss], caption=f"{act} output, {loss.replace('_', ' ')}")

# %% [markdown]
# ### Softmax with cross-entropy: the assumption behind $a_k - y_k$
#
# The derived delta is $a_k \sum_p y_p - y_k$, not the familiar $a_k - y_k$.
# The two agree only when the targets of an example sum to one, as one-hot
# labels and probability vectors do. The generated code keeps the general
# form, so its gradient stays exact for any non-negative targets. The
# textbook form follows by substituting the assumption:

# %%
general = DELTAS["softmax", "cross_entropy"]
sum_y = next(iter(general.atoms(Sum)))
assumed = Chain(sp.Symbol(r"\delta_k"), general.subs(sum_y, 1), r"with $\sum_p y_p = 1$")
assumed.step(a[k] - y[k], "the textbook output delta")
show(assumed, caption="Softmax with cross-entropy, targets summing to one")

# %% [markdown]
# ## Every pair of the catalog
#
# The same derivation runs for **every** pair of output activation and loss
# that the runtime accepts, along two independent routes:
#
# * **direct**: substitute $a_p = g(z_p)$ into the loss and let SymPy
#   differentiate the whole thing with respect to $z_k$;
# * **chain rule**: $\delta_k = \sum_p \frac{\partial a_p}{\partial z_k} \cdot
#   \frac{\partial E}{\partial a_p}$. For an elementwise $g$ only $p = k$
#   survives, giving $g'(z_k) \cdot \frac{\partial E}{\partial a_k}$. For softmax
#   every $p$ contributes, through its Jacobian $a_p([p = k] - a_k)$. The
#   bracket $[p = k]$ is 1 for $p = k$ and 0 otherwise: the Kronecker delta,
#   written as an Iverson bracket so that $\delta$ always means an error.
#
# The chain-rule route is written through the outputs $a$, which is what the
# code has in hand. SymPy proves it equal to the direct route with $a = g(z)$
# substituted: for an elementwise output once per loss, for an arbitrary $g$
# (the chains just below), after which each activation's $g'$ (proven on the
# Activations page) is put in; for softmax with its Jacobian, with index sums
# that hold for any number of units. The table and the chains of all pairs are
# folded; the [Generated code](../../generated-code/) page shows the same
# table beside the kernels.

# %%
for loss, E in LOSSES.items():  # the chain rule through any elementwise g, once per loss
    show(chain_rule(loss, E), caption=f"{loss.replace('_', ' ')}, any elementwise output g")


def catalog_table() -> str:
    rows = "".join(
        f"<tr><td><code>{act}</code></td><td><code>{loss}</code></td>"
        f"<td>{cell(latex(delta))}</td></tr>" for (act, loss), delta in DELTAS.items())
    return ('<details class="note chain-fold"><summary>The output error of all '
            f"{len(DELTAS)} pairs, as a table</summary><table><thead><tr><th>output</th>"
            "<th>loss</th><th>\\(\\delta_k\\)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></details>")


show_html(catalog_table())
show_folded(f"The chains of all {len(CHAINS)} pairs", [
    (chains, f"{act} output, {loss.replace('_', ' ')}") for (act, loss), chains in CHAINS.items()])

# %% [markdown]
# ## Loss values that cannot overflow
#
# The loss is evaluated from whatever avoids $\log 0$ and $e^{1000}$. A loss
# without a logarithm (squared error, absolute error, Huber) is evaluated from
# $a$. A loss with one is evaluated from $z$: for an elementwise output, with
# the exponentials split by the sign of $z$ (binary cross-entropy with a sigmoid
# becomes $\max(z,0) - yz + \log(1 + e^{-|z|})$ in disguise); for softmax,
# through the log of a quotient and a log-sum-exp shifted by the row maximum $c$.

# %%
VALUES = {}
for act, loss in output_pairs():
    chains, VALUES[act, loss] = loss_value(act, ACTIVATIONS[act], loss, LOSSES[loss])
    show(*chains, caption=f"The value of {loss.replace('_', ' ')} with a {act} output")

# %% [markdown]
# ## The cost: where $1/m$ comes from
#
# The network minimizes the cost $C$ of the catalog: the mean over the batch
# of the per-example losses $L_s$. Its derivative with respect to one
# example's loss is the factor that multiplies that example's output delta
# (the chain rule through $C$). $C$ is linear in the $L_s$, so the same
# factor turns the per-example losses into the cost's value.

# %%
dC_dL = cost_factor()
show(dC_dL, caption="The cost: where 1/m comes from")
PER_EXAMPLE = dC_dL.result

# %% [markdown]
# ## From these results to code
#
# Each pair gets a loss kernel and a delta kernel. A softmax output also gets
# one pass that computes $a$, the delta of the cost and its value together,
# sharing the exponentials and the row sums (the Generated code page shows it).
# In that pass a sum over the units of one example, $\sum_k x_k$, is the
# product $x\,\mathbf{1}$ with a ones vector over the units. That is the same
# device as $db = \mathbf{1}^\top dZ$ in (V2), and BLAS does it as a
# matrix-vector product. The row maximum $c$ is taken over a transposed copy, so
# the reduction runs along the batch. Both replace NumPy reductions along rows
# of a few units, which cost more than the rest of the output layer (see the
# Performance page).

# %%
for (act, loss), delta in DELTAS.items():
    EXPORTS += output_exports(act, ACTIVATIONS[act], loss, delta, VALUES[act, loss],
                              PER_EXAMPLE, SOURCE)

# %% [markdown]
# ## Exercises
#
# The deltas are per unit: write $a$, $y$, $z$ for $a_k$, $y_k$, $z_k$. The
# live engine proves your answer equal to the delta derived above (case by
# case where there is a kink) or says what is off; the answer is one click
# away without it.

# %%
from backprop_derived.symbolic.exercises import Exercise, show_exercises

show_exercises(
    Exercise(r"\(\delta_k\) for a softplus output with squared error.",
             DELTAS["softplus", "squared_error"], typed="(a - y)*(1 - exp(-a))"),
    Exercise(r"\(\delta_k\) for a sigmoid output with binary cross-entropy.",
             DELTAS["sigmoid", "binary_cross_entropy"], typed="a - y"),
    Exercise(r"\(\delta_k\) for a tanh output with absolute error.",
             DELTAS["tanh", "absolute_error"], typed="sign(a - y)*(1 - a**2)"),
    Exercise(r"The factor \(\partial C/\partial L_s\) that multiplies every example's delta "
             r"in a batch of \(m = 32\) examples.", float(PER_EXAMPLE.subs(m, 32)),
             tolerance=1e-12),
)
