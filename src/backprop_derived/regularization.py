"""The L2 penalty and its gradient, for `Network` and `Sequential` alike.

Both are generated kernels of derivations/08_regularization.py: ``l2_penalty``,
``(lambda / 2m) sum(W**2)`` of one weight array, and ``l2_gradient``, its
gradient ``(lambda / m) W``, which is added to the gradient the backward pass
gave for that array. Biases are never penalized.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ._generated import layers

__all__ = ["add_l2_gradient", "l2_penalty"]


def l2_penalty(weights: Iterable[np.ndarray], lam: float, m: float) -> float:
    """The penalty of every weight array: sum over them of (lam / 2m) ||W||^2."""
    return sum(float(layers.l2_penalty(W, lam, m)) for W in weights)


def add_l2_gradient(pairs: Iterable[tuple[np.ndarray, np.ndarray]], lam: float,
                    m: float) -> None:
    """``g += (lam / m) W`` in place, for each (W, g): the penalty's share of dJ/dW."""
    for W, g in pairs:
        np.add(g, layers.l2_gradient(W, lam, m, np.empty_like(W)), out=g)
