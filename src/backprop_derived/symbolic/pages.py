"""Small helpers the derivation pages share for showing their results."""

from __future__ import annotations

import sys

from .printers import chain_latex

__all__ = ["show", "show_math"]


def _display(obj) -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None or ipython.get_ipython() is None:
        return False
    from IPython.display import Math, display

    display(Math(obj) if isinstance(obj, str) else obj)
    return True


def show(*chains) -> None:
    """Display checked chains (in a notebook; silent when run as a script)."""
    for chain in chains:
        if not _display(chain_latex(chain)) and __name__ == "__main__":
            print(chain_latex(chain))


def show_math(tex: str) -> None:
    _display(tex)


