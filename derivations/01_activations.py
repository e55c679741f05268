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
# # Activations
#
# Every activation in the catalog is one SymPy expression in $z$
# (`src/backprop_derived/symbolic/catalog.py`). This page derives, for each
# one, everything the backward pass needs:
#
# 1. its derivative $g'(z)$, by `sympy.diff` of the definition;
# 2. where one exists, a form of $g'$ written through the **output**
#    $a = g(z)$ alone. The backward pass then reuses the activations stored by
#    the forward pass instead of recomputing an exponential. SymPy *searches*
#    for that form (it inverts $a = g(z)$, or eliminates $u = e^{z}$ between
#    $a$ and $g'$) and then *proves* it: plain `simplify` of the sigmoid's
#    derivative returns $1/(4\cosh^2(z/2))$, which is correct but useless for
#    this purpose;
# 3. a form of $g$ (and of $g'$ where it needs $z$) in which no exponential
#    can overflow: at $z = -1000$, $e^{-z}$ is `inf` in float64.
#
# Each line marked ✓ below is an equality that SymPy proved when this page was
# built; the small label next to the mark names how (`simplify`, `by sign`,
# ...), and ▸ `start` marks the definition a chain starts from. If a proof
# fails, the page fails to build, and so does `backprop-derived regenerate`.
#
# Two functions appear in the results that are not in every calculus course.
# $H(z)$ is the Heaviside step: 1 for $z > 0$ and 0 for $z \le 0$ (the value
# at the kink is a choice; 0 is the one PyTorch makes), so the ReLU's slope is
# $H(z)$. $\mathrm{expm1}(x) = e^x - 1$ and
# $\mathrm{log1p}(x) = \log(1 + x)$ are the same functions as written,
# computed without the cancellation that loses every digit when $x$ is tiny;
# the generated code calls NumPy's `expm1` and `log1p`.

# %%
import sympy as sp

from backprop_derived.symbolic.catalog import ACTIVATIONS, is_elementwise
from backprop_derived.symbolic.entries import activation_exports, bp4
from backprop_derived.symbolic.kernels import ActivationEntry, Kernel
from backprop_derived.symbolic.pages import show, show_math
from backprop_derived.symbolic.printers import RowMax, latex
from backprop_derived.symbolic.techniques import shift_exponentials, to_batch

SOURCE = "derivations/01_activations.py"
# (V4) from the derivation engine, dZ = dA * g'(Z) for an undefined g (shown
# on the Vectorized page), takes each activation's own g' in
# `activation_exports`, which also builds the activation's kernels.


# %% [markdown]
# ## Elementwise activations
#
# For each activation, the first chain differentiates the definition and
# rewrites the derivative through $a$ when it can. The second chain, shown
# where the definition contains an exponential, is the overflow-free form
# that the generated code evaluates.


# %%
EXPORTS = []
for name, g in ACTIVATIONS.items():
    if not is_elementwise(name):
        continue
    chains, exports = activation_exports(name, g, SOURCE)
    show(*chains, caption=name)
    EXPORTS += exports

# %% [markdown]
# ## Softmax
#
# Softmax is not elementwise: every output depends on every pre-activation of
# its layer. That is why the runtime allows it only at the output, where its
# Jacobian meets the loss in the output delta (see *Losses × activations*).
# Its forward pass has to be stable too: subtracting any constant $c$ from every
# $z_j$ leaves softmax unchanged. With $c = \max_j z_j$, every exponential is at
# most 1. SymPy proves the shift invariance for a symbolic $c$ and any number
# of units: $e^{z_j - c} = e^{z_j} e^{-c}$, and $e^{-c}$, free of the summation
# index, comes out of the sum and cancels.

# %%
c = sp.Symbol("c", real=True)
SHIFTED = {}  # every activation in index form (softmax), shifted by c
for name, g in ACTIVATIONS.items():
    if not is_elementwise(name):
        SHIFTED[name] = shift_exponentials(g, c, sp.Symbol("a_k"))
        show(SHIFTED[name], caption=f"{name}, shifted by c")

# %% [markdown]
# In the batch form, $z_k$ becomes the row of pre-activations of an example,
# $\sum_j$ becomes a sum over that row, and $c$ becomes the row maximum:

# %%
for name, shift in SHIFTED.items():
    batch = to_batch(shift.result).subs(c, RowMax(sp.Symbol("z", real=True)))
    show_math(r"a = " + latex(batch))
    EXPORTS += [
        Kernel("activations", name, ("z", "out", "scratch"), batch,
               f"a = {name}(z) over each row, shifted by the row maximum (cannot overflow).",
               "Forward pass a = g(z)", SOURCE, style="array"),
        ActivationEntry(name, name, None, None, needs_z=False, elementwise=False,
                        latex=latex(ACTIVATIONS[name]),
                        derivative_latex=r"\text{(output layer only)}"),
    ]

# %% [markdown]
# ## Exercises
#
# Check an expression with the live engine (it proves your answer equal to
# the one derived above, or says what is off); the answer is one click away
# without it. Write SymPy: `a*(1 - a)`, `exp(-z)`, `Heaviside(z)`.

# %%
from backprop_derived.symbolic.exercises import Exercise, show_exercises
from backprop_derived.symbolic.techniques import derive_activation

a = sp.Symbol("a", real=True)  # the output a = g(z), as the Activations chains write it


def derived_through_a(name):
    """The first chain's result for a catalog activation: g' through a where one exists."""
    return derive_activation(name, ACTIVATIONS[name], a)[0][0].result


show_exercises(
    Exercise(r"The derivative of softplus \(g(z) = \log(1 + e^z)\), written through its "
             r"output \(a = g(z)\) only.", derived_through_a("softplus"), typed="1 - exp(-a)"),
    Exercise(r"The derivative of \(\tanh\), written through \(a = \tanh z\).",
             derived_through_a("tanh"), typed="1 - a**2"),
    Exercise(r"(V4) for a sigmoid layer: \(dZ\) for one unit, given the upstream \(dA\) "
             r"(write <code>da</code>) and the output \(a\).",
             bp4(derived_through_a("sigmoid")), typed="da*a*(1 - a)"),
    Exercise(r"The slope \(\mathrm{relu}'(0)\) this catalog uses at the kink.",
             float(derive_activation("relu", ACTIVATIONS["relu"], a)[2].subs(a, 0)),
             tolerance=0.0),
)
