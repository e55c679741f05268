"""The entry point of the live panel: derive a reader's activation or loss.

The site's live panel runs this module in the browser (Pyodide, from a wheel
of this package built with the site), so what the reader sees is computed by
the same catalog, derivation techniques, proof checker and printers as the
pages and ``regenerate``. Two calls:

* :func:`derive` takes the text of a SymPy expression, an activation in ``z``
  or a per-unit loss in ``a`` and ``y``, and returns a JSON-ready dict: the
  derivative with its proven steps, the output deltas it forms with the
  catalog's losses (or activations), the NumPy kernels as ``regenerate``
  would write them, and a numeric check by central differences;
* :func:`check_answer` proves a reader's answer to an exercise equal to the
  expected expression, or says what is wrong with it.

Every failure (bad syntax, an unknown name, a non-real or non-differentiable
expression, a step SymPy cannot prove) comes back as ``{"error": message}``;
nothing here raises to the caller for bad input.

The text is never given to ``eval`` or ``sympify``: it is parsed with
:mod:`ast` and only numbers, the allowed names and the operators below are
turned into SymPy objects.

This module imports SymPy: it belongs with ``symbolic/`` and is never
imported by the runtime.
"""

from __future__ import annotations

import ast
import math
import re
from functools import cache

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.matrices.exceptions import ShapeError
from sympy.matrices.expressions.matexpr import MatrixElement

from .symbolic.catalog import (
    ACTIVATIONS,
    LOSSES,
    REQUIRED_OUTPUT,
    fix_heaviside,
    is_elementwise,
    kinks,
    zv,
)
from .symbolic.catalog import a as a_vec
from .symbolic.catalog import k as unit
from .symbolic.catalog import y as y_vec
from .symbolic.catalog import z as z_catalog
from .symbolic.checked import Chain, StepNotVerified, prove_equal
from .symbolic.codegen import render_modules
from .symbolic.display import chain_html, proof_mark
from .symbolic.entries import (
    activation_exports,
    chain_rule,
    cost_factor,
    derive_delta,
    output_exports,
)
from .symbolic.kernels import ActivationEntry, Kernel
from .symbolic.printers import latex

__all__ = ["FUNCTIONS", "check_answer", "derive", "describe_variables", "parse", "variable_names"]

KINDS = ("activation", "loss")
# The derivation pages whose steps the live panel repeats, named in the kernels
# exactly as regenerate names them.
ACTIVATIONS_PAGE = "derivations/01_activations.py"
LOSSES_PAGE = "derivations/07_losses_x_activations.py"

# Names a reader may call: SymPy's own functions, nothing else.
FUNCTIONS = {
    "exp": sp.exp, "log": sp.log, "sqrt": sp.sqrt, "Abs": sp.Abs, "abs": sp.Abs,
    "sin": sp.sin, "cos": sp.cos, "tan": sp.tan, "atan": sp.atan, "asinh": sp.asinh,
    "sinh": sp.sinh, "cosh": sp.cosh, "tanh": sp.tanh, "erf": sp.erf,
    "Max": sp.Max, "Min": sp.Min, "Piecewise": sp.Piecewise, "sign": sp.sign,
    "Heaviside": sp.Heaviside, "Rational": sp.Rational,
    # the generated code's float forms, so that a printed result can be typed back
    "expm1": expm1, "log1p": log1p,
}
CONSTANTS = {"pi": sp.pi, "E": sp.E, "True": sp.true}
# Operators, not sp.Add/sp.Mul: the operands may be matrices (an exercise in
# matrix form), for which `*` and `@` are the matrix product.
_BINARY = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
           ast.Mult: lambda x, y: x * y, ast.Div: lambda x, y: x / y,
           ast.Pow: lambda x, y: x**y, ast.BitXor: lambda x, y: x**y,
           ast.MatMult: lambda x, y: _matmul(x, y)}
