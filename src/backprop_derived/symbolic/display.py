"""How a checked chain is shown on a page.

A :class:`~backprop_derived.symbolic.checked.Chain` is shown one step per row:
the left-hand side and ``= expression`` aligned on the equals sign, and under
each expression a line that says how the step is known: a proof mark with the
name of the strategy that proved it (``✓ expand``), ``▸ start`` for the premise
the chain starts from, and a visibly different mark for a step that was only
checked on examples (evidence, not proof), followed by the step's reason.

Two renderings of the same layout:

* :func:`chain_html` for the site (``show`` in :mod:`.pages`): an HTML grid whose
  marks carry a tooltip, so that a reason can never be pushed off the right
  edge by a long formula;
* :func:`chain_latex` for ``Chain._repr_latex_`` and plain LaTeX consumers: an
  ``aligned`` block with the mark and reason on a line of their own.

Long results are broken over aligned lines at the terms of a sum (and inside
a bracketed sum, a sum over an index, or the rows of a wide matrix), using a
rough estimate of the rendered width, so that a chain fits a text column.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

import sympy as sp

from .checked import Chain, prove_equal
from .printers import DerivationLatexPrinter, iverson_body, latex

__all__ = [
    "PROOF_MARKS",
    "ProofMark",
    "abbreviations",
    "break_lines",
    "chain_html",
    "chain_latex",
    "factored",
    "proof_mark",
    "shown_steps",
    "tex_width",
    "text_html",
]

# Width budget of one line of a chain, in em of the rendered math. The site's
# text column is about 43 em of MathJax at 1280 px with both sidebars.
LINE_BUDGET_EM = 33.0


# ---------------------------------------------------------------------------
# Proof marks


@dataclass(frozen=True)
class ProofMark:
    kind: str  # "premise", "proof" or "evidence": the CSS class and the test's handle
    symbol: str  # the visible mark
    label: str  # the small word next to it
    tooltip: str  # what the mark means, shown on hover
    tex: str  # the mark in LaTeX


_PROVEN_TEX = r"\checkmark"
_EVIDENCE_TEX = r"\circ"

PROOF_MARKS = {
    # The first line of a chain is where it starts, not a proof: its mark says so
    # in words ("start"), and the reason next to it says where it comes from.
    "given": ProofMark("premise", "▸", "start", "The premise of the chain: a definition or an "
                       "equation taken from the text, not derived here.", r"\triangleright"),
    "structural": ProofMark("proof", "✓", "identical", "Proven by SymPy: the two sides are the "
                            "same expression once evaluated.", _PROVEN_TEX),
    "expand": ProofMark("proof", "✓", "expand", "Proven by SymPy: the difference of the two "
                        "sides expands to 0.", _PROVEN_TEX),
    "simplify": ProofMark("proof", "✓", "simplify", "Proven by SymPy: the difference of the two "
                          "sides simplifies to 0.", _PROVEN_TEX),
    "by sign": ProofMark("proof", "✓", "by sign", "Proven by SymPy separately for a positive, a "
                         "negative and a zero argument, where the expression has a kink.",
                         _PROVEN_TEX),
    "index sums": ProofMark("proof", "✓", "index sums", "Proven by SymPy on the index sums "
                            "themselves: terms moved into their sums, bound indices renamed "
                            "alike, the summands expanded to 0.", _PROVEN_TEX),
}


def proof_mark(strategy: str) -> ProofMark:
    """The mark of a proof strategy; a check on examples gets the evidence mark.

    Strategies this module does not know are shown as proofs under their own
    name, except those that name a check on examples (``instance``,
    ``checked on n = 3``, ``numeric ...``), which are evidence, not proof.
    """
    if strategy in PROOF_MARKS:
        return PROOF_MARKS[strategy]
    if strategy == "instance" or strategy.startswith(("checked", "numeric", "sampled")):
        label = "checked on examples" if strategy == "instance" else strategy
        return ProofMark("evidence", "◇", label, "Evidence, not proof: checked exactly on a "
                         "concrete case (every index value of a small network), not in "
                         "general.", _EVIDENCE_TEX)
    return ProofMark("proof", "✓", strategy, f"Proven by SymPy ({strategy}).", _PROVEN_TEX)


# ---------------------------------------------------------------------------
# Width estimate of rendered TeX (em), enough to decide where to break lines.

_ONE_LETTER = 0.55
_OPERATOR = 1.2  # a binary operator with its spaces
_SPACES = {",": 0.17, ":": 0.22, ";": 0.28, "!": 0.0, " ": 0.3, "quad": 1.0, "qquad": 2.0}
_WIDE_COMMANDS = {"sum": 1.3, "prod": 1.3, "int": 0.8, "partial": 0.6, "cdot": 0.8,
                  "odot": 1.2, "times": 1.2, "checkmark": 0.9, "infty": 1.0}
_ZERO_COMMANDS = {"displaystyle", "textstyle", "limits", "nolimits", "left", "right",
                  "bigl", "bigr", "Bigl", "Bigr", "mathrel", "mathop", "phantom"}


def _group(s: str, i: int) -> tuple[str, int]:
    """The brace group (or single token) at ``s[i]``, and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            if s[j] == "{" and (j == 0 or s[j - 1] != "\\"):
                depth += 1
            elif s[j] == "}" and s[j - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return s[i + 1:j], j + 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", s[i:])
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _env_width(body: str) -> float:
    rows = re.split(r"\\\\", body)
    return max(sum(tex_width(cell) + 0.8 for cell in row.split("&")) for row in rows) + 0.8


def tex_width(s: str) -> float:
    """Rough rendered width of TeX ``s`` in em (fractions count their wider part)."""
    width, i = 0.0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+|.)", s[i:])
            name = m.group(1)
            i += len(m.group(0))
            if name in ("frac", "dfrac", "tfrac"):
                num, i = _group(s, i)
                den, i = _group(s, i)
                width += max(tex_width(num), tex_width(den)) + 0.3
            elif name in ("text", "operatorname", "mathrm", "textsf", "mathit", "mathbf",
                          "textrm", "mathsf"):
                arg, i = _group(s, i)
                width += (0.5 if name.startswith("text") else 0.55) * len(arg.replace("\\", ""))
            elif name == "begin":
                env, i = _group(s, i)
                end = s.find(r"\end{" + env + "}", i)
                end = len(s) if end < 0 else end
                body = s[i:end]
                if env.endswith("matrix") or env == "cases":
                    width += _env_width(body) + (1.2 if env == "cases" else 0.8)
                else:
                    width += _env_width(body)
                i = end + len(r"\end{" + env + "}")
            elif name == "sqrt":
                arg, i = _group(s, i)
                width += tex_width(arg) + 1.0
            elif name in _SPACES:
                width += _SPACES[name]
            elif name in _ZERO_COMMANDS:
                if name in ("left", "right", "bigl", "bigr", "Bigl", "Bigr"):
                    _, i = _group(s, i)
                    width += 0.45
                elif name == "phantom":
                    arg, i = _group(s, i)
                    width += tex_width(arg)
            elif name in _WIDE_COMMANDS:
                width += _WIDE_COMMANDS[name]
            elif name in ("log", "exp", "sin", "cos", "tanh", "max", "min", "sign", "erf"):
                width += 0.5 * len(name) + 0.2
            elif name in ("geq", "leq", "neq", "to", "mapsto", "equiv", "approx"):
                width += _OPERATOR
            else:
                width += 0.6
            continue
        if c in "^_":
            arg, i = _group(s, i + 1)
            width += 0.72 * tex_width(arg)
            continue
        if c == "{":
            arg, i = _group(s, i)
            width += tex_width(arg)
            continue
        if c in "+-=<>":
            width += _OPERATOR
        elif c in "()[]|,.;'":
            width += 0.35
        elif c in " }&":
            pass
        else:
            width += _ONE_LETTER
        i += 1
    return width


