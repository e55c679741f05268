"""Calling a kernel generated from a layer declaration (``symbolic/declared.py``).

A declared kernel's parameters are the arrays its equations read, named as
in the catalog (lowercase): a layer passes what it holds by name, and the
kernel takes the ones it reads. The order of the parameters is then never
part of a layer's code.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["call_declared", "returned"]


def call_declared(kernel: Callable, **arrays):
    """``kernel(**arrays)`` restricted to the kernel's own parameters; every one must be given."""
    code = kernel.__code__
    names = code.co_varnames[: code.co_argcount]
    missing = [n for n in names if n not in arrays]
    if missing:
        raise TypeError(f"{kernel.__name__} needs {missing}, which the layer does not hold")
    return kernel(**{n: arrays[n] for n in names})


def returned(names, value) -> dict:
    """A declared kernel's results by the names its binding lists (a kernel with one
    result returns it bare, not in a tuple)."""
    return dict(zip(names, (value,) if len(names) == 1 else value, strict=True))