_COMPARE = {ast.Gt: sp.Gt, ast.Lt: sp.Lt, ast.GtE: sp.Ge, ast.LtE: sp.Le}
MAX_LENGTH = 400  # characters; a longer text is not an expression a reader types

# The real scalars of the two kinds, and of the exercises' answers.
a_sym, y_sym = sp.symbols("a y", real=True)
VARIABLES = {"activation": {"z": z_catalog}, "loss": {"a": a_sym, "y": y_sym}}

# Sample points of the numeric check, away from 0 where kinks usually sit.
Z_POINTS = (-2.3, -0.9, -0.35, 0.4, 1.1, 2.6)
A_POINTS = (0.15, 0.4, 0.7, 0.9)
Y_POINTS = (0.0, 0.35, 1.0)
# The output activations a reader's loss is paired with by default: deriving
# every catalog activation's g' the first time takes about 10 s in CPython
# (mish alone 4 s), several times that in the browser.
LOSS_OUTPUTS = ("identity", "sigmoid", "tanh", "relu", "softplus")
# The catalog's vector output, on request: its delta sums over the units
# (the Jacobian of softmax is not diagonal) and takes a few seconds more.
VECTOR_OUTPUT = "softmax"
# Logits and targets of the softmax check: three units, a one-hot and a soft target.
SOFTMAX_POINTS = ((0.3, -1.2, 0.8), (-0.5, 0.1, 1.7))
SOFTMAX_TARGETS = ((0.0, 1.0, 0.0), (0.2, 0.3, 0.5))
DIGITS = 40  # working precision of the check: the float rounding stays out of it
STEP = sp.Float("1e-12", DIGITS)  # central difference: truncation error ~ STEP**2


class InputError(ValueError):
    """Input the panel reports back as a message."""


# --- Parsing -------------------------------------------------------------------


def parse(text: str, names: dict[str, sp.Symbol]) -> sp.Expr:
    """The expression ``text`` over the symbols ``names``, without ``eval``.

    Accepts numbers (a decimal like ``0.5`` is read exactly, as 1/2), the
    operators ``+ - * / ** ^``, comparisons inside ``Piecewise``, tuples, the
    functions of :data:`FUNCTIONS` and the constants ``pi`` and ``E``.
    """
    if not isinstance(text, str):
        raise InputError(f"the expression must be text, got {type(text).__name__}")
    text = text.strip()
    if not text:
        raise InputError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise InputError(f"the expression is {len(text)} characters long; at most {MAX_LENGTH}")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        col = f" at column {err.offset}" if err.offset else ""
        raise InputError(f"syntax error{col}: {err.msg}") from None
    return _build(tree.body, names)


def _allowed(names) -> str:
    return ", ".join(sorted(names))


def _build(node: ast.AST, names: dict[str, sp.Symbol]):
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            return sp.true if node.value else sp.false
        if isinstance(node.value, int):
            return sp.Integer(node.value)
        if isinstance(node.value, float):
            # exact: the proofs compare expressions, 0.1 must mean 1/10
            return sp.Rational(repr(node.value))
        raise InputError(f"{node.value!r} is not a number")
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        if node.id in FUNCTIONS:
            raise InputError(f"{node.id} is a function: call it, as in {node.id}(...)")
        raise InputError(f"unknown name {node.id!r}: the variables here are "
                         f"{_allowed(names)}; constants pi, E")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _build(node.left, names), _build(node.right, names)
        try:
            return _BINARY[type(node.op)](left, right)
        except ShapeError as err:
            raise InputError(f"{ast.unparse(node)}: the shapes do not fit ({err})") from None
        except (TypeError, ValueError) as err:
            raise InputError(f"{ast.unparse(node)}: {err}") from None
    if isinstance(node, ast.Attribute):
        base = _build(node.value, names)
        if node.attr == "T" and isinstance(base, sp.MatrixExpr):
            return base.T
        raise InputError(f"{ast.unparse(node)!r} is not part of an expression here: of the "
                         "attributes, only a matrix's transpose .T is accepted")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _build(node.operand, names)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        return _COMPARE[type(node.ops[0])](_build(node.left, names),
                                           _build(node.comparators[0], names))
    if isinstance(node, ast.Tuple):
        return tuple(_build(e, names) for e in node.elts)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise InputError(f"unknown function {called!r}; the functions are "
                             f"{_allowed(FUNCTIONS)}")
        if node.keywords:
            raise InputError(f"{node.func.id}: keyword arguments are not accepted")
        args = [_build(arg, names) for arg in node.args]
        try:
            return FUNCTIONS[node.func.id](*args)
        except (TypeError, ValueError) as err:
            raise InputError(f"{node.func.id}{tuple(map(str, args))}: {err}") from None
    raise InputError(f"{ast.unparse(node)!r} is not part of an expression here "
                     "(numbers, variables, + - * / ** and the listed functions)")