# ---------------------------------------------------------------------------
# Breaking one expression over lines


_PRINTER = DerivationLatexPrinter()


def _terms(expr: sp.Add) -> list[str]:
    """The terms of a sum as the printer writes them, each with its sign."""
    out = []
    for n, term in enumerate(_PRINTER._as_ordered_terms(expr, order=None)):
        sign = ""
        if term.could_extract_minus_sign():
            sign, term = "- ", -term
        elif n:
            sign = "+ "
        tex = _PRINTER._print(term)
        if _PRINTER._needs_add_brackets(term):
            tex = rf"\left({tex}\right)"
        out.append(sign + tex)
    return out


def _pack(pieces: list[str], budget: float) -> list[str]:
    lines: list[str] = []
    for piece in pieces:
        if lines and tex_width(lines[-1] + " " + piece) <= budget:
            lines[-1] += " " + piece
        else:
            lines.append(piece)
    return lines


def _bracketed(lines: list[str], head: str = "", tail: str = "") -> list[str]:
    """``head ( line1 \\ line2 ) tail`` with delimiters that may span lines."""
    out = list(lines)
    out[0] = head + r"\Bigl(" + out[0]
    out[-1] = out[-1] + r"\Bigr)" + tail
    return out


def break_lines(expr, budget: float = LINE_BUDGET_EM) -> list[str]:
    """``expr`` as one or more lines of LaTeX, each within ``budget`` em if it can be."""
    whole = latex(expr)
    if tex_width(whole) <= budget:
        return [whole]
    if isinstance(expr, sp.MatrixBase):
        return _matrix_lines(expr, budget)
    if isinstance(expr, sp.Piecewise):
        return _piecewise(expr, budget)
    if isinstance(expr, sp.Add):
        pieces: list[str] = []
        for term, piece in zip(_PRINTER._as_ordered_terms(expr, order=None), _terms(expr),
                               strict=True):
            if tex_width(piece) <= budget or not isinstance(term, sp.Mul):
                pieces.append(piece)
                continue
            sign = piece[:2] if piece[:2] in ("+ ", "- ") else ""
            inner = break_lines(-term if sign == "- " else term, budget)
            pieces.extend([sign + inner[0], *inner[1:]])
        return _pack(pieces, budget)
    if isinstance(expr, sp.Sum) and isinstance(expr.function, sp.Add):
        head = latex(sp.Sum(sp.Symbol("X"), *expr.limits)).removesuffix("X").rstrip()
        return _bracketed(break_lines(expr.function, budget - 2), head + " ")
    if isinstance(expr, sp.Mul):
        # A product with a wide sum among its factors: the other factors (a
        # fraction included) in front, the sum broken inside big brackets.
        wide = [f for f in sp.Mul.make_args(expr) if isinstance(f, sp.Add | sp.Sum)]
        if wide:
            big = max(wide, key=lambda f: tex_width(latex(f)))
            rest = expr / big
            head = "" if rest == 1 else ("-" if rest == -1 else latex(rest)) + " "
            inner = break_lines(big, budget - 2 - tex_width(head) / 2)
            if len(inner) == 1 and tex_width(head + inner[0]) > budget:
                return [head, r"\quad " + inner[0]] if head else inner
            if isinstance(big, sp.Sum):
                inner[0] = head + inner[0]
                return inner
            return _bracketed(inner, head)
    return [whole]


