"""Exercises at the end of a derivation page, checked by the live engine.

A page builds each :class:`Exercise` from its own results (the answer is the
expression the page derived, or a number its generated kernels computed), and
:func:`show_exercises` renders them. Every expected answer is written into
the page as the text the browser's engine will compare the reader's answer
with; that text is parsed back here, with the engine's own parser, and proven
equal to the page's result, so the two cannot drift apart. A typed form of
the answer (friendlier to read than SymPy's) is accepted only when it is
proven equal to the result as well.

The markup follows the contract of issue 18: ``data-exercise`` on the block,
an input ``data-live="answer"``, a button ``data-live="check-answer"`` and a
verdict ``data-live="verdict"`` (``data-ok``), plus a static answer in a
``<details>`` that works without the engine.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import sympy as sp

from .checked import StepNotVerified, prove_equal
from .printers import latex

__all__ = ["Exercise", "exercises_html", "finite_sums", "scalar_form", "show_exercises",
           "slope_through_output", "tex_matrix", "with_slope"]


def scalar_form(expr: sp.Basic, indices: bool = False, rename=None) -> sp.Expr:
    """``a[k]``, ``y[k]``, ``z[k]`` -> the real scalars ``a``, ``y``, ``z``: one unit's value.

    For an index form the exercise asks for one entry; the page says so. With
    ``indices``, ``a[j]`` becomes ``a_j`` (a page with ``a_j`` and ``a_k``);
    ``rename`` maps a label to the name a reader types (``\\delta`` -> ``delta``).
    Every other symbol becomes a real symbol of the same name, as the answer
    checker reads it.
    """
    rename = rename or {}

    def name(e):
        label = rename.get(str(e.base.label), str(e.base.label))
        return label + ("_" + "".join(map(str, e.indices)) if indices else "")

    out = expr.replace(lambda e: isinstance(e, sp.Indexed),
                       lambda e: sp.Symbol(name(e), real=True))
    return out.xreplace({s: sp.Symbol(s.name, real=True) for s in out.free_symbols
                         if isinstance(s, sp.Symbol)})


@dataclass(frozen=True)
class Exercise:
    """One question. ``answer``: a SymPy result of the page, or a float.

    ``typed``: the answer as a reader would write it (shown as the static
    answer; must be proven equal to ``answer``). ``tolerance``: relative (with
    a floor of 1) for a number. ``variables``: the names the answer may use.
    """

    prompt: str
    answer: sp.Expr | float
    typed: str | None = None
    tolerance: float = 1e-6
    note: str = ""
    variables: tuple[str, ...] | None = None
    indices: bool = False  # a[j] -> a_j rather than a (see scalar_form)
    rename: tuple[tuple[str, str], ...] = ()

    def scalar(self) -> sp.Expr:
        if self.is_matrix:
            return self.answer
        return scalar_form(sp.sympify(self.answer), self.indices, dict(self.rename))

    @property
    def is_matrix(self) -> bool:
        """A matrix form (``dZ^T A``): checked entry by entry for every size."""
        return isinstance(self.answer, sp.MatrixExpr)

    @property
    def is_number(self) -> bool:
        return isinstance(self.answer, int | float) and not isinstance(self.answer, bool)

    def expected_text(self) -> tuple[str, str]:
        """``(expected, variables)`` as the browser's checker receives them, checked here."""
        from ..live import check_answer, describe_variables, parse

        if self.is_matrix:
            text = sp.sstr(self.answer)
            names = describe_variables(self.answer.atoms(sp.MatrixSymbol))
            for form in (text, self.typed):
                if form is not None and not check_answer(form, text, names).get("ok"):
                    raise StepNotVerified(f"exercise answer {form!r} is not the derived "
                                          f"{self.answer}: {check_answer(form, text, names)}")
            return text, names
        expr = self.scalar()
        names = self.variables or tuple(sorted(s.name for s in expr.free_symbols))
        symbols = {n: sp.Symbol(n, real=True) for n in names}
        text = sp.sstr(expr)
        if prove_equal(parse(text, symbols), expr, variables=tuple(symbols.values())) is None:
            raise StepNotVerified(f"exercise answer {text!r} does not parse back to {expr}")
        if self.typed is not None:
            typed = parse(self.typed, symbols)
            if prove_equal(typed, expr, variables=tuple(symbols.values())) is None:
                raise StepNotVerified(f"the typed answer {self.typed!r} is not the derived {expr}")
        return text, " ".join(names)