def _matmul(x, y):
    if not (isinstance(x, sp.MatrixExpr) and isinstance(y, sp.MatrixExpr)):
        raise InputError("@ multiplies two matrices; use * with a number")
    return x * y


def variable_names(variables: str) -> dict[str, sp.Basic]:
    """The symbols of an exercise: ``"z a"`` are real scalars, and
    ``"dZ[m,n] A[m,k]"`` are matrices whose sizes are positive integers."""
    names: dict[str, sp.Basic] = {}
    sizes: dict[str, sp.Symbol] = {}
    for spec in variables.split():
        name, _, dims = spec.partition("[")
        if not name.isidentifier():
            raise InputError(f"{spec!r} is not a variable name")
        if not dims:
            names[name] = sp.Symbol(name, real=True)
            continue
        if not dims.endswith("]") or len(dims[:-1].split(",")) != 2:
            raise InputError(f"{spec!r}: a matrix is written name[rows,cols]")
        shape = [sp.Integer(d) if d.isdigit() else
                 sizes.setdefault(d, sp.Symbol(d, integer=True, positive=True))
                 for d in dims[:-1].split(",")]
        names[name] = sp.MatrixSymbol(name, *shape)
    # a size is a number the answer may use too (dZ^T A / m)
    return {**{d: sizes[d] for d in sizes if d not in names}, **names}


def describe_variables(matrices) -> str:
    """The inverse of :func:`variable_names` for matrices: ``"A[m,n]"``."""
    return " ".join(f"{m.name}[{m.rows},{m.cols}]" for m in sorted(matrices, key=str))


# --- Numbers ---------------------------------------------------------------------