def _piecewise(expr: sp.Piecewise, budget: float) -> list[str]:
    """An Iverson bracket with its factor broken after it, or cases whose long
    conditions are stacked, one index range per line."""
    body = iverson_body(expr)
    if body is not None:
        bracket = rf"\left[{DerivationLatexPrinter().condition(expr.args[0].cond)}\right]"
        if body == 1:
            return [bracket]
        inner = break_lines(body, max(budget - tex_width(bracket), 8))
        if isinstance(body, sp.Add):
            return _bracketed(inner, bracket + " ")
        inner[0] = f"{bracket} {inner[0]}"
        return inner
    rows = []
    for value, cond in expr.args:
        if cond is sp.true:
            rows.append(rf"{latex(value)} & \text{{otherwise}}")
            continue
        parts = DerivationLatexPrinter()._ranges(cond)
        lines = _pack([p + r",\;" for p in parts[:-1]] + [parts[-1]],
                      max(budget - tex_width(latex(value)) - 4, 8))
        tex = (lines[0] if len(lines) == 1 else
               r"\begin{array}[t]{l}" + r" \\ ".join(lines) + r"\end{array}")
        rows.append(rf"{latex(value)} & \text{{for }} {tex}")
    return [r"\begin{cases} " + r" \\ ".join(rows) + r" \end{cases}"]


def _matrix_lines(matrix: sp.MatrixBase, budget: float) -> list[str]:
    """A matrix too wide for a line: one bracketed row per line, entries separated."""
    lines = []
    for r in range(matrix.rows):
        entries = [latex(matrix[r, c]) for c in range(matrix.cols)]
        label = rf"\text{{row {r + 1}: }}"
        packed = _pack([e + r",\;" for e in entries[:-1]] + [entries[-1]], budget - 4)
        packed[0] = label + r"\bigl[" + packed[0]
        packed[-1] += r"\bigr]"
        lines.extend(packed)
    return lines


# ---------------------------------------------------------------------------
# A result with a common factor: shown factored, as one more proven step


@dataclass(frozen=True)
class ShownStep:
    expr: sp.Basic
    why: str
    proof: str


FACTORED_WHY = "sums over the same range combined, their common factors taken out"


def _pull_out(total: sp.Sum) -> sp.Basic:
    """``sum c f`` -> ``c sum f`` for the factors ``c`` free of the summed indices;
    a bracket that reads better with its sign flipped, ``(mu - X)``, is flipped."""
    bound = {v for v, *_ in total.limits}
    inside, outside = [], []
    for f in sp.Mul.make_args(sp.factor_terms(total.function)):
        if isinstance(f, sp.Add) and f.could_extract_minus_sign():
            f, outside = -f, [*outside, -1]
        (inside if f.free_symbols & bound else outside).append(f)
    return sp.Mul(*outside) * sp.Sum(sp.Mul(*inside), *total.limits)


