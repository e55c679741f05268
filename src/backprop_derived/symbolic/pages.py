"""Small helpers the derivation pages share for showing their results."""

from __future__ import annotations

import sys

from .display import chain_html, chain_latex, text_html

__all__ = ["show", "show_folded", "show_html", "show_markdown", "show_math"]


def _ipython_active() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and ipython.get_ipython() is not None


def show(*chains, caption: str | None = None) -> None:
    """Display checked chains (in a notebook; printed as LaTeX when run as a script).

    ``caption`` names the case the chains cover ("sigmoid output, binary
    cross-entropy"); ``$...$`` in it is math. On the site each step shows its
    proof mark and strategy (see :mod:`.display`).
    """
    if not _ipython_active():
        if __name__ == "__main__":
            for chain in chains:
                print(chain_latex(chain))
        return
    from IPython.display import HTML, display

    for n, chain in enumerate(chains):
        display(HTML(chain_html(chain, caption if n == 0 else None)))


def show_folded(summary: str, groups) -> None:
    """Checked chains folded under one ``<details>`` line, for a catalog that a
    reader opens on demand. ``groups`` holds ``(chains, caption)`` pairs;
    ``$...$`` in ``summary`` is math."""
    parts = [chain_html(chain, caption if n == 0 else None)
             for chains, caption in groups for n, chain in enumerate(chains)]
    show_html(f'<details class="note chain-fold"><summary>{text_html(summary)}</summary>'
              + "".join(parts) + "</details>")


def show_html(markup: str) -> None:
    """HTML in the rendered page (a generated table); printed when run as a script."""
    if not _ipython_active():
        if __name__ == "__main__":
            print(markup)
        return
    from IPython.display import HTML, display

    display(HTML(markup))


def show_math(tex: str) -> None:
    if _ipython_active():
        from IPython.display import Math, display

        display(Math(tex))


def show_markdown(markdown: str) -> None:
    """Markdown in the rendered page (tables of the benchmark pages); printed as
    text when the page runs as a script."""
    if not _ipython_active():
        print(markdown)
        return
    from IPython.display import Markdown, display

    display(Markdown(markdown))