def _number(expr: sp.Expr, point: dict) -> sp.Expr | None:
    """``expr`` at ``point`` as a SymPy number of DIGITS digits; None where not finite."""
    v = expr.subs({s: x if isinstance(x, sp.Float) else sp.Float(x, DIGITS)
                   for s, x in point.items()}).evalf(DIGITS)
    if v.has(sp.zoo, sp.nan, sp.oo, -sp.oo) or not v.is_number:
        return None
    try:
        c = complex(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(c.real) and math.isfinite(c.imag) else None


def _value(expr: sp.Expr, point: dict) -> complex | None:
    v = _number(expr, point)
    return None if v is None else complex(v)


def _where(point: dict) -> str:
    return ", ".join(f"{s} = {x:g}" for s, x in point.items())


def _require_real(expr: sp.Expr, points: list[dict], what: str) -> None:
    for point in points:
        v = _value(expr, point)
        if v is None:
            raise InputError(f"{what} is not defined at {_where(point)}")
        if abs(v.imag) > 1e-30 * max(1.0, abs(v.real)):
            raise InputError(f"{what} is not real at {_where(point)} (it is {v:.4g}); "
                             "the network's values are real numbers")


def _central_difference(expr: sp.Expr, var: sp.Symbol, point: dict) -> sp.Expr | None:
    # the difference is taken in DIGITS digits, not in float64, where it would
    # cancel all but a few digits
    x = sp.Float(point[var], DIGITS)
    up = _number(expr, {**point, var: x + STEP})
    down = _number(expr, {**point, var: x - STEP})
    if up is None or down is None:
        return None
    return ((up - down) / (2 * STEP)).evalf(DIGITS)


def _relative_error(derived: sp.Expr | None, numeric: sp.Expr | None) -> float:
    """|derived - numeric| relative to max(1, |numeric|): gradcheck's floor of 1.

    In DIGITS digits, so that an agreement to 20 digits shows as 1e-20, not 0.
    """
    if derived is None or numeric is None:
        return math.inf
    return float((abs(derived - numeric) / sp.Max(1, abs(numeric))).evalf(DIGITS))


def _away_from_kinks(expr: sp.Expr, points: list[dict]) -> list[dict]:
    """The points where no kink of ``expr`` is within 1e-3 (a difference across it is meaningless)."""
    edges = kinks(expr)
    keep = []
    for point in points:
        near = False
        for edge in edges:
            v = _value(edge, point)
            near = near or (v is not None and abs(v) < 1e-3)
        if not near:
            keep.append(point)
    return keep


# --- The derivations the pages make, for one expression ----------------------------


# Every derivation below is a function of symbolic/entries.py, the same one
# the Activations and Losses pages call: the panel cannot drift from them.


@cache
def _per_example() -> sp.Expr:
    """dC/dL_s of the catalog's cost (the 1/m), proven as on the Losses page."""
    return cost_factor().result


def _delta_kernel(act: str, g: sp.Expr, loss: str, delta: sp.Expr) -> Kernel:
    """The delta kernel of one pair, exactly as the Losses page exports it."""
    exports = output_exports(act, g, loss, delta, sp.Integer(0), _per_example(), LOSSES_PAGE)
    return next(e for e in exports if isinstance(e, Kernel) and e.name == f"{loss}__{act}_delta")


def _module_text(kernels: list[Kernel], entries: list[ActivationEntry], module: str) -> str:
    files = render_modules(kernels, entries, [])
    return files[f"src/backprop_derived/_generated/{module}.py"]


def _steps(chain: Chain) -> list[dict]:
    out = []
    for step in chain.steps:
        mark = proof_mark(step.proof)
        out.append({"latex": latex(step.expr), "why": step.why, "proof": step.proof,
                    "mark": mark.symbol, "label": mark.label, "kind": mark.kind})
    return out


def _chains(chains: list[tuple[Chain, str | None]]) -> dict:
    return {"html": "".join(chain_html(c, caption) for c, caption in chains),
            "steps": [{"lhs": latex(c.lhs), "caption": caption, "steps": _steps(c)}
                      for c, caption in chains]}


# --- Public entry points ---------------------------------------------------------


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,30}", name):
        raise InputError(f"the name {name!r} must be lowercase letters, digits and "
                         "underscores, starting with a letter (it becomes a Python identifier)")
    return name