def _answer_html(ex: Exercise) -> tuple[str, str]:
    if ex.is_number:
        value = float(ex.answer)
        if not math.isfinite(value):
            raise ValueError(f"exercise answer {value} is not a finite number")
        attrs = (f'data-answer-kind="number" data-expected="{value!r}" '
                 f'data-tolerance="{ex.tolerance!r}"')
        shown = f"{value:.6g} (within a relative {ex.tolerance:g})"
        return attrs, shown
    text, names = ex.expected_text()
    attrs = (f'data-answer-kind="expression" data-expected="{html.escape(text)}" '
             f'data-variables="{html.escape(names)}"')
    shown = rf"\({latex(ex.scalar())}\)"
    if ex.typed:
        shown += f", typed <code>{html.escape(ex.typed)}</code>"
    return attrs, shown


def exercises_html(exercises: list[Exercise]) -> str:
    """The exercise blocks of a page."""
    if len(exercises) < 1:
        raise ValueError("no exercises")
    blocks = []
    for n, ex in enumerate(exercises, 1):
        attrs, shown = _answer_html(ex)
        variables = [] if ex.is_number else ex.expected_text()[1].split()
        if ex.is_number:
            how = "a number"
        elif ex.is_matrix:
            how = ("a matrix expression in " + ", ".join(
                f"<code>{v.partition('[')[0]}</code>" for v in variables)
                + " (<code>@</code> for the product, <code>.T</code> for the transpose)")
        else:
            how = "a SymPy expression in " + ", ".join(f"<code>{v}</code>" for v in variables)
        note = f' <span class="live-note">{ex.note}</span>' if ex.note else ""
        blocks.append(
            f'<div class="live-exercise" data-exercise="{n}" {attrs}>'
            f'<p><strong>Exercise {n}.</strong> {ex.prompt}{note}</p>'
            f'<div class="live-answer-row"><input type="text" data-live="answer" '
            f'spellcheck="false" autocomplete="off" aria-label="answer to exercise {n}" '
            f'placeholder="{how.replace("<code>", "").replace("</code>", "")}">'
            f'<button type="button" class="md-button" data-live="check-answer">Check</button>'
            f'<span class="live-verdict" data-live="verdict" data-ok="" aria-live="polite">'
            f"</span></div>"
            f"<details><summary>Show the answer</summary><p>{shown}</p></details></div>"
        )
    return "\n".join(blocks)


# `regenerate` runs the pages only for their kernels and sets this to False: an
# exercise's typed answer is a claim of the page's text, checked when the site
# is built, and must not stop new code from being written for a changed definition.
CHECK_ANSWERS = True


def show_exercises(*exercises: Exercise) -> None:
    """Display the exercises (in a notebook); as a script, only check their answers."""
    if not CHECK_ANSWERS:
        return
    text = exercises_html(list(exercises))
    from .pages import _ipython_active

    if _ipython_active():
        from IPython.display import HTML, display

        display(HTML(text))


def slope_through_output(name: str) -> sp.Expr:
    """g' of a catalog activation through its output ``a`` (the Activations page's first chain)."""
    from .catalog import ACTIVATIONS
    from .techniques import derive_activation

    a = sp.Symbol("a", real=True)
    chain = derive_activation(name, ACTIVATIONS[name], a)[0][0]
    if chain.result.has(sp.Symbol("z", real=True)):
        raise ValueError(f"{name}' has no form through a")
    return chain.result


def with_slope(expr: sp.Basic, g_prime, name, outputs: dict) -> sp.Basic:
    """Every ``g'(z[idx])`` in ``expr`` -> ``name``'s g' through ``a[idx]``.

    ``outputs`` maps each pre-activation base to its activation base
    (``{z_out: a_out}``); ``name`` is one catalog activation, or a dict from
    pre-activation base to one. The scalar pages leave g' undefined, an
    exercise picks the activation.
    """
    a = sp.Symbol("a", real=True)

    def put(e):
        (arg,) = e.args
        act = name[arg.base] if isinstance(name, dict) else name
        return slope_through_output(act).subs(a, outputs[arg.base][arg.indices])

    return expr.replace(lambda e: isinstance(e, sp.Function) and e.func == g_prime, put)


def finite_sums(expr: sp.Basic, count: int) -> sp.Basic:
    """Every index sum written out over ``count`` terms, 0 .. count - 1 (a small example)."""
    def write_out(e):
        (v, _, _), = e.limits
        return sp.Add(*[e.function.subs(v, n) for n in range(count)])

    return expr.replace(lambda e: isinstance(e, sp.Sum), write_out)


def tex_matrix(values) -> str:
    """A small array of numbers as a LaTeX matrix, for a prompt."""
    rows = [[values[r][c] for c in range(len(values[0]))] for r in range(len(values))]
    body = r" \\ ".join(" & ".join(f"{float(v):g}" for v in row) for row in rows)
    return r"\begin{pmatrix}" + body + r"\end{pmatrix}"
