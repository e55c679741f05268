"""Backpropagation derived by SymPy, generated into NumPy.

The runtime imports NumPy and the generated kernels only, never SymPy.
``Network``, ``Sequential``, ``load`` and ``optim`` are imported on first
use, so that ``backprop-derived regenerate`` runs even when the generated
package is missing or stale.
"""

__all__ = ["Network", "Sequential", "backend", "load", "optim", "set_backend"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Network":
        from .network import Network

        return Network
    if name == "Sequential":
        from .layers.sequential import Sequential

        return Sequential
    if name == "load":
        from .loading import load

        return load
    if name == "optim":
        from . import optim

        return optim
    if name in ("backend", "set_backend"):  # backend() is the active backend's name
        import importlib

        backend = importlib.import_module(f"{__name__}.backend")
        return backend if name == "backend" else backend.set_backend
    raise AttributeError(f"module 'backprop_derived' has no attribute {name!r}")
