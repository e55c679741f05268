"""Alt text for the pages' matplotlib figures, taken from the figures themselves.

nbconvert writes every image output as ``<img alt="No description has been
provided for this image">``: its templates read no alt text from a notebook.
The build therefore starts each page's kernel with `install()` (an IPython
startup file, see `startup_dir`), which displays a figure as an ``<img>`` whose
alt text says what the figure shows: its label if the page set one
(``fig.set_label("...")``), else its title, and each panel's title, axis labels
and legend entries, as the reader sees them. The ``<img>`` has the class
``plot`` (extra.css: on a phone it keeps its width and scrolls sideways).
"""

from __future__ import annotations

import base64
import html
import re
import tempfile
from pathlib import Path

# mathtext such as $\rho = 0.8$ is read aloud as its letters: rho = 0.8
_MATH = re.compile(r"\\(?=[A-Za-z])|[${}]|\\[,;! ]")


def _plain(text: str) -> str:
    return " ".join(_MATH.sub("", text).split())


def describe(fig) -> str:
    """What a figure shows, in words, from its own texts."""
    if fig.get_label():
        return _plain(fig.get_label())
    parts = []
    if getattr(fig, "_suptitle", None) is not None and fig._suptitle.get_text():
        parts.append(_plain(fig._suptitle.get_text()) + ".")
    # a colorbar is an Axes of its own, not a panel
    panels = [ax for ax in fig.axes
              if ax.get_visible() and ax.axison and not hasattr(ax, "_colorbar")]
    for ax in panels:
        bits = []
        if ax.get_title():
            bits.append(_plain(ax.get_title()))
        axes = [f"{name} {_plain(label)}" for name, label in
                (("horizontal axis", ax.get_xlabel()), ("vertical axis", ax.get_ylabel()))
                if label]
        if axes:
            bits.append(", ".join(axes))
        legend = ax.get_legend()
        if legend is not None:
            entries = [_plain(t.get_text()) for t in legend.get_texts() if t.get_text()]
            if entries:
                bits.append("curves: " + "; ".join(entries))
        if bits:
            parts.append(" — ".join(bits) + ".")
    kind = "Plot" if len(panels) <= 1 else f"{len(panels)} plots"
    return f"{kind}. " + " ".join(parts) if parts else kind + "."


def _as_html(fig) -> str:
    from IPython.core.pylabtools import print_figure

    png = print_figure(fig, "png", bbox_inches="tight")
    data = base64.b64encode(png).decode("ascii")
    return (f'<img class="plot" alt="{html.escape(describe(fig))}" '
            f'src="data:image/png;base64,{data}">')


def install() -> None:
    """Display every matplotlib figure of this kernel as an ``<img>`` with alt text."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    # The inline backend's set-up (on pyplot's first figure) removes every
    # printer registered for Figure: run it now, then register ours.
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.close(plt.figure())

    shell.display_formatter.formatters["text/html"].for_type(Figure, _as_html)


def startup_dir() -> Path:
    """A fresh IPYTHONDIR whose startup file calls `install()` in every kernel."""
    root = Path(tempfile.mkdtemp(prefix="backprop-derived-ipython-"))
    startup = root / "profile_default" / "startup"
    startup.mkdir(parents=True)
    hooks = Path(__file__).resolve().parent
    (startup / "00-figure-alt.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(hooks)!r})\n"
        "import figure_alt\n"
        "figure_alt.install()\n"
        "sys.path.remove(" + repr(str(hooks)) + ")\n", encoding="utf-8")
    return root
