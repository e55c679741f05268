"""``Network.weights`` and ``Network.biases``: lists whose entries are checked when assigned.

A network's parameters are public: a learner sets them by hand to follow a
worked example, the training loop updates them in place. Checking them when
they are assigned, rather than on every forward or backward call, puts the
error at the line that made the mistake and takes the check off the hot
path (on a tiny net it was a tenth of a whole ``gradients`` call).

An assigned array must have the layer's shape and the network's dtype and
hold only finite numbers. In-place updates (``net.weights[0][...] = W``,
``net.weights[0] -= lr * dW``) never change an array's shape or dtype, so they
need no check of those. A NaN or inf written in place is not seen here; it
makes the next loss non-finite, and only then does the network look for the
array that holds it and name it (``Network._check_parameters``), so a call
with good parameters pays nothing for that check. A NaN always reaches the
loss; an inf that a saturating activation turns into a finite value (tanh or
sigmoid of +-inf) can leave every result finite, and is then not reported. Changing an assigned
array's ``shape`` or ``dtype`` attribute in place is not detected here;
NumPy then reports the mismatch at the first matrix product.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn

import numpy as np

__all__ = ["ParameterList"]


class ParameterList(list):
    """One array per layer; ``check(layer, value)`` raises ValueError for a wrong one.

    The number of layers is fixed by ``layer_sizes``: methods that would add,
    remove or reorder entries raise TypeError instead.
    """

    def __init__(self, items: Iterable[Any], check: Callable[[int, Any], None], n: int):
        items = list(items)
        if len(items) != n:
            raise ValueError(f"expected {n} arrays (one per layer), got {len(items)}")
        for layer, value in enumerate(items):
            check(layer, value)
        super().__init__(items)
        self._check = check

    def __setitem__(self, index, value) -> None:
        if isinstance(index, slice):
            raise TypeError("assign one layer at a time, e.g. net.weights[0] = W")
        layer = range(len(self))[index]  # IndexError exactly as a list raises it
        self._check(layer, value)
        super().__setitem__(layer, value)

    def _fixed(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("the number and order of layers is fixed by layer_sizes; "
                        "assign one layer at a time, e.g. net.weights[0] = W")

    append = extend = insert = pop = remove = clear = sort = reverse = _fixed
    __delitem__ = __iadd__ = __imul__ = _fixed

    def __reduce__(self):
        # The default would rebuild the list through the blocked ``extend``.
        return (_restore, (list(self), self._check))


def _restore(items: list, check: Callable[[int, Any], None]) -> ParameterList:
    restored = ParameterList.__new__(ParameterList)
    list.extend(restored, items)
    restored._check = check
    return restored


def check_array(kind: str, layer: int, value: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if not (isinstance(value, np.ndarray) and value.shape == shape and value.dtype == dtype):
        raise ValueError(f"{kind}[{layer}] must be a {dtype} array of shape {shape}, "
                         f"got {getattr(value, 'dtype', type(value))} {np.shape(value)}")
    # Unlike any sum, a logical reduction of isfinite cannot overflow.
    if not np.logical_and.reduce(np.isfinite(value), axis=None):
        raise ValueError(f"{kind}[{layer}] contains NaN or inf")