def _derive_activation(text: str, name: str) -> dict:
    g = parse(text, VARIABLES["activation"])
    if not isinstance(g, sp.Expr) or isinstance(g, tuple):
        raise InputError("the activation must be an expression in z")
    if not g.has(z_catalog):
        raise InputError("the activation does not depend on z")
    points = [{z_catalog: x} for x in (*Z_POINTS, 0.0)]
    _require_real(g, points, "the activation")
    g_prime = fix_heaviside(sp.diff(g, z_catalog))
    if g_prime.has(sp.DiracDelta):
        raise InputError("the activation jumps (its derivative has a DiracDelta): "
                         "backpropagation needs a function without jumps")
    if g_prime.has(sp.Derivative, sp.Subs):
        raise InputError(f"SymPy could not differentiate the activation: {g_prime}")
    for point in points:
        if _value(g_prime, point) is None:
            raise InputError(f"the activation is not differentiable at {_where(point)}")
    if name in ACTIVATIONS and ACTIVATIONS[name] != g:
        raise InputError(f"{name!r} is a catalog activation with another definition; "
                         "pick another name")
    try:
        chains, kernels = activation_exports(name, g, ACTIVATIONS_PAGE)
    except StepNotVerified as err:
        raise InputError(f"a step could not be proven: {err}") from None
    forward, derivative = kernels[0].expr, kernels[1].expr
    shown = [(c, name if n == 0 else None) for n, c in enumerate(chains)]
    # Output deltas with every loss this activation may be paired with.
    deltas, delta_kernels = [], []
    for loss in sorted(LOSSES):
        if REQUIRED_OUTPUT.get(loss, name) != name:
            continue
        chain = derive_delta(name, g, loss, LOSSES[loss])[-1]
        deltas.append({"loss": loss, "latex": latex(chain.result),
                       "html": chain_html(chain, f"{name} output, {loss.replace('_', ' ')}"),
                       "expr": chain.result})
        delta_kernels.append(_delta_kernel(name, g, loss, chain.result))
    # The numeric check: g' (as the kernel computes it, through a = g(z)) and
    # every delta against central differences of the definitions.
    def through(expr):
        return expr.subs(a_sym, g)

    errors = {}
    safe = _away_from_kinks(g, [{z_catalog: x} for x in Z_POINTS])
    errors["derivative"] = max(
        (_relative_error(_number(through(derivative), p), _central_difference(g, z_catalog, p))
         for p in safe), default=0.0)
    errors["forward"] = max((_relative_error(_number(forward, p), _number(g, p)) for p in safe),
                            default=0.0)
    for d in deltas:
        # one unit's term of the loss (each catalog loss is a sum over the units)
        E = LOSSES[d["loss"]].replace(lambda e: isinstance(e, sp.Sum), lambda e: e.function)
        E = E.subs(a_vec[unit], g.subs(z_catalog, zv[unit]))
        E = E.subs({zv[unit]: z_catalog, y_vec[unit]: y_sym})
        delta = d.pop("expr").subs({a_vec[unit]: g.subs(z_catalog, zv[unit])})
        delta = delta.subs({zv[unit]: z_catalog, y_vec[unit]: y_sym})
        pts = _away_from_kinks(E, [{z_catalog: x, y_sym: t} for x in Z_POINTS[::2]
                                   for t in Y_POINTS])
        errors[d["loss"]] = max((_relative_error(_number(delta, p),
                                                 _central_difference(E, z_catalog, p))
                                 for p in pts), default=0.0)
    activations_module = _module_text(kernels[:3], kernels[3:], "activations")
    losses_module = _module_text(delta_kernels, [], "losses") if delta_kernels else ""
    return {
        "kind": "activation", "name": name, "definition": latex(g),
        "derivative": latex(derivative), "derivative_text": str(derivative),
        "needs_z": bool(derivative.has(z_catalog)),
        **_chains(shown), "deltas": deltas,
        "numpy": activations_module, "numpy_deltas": losses_module,
        "check": _check_report(errors, len(safe)),
    }


def _check_report(errors: dict, points: int) -> dict:
    worst = max(errors.values(), default=0.0)
    return {"max_error": worst, "errors": errors, "points": points,
            "method": "central differences of the definition, step 1e-12 at 40 digits; "
                      "error relative to max(1, |difference|)"}