def factored(expr: sp.Basic) -> sp.Basic:
    """``expr`` with its sums over the same range combined and common factors taken out.

    ``-1/2 sum_i X_iu dx_iu / s + 1/2 sum_i mu_u dx_iu / s`` becomes
    ``-1/(2 s) sum_i (X_iu - mu_u) dx_iu``. Only rearranges terms: the caller
    proves the result equal before showing it.
    """
    if not isinstance(expr, sp.Add):
        return expr
    groups: dict = {}
    rest = []
    for term in expr.args:
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, sp.Sum)]
        if len(sums) == 1:
            coeff = term / sums[0]
            if not coeff.free_symbols & {v for v, *_ in sums[0].limits}:
                groups.setdefault(sums[0].limits, []).append(coeff * sums[0].function)
                continue
        rest.append(term)
    if not groups:
        return expr
    combined = [_pull_out(sp.Sum(sp.Add(*body), *limits)) for limits, body in groups.items()]
    return sp.factor_terms(sp.Add(*rest, *combined))


def shown_steps(chain) -> list:
    """The chain's steps, and the result factored as one more step when that is
    clearly narrower and SymPy proves it equal (the result the code uses is the
    chain's own, unchanged)."""
    # A proven step that reads the same once printed (SymPy's factor of a form
    # the printer already writes factored) is not shown twice; a check on
    # examples always is, so that its mark is never hidden.
    steps = [step for n, step in enumerate(chain.steps)
             if n == 0 or proof_mark(step.proof).kind != "proof"
             or latex(step.expr) != latex(chain.steps[n - 1].expr)]
    last = steps[-1]
    if (getattr(last, "evidence_only", False) or not isinstance(last.expr, sp.Expr)
            or isinstance(last.expr, sp.MatrixExpr)):
        return steps
    better = factored(last.expr)
    if better == last.expr or tex_width(latex(better)) > 0.85 * tex_width(latex(last.expr)):
        return steps
    proof = prove_equal(last.expr, better)
    if proof is None:
        return steps
    return [*steps, ShownStep(better, FACTORED_WHY, proof)]


# ---------------------------------------------------------------------------
# The chain


def _why_latex(why: str) -> str:
    """A step's explanation: plain text, with ``$...$`` segments as math."""
    parts = why.split("$")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced $ in step explanation: {why!r}")
    out = []
    for n, part in enumerate(parts):
        if not part:
            continue
        out.append(part if n % 2 else r"\text{" + part.replace("_", r"\_") + "}")
    return "".join(out)


def text_html(why: str) -> str:
    """Text for the page (a step's explanation, a caption) as HTML: text escaped, ``$...$`` kept for MathJax."""
    parts = why.split("$")
    if len(parts) % 2 == 0:
        raise ValueError(f"unbalanced $ in step explanation: {why!r}")
    return "".join(
        rf"\({html.escape(part, quote=False)}\)" if n % 2 else html.escape(part, quote=False)
        for n, part in enumerate(parts) if part
    )


def _fits(lines: list[str], budget: float) -> bool:
    return all(tex_width(line) <= budget + 0.5 for line in lines)


def abbreviations(exprs) -> list[tuple[sp.Symbol, sp.Basic]]:
    """Names ``u_1, u_2, ...`` for function calls that keep results too wide.

    Used only when breaking at sums is not enough (the fully expanded
    gradients of the Errata page): every call such as ``tanh(a_1 w_11 + ...)``
    wider than a few symbols is named, innermost first, and shown once in a
    "where" line. The names are for display; the proofs ran on the full
    expressions.
    """
    calls = set()
    for e in exprs:
        for sub in sp.preorder_traversal(e):
            if isinstance(sub, sp.Function) and tex_width(latex(sub)) > 7:
                calls.add(sub)
    names: list[tuple[sp.Symbol, sp.Basic]] = []
    for call in sorted(calls, key=lambda c: (sp.count_ops(c), sp.default_sort_key(c))):
        body = call.xreplace({old: new for new, old in names})
        names.append((sp.Symbol(f"u_{len(names) + 1}"), body))
    return names


def _layout(steps, budget: float):
    """Lines of every step, and the "where" definitions if any were needed."""
    lines = [break_lines(step.expr, budget) for step in steps]
    if all(_fits(ls, budget) for ls in lines):
        return lines, []
    names = abbreviations([step.expr for step in steps])
    if not names:
        return lines, []

    def short(e):
        # innermost calls first; each later name is written through earlier ones
        for name, body in names:
            e = e.xreplace({body: name})
        return e

    return [break_lines(short(step.expr), budget) for step in steps], names


