"""The computational graph of each derivation page, drawn from the catalog's equations.

A layer in the catalog (`backprop_derived.symbolic.catalog`) is a tuple of
equations `lhs[indices] = rhs`, one per node, as a textbook draws the graph.
This module reads those equations, not a description of them:

* a node is an array of the equations: every left-hand side, and every
  array read on a right-hand side;
* a solid arrow u -> v says that the equation of v reads u;
* a dashed arrow v -> u carries the gradient back along that read, drawn
  where the derivation engine (`symbolic/engine.py`, `backward`) sends one:
  into every intermediate and every input the page differentiates (`wrt`).
  An input the page does not differentiate (a dropout mask, an attention
  mask, the ids of an embedding) gets no dashed arrow and a grey box;
* a read at a shifted index (h at t - 1 in the recurrence) labels its arrow.

Graphviz (`dot -Tsvg`) lays the graph out at build time; the hook serves the
SVG with the site and writes its alt text from the same edges. Nothing here is
typed per layer except which catalog equations a page shows, how its arrays
are named on the page, and which of its inputs it differentiates.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from dataclasses import dataclass, field

import sympy as sp
from sympy import Indexed, IndexedBase

from backprop_derived.symbolic import catalog as C

FORWARD = "#3949ab"  # the indigo of the site's palette
BACKWARD = "#c62828"
CONSTANT = "#757575"


@dataclass(frozen=True)
class Graph:
    """One figure: catalog equations, the inputs differentiated, the caption."""

    name: str  # file stem of the SVG
    equations: tuple  # ((lhs, rhs), ...) in forward order
    wrt: tuple  # inputs that receive a gradient
    caption: str
    labels: dict = field(default_factory=dict)  # base -> label on the page, if not its name
    # The page heading whose section the figure opens (its id); None: before
    # the first section of the page.
    after_heading: str | None = None
    unroll: tuple | None = None  # (time index, steps): draw the graph unrolled in time


def _shifts(expr, base, lhs) -> list[str]:
    """Indices at which ``expr`` reads ``base`` shifted against ``lhs`` (t - 1)."""
    own = set(lhs.indices) if isinstance(lhs, Indexed) else set()
    shifted = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, Indexed) and node.base == base:
            for index in node.indices:
                if isinstance(index, sp.Add) and index.free_symbols <= own and \
                        any(s.is_number for s in index.args):
                    shifted.append(sp.pretty(index, use_unicode=True))
    return sorted(set(shifted))


def _name(var) -> str:
    return var.label.name if isinstance(var, IndexedBase) else var.name


def _label(var, labels: dict) -> str:
    if isinstance(var, tuple):  # (array, step) of an unrolled graph: H₁
        base, step = var
        return sp.pretty(sp.Symbol(f"{_name(base)}_{step}"), use_unicode=True)
    if var in labels:
        return labels[var]
    return sp.pretty(sp.Symbol(_name(var)), use_unicode=True)


def _shape(var) -> str:
    if isinstance(var, tuple):
        base, _ = var
        shape = [d for n, d in enumerate(base.shape) if n != 1]  # without the time axis
    else:
        shape = getattr(var, "shape", None)
    if not shape:
        return "scalar"
    return " × ".join(sp.pretty(d, use_unicode=True) for d in shape)


def _base(key):
    return key[0] if isinstance(key, tuple) else key


def _instances(graph: Graph) -> list:
    """``[(key, lhs, rhs)]``: the equations, once per step if the graph is unrolled.

    Unrolled over ``t``, an array read or written at a concrete step (``H[n, 1, f]``)
    becomes the node ``(H, 1)``; an array without the time index stays one node.
    """
    if graph.unroll is None:
        return [((lhs.base if isinstance(lhs, Indexed) else lhs), lhs, rhs)
                for lhs, rhs in graph.equations]
    t, steps = graph.unroll
    out = []
    for step in range(steps):
        for lhs, rhs in graph.equations:
            lhs_t, rhs_t = lhs.subs(t, step), sp.piecewise_fold(rhs.subs(t, step))
            out.append((_key(lhs_t), lhs_t, rhs_t))
    return out


def _key(indexed):
    if not isinstance(indexed, Indexed):
        return indexed
    steps = [i for i in indexed.indices if i.is_Integer]
    return (indexed.base, int(steps[0])) if steps else indexed.base


def edges(graph: Graph) -> tuple[list, list, list]:
    """``(nodes, forward, backward)``: the arrays and the arrows between them.

    forward: ``(u, v, label)``, v's equation reads u; backward: ``(v, u)``,
    the gradient of v flows into u, for every read of an intermediate or of a
    differentiated input, as the engine's chain rule sums them.
    """
    instances = _instances(graph)
    defined = [key for key, _, _ in instances]
    scalars = {key for key in defined if isinstance(key, sp.Symbol)}
    wrt = set(graph.wrt)
    nodes, forward, backward = [], [], []
    for var, lhs, rhs in instances:
        reads = {}
        for node in sp.preorder_traversal(rhs):
            if isinstance(node, Indexed):
                reads.setdefault(_key(node), node.base)
            elif isinstance(node, sp.Symbol) and node in scalars:
                reads.setdefault(node, node)
        for key, base in reads.items():
            if graph.unroll and not isinstance(key, tuple):
                continue  # a weight shared by every step: named in the caption, not drawn
            if key not in nodes:
                nodes.append(key)
            shift = "" if graph.unroll else ", ".join(_shifts(rhs, base, lhs))
            forward.append((key, var, shift))
            if key in defined or _base(key) in wrt:
                backward.append((var, key))
        if var not in nodes:
            nodes.append(var)
    missing = wrt - {_base(n) for n in nodes}
    if missing and not graph.unroll:
        raise ValueError(f"{graph.name}: differentiated inputs {missing} are in no equation")
    return nodes, forward, backward


def dot_source(graph: Graph) -> str:
    nodes, forward, backward = edges(graph)
    defined = {key for key, _, _ in _instances(graph)}
    ids = {var: f"n{k}" for k, var in enumerate(nodes)}
    lines = [
        "digraph G {",
        '  graph [rankdir=TB, bgcolor="transparent", nodesep=0.3, ranksep=0.45, '
        'fontname="Helvetica,Arial,sans-serif"];',
        '  node [fontname="Helvetica,Arial,sans-serif", fontsize=15, penwidth=1.4];',
        '  edge [fontname="Helvetica,Arial,sans-serif", fontsize=12, arrowsize=0.8];',
    ]
    for var in nodes:
        label = f"{_label(var, graph.labels)}\\n{_shape(var)}"
        if var in defined:
            style = f'shape=ellipse, color="{FORWARD}", fontcolor="#1a237e"'
        elif _base(var) in graph.wrt:
            style = f'shape=box, style=rounded, color="{FORWARD}", fontcolor="#1a237e"'
        else:
            style = f'shape=box, style="rounded,dashed", color="{CONSTANT}", fontcolor="{CONSTANT}"'
        lines.append(f'  {ids[var]} [label="{label}", {style}];')
    for u, v, shift in forward:
        label = f', label=" {shift}", fontcolor="{FORWARD}"' if shift else ""
        lines.append(f'  {ids[u]} -> {ids[v]} [color="{FORWARD}"{label}];')
    for v, u in backward:
        # Drawn along the forward edge with the arrowhead at its tail, so the
        # layout keeps one channel per read and the gradient visibly returns.
        lines.append(f'  {ids[u]} -> {ids[v]} [dir=back, style=dashed, color="{BACKWARD}", '
                     f"constraint=false];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(graph: Graph) -> str:
    """The figure as SVG text, laid out by Graphviz."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError("Graphviz `dot` is not on PATH (apt-get install graphviz); "
                           "the derivation figures are drawn with it at every build")
    source = graph.dot_source() if isinstance(graph, ConvWindow | Gates) else dot_source(graph)
    result = subprocess.run([dot, "-Tsvg"], input=source, capture_output=True,
                            text=True, check=False, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed on {graph.name}: {result.stderr.strip()}")
    text = result.stdout
    # The XML prolog and DOCTYPE are for standalone files; an <img> needs neither.
    text = text[text.index("<svg"):]
    # Graphviz sizes the drawing in points (1pt = 4/3 px); read as pixels, a
    # 15pt label is 15px on the page, the size of the body text.
    head, rest = text.split(">", 1)
    head = re.sub(r'\b(width|height)="([\d.]+)pt"', r'\1="\2px"', head)
    return head + ">" + rest


def alt_text(graph: Graph) -> str:
    """What the figure shows, in words, from the same edges it draws."""
    nodes, forward, backward = edges(graph)
    reads: dict = {}
    for u, v, shift in forward:
        reads.setdefault(v, []).append(_label(u, graph.labels) + (f" at {shift}" if shift else ""))
    parts = [f"{_label(v, graph.labels)} from {', '.join(us)}" for v, us in reads.items()]
    receivers = []
    for _, u in backward:
        label = _label(u, graph.labels)
        if label not in receivers:
            receivers.append(label)
    no_gradient = [_label(n, graph.labels) for n in nodes
                   if n not in {u for _, u in backward} and n not in reads]
    text = ("Computational graph. Solid arrows, forward: " + "; ".join(parts) + ". "
            "Dashed arrows carry the gradient back into " + ", ".join(receivers) + ".")
    if no_gradient:
        text += " No gradient flows into " + ", ".join(no_gradient) + "."
    return text


def figure_html(graph, src: str) -> str:
    """The <figure> a page shows: the SVG, its alt text and its caption."""
    if isinstance(graph, ConvWindow | Gates):
        alt, legend = graph.alt_text(), ""
    else:
        alt = alt_text(graph)
        legend = (" Solid arrows: the forward pass; dashed: the gradients of the backward "
                  "pass. Ellipses are computed; boxes are inputs (grey and dashed: not "
                  "differentiated).")
    return (f'<figure class="equation-graph"><img src="{html.escape(src)}" '
            f'alt="{html.escape(alt)}" loading="lazy">'
            f"<figcaption>{graph.caption}{legend}</figcaption></figure>")


# ---------------------------------------------------------------------------
# The window of a 1-d convolution, read from the catalog's CONV1D at small sizes.

TAP_COLORS = ("#3949ab", "#00897b", "#ef6c00")


@dataclass(frozen=True)
class ConvWindow:
    """Which inputs each output reads, and which outputs each input gradient reads."""

    name: str
    caption: str
    length: int = 5
    kernel: int = 3
    after_heading: str | None = None

    def taps(self) -> list[tuple[int, int, int]]:
        """``(p, w, j)``: output p reads input w = p + j through kernel tap j.

        Read off the catalog's CONV1D with one example and one channel each way:
        each term of Y[p]'s sum is X[..., w] W[..., j].
        """
        (lhs, rhs), = C.CONV1D
        sizes = {C.CONV_N: 1, C.CONV_C_IN: 1, C.CONV_C_OUT: 1, C.CONV_L: self.length,
                 C.CONV_K: self.kernel}
        found = []
        for p in range(self.length - self.kernel + 1):
            expr = rhs.xreplace(sizes).subs({C.conv_n: 0, C.conv_o: 0, C.conv_p: p}).doit()
            for term in sp.Add.make_args(sp.expand(expr)):
                # The sizes are substituted into the arrays' shapes too: match by name.
                x = [f for f in term.atoms(Indexed) if f.base.label == C.CONV1D_X.label]
                w = [f for f in term.atoms(Indexed) if f.base.label == C.CONV1D_W.label]
                if x and w:
                    found.append((p, int(x[0].indices[-1]), int(w[0].indices[-1])))
        return sorted(found)

    def dot_source(self) -> str:
        taps = self.taps()
        outputs = sorted({p for p, _, _ in taps})
        font = 'fontname="Helvetica,Arial,sans-serif"'
        lines = ["digraph G {",
                 f'  graph [rankdir=TB, bgcolor="transparent", nodesep=0.18, ranksep=0.6, {font}];',
                 f'  node [{font}, fontsize=15, shape=box, style=rounded, width=0.5, '
                 f'penwidth=1.3, color="{FORWARD}", fontcolor="#1a237e"];',
                 f'  edge [{font}, fontsize=12, arrowsize=0.7, penwidth=1.6];']

        def row(prefix, name, count, rank):
            cells = " ".join(f'{prefix}{n} [label="{sp.pretty(sp.Symbol(f"{name}_{n}"))}"];'
                             for n in range(count))
            order = " -> ".join(f"{prefix}{n}" for n in range(count))
            return [f"  {{rank={rank}; {cells}}}", f"  {order} [style=invis];"]

        # Forward: the inputs above, the outputs below.
        lines += ["  subgraph cluster_f {", '    label=<forward: <I>Y</I><SUB><I>p</I></SUB> = <I>b</I> + Σ<SUB><I>j</I></SUB> '
                  '<I>W</I><SUB><I>j</I></SUB> <I>X</I><SUB><I>p</I>+<I>j</I></SUB>>; '
                  f'fontsize=13; color="{CONSTANT}"; style="rounded,dashed";']
        lines += row("x", "X", self.length, "same") + row("y", "Y", len(outputs), "same")
        for p, w, j in taps:
            lines.append(f'    x{w} -> y{p} [color="{TAP_COLORS[j % 3]}", '
                         f'label="{sp.pretty(sp.Symbol(f"W_{j}"))}", '
                         f'fontcolor="{TAP_COLORS[j % 3]}"];')
        lines.append("  }")
        # Backward: the output gradients above, the input gradients below.
        lines += ["  subgraph cluster_b {", '    label=<backward: <I>dX</I><SUB><I>w</I></SUB> = Σ<SUB><I>j</I></SUB> '
                  '<I>W</I><SUB><I>j</I></SUB> <I>dY</I><SUB><I>w</I>−<I>j</I></SUB>>; '
                  f'fontsize=13; color="{CONSTANT}"; style="rounded,dashed";']
        lines += row("dy", "dY", len(outputs), "same") + row("dx", "dX", self.length, "same")
        for p, w, j in taps:
            lines.append(f'    dy{p} -> dx{w} [color="{TAP_COLORS[j % 3]}", style=dashed, '
                         f'label="{sp.pretty(sp.Symbol(f"W_{j}"))}", '
                         f'fontcolor="{TAP_COLORS[j % 3]}"];')
        lines.append("  }")
        lines.append("  y0 -> dy0 [style=invis];  // the backward panel below the forward one")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def alt_text(self) -> str:
        taps = self.taps()
        forward = "; ".join(
            f"Y{p} reads " + ", ".join(f"X{w} with W{j}" for q, w, j in taps if q == p)
            for p in sorted({p for p, _, _ in taps}))
        backward = "; ".join(
            f"dX{w} reads " + ", ".join(f"dY{p} with W{j}" for p, v, j in taps if v == w)
            for w in range(self.length))
        return (f"A 1-d convolution with an input of {self.length} and a kernel of "
                f"{self.kernel}. Forward: {forward}. Backward: {backward}.")


# ---------------------------------------------------------------------------
# Which catalog equations each page shows. The scalar and vectorized pages
# derive the dense layer, its activation and the cost; their figure chains the
# catalog's DENSE and ACTIVATION_LAYER once per layer (renaming the arrays by
# layer) and closes with a per-example loss of the catalog and the mean COST.

def _renamed(equations, mapping: dict):
    return tuple((lhs.xreplace(mapping), rhs.xreplace(mapping)) for lhs, rhs in equations)


def _layer(number: int, n_in, n_out, previous):
    """DENSE and ACTIVATION_LAYER of layer ``number``, reading ``previous``."""
    sup = lambda name: f"{name}{number}"  # noqa: E731 - W1, b1, Z1, A1
    W = IndexedBase(sup("W"), shape=(n_out, n_in), real=True)
    b = IndexedBase(sup("b"), shape=(n_out,), real=True)
    Z = IndexedBase(sup("Z"), shape=(C.m, n_out), real=True)
    A = IndexedBase(sup("A"), shape=(C.m, n_out), real=True)
    mapping = {C.A: previous, C.W: W, C.b: b, C.Z: Z}
    dense = _renamed(C.DENSE, mapping)
    act = _renamed(C.ACTIVATION_LAYER, {C.Z: Z, C.A_out: A})
    return dense + act, (W, b), A


def _network(depth: int, loss: str, penalty: bool = False):
    """Equations of a ``depth``-layer network with ``loss`` and the mean cost."""
    sizes = [sp.Symbol(f"n{k}", integer=True, positive=True) for k in range(depth + 1)]
    A0 = IndexedBase("A0", shape=(C.m, sizes[0]), real=True)
    equations, params, previous = (), [], A0
    for number in range(1, depth + 1):
        eqs, wb, previous = _layer(number, sizes[number - 1], sizes[number], previous)
        equations += eqs
        params += wb
    Y = IndexedBase("Y", shape=(C.m, sizes[-1]), real=True)
    # The catalog's loss of one example, read at row i of the batch arrays.
    batch = {C.a: previous, C.y: Y}
    per_example = C.LOSSES[loss].replace(
        lambda e: isinstance(e, Indexed) and e.base in batch,
        lambda e: batch[e.base][C.i, e.indices[0]])
    equations += ((C.L[C.i], per_example),)
    J = sp.Symbol("J")
    cost = C.COST
    if penalty:
        R = sp.Symbol("R")
        W_last = params[-2]
        equations += ((R, C.PENALTY.xreplace({C.W: W_last})),)
        cost = cost + R
    equations += ((J, cost),)
    labels = {A0: "A₀ = X", C.L: "L (per example)", J: "J (cost)"}
    if penalty:
        labels[R] = "L2 penalty"
    return equations, tuple(params) + (A0,), labels


# ---------------------------------------------------------------------------
# Three gates with numbers: what each kind of node does to the gradient.

X_GATE, Y_GATE = sp.symbols("x y", real=True)


def _gate_number(value) -> str:
    value = sp.nsimplify(value)
    text = str(value) if value.is_Integer else f"{float(value):.3g}"
    return text.replace("-", "\u2212")  # the minus sign, not a hyphen


@dataclass(frozen=True)
class Gates:
    """Nodes out = f(x, y), each drawn with its forward values and the gradients
    the chain rule sends back, d out/dx · upstream, differentiated by SymPy here."""

    name: str
    caption: str
    gates: tuple  # ((label, f(x, y)), ...)
    x: int = 3
    y: int = -2
    upstream: int = 2
    after_heading: str | None = None

    def numbers(self) -> list[tuple[str, sp.Expr, sp.Expr, sp.Expr]]:
        """(label, out, dx, dy) at the figure's point: the chain rule for one node."""
        at = {X_GATE: self.x, Y_GATE: self.y}
        rows = []
        for label, f in self.gates:
            rows.append((label, f.subs(at),
                         *(sp.diff(f, v).subs(at).doit() * self.upstream for v in (X_GATE, Y_GATE))))
        return rows

    def dot_source(self) -> str:
        lines = ["digraph gates {", "  rankdir=LR; nodesep=0.25; ranksep=0.5;",
                 '  bgcolor="transparent";',
                 '  node [fontname="Helvetica", fontsize=15, color="#555555", fontcolor="#222222"];',
                 '  edge [fontname="Helvetica", fontsize=14];']
        # dot stacks the clusters of a left-to-right graph bottom up: the first gate last
        for n, (label, out, dx, dy) in reversed(list(enumerate(self.numbers()))):
            lines.append(f"  subgraph cluster_{n} {{ color=\"#cccccc\"; "
                         f"label=\"{label}\"; fontname=\"Helvetica\"; fontsize=15;")
            for v, value in (("x", self.x), ("y", self.y)):
                lines.append(f'    {v}{n} [shape=box, label="{v} = {_gate_number(value)}"];')
            lines.append(f'    g{n} [shape=circle, label="{label.split()[0]}"];')
            lines.append(f'    o{n} [shape=plaintext, label="out = {_gate_number(out)}"];')
            lines.append("  }")
            for v, grad in (("x", dx), ("y", dy)):
                lines.append(f'  {v}{n} -> g{n} [color="{FORWARD}"];')
                lines.append(f'  g{n} -> {v}{n} [color="{BACKWARD}", fontcolor="{BACKWARD}", '
                             f'style=dashed, label="{_gate_number(grad)}", constraint=false];')
            lines.append(f'  g{n} -> o{n} [color="{FORWARD}"];')
            lines.append(f'  o{n} -> g{n} [color="{BACKWARD}", fontcolor="{BACKWARD}", '
                         f'style=dashed, label="{self.upstream}", constraint=false];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def alt_text(self) -> str:
        parts = [f"{label}: out = {_gate_number(out)}, gradient {_gate_number(dx)} back to x "
                 f"and {_gate_number(dy)} back to y"
                 for label, out, dx, dy in self.numbers()]
        return (f"Gates at x = {_gate_number(self.x)}, y = {_gate_number(self.y)}, with gradient {self.upstream} arriving "
                "at each output. " + "; ".join(parts) + ".")


GATES = Gates(
    "gates",
    "Three nodes at x = 3, y = −2, each receiving the gradient 2 from above (dashed, red). "
    "The numbers on the dashed arrows are ∂out/∂x · 2 and ∂out/∂y · 2, differentiated by "
    "SymPy when the site is built: the sum hands the same gradient to both inputs, the "
    "product hands each input the other input's value times it, and the maximum sends "
    "all of it to the larger input and none to the other.",
    (("+ (add)", X_GATE + Y_GATE), ("× (multiply)", X_GATE * Y_GATE),
     ("max", sp.Max(X_GATE, Y_GATE))),
    after_heading="how-each-node-passes-the-gradient-back",
)


def graphs() -> dict[str, list[Graph]]:
    """Page source path -> the figures it shows, in page order."""
    one, one_wrt, one_labels = _network(1, "squared_error")
    two, two_wrt, two_labels = _network(2, "squared_error")
    three, three_wrt, three_labels = _network(3, "cross_entropy")
    ce, ce_wrt, ce_labels = _network(1, "cross_entropy")
    reg, reg_wrt, reg_labels = _network(1, "cross_entropy", penalty=True)
    pages = {
        "intuition.md": [GATES],
        "derivations/01_activations.py": [Graph(
            "01_activations", C.ACTIVATION_LAYER, (C.Z,),
            "An activation layer, A = g(Z) entry by entry: each dZ reads only its own dA.",
            {C.A_out: "A = g(Z)"})],
        "derivations/02_output_layer.py": [Graph(
            "02_output_layer", one, one_wrt,
            "The output layer with the squared error of eq. (1), batch-first.", one_labels)],
        "derivations/03_hidden_layer.py": [Graph(
            "03_hidden_layer", two, two_wrt,
            "Two layers: the gradient of the hidden weights W1 passes through A1, "
            "which feeds the output layer.", two_labels)],
        "derivations/04_biases.py": [Graph(
            "04_biases", two, two_wrt,
            "The biases b1 and b2 feed Z1 and Z2 directly; their gradients are those of "
            "Z1 and Z2, summed over the batch.", two_labels)],
        "derivations/05_any_depth.py": [Graph(
            "05_any_depth", three, three_wrt,
            "Three layers: each layer's dZ is computed from the next layer's, the "
            "recurrence this page proves for any depth.", three_labels)],
        "derivations/06_vectorized.py": [Graph(
            "06_vectorized", ce, ce_wrt,
            "One layer for a minibatch: the arrays of the four equations.", ce_labels)],
        "derivations/07_losses_x_activations.py": [Graph(
            "07_losses_x_activations", ce, ce_wrt,
            "The output layer with cross-entropy: dZ1 is reached through A1 and L.",
            ce_labels)],
        "derivations/08_regularization.py": [Graph(
            "08_regularization", reg, reg_wrt,
            "The L2 penalty adds a second path from W1 to the cost J, bypassing the layer.",
            reg_labels)],
        "derivations/09_errata.py": [Graph(
            "09_errata", two, two_wrt,
            "The network of the Clever Machine's derivation that the errata correct: one "
            "hidden layer, squared error.", two_labels)],
        "derivations/10_normalization.py": [Graph(
            "10_batch_norm", C.BATCH_NORM, (C.BN_X, C.BN_GAMMA, C.BN_BETA),
            "Batch norm, one node per equation: X reaches x̂ three ways, directly and "
            "through μ and var, so its gradient has three terms.",
            after_heading="the-definition")],
        "derivations/11_attention.py": [Graph(
            "11_attention", C.SELF_ATTENTION,
            (C.ATT_X, C.ATT_Wq, C.ATT_Wk, C.ATT_Wv, C.ATT_Wo),
            "One head of self-attention: X is read three times (Q, K, V), so dX sums "
            "three gradients; the mask M takes none.", after_heading="the-definition"),
            Graph("11_multi_head", C.MULTI_HEAD_ATTENTION.equations,
                  (C.MHA_X, C.MHA_Wq, C.MHA_Wk, C.MHA_Wv, C.MHA_Wo),
                  "Many heads: the same graph with the head h as one more index of Q, K, "
                  "V, S, P and O; Y sums over h, so every head's gradient starts from dY. "
                  "The added mask B takes none.", after_heading="many-heads")],
        "derivations/12_dropout_embedding_residual.py": [
            Graph("12_dropout", C.DROPOUT, (C.DROPOUT_X,),
                  "Dropout: the mask multiplies, so it routes the gradient; it receives none.",
                  after_heading="dropout"),
            Graph("12_embedding", C.EMBEDDING, (C.EMBEDDING_E,),
                  "Embedding: the ids choose rows of E; only E receives a gradient.",
                  after_heading="embedding"),
            Graph("12_residual", C.RESIDUAL, (C.RESIDUAL_X, C.RESIDUAL_F),
                  "Residual: X reaches Y directly and through the branch Xf into f; the "
                  "sum hands dY to both, and dX adds what returns from the branch.",
                  after_heading="residual"),
        ],
        "derivations/13_convolution.py": [
            Graph("13_convolution", C.CONV1D, (C.CONV1D_X, C.CONV1D_W, C.CONV_B),
                  "A 1-d convolution: every output reads a window of X and all of W.",
                  after_heading="the-definition"),
            ConvWindow("13_convolution_window",
                       "The window, one example and one channel, input length 5, kernel 3. "
                       "Above, each output Yₚ reads three neighbouring inputs through the "
                       "taps W₀, W₁, W₂ in order. Below, each entry of the input gradient dX reads the "
                       "output gradients whose windows covered it, with the taps in the "
                       "reverse order (dX₂: W₂ from dY₀, W₁ from dY₁, W₀ from dY₂): the "
                       "flipped kernel. Near the ends fewer outputs covered the input.",
                       after_heading="the-compact-form-a-full-correlation-with-the-flipped-kernel"),
        ],
        "derivations/15_pooling.py": [
            Graph("15_avg_pool", C.AVG_POOL1D.equations, (C.POOL1D_X,),
                  "Average pooling: each output reads one window of X, with weight 1/k.",
                  after_heading="average-pooling"),
            Graph("15_max_pool", C.MAX_POOL1D.equations, (C.POOL1D_X,),
                  "Max pooling: the selection S marks the first largest tap of each "
                  "window; Y reads X through it, and the gradient returns only along S.",
                  after_heading="max-pooling-and-the-tie-rule"),
        ],
        "derivations/14_recurrence.py": [Graph(
            "14_recurrence", C.RNN, (C.RNN_X, C.RNN_W_IH, C.RNN_W_HH, C.RNN_B),
            "The recurrence: A at step t reads H at t − 1, the loop that backpropagation "
            "through time unrolls.", after_heading="the-definition"),
            Graph("14_recurrence_unrolled", C.RNN,
                  (C.RNN_X, C.RNN_W_IH, C.RNN_W_HH, C.RNN_B),
                  "The same equations unrolled over three steps. The gradient of H₀ "
                  "collects from the loss at step 0 and, through A₁, from every later step. "
                  "Every A reads the same Wᵢₕ, Wₕₕ and b (not drawn), so their gradients "
                  "sum over the steps.",
                  after_heading="the-bptt-recurrence", unroll=(C.rnn_t, 3))],
        "derivations/16_gated_recurrence.py": [
            Graph("16_gru", C.GRU_CELL.equations, (C.GATED_X, C.GATED_HP),
                  "One GRU step: h_{t−1} reaches h_t along three paths, through the gates "
                  "R and Z, through G (which R scales) and directly (weighted by Z); its "
                  "gradient sums all three.",
                  {C.GATED_HP: "Hp = h(t−1)", C.GRU_HN: "H = h(t)"},
                  after_heading="the-gru-step"),
            Graph("16_lstm", C.LSTM_CELL.equations, (C.GATED_X, C.GATED_HP, C.GATED_CP),
                  "One LSTM step: C is both an output (the next step's c) and read by H, "
                  "so its gradient adds the next step's to what comes back from H.",
                  {C.GATED_HP: "Hp = h(t−1)", C.GATED_CP: "Cp = c(t−1)", C.LSTM_HN: "H = h(t)",
                   C.LSTM_C: "C = c(t)"},
                  after_heading="the-lstm-step")],
    }
    return pages