def _derive_loss(text: str, name: str, outputs) -> dict:
    term = parse(text, VARIABLES["loss"])
    if not isinstance(term, sp.Expr):
        raise InputError("the loss must be an expression in a and y")
    if not term.has(a_sym):
        raise InputError("the loss does not depend on a (the output activation)")
    points = [{a_sym: x, y_sym: t} for x in A_POINTS for t in Y_POINTS]
    _require_real(term, points, "the loss")
    dE_da = sp.diff(term, a_sym)
    if dE_da.has(sp.DiracDelta):
        raise InputError("the loss jumps (its derivative has a DiracDelta)")
    for point in points:
        if _value(dE_da, point) is None:
            raise InputError(f"the loss is not differentiable at {_where(point)}")
    loss = sp.Sum(term.subs({a_sym: a_vec[unit], y_sym: y_vec[unit]}, simultaneous=True),
                  (unit, -sp.oo, sp.oo))
    try:
        general = chain_rule(name, loss)
        shown = [(general, f"{name}, any elementwise output g")]
        deltas, kernels, errors = [], [], {}
        for act in outputs:
            chain = derive_delta(act, ACTIVATIONS[act], name, loss)[-1]
            deltas.append({"activation": act, "latex": latex(chain.result),
                           "html": chain_html(chain, f"{act} output, {name}")})
            kernels.append(_delta_kernel(act, ACTIVATIONS[act], name, chain.result))
            if act == VECTOR_OUTPUT:
                errors[act] = _softmax_delta_error(term, chain.result)
                continue
            g = ACTIVATIONS[act]
            E = term.subs(a_sym, g)
            delta = chain.result.subs(a_vec[unit], g.subs(z_catalog, zv[unit]))
            delta = delta.subs({zv[unit]: z_catalog, y_vec[unit]: y_sym})
            pts = [{z_catalog: x, y_sym: t} for x in Z_POINTS[::2] for t in Y_POINTS]
            # where the loss is defined for this output (a log needs a > 0)
            pts = [p for p in _away_from_kinks(E, pts) if _value(E, p) is not None
                   and abs(_value(E, p).imag) < 1e-30]
            errors[act] = max((_relative_error(_number(delta, p),
                                               _central_difference(E, z_catalog, p))
                               for p in pts), default=0.0)
    except StepNotVerified as err:
        raise InputError(f"a step could not be proven: {err}") from None
    safe = _away_from_kinks(term, points)
    errors["derivative"] = max((_relative_error(_number(dE_da, p),
                                                _central_difference(term, a_sym, p))
                                for p in safe), default=0.0)
    return {
        "kind": "loss", "name": name, "definition": latex(loss),
        "derivative": latex(dE_da), "derivative_text": str(dE_da),
        **_chains(shown), "deltas": deltas,
        "numpy": _module_text(kernels, [], "losses"), "numpy_deltas": "",
        "check": _check_report(errors, len(safe)),
    }


def _softmax_delta_error(term: sp.Expr, delta: sp.Expr) -> float:
    """The derived softmax delta against central differences of the cost of
    three units, E(z) = sum_p term(softmax(z)_p, y_p), in DIGITS digits."""
    n = len(SOFTMAX_POINTS[0])
    zs = sp.symbols(f"_z0:{n}", real=True)
    soft = [sp.exp(zk) / sum(sp.exp(zj) for zj in zs) for zk in zs]
    worst = 0.0
    for logits, targets in zip(SOFTMAX_POINTS, SOFTMAX_TARGETS, strict=True):
        at = dict(zip(zs, map(sp.Rational, map(repr, logits)), strict=True))
        cost = sum(term.subs({a_sym: soft[q], y_sym: sp.Rational(repr(targets[q]))},
                             simultaneous=True) for q in range(n))
        # the units' sums over p, finite here: p = 0 .. n-1
        finite = delta.replace(lambda e: isinstance(e, sp.Sum),
                               lambda e: sp.Sum(e.function, (e.variables[0], 0, n - 1)).doit())
        values = {**{a_vec[q]: soft[q] for q in range(n)},
                  **{y_vec[q]: sp.Rational(repr(targets[q])) for q in range(n)}}
        for k in range(n):
            derived = _number(finite.subs(unit, k).subs(values), at)
            worst = max(worst, _relative_error(derived, _central_difference(cost, zs[k], at)))
    return worst


