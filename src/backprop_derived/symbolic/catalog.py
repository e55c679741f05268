"""The catalog: every activation and loss, each ONE SymPy expression.

This file is the single source for the generated NumPy code, the LaTeX on the
site and the parametrised tests. To add an activation, add one entry to
``ACTIVATIONS`` (an expression in the real symbol ``z``) and run
``make regenerate``; its derivative, its stable form, its output deltas, code,
LaTeX and tests all follow from the expression.

Conventions
-----------
* Elementwise activations are expressions in the scalar ``z``.
* ``softmax`` is written in index form over the output units: ``z[k]`` with a
  sum over ``j``. The infinite limits are deliberate: SymPy differentiates
  such sums cleanly (finite limits wrap the result in an index-range
  Piecewise); pages and tests confirm results on finite instances.
* Losses are per example, summed over the output units ``k``; the network's
  cost is their mean over the batch (plus the L2 term).
"""

from __future__ import annotations

import sympy as sp
from sympy import Heaviside, IndexedBase, Max, Sum, exp, log, oo, tanh

z = sp.Symbol("z", real=True)
j, k = sp.symbols("j k", integer=True)
zv = IndexedBase("z", real=True)  # pre-activations of the output layer, z[k]
a = IndexedBase("a", real=True)  # activations of the output layer, a[k]
y = IndexedBase("y", real=True)  # targets, y[k]

ACTIVATIONS: dict[str, sp.Expr] = {
    "identity": z,
    "sigmoid": 1 / (1 + exp(-z)),
    "tanh": tanh(z),
    # Max(0, z) differentiates to Heaviside(z); relu'(0) = 0 is the usual
    # subgradient (SymPy's default Heaviside(0) is 1/2), so say it here.
    "relu": Max(0, z),
    "softplus": log(1 + exp(z)),
    "softmax": exp(zv[k]) / Sum(exp(zv[j]), (j, -oo, oo)),
    # Added after the others, to show that one line is all an activation needs.
    "swish": z / (1 + exp(-z)),
}

HEAVISIDE_AT_ZERO = sp.Integer(0)  # value of relu'(0) and of every Heaviside(0)

LOSSES: dict[str, sp.Expr] = {
    "squared_error": Sum((a[k] - y[k]) ** 2, (k, -oo, oo)) / 2,
    # Coursera's logistic cost, summed over the K output units.
    "binary_cross_entropy": -Sum(
        y[k] * log(a[k]) + (1 - y[k]) * log(1 - a[k]), (k, -oo, oo)
    ),
    "cross_entropy": -Sum(y[k] * log(a[k]), (k, -oo, oo)),
}

# The output activation a loss needs for its logarithms to be defined:
# binary cross-entropy takes a in (0, 1) per unit, cross-entropy a
# probability vector. squared_error takes any output activation.
REQUIRED_OUTPUT: dict[str, str] = {
    "binary_cross_entropy": "sigmoid",
    "cross_entropy": "softmax",
}


def is_elementwise(name: str) -> bool:
    """Elementwise activations are written in ``z``; others in index form."""
    return not ACTIVATIONS[name].has(sp.Indexed)


def fix_heaviside(expr: sp.Expr) -> sp.Expr:
    """Give every Heaviside the catalog's value at 0."""
    return expr.replace(
        lambda e: isinstance(e, Heaviside),
        lambda e: Heaviside(e.args[0], HEAVISIDE_AT_ZERO),
    )


def output_pairs() -> list[tuple[str, str]]:
    """Every (output activation, loss) pair the runtime accepts, sorted."""
    pairs = []
    for loss in sorted(LOSSES):
        for act in sorted(ACTIVATIONS):
            if REQUIRED_OUTPUT.get(loss, act) == act:
                pairs.append((act, loss))
    return pairs
