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
# Readers of Nielsen's chapter 3 know the surprise: for some pairs of loss and
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
from sympy import KroneckerDelta, Sum, oo

from backprop_derived.symbolic.catalog import (
    ACTIVATIONS,
    COST,
    LOSSES,
    L,
    a,
    fix_heaviside,
    is_elementwise,
    m,
    output_pairs,
    y,
    z,
    zv,
)
from backprop_derived.symbolic.checked import Chain, StepNotVerified, assert_clean, expand_sums
from backprop_derived.symbolic.display import text_html
from backprop_derived.symbolic.kernels import Kernel, OutputEntry
from backprop_derived.symbolic.pages import show, show_folded, show_html
from backprop_derived.symbolic.printers import (
    RowMax,
    RowSum,
    float_form_is_exact,
    latex,
    numeric_form,
)
from backprop_derived.symbolic.techniques import (
    derive_activation,
    shift_exponentials,
    split_exponentials,
    to_batch,
)

SOURCE = "derivations/07_losses_x_activations.py"
j, k, p, q = sp.symbols("j k p q", integer=True)
a_sym = sp.Symbol("a", real=True)


# %%
def activation_of(name: str, index) -> sp.Expr:
    """a[index] as an expression of the pre-activations z[.]."""
    g = ACTIVATIONS[name]
    if is_elementwise(name):
        return g.subs(z, zv[index])
    return g.subs({sp.Symbol("k", integer=True): index})


def in_terms_of_z(act: str):
    """The definition a_p = g(z_p), applied at every index of an expression."""
    return lambda e: e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                               lambda x: activation_of(act, x.indices[0]))


g_any = sp.Function("g", real=True)  # any elementwise activation


def of_any_g(e):
    """The definition a_q = g(z_q) for an arbitrary elementwise g."""
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                     lambda x: g_any(zv[x.indices[0]]))


@cache
def chain_rule(loss: str) -> Chain:
    """delta_k = dE/da_k g'(z_k), proven once per loss for every elementwise g."""
    E = LOSSES[loss].xreplace({k: q})
    direct = assert_clean(expand_sums(sp.diff(of_any_g(E), zv[k]).doit()),
                          f"{loss}, direct route", abstract=True)
    dE_da = expand_sums(sp.diff(E, a[k]).doit())  # a function of a_k and y_k only
    chain = Chain(sp.Symbol(r"\delta_k"), direct, r"direct: $\partial E/\partial z_k$ with $a_q = g(z_q)$ substituted",
                  definitions=of_any_g)
    return chain.step(dE_da * sp.Derivative(g_any(zv[k]), zv[k]),
                      r"chain rule through $a_k = g(z_k)$")


@cache
def activation_derivative(act: str):
    return derive_activation(act, ACTIVATIONS[act], a_sym)[2]


def derive_delta(act: str, loss: str) -> list[Chain]:
    """The output delta of one pair, as the chains that prove it (the last one gives it)."""
    E = LOSSES[loss].xreplace({k: q})  # free the letter k for the unit we differentiate by
    if is_elementwise(act):
        general = chain_rule(loss)
        g_prime_k = activation_derivative(act).subs({a_sym: a[k], z: zv[k]})
        delta = general.result.subs(sp.Derivative(g_any(zv[k]), zv[k]), g_prime_k)
        chain = Chain(sp.Symbol(r"\delta_k"), delta,
                      f"{latex_name(act)}' from the Activations page")
        simpler = sp.factor(sp.cancel(delta))
        if not g_prime_k.has(zv[k]) and simpler != delta:  # a g' in z is already stable
            chain.step(simpler, "common factors cancelled")
        return [chain]
    direct = assert_clean(fix_heaviside(expand_sums(sp.diff(in_terms_of_z(act)(E), zv[k]).doit())),
                          f"{act}/{loss}, direct route")
    dE_da = expand_sums(sp.diff(E, a[p]).doit())  # a function of a_p and y_p only
    chain = Chain(sp.Symbol(r"\delta_k"), direct, r"direct: $\partial E/\partial z_k$ with $a = g(z)$ substituted",
                  definitions=in_terms_of_z(act), variables=(zv[k],))
    jac = expand_sums(sp.diff(activation_of(act, p), zv[k]).doit())
    jac_a = a[p] * (KroneckerDelta(p, k) - a[k])
    jacobian = Chain(sp.Symbol(r"\partial a_p/\partial z_k"), jac, rf"{act} differentiated by $z_k$",
                     definitions=in_terms_of_z(act))
    jacobian.step(jac_a, "written through the outputs")
    chain.step(Sum(dE_da * jac_a, (p, -oo, oo)), "chain rule through the Jacobian")
    chain.then(lambda e: sp.factor_terms(expand_sums(e)), r"the bracket $[k = p]$ keeps the one term $p = k$")
    return [jacobian, chain]


def latex_name(act: str) -> str:
    return rf"$\mathrm{{{act}}}$".replace("_", r"\_")


# %%
EXPORTS = []
DELTAS = {}
CHAINS = {}
for act, loss in output_pairs():
    CHAINS[act, loss] = derive_delta(act, loss)
    DELTAS[act, loss] = CHAINS[act, loss][-1].result


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
for loss in LOSSES:  # the chain rule through any elementwise g, once per loss
    show(chain_rule(loss), caption=f"{loss.replace('_', ' ')}, any elementwise output g")


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
c = sp.Symbol("c", real=True)
A, Y, Z, A_OUT = (sp.Symbol(n, real=True) for n in ("a", "y", "z", "a_out"))