def derive(text: str, kind: str = "activation", name: str | None = None,
           outputs=LOSS_OUTPUTS, softmax: bool = False) -> dict:
    """Derive the reader's activation (in ``z``) or per-unit loss (in ``a``, ``y``).

    ``outputs``: the elementwise catalog activations a loss is paired with
    (``"all"`` for every one); ``softmax`` adds the catalog's softmax output,
    whose delta sums over the units. Returns a dict that ``json.dumps`` accepts, or
    ``{"error": message}``.
    """
    try:
        if outputs == "all":
            outputs = tuple(sorted(a for a in ACTIVATIONS if is_elementwise(a)))
        unknown = [a for a in outputs if a not in ACTIVATIONS or not is_elementwise(a)]
        if unknown:
            raise InputError(f"not elementwise catalog activations: {unknown}")
        if kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
        name = _check_name(name or ("mine" if kind == "activation" else "my_loss"))
        if kind == "activation":
            return _derive_activation(text, name)
        return _derive_loss(text, name, tuple(outputs) + ((VECTOR_OUTPUT,) if softmax else ()))
    except InputError as err:
        return {"error": str(err)}
    except (StepNotVerified, NotImplementedError, ValueError, TypeError, ZeroDivisionError,
            RecursionError) as err:
        # SymPy's own refusals (a form it cannot rewrite, a solve it does not
        # implement) are reported, not raised: the panel shows a message.
        return {"error": f"SymPy could not derive this expression: {type(err).__name__}: {err}"}


def check_answer(answer: str, expected: str, variables: str = "z a y") -> dict:
    """Is the reader's ``answer`` equal to ``expected``? Proven, or what is off.

    ``variables`` names the real symbols both may use. Returns ``{"ok": True,
    "proof": label}``, ``{"ok": False, "hint": ...}`` or ``{"error": ...}``.
    """
    try:
        names = variable_names(variables)
        given = parse(answer, names)
        target = parse(expected, names)
        if isinstance(target, sp.MatrixExpr):
            return _check_matrix(given, target)
        if isinstance(given, sp.MatrixExpr):
            raise InputError("the answer is a number or a scalar expression, not a matrix")
        if not isinstance(given, sp.Expr) or not isinstance(target, sp.Expr):
            raise InputError("the answer must be one expression")
        kinked = tuple(names.values())
        proof = prove_equal(fix_heaviside(given), fix_heaviside(target), variables=kinked)
        if proof is not None:
            return {"ok": True, "proof": proof}
        return {"ok": False, "hint": _hint(given, target, kinked)}
    except InputError as err:
        return {"error": str(err)}
    except (NotImplementedError, ValueError, TypeError, ZeroDivisionError) as err:
        return {"error": f"SymPy could not compare the answer: {type(err).__name__}: {err}"}


_ROW, _COL = sp.symbols("i j", integer=True, nonnegative=True)


def _entry(mat: sp.MatrixExpr) -> sp.Expr:
    """Entry (i, j) of a matrix expression as an index sum over IndexedBase arrays,
    the form the proof checker's "index sums" strategy reads."""
    entry = mat[_ROW, _COL].doit() if mat.shape[0] != 1 else mat[0, _COL].doit()
    return entry.replace(lambda e: isinstance(e, MatrixElement),
                         lambda e: sp.IndexedBase(e.parent.name, shape=e.parent.shape)[e.i, e.j])


def _same_matrix(given: sp.MatrixExpr, target: sp.MatrixExpr) -> str | None:
    if given.shape != target.shape:
        return None
    return prove_equal(_entry(given), _entry(target))