def _lhs_latex(lhs) -> str:
    """The left-hand side; a symbol named in LaTeX (``\\partial a_p/\\partial z_k``)
    is shown as written, not split at its underscores into a subscript."""
    if isinstance(lhs, sp.Symbol) and "\\" in lhs.name:
        return lhs.name
    return latex(lhs)


def _lhs_budget(lhs_tex: str) -> float:
    return max(LINE_BUDGET_EM - tex_width(lhs_tex) - 1.5, 14.0)


def chain_latex(chain) -> str:
    """``lhs = e0 = e1 ...`` as an aligned block, one checked step per row.

    Each expression is broken over lines if it is too wide; under it, a small
    line gives the proof mark, the strategy and the reason, so neither can be
    pushed off the right edge by the formula.
    """
    lhs = _lhs_latex(chain.lhs)
    budget = _lhs_budget(lhs)
    steps = shown_steps(chain)
    layout, where = _layout(steps, budget)
    rows = []
    for n, (step, lines) in enumerate(zip(steps, layout, strict=True)):
        mark = proof_mark(step.proof)
        for m, line in enumerate(lines):
            head = lhs if n == 0 and m == 0 else ""
            rel = "&= " if m == 0 else r"&\quad "
            rows.append(f"{head} {rel}{line}")
        rows.append(
            rf"& \qquad \small {mark.tex}\ \textsf{{{mark.label}}}\quad {_why_latex(step.why)}"
        )
    for name, body in where:
        for m, line in enumerate(break_lines(body, budget - 3)):
            head = rf"\text{{where }} {latex(name)} = " if m == 0 else r"\quad "
            rows.append(f"& {head}{line}")
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def chain_html(chain, caption: str | None = None) -> str:
    """The chain as the site shows it: a captioned grid of steps with proof marks."""
    lhs = _lhs_latex(chain.lhs)
    # A left-hand side that would squeeze the results into a narrow column
    # (itself a sum, say) gets a row of its own, the results below it.
    tall = tex_width(lhs) > LINE_BUDGET_EM / 3
    budget = LINE_BUDGET_EM - 1.5 if tall else _lhs_budget(lhs)
    if tall and not (isinstance(chain.lhs, sp.Symbol) and "\\" in chain.lhs.name):
        lhs_lines = break_lines(chain.lhs, budget)
        if len(lhs_lines) > 1:
            lhs = r"\begin{aligned}[t] & " + r" \\ &\quad ".join(lhs_lines) + r"\end{aligned}"
    out = [f'<figure class="chain{" chain-tall" if tall else ""}">']
    if caption:
        out.append(f'<figcaption class="chain-caption">{text_html(caption)}</figcaption>')
    steps = shown_steps(chain)
    layout, where = _layout(steps, budget)
    out.append('<div class="chain-grid">')
    for n, (step, lines) in enumerate(zip(steps, layout, strict=True)):
        mark = proof_mark(step.proof)
        if len(lines) == 1:
            rhs = "= " + lines[0]
        else:
            rhs = (r"\begin{aligned}[t] &= " + r" \\ &\quad ".join(lines) + r"\end{aligned}")
        head = rf"\(\displaystyle {lhs}\)" if n == 0 else ""
        out.append(
            f'<div class="chain-step chain-{mark.kind}" data-proof="{html.escape(step.proof)}">'
            f'<div class="chain-lhs">{head}</div>'
            f'<div class="chain-rhs">\\(\\displaystyle {rhs}\\)</div>'
            f'<div class="chain-why"><span class="proof-mark proof-{mark.kind}" '
            f'title="{html.escape(mark.tooltip)}">{mark.symbol}'
            f'<span class="proof-label">{html.escape(mark.label)}</span></span> '
            f'<span class="chain-reason">{text_html(step.why)}</span></div>'
            "</div>"
        )
    for name, body in where:
        lines = break_lines(body, budget - 3)
        tex = (rf"\begin{{aligned}}[t] {latex(name)} &= " + r" \\ &\quad ".join(lines)
               + r"\end{aligned}")
        out.append(f'<div class="chain-where">where \\(\\displaystyle {tex}\\)</div>')
    out.append("</div></figure>")
    return "".join(out)


# A chain shows itself in a notebook through this module (checked.py does not
# import display.py, so that neither imports the other).
Chain._repr_latex_ = lambda self: "$$" + chain_latex(self) + "$$"
