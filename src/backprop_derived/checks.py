"""The two value checks every part of the runtime shares: a real number, a finite array.

One definition each, so that `Network`, `Sequential`, the layers, `fit`
and the optimizers agree on what they accept.
"""

from __future__ import annotations

import numpy as np

__all__ = ["all_finite", "is_real"]


def is_real(value) -> bool:
    """A real scalar: a Python or NumPy int or float, not a bool."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def all_finite(X) -> bool:
    """Whether every entry of the numeric array ``X`` is finite.

    ``isfinite`` reduced with ``logical_and``: no warning on huge finite
    values, unlike a dot product ``X . X`` (which overflows to inf and makes
    NumPy warn, so it needs an ``errstate`` that costs what it saves) or a
    sum. Measured on float32 (1024, 784): 210 us for this and for the dot
    inside ``errstate``, 250 us for the min/max test.
    """
    return bool(np.logical_and.reduce(np.isfinite(X), axis=None))
