"""The one-hidden-layer network of the scalar derivation, drawn with matplotlib.

Called by the site hook at every build, so the figure cannot drift from the
notation it illustrates and no binary is committed. The labels follow the
scalar derivation: inputs a_i, weights w_ij, hidden pre-activations z_j and
activations a_j, weights w_jk, outputs z_k, a_k against targets t_k, and the
errors delta_k flowing back.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display during a build

import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch

FORWARD = "#3949ab"
BACKWARD = "#c62828"
FAINT = "#b0b6c8"


def _column(x: float, n: int, spread: float = 1.25) -> list[tuple[float, float]]:
    top = spread * (n - 1) / 2
    return [(x, top - spread * r) for r in range(n)]


def _arrow(ax, start, end, color, lw=1.0, shrink=17, style="-|>", z=1):
    ax.add_patch(
        FancyArrowPatch(
            start,
            end,
            arrowstyle=style,
            mutation_scale=10,
            shrinkA=shrink,
            shrinkB=shrink,
            color=color,
            lw=lw,
            zorder=z,
        )
    )


def draw() -> bytes:
    """Return the diagram as SVG bytes, identical from build to build."""
    # A fixed hash salt and no date keep the SVG byte-identical across builds;
    # text is drawn as paths so the browser loads no font for it.
    with plt.rc_context({"svg.hashsalt": "backprop-derived", "svg.fonttype": "path"}):
        fig, ax = plt.subplots(figsize=(8.4, 4.6))
        inputs, hidden, outputs = _column(0, 3), _column(3.2, 4), _column(6.4, 2)
        radius = 0.36

        for a in inputs:
            for h in hidden:
                _arrow(ax, a, h, FAINT, lw=0.8)
        for h in hidden:
            for o in outputs:
                _arrow(ax, h, o, FAINT, lw=0.8)
        # One highlighted connection per layer carries the weight labels.
        i_node, j_node, k_node = inputs[0], hidden[1], outputs[0]
        _arrow(ax, i_node, j_node, FORWARD, lw=2.0, z=2)
        _arrow(ax, j_node, k_node, FORWARD, lw=2.0, z=2)

        for column, names in ((inputs, "i"), (hidden, "j"), (outputs, "k")):
            for x, y in column:
                ax.add_patch(Circle((x, y), radius, fc="white", ec=FORWARD, lw=1.4, zorder=3))
                ax.text(x, y, f"$a_{names}$", ha="center", va="center", fontsize=13, zorder=4)
        # The highlighted units show their pre-activation: z = b + sum a w, a = g(z).
        for (x, y), label in ((j_node, "$z_j$"), (k_node, "$z_k$")):
            ax.text(x, y + radius + 0.1, label, ha="center", va="bottom", fontsize=11,
                    color=FORWARD)
        for x, y in outputs:
            ax.text(x + 1.45, y, "$t_k$", ha="center", va="center", fontsize=13)
            _arrow(ax, (x + 1.2, y), (x + radius, y), "#555555", lw=1.0, shrink=0, style="<->")
        ax.text(outputs[0][0] + 1.85, (outputs[0][1] + outputs[1][1]) / 2,
                r"$E=\frac{1}{2}\sum_k (a_k-t_k)^2$", ha="left", va="center", fontsize=11,
                color="#333333")

        mid_ij = ((i_node[0] + j_node[0]) / 2, (i_node[1] + j_node[1]) / 2)
        mid_jk = ((j_node[0] + k_node[0]) / 2, (j_node[1] + k_node[1]) / 2)
        ax.text(mid_ij[0] - 0.1, mid_ij[1] + 0.2, "$w_{ij}$", ha="center", fontsize=13,
                color=FORWARD)
        ax.text(mid_jk[0], mid_jk[1] + 0.15, "$w_{jk}$", ha="center", fontsize=13,
                color=FORWARD)

        # The error signal travels against the arrows, below the network:
        # delta_k at the output, delta_j = g'(z_j) sum_k delta_k w_jk at the hidden layer.
        band = hidden[-1][1] - 0.95
        jx, kx = hidden[0][0], outputs[0][0]
        _arrow(ax, (kx - 0.35, band), (jx + 0.35, band), BACKWARD, lw=1.8, shrink=0, z=2)
        ax.text(kx - 0.25, band, r"$\delta_k$", ha="left", va="center", fontsize=14,
                color=BACKWARD)
        ax.text(jx + 0.25, band, r"$\delta_j$", ha="right", va="center", fontsize=14,
                color=BACKWARD)
        ax.text((kx + jx) / 2, band - 0.22,
                r"$\delta_j = g'(z_j)\sum_k \delta_k\, w_{jk}$", ha="center", va="top",
                fontsize=11, color=BACKWARD)
        ax.text(kx + 0.25, band - 0.22, r"$\delta_k = (a_k - t_k)\,g'(z_k)$", ha="left",
                va="top", fontsize=11, color=BACKWARD)

        for x, label in ((0, "input layer\n(index $i$)"), (3.2, "hidden layer\n(index $j$)"),
                         (6.4, "output layer\n(index $k$)")):
            ax.text(x, hidden[0][1] + 0.55, label, ha="center", va="bottom", fontsize=10,
                    color="#333333")

        ax.set_xlim(-0.6, 10.4)
        ax.set_ylim(band - 0.8, hidden[0][1] + 1.4)
        ax.set_aspect("equal")
        ax.axis("off")
        buffer = io.BytesIO()
        # A white face keeps the labels readable under the dark palette too.
        fig.savefig(buffer, format="svg", bbox_inches="tight", facecolor="white",
                    metadata={"Date": None})
        plt.close(fig)
    return buffer.getvalue()


if __name__ == "__main__":
    import sys

    sys.stdout.buffer.write(draw())