def per_element(expr, index):
    """Drop the sums over the units: the loss kernels sum the terms over the whole batch.

    Right only for a linear combination of sums over ``index``; anything
    else (a log of a sum, a product of sums) fails here, loudly.
    """
    sums = sorted((s for s in expr.atoms(Sum) if list(s.variables) == [index]),
                  key=sp.default_sort_key)
    marks = sp.symbols(f"_u0:{len(sums)}")
    marked = expr.xreplace(dict(zip(sums, marks, strict=True)))
    linear = all(sp.diff(marked, u, v) == 0 for u in marks for v in marks)
    if not sums or not linear or marked.subs(dict.fromkeys(marks, 0)) != 0:
        raise StepNotVerified(f"not a sum over the units {index}: {expr}")
    return expr.replace(lambda e: isinstance(e, Sum) and list(e.variables) == [index],
                        lambda e: e.function)


def loss_value(act: str, loss: str):
    """The per-unit terms of the loss in a form that cannot overflow, and its chains."""
    E = LOSSES[loss].xreplace({k: q})
    if not E.has(sp.log):
        return [], to_batch(per_element(E, q))
    if is_elementwise(act):
        term = per_element(E, q).replace(
            lambda e: isinstance(e, sp.Indexed),
            lambda e: ACTIVATIONS[act] if e.base == a else sp.Symbol(str(e.base.label), real=True))
        stable = split_exponentials(term, z, "E_k")
        value = numeric_form(stable.result)
        if not float_form_is_exact(stable.result, value):
            raise StepNotVerified(f"{loss}/{act}: floating-point rewrite changed the loss")
        return [stable], value
    chain = Chain(sp.Symbol("E"), in_terms_of_z(act)(E), "definition of the loss, with $a = g(z)$")
    chain.then(expand_sums, "log of a quotient")

    def shift(e):
        sums = {s: sp.exp(c) * s.replace(lambda x: isinstance(x, sp.exp),
                                          lambda x: sp.exp(x.args[0] - c))
                for s in e.atoms(Sum) if isinstance(s.function, sp.exp)}
        return sp.powsimp(expand_sums(e.xreplace(sums)), combine="exp", deep=True)

    chain.then(shift, "log-sum-exp shifted by $c$")
    per_unit = sp.factor_terms(per_element(chain.result, q))  # y (c + log s - z): one product
    return [chain], to_batch(per_unit).subs(c, RowMax(Z))


VALUES = {}
for act, loss in output_pairs():
    chains, VALUES[act, loss] = loss_value(act, loss)
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
s_ = sp.Symbol("s", integer=True)  # one example of the batch
in_batch = {s_: (0, m - 1)}
dC_dL = Chain(sp.Symbol(r"\partial C/\partial L_s"), sp.diff(COST, L[s_]),
              "derivative of the cost", ranges=in_batch)
dC_dL.then(lambda e: expand_sums(e, in_batch), r"the delta picks example $s$ of the batch")
show(dC_dL, caption="The cost: where 1/m comes from")
PER_EXAMPLE = dC_dL.result
if PER_EXAMPLE.has(s_, L) or sp.diff(COST, L[s_], 2).doit() != 0:
    raise StepNotVerified(f"the cost must weigh every example's loss alike: {COST}")

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
    batch_delta = numeric_form(to_batch(delta))
    value = VALUES[act, loss]
    name = f"{loss}__{act}"
    array_style = batch_delta.has(RowSum)
    fused = None
    if not is_elementwise(act):
        # One pass for the output layer: softmax, loss and delta share the
        # exponentials and row sums (a from the Activations page's batch form).
        shifted = shift_exponentials(ACTIVATIONS[act], c, sp.Symbol("a_k")).result
        a_batch = to_batch(shifted).subs(c, RowMax(Z))
        fused = f"{name}_output"
        EXPORTS.append(Kernel(
            "losses", fused,
            ("z", "y", "m", "a_out", "delta_out", "scratch", "rows", "units", "transposed"),
            # a is written first; the delta and the loss then read it back
            (("a_out", a_batch), ("delta_out", (PER_EXAMPLE * batch_delta).subs(A, A_OUT)),
             ("return", (PER_EXAMPLE * value).subs(A, A_OUT))),
            f"Output layer of {act} with {loss} in one pass: a, the delta of the cost, and "
            "the cost's data term.", "Forward pass, loss value and output delta", SOURCE,
            style="fused",
            kinds=(("z", "full"), ("y", "full"), ("a_out", "full"), ("m", "scalar"))))
    EXPORTS += [
        Kernel("losses", name, ("a", "z", "y", "m"), PER_EXAMPLE * value,
               f"The cost's data term: the mean over the batch of the per-example {loss} "
               f"(output activation {act}).", "Loss value", SOURCE, style="scalar"),
        Kernel("losses", f"{name}_delta", ("a", "z", "y", "m", "out", "scratch"),
               PER_EXAMPLE * batch_delta,
               f"Output delta of the cost, dC/dL * dE/dz, for {act} with {loss} (dC/dL "
               "from the catalog's COST, folded in before the GEMMs).",
               "Output-layer delta, eq. (5)-(6)", SOURCE,
               style="array" if array_style else "ufunc"),
        OutputEntry(act, loss, name, f"{name}_delta",
                    needs_z=bool(batch_delta.has(Z) or value.has(Z)), latex=latex(delta),
                    fused=fused),
    ]