def _product_mismatch(mat: sp.MatrixExpr) -> str | None:
    """The first product whose factors' sizes do not chain, in words."""
    size = "{}×{}".format
    for node in sp.preorder_traversal(mat):
        if isinstance(node, sp.MatAdd):
            terms = [t for t in node.args if isinstance(t, sp.MatrixExpr)]
            for left, right in zip(terms, terms[1:]):
                if left.shape != right.shape:
                    return (f"{left} is {size(*left.shape)} and {right} is "
                            f"{size(*right.shape)}: the terms of a sum need one shape")
        if not isinstance(node, sp.MatMul):
            continue
        factors = [f for f in node.args if isinstance(f, sp.MatrixExpr)]
        for left, right in zip(factors, factors[1:]):
            if left.shape[1] != right.shape[0]:
                return (f"{left} is {size(*left.shape)} and {right} is {size(*right.shape)}: "
                        "a product needs the columns of the left factor to match the rows "
                        "of the right one. Is a transpose missing?")
    return None


def _scaled(mat: sp.MatrixExpr) -> tuple[sp.Expr, sp.MatrixExpr]:
    """``(c, M)`` with ``mat = c M``: the scalar factor of a product (1/m, lambda/m)."""
    if isinstance(mat, sp.MatMul):
        coeff, matrices = mat.as_coeff_matrices()
        return coeff, sp.MatMul(*matrices).doit()
    return sp.Integer(1), mat


def _check_matrix(given, target: sp.MatrixExpr) -> dict:
    """A matrix answer: proven equal entry by entry for every size, or what is off."""
    if not isinstance(given, sp.MatrixExpr):
        return {"ok": False, "hint": f"the answer is a matrix of size {target.rows}×{target.cols}; "
                                     "write it with the matrices, @ and .T"}
    mismatch = _product_mismatch(given)
    if mismatch:
        return {"ok": False, "hint": mismatch}
    if given.shape != target.shape:
        if given.shape == target.T.shape and _same_matrix(given.T, target):
            return {"ok": False, "hint": "this is the transpose of the answer"}
        return {"ok": False, "hint": f"your result is {given.rows}×{given.cols}; "
                                     f"the answer is {target.rows}×{target.cols}"}
    proof = _same_matrix(given, target)
    if proof is not None:
        return {"ok": True, "proof": f"{proof}, entry (i, j) for every size"}
    if _same_matrix(-given, target):
        return {"ok": False, "hint": "the sign is wrong"}
    if given.shape == target.T.shape and _same_matrix(given.T, target):
        return {"ok": False, "hint": "this is the transpose of the answer"}
    (c_given, m_given), (c_target, m_target) = _scaled(given), _scaled(target)
    if c_given != c_target and _same_matrix(m_given, m_target):
        ratio = sp.simplify(c_given / c_target)
        return {"ok": False, "hint": f"off by a factor: your answer is {ratio} times the expected one"}
    return {"ok": False, "hint": "not equal to the expected matrix"}


def _hint(given: sp.Expr, target: sp.Expr, variables) -> str:
    """Which part is wrong, where a simple relation to the answer shows it."""
    if prove_equal(given, -target, variables=variables) is not None:
        return "the sign is wrong"
    if target != 0:
        ratio = sp.simplify(given / target)
        if ratio.is_number and ratio.is_finite and ratio != 0:
            return f"off by a constant factor: your answer is {ratio} times the expected one"
        # one product of powers (m, 1/m, lambda/m): a factor forgotten or added
        factors = sp.Mul.make_args(ratio)
        if all(f.is_number or f.is_Symbol or (f.is_Pow and f.base.is_Symbol) for f in factors):
            return f"off by a factor: your answer is {ratio} times the expected one"
    missing = target.free_symbols - given.free_symbols
    if missing:
        return "the answer should depend on " + ", ".join(sorted(map(str, missing)))
    extra = given.free_symbols - target.free_symbols
    if extra:
        return "the answer should not depend on " + ", ".join(sorted(map(str, extra)))
    return "not equal to the expected expression"
