"""SymPy printers for the generated NumPy kernels and the site's LaTeX.

Three printers, all subclasses of SymPy's own:

* :class:`ArrayPrinter` (a ``NumPyPrinter``) prints one array expression:
  two-branch ``Piecewise`` as ``numpy.where``, ``Max`` as ``numpy.maximum``,
  ``Heaviside(x, 0)`` as ``numpy.greater(x, 0)``, and the batch reductions
  :class:`RowSum` / :class:`RowMax` over the output units.
* :class:`UfuncPrinter` turns an elementwise expression into a sequence of
  in-place ufunc calls that write into ``out`` and preallocated ``scratch``
  buffers, so a kernel allocates nothing (the performance issue asks for
  ``out=`` ufuncs expressed in the generated code). Its ``fused_statements``
  prints several results of one pass (the softmax output layer), with the
  per-example row sums and maxima in ``(m, 1)`` buffers.
* :class:`DerivationLatexPrinter` (a ``LatexPrinter``) prints the index
  notation of the pages: ``\\sum_{k}`` for the formal infinite sums, ``g'(z)``
  for derivatives of an undefined activation, ``H(x)`` for Heaviside.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.printing.latex import LatexPrinter, greek_letters_set
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE

from .taint import assert_proven

__all__ = [
    "ArrayPrinter",
    "DerivationLatexPrinter",
    "RowMax",
    "RowSum",
    "UfuncPrinter",
    "latex",
    "numeric_form",
]


class RowSum(sp.Function):
    """Sum over the output units of each example (axis 1 of a batch array)."""

    nargs = 1


class RowMax(sp.Function):
    """Maximum over the output units of each example."""

    nargs = 1


def numeric_form(expr: sp.Expr) -> sp.Expr:
    """Rewrite for floating point: ``log(1 + t)`` -> ``log1p(t)``, ``exp(u) - 1`` -> ``expm1(u)``.

    Two pattern rules rather than SymPy's ``optims_c99``: its ``log1p_opt``
    factors ``log(1 + exp(-|z|))`` into ``-|z| + log1p(exp(|z|))``, which
    overflows. The caller proves the result equal to the input.
    """

    def log1p_rule(e):
        arg = e.args[0]
        if isinstance(arg, sp.Add) and sp.S.One in arg.args:
            return log1p(arg - 1)
        return e

    def expm1_rule(e):
        terms = list(sp.Add.make_args(e))
        for sign in (1, -1):
            for t in terms:
                if isinstance(sign * t, sp.exp) and -sign in terms:
                    rest = [u for u in terms if u not in (t, -sign)]
                    return sp.Add(sign * expm1((sign * t).args[0]), *rest)
        return e

    out = expr.replace(lambda e: isinstance(e, sp.log), log1p_rule)
    return out.replace(lambda e: isinstance(e, sp.Add), expm1_rule)


class ArrayPrinter(NumPyPrinter):
    """Prints an expression over whole batch arrays (elementwise semantics)."""

    def __init__(self, settings=None):
        super().__init__({"fully_qualified_modules": True, **(settings or {})})

    def doprint(self, expr, assign_to=None):
        _refuse_unproven(expr)
        return super().doprint(expr, assign_to)

    def _print_CheckedOnExample(self, expr):
        _refuse_unproven(expr)

    def _print_erf(self, expr):
        # no NumPy ufunc; SciPy's is a ufunc with out= like NumPy's own
        return f"scipy.special.erf({self._print(expr.args[0])})"

    def _print_Piecewise(self, expr):
        if len(expr.args) != 2 or expr.args[-1].cond is not sp.true:
            return super()._print_Piecewise(expr)
        (then, cond), (otherwise, _) = expr.args
        return (
            f"numpy.where({self._print(cond)}, {self._print(then)}, "
            f"{self._print(otherwise)})"
        )

    def _print_Add(self, expr, order=None):
        # Positive terms first: "z - c" is one ufunc call, "-c + z" is two.
        terms = sorted(expr.args, key=lambda t: (_negated(t) is not None, sp.default_sort_key(t)))
        if _negated(terms[0]) is not None:
            return super()._print_Add(expr, order)
        text = self._print(terms[0])
        for t in terms[1:]:
            neg = _negated(t)
            if neg is None:
                text += f" + {self.parenthesize(t, sp.printing.precedence.PRECEDENCE['Add'])}"
            else:
                text += f" - {self.parenthesize(neg, sp.printing.precedence.PRECEDENCE['Add'] + 1)}"
        return text

    def _print_Max(self, expr):
        return self._fold("numpy.maximum", expr.args)

    def _print_Min(self, expr):
        return self._fold("numpy.minimum", expr.args)

    def _fold(self, ufunc, args):
        """``f(f(x, y), w)``: elementwise, where ``numpy.amax`` of a tuple would stack."""
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{ufunc}({text}, {self._print(arg)})"
        return text

    def _print_Heaviside(self, expr):
        if len(expr.args) != 2:
            raise ValueError(f"Heaviside needs its value at 0 stated (catalog.fix_heaviside): {expr}")
        x, at_zero = expr.args
        if at_zero == 0:
            return f"numpy.greater({self._print(x)}, 0)"
        return f"numpy.heaviside({self._print(x)}, {self._print(at_zero)})"

    # The ufuncs' own reduce methods: numpy.sum/numpy.max add a Python-level
    # wrapper that costs more than the reduction itself on an output layer.
    def _print_RowSum(self, expr):
        return f"numpy.add.reduce({self._print(expr.args[0])}, axis=1, keepdims=True)"

    def _print_RowMax(self, expr):
        return f"numpy.maximum.reduce({self._print(expr.args[0])}, axis=1, keepdims=True)"

    def _print_Rational(self, expr):
        # A weak Python float keeps float32 arrays float32 (NEP 50).
        return repr(float(expr))

    def _print_Half(self, expr):
        return "0.5"


_UNARY = {
    sp.exp: "exp",
    sp.log: "log",
    sp.tanh: "tanh",
    sp.Abs: "absolute",
    sp.sqrt: "sqrt",
    sp.sign: "sign",
    sp.sin: "sin",
    sp.cos: "cos",
    sp.atan: "arctan",
    sp.erf: "scipy.special.erf",  # no NumPy ufunc; SciPy's takes out= too
}


def _cse(exprs):
    """``sympy.cse`` with conditions kept inline: a buffer holds numbers, not a mask."""
    replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("_t"))
    inline: dict = {}
    kept = []
    for sym, sub in replacements:
        sub = sub.xreplace(inline)
        if isinstance(sub, sp.logic.boolalg.Boolean):
            inline[sym] = sub
        else:
            kept.append((sym, sub))
    return kept, [r.xreplace(inline) for r in reduced]


def _refuse_unproven(expr) -> None:
    assert_proven(expr, "kernel expression")


class UfuncPrinter(ArrayPrinter):
    """Prints ``target = expr`` as in-place ufunc calls on preallocated buffers.

    ``statements(expr, "out")`` returns lines such as::

        numpy.multiply(a, a, out=out)
        numpy.subtract(1, out, out=out)
        numpy.multiply(da, out, out=out)

    Operands that need their own buffer take one from ``scratch`` (a list the
    caller preallocates); :attr:`scratch_used` tells how many. The target may
    not be one of the expression's inputs; scratch buffers never are.
    """

    def __init__(self, settings=None):
        super().__init__(settings)
        self.scratch_used = 0
        self.rows_used = 0
        self._kinds: dict[sp.Symbol, str] = {}
        self._kind_of_name: dict[str, str] = {}
        self._free: list[str] = []  # buffers given back, reused before a new one
        self._free_rows: list[str] = []

    # -- public -----------------------------------------------------------
    def statements(self, expr: sp.Expr, target: str, inputs=()) -> list[str]:
        _refuse_unproven(expr)
        self._lines: list[str] = []
        replacements, (reduced,) = _cse([expr])
        self._cse = {}
        for sym, sub in replacements:
            buf = self._take()
            self._eval(sub, buf)
            self._cse[sym] = buf
        self._eval(reduced, target)
        return self._lines

    def fused_statements(self, outputs, kinds: dict[str, str]) -> list[str]:
        """Several results of one pass over a batch, sharing subexpressions.

        ``outputs`` is ``((target, expression), ...)``; the target ``"return"``
        is summed over the whole batch and returned. ``kinds`` gives the shape
        of every input symbol: ``"full"`` (m, K), ``"row"`` (m, 1) or
        ``"scalar"``. Per-example quantities (row sums, row maxima and what is
        computed from them alone) go to ``(m, 1)`` buffers ``rows[i]``; a row
        sum is the product with the ones vector ``units`` (a GEMV, as
        ``db = 1^T dZ``), a row maximum reduces a contiguous transposed copy.
        """
        for _, e in outputs:
            _refuse_unproven(e)
        self._lines = []
        self._cse = {}
        self._kind_of_name = dict(kinds)  # by name: m is an integer symbol, z a real one
        replacements, reduced = _cse([e for _, e in outputs])
        scalars: dict = {}  # 1/m: a Python number, not a buffer of copies
        for sym, sub in replacements:
            if self._kind(sub.xreplace(scalars)) == "scalar":
                scalars[sym] = sub.xreplace(scalars)
        replacements = [(sym, sub.xreplace(scalars)) for sym, sub in replacements
                        if sym not in scalars]
        reduced = [r.xreplace(scalars) for r in reduced]
        pending = dict(replacements)
        order = [sym for sym, _ in replacements]

        def emit_needed(expr):
            # A shared subexpression is emitted just before its first use, so
            # one that reads an earlier output (a_out) comes after it is written.
            for sym in order:
                if sym in pending and expr.has(sym):
                    sub = pending.pop(sym)
                    emit_needed(sub)
                    self._kinds[sym] = self._kind(sub)
                    buf = self._take_row() if self._kinds[sym] == "row" else self._take()
                    self._statement(sub, buf)
                    self._cse[sym] = buf

        for (target, _), e in zip(outputs, reduced, strict=True):
            emit_needed(e)
            if target == "return":
                # a scalar factor (1/m) once on the total, not on every element
                scalars = [f for f in sp.Mul.make_args(e) if self._kind(f) == "scalar"]
                coeff = sp.Mul(*scalars)
                buf = self._take()
                self._statement(e / coeff, buf)
                total = f"numpy.add.reduce({buf}, axis=None)"
                if (inv := _inverted(coeff)) is not None:
                    total += f" / {self.parenthesize(inv, PRECEDENCE['Mul'] + 1)}"
                elif coeff != 1:
                    total += f" * {self.parenthesize(coeff, PRECEDENCE['Mul'] + 1)}"
                self._emit(f"return {total}")
            else:
                self._statement(e, target)
        return self._lines

    def _print_Symbol(self, expr):
        # a shared subexpression inside a printed condition: its buffer
        cse = getattr(self, "_cse", {})
        return cse[expr] if expr in cse else super()._print_Symbol(expr)

    # -- buffers ------------------------------------------------------------
    def _take(self) -> str:
        """A free scratch buffer; a new one when all are in use (no fixed limit)."""
        if self._free:
            return self._free.pop(0)
        self.scratch_used += 1
        return f"scratch[{self.scratch_used - 1}]"

    def _give(self, buf: str) -> None:
        if buf.startswith("rows"):
            self._free_rows.insert(0, buf)
        else:
            self._free.insert(0, buf)

    def _take_row(self) -> str:
        if self._free_rows:
            return self._free_rows.pop(0)
        self.rows_used += 1
        return f"rows[{self.rows_used - 1}]"

    def _take_like(self, e) -> str:
        return self._take_row() if self._kind(e) == "row" else self._take()

    # -- shapes of a fused pass ----------------------------------------------
    def _kind(self, e) -> str:
        """``"scalar"``, ``"row"`` (one value per example) or ``"full"``."""
        if isinstance(e, RowSum | RowMax):
            return "row"
        if e.is_Symbol:
            return self._kinds.get(e) or self._kind_of_name.get(e.name, "full")
        if e.is_number:
            return "scalar"
        kinds = {self._kind(a) for a in e.args}
        return "full" if "full" in kinds else "row" if "row" in kinds else "scalar"

    def _statement(self, e, target: str) -> None:
        """``target = e``, with the per-example parts computed first in row buffers."""
        hoisted: list[str] = []
        e = self._hoist(e, hoisted) if self._kind(e) == "full" else e
        self._eval(e, target)
        for buf in hoisted:
            self._give(buf)

    def _hoist(self, e, hoisted: list[str]):
        """``e`` with its row-shaped compound parts replaced by evaluated row buffers.

        In ``c + log(s) - z`` the two per-example terms are added once per
        example, not once per unit: one ``(m, 1)`` add and one full subtract.
        """
        kind = self._kind(e)
        if kind == "scalar" or self._leaf(e) is not None:
            return e
        if kind == "row":
            # -c and 1/s stay as they are: the subtract or divide that uses them does it
            if (neg := _negated(e)) is not None:
                return -self._hoist(neg, hoisted)
            if isinstance(e, RowSum) and (neg := _negated(e.args[0])) is not None:
                return -self._hoist(RowSum(neg), hoisted)
            if (inv := _inverted(e)) is not None:
                return 1 / self._hoist(inv, hoisted)
            buf = self._take_row()
            self._eval(e, buf)
            hoisted.append(buf)
            held = sp.Dummy("row")
            self._cse[held] = buf
            self._kinds[held] = "row"
            return held
        if isinstance(e, sp.Add | sp.Mul):
            per_row = [a for a in e.args if self._kind(a) != "full"]
            if len(per_row) > 1 and any(self._kind(a) == "row" for a in per_row):
                full = [self._hoist(a, hoisted) for a in e.args if self._kind(a) == "full"]
                return e.func(self._hoist(e.func(*per_row), hoisted), *full)
        if not e.args:
            return e
        return e.func(*[self._hoist(a, hoisted) for a in e.args])

    def _full_operand(self, e) -> tuple[str, str | None]:
        """A full-shaped value's name, and the scratch buffer to give back, if any."""
        leaf = self._leaf(e)
        if leaf is not None:
            return leaf, None
        tmp = self._take()
        self._statement(e, tmp)
        return tmp, tmp

    def _leaf(self, e) -> str | None:
        if e in getattr(self, "_cse", {}):
            return self._cse[e]
        if e.is_Symbol or e.is_Integer:
            return self._print(e)
        if e.is_number:  # pi, sqrt(2/pi), 1/2: one weak Python float
            return repr(float(e))
        if isinstance(e, sp.Heaviside | sp.Piecewise | sp.Max) or e.is_Relational:
            return None
        return None

    def _emit(self, line: str) -> None:
        self._lines.append(line)

    # -- evaluation -------------------------------------------------------
    def _eval(self, e, target: str) -> None:
        leaf = self._leaf(e)
        if isinstance(e, sp.MatrixExpr) and not isinstance(e, sp.MatrixSymbol):
            self._matrix(e, target)
        elif leaf is not None:
            self._emit(f"numpy.copyto({target}, {leaf})")
        elif isinstance(e, sp.Add):
            self._nary(e, target, "add", "subtract", sp.Add.make_args, _negated)
        elif isinstance(e, sp.Mul) and e.as_coeff_Mul()[0] == -1:
            rest = -e
            if self._leaf(rest) is not None:
                self._emit(f"numpy.negative({self._leaf(rest)}, out={target})")
            else:
                self._eval(rest, target)
                self._emit(f"numpy.negative({target}, out={target})")
        elif isinstance(e, sp.Mul):
            self._nary(e, target, "multiply", "divide", sp.Mul.make_args, _inverted)
        elif isinstance(e, sp.Pow):
            self._pow(e, target)
        elif e.func in _UNARY or type(e).__name__ in ("log1p", "expm1"):
            self._unary(_UNARY.get(e.func, type(e).__name__), e.args[0], target)
        elif isinstance(e, RowSum) and _negated(e.args[0]) is not None:
            self._eval(-RowSum(_negated(e.args[0])), target)  # negate m sums, not m*K terms
        elif isinstance(e, RowSum):
            x, tmp = self._full_operand(e.args[0])
            self._emit(f"numpy.matmul({x}, units, out={target})")
            if tmp:
                self._give(tmp)
        elif isinstance(e, RowMax):
            # axis-1 reductions over a few units run a short inner loop per
            # example; over the transposed copy the inner loop is the batch.
            x, tmp = self._full_operand(e.args[0])
            self._emit(f"numpy.copyto(transposed, {x}.T)")
            self._emit(f"numpy.maximum.reduce(transposed, axis=0, keepdims=True, out={target}.T)")
            if tmp:
                self._give(tmp)
        elif isinstance(e, sp.Heaviside) and len(e.args) == 2:
            x, at_zero = e.args
            x = self._operand(x, target)
            if at_zero == 0:
                self._emit(f"numpy.greater({x}, 0, out={target})")
            else:
                self._emit(f"numpy.heaviside({x}, {self._print(at_zero)}, out={target})")
        elif isinstance(e, sp.Max | sp.Min):
            # compound arguments first, into target; then the others one by one
            ufunc = "maximum" if isinstance(e, sp.Max) else "minimum"
            first, *rest = sorted(e.args, key=lambda t: self._leaf(t) is not None)
            if self._leaf(first) is not None and rest:
                x, y_ = self._leaf(first), rest.pop(0)
                self._emit(f"numpy.{ufunc}({self._operand(y_, target)}, {x}, out={target})")
            else:
                self._eval(first, target)
            for other in rest:
                leaf = self._leaf(other)
                if leaf is None:
                    tmp = self._take_like(other)
                    self._eval(other, tmp)
                    self._emit(f"numpy.{ufunc}({target}, {tmp}, out={target})")
                    self._give(tmp)
                else:
                    self._emit(f"numpy.{ufunc}({target}, {leaf}, out={target})")
        elif isinstance(e, sp.Piecewise) and e.args[-1].cond is sp.true:
            # the last branch everywhere, then each earlier one where its condition
            # holds, in reverse: the first true condition wins, as in Piecewise
            self._eval(e.args[-1].expr, target)
            for then, cond in reversed(e.args[:-1]):
                leaf = self._leaf(then)
                if leaf is not None:
                    self._emit(f"numpy.copyto({target}, {leaf}, where={self._print(cond)})")
                else:
                    tmp = self._take_like(then)
                    self._eval(then, tmp)
                    self._emit(f"numpy.copyto({target}, {tmp}, where={self._print(cond)})")
                    self._give(tmp)
        else:
            raise NotImplementedError(f"no in-place form for {type(e).__name__}: {e}")

    def _matrix(self, e, target: str) -> None:
        """The vectorized form: BLAS products, bias broadcast, batch sums.

        ``Transpose`` prints as ``.T`` (a view: BLAS takes the transpose as a
        flag, no copy); ``OneMatrix`` factors are the batch-ones vector of the
        derivation, i.e. a broadcast (``1 b^T``) or a sum over examples
        (``1^T dZ``).
        """
        if isinstance(e, sp.MatAdd):
            products = [t for t in e.args if _is_gemm(t)]
            if len(products) != 1:
                raise NotImplementedError(f"expected one matrix product in {e}")
            self._matrix(products[0], target)
            for term in e.args:
                if term is not products[0]:
                    self._emit(f"numpy.add({target}, {self._broadcast(term)}, out={target})")
        elif isinstance(e, sp.MatMul):
            scalars, factors = e.args_cnc()
            if scalars and len(factors) == 1:
                # c X: one scaling of one matrix into out
                coeff = self._print(sp.Mul(*scalars))
                self._emit(f"numpy.multiply({self._mat(factors[0])}, {coeff}, out={target})")
                return
            if scalars:
                # c (X Y): the product into out, then one in-place scaling
                self._matrix(sp.MatMul(*factors), target)
                coeff = self._print(sp.Mul(*scalars))
                self._emit(f"numpy.multiply({target}, {coeff}, out={target})")
                return
            if len(factors) == 2 and isinstance(factors[0], sp.OneMatrix):
                self._emit(f"numpy.add.reduce({self._mat(factors[1])}, axis=0, out={target})")
            elif len(factors) == 2 and getattr(factors[0], "name", None) == "ones":
                # a (1, m) ones row held as a vector (m,): the product is a GEMV to (n,)
                self._emit(f"numpy.matmul(ones, {self._mat(factors[1])}, out={target})")
            elif len(factors) == 2:
                x, y_ = map(self._mat, factors)
                self._emit(f"numpy.matmul({x}, {y_}, out={target})")
            else:
                raise NotImplementedError(f"product of {len(factors)} factors: {e}")
        else:
            raise NotImplementedError(f"no matrix form for {type(e).__name__}: {e}")

    def _mat(self, e) -> str:
        if isinstance(e, sp.Transpose):
            return f"{self._mat(e.arg)}.T"
        if isinstance(e, sp.MatrixSymbol):
            return e.name
        raise NotImplementedError(f"matrix operand {e}")

    def _broadcast(self, term) -> str:
        """A term added to a product: ``1 b^T`` (broadcast as ``b``) or ``c W``."""
        if isinstance(term, sp.MatrixSymbol):
            return term.name
        scalars, factors = term.args_cnc()
        if len(factors) == 2 and isinstance(factors[0], sp.OneMatrix):
            row = self._mat(factors[1].T)
            return f"{self._print(sp.Mul(*scalars))} * {row}" if scalars else row
        if len(factors) == 1:
            coeff = sp.Mul(*scalars)
            return f"{self._print(coeff)} * {self._mat(factors[0])}"
        raise NotImplementedError(f"cannot add {term} to a product")

    def _operand(self, e, target: str) -> str:
        """Name of ``e``'s value: a leaf, or ``target`` after evaluating into it."""
        leaf = self._leaf(e)
        if leaf is not None:
            return leaf
        self._eval(e, target)
        return target

    def _unary(self, name: str, arg, target: str) -> None:
        ufunc = name if "." in name else f"numpy.{name}"
        self._emit(f"{ufunc}({self._operand(arg, target)}, out={target})")

    def _pow(self, e: sp.Pow, target: str) -> None:
        base, exp_ = e.args
        x = self._operand(base, target)
        if exp_ == 2:
            self._emit(f"numpy.multiply({x}, {x}, out={target})")
        elif exp_ == -1:
            self._emit(f"numpy.divide(1, {x}, out={target})")
        elif exp_ == sp.Rational(1, 2):
            self._emit(f"numpy.sqrt({x}, out={target})")
        else:
            self._emit(f"numpy.power({x}, {self._print(exp_)}, out={target})")

    def _nary(self, e, target, op, inverse_op, make_args, split_inverse) -> None:
        """``target = t0 op t1 op ...``; inverse terms (``-x``, ``1/x``) use ``inverse_op``.

        The first compound term is evaluated straight into ``target``; every
        other compound term needs one scratch buffer while it is combined.
        """
        direct, inverse = [], []
        terms = list(make_args(e))
        numbers = [t for t in terms if t.is_number]
        if len(numbers) > 1:  # sqrt(2)/sqrt(pi): one constant, one operation
            combined = sp.Add(*numbers) if op == "add" else sp.Mul(*numbers)
            terms = [t for t in terms if not t.is_number] + [combined]
        for term in terms:
            inv = split_inverse(term)
            (direct if inv is None else inverse).append(term if inv is None else inv)
        order = sorted(direct, key=lambda t: self._leaf(t) is not None)
        order_inv = sorted(inverse, key=lambda t: self._leaf(t) is not None)
        if order:
            first, rest = order[0], order[1:]
            x = self._operand(first, target)
            if x != target:
                # both leading terms are leaves: combine them in one call
                if rest:
                    y_ = rest.pop(0)
                    self._emit(f"numpy.{op}({x}, {self._operand(y_, target)}, out={target})")
                elif order_inv:
                    y_ = order_inv.pop(0)
                    self._emit(
                        f"numpy.{inverse_op}({x}, {self._operand(y_, target)}, out={target})"
                    )
                else:
                    self._emit(f"numpy.copyto({target}, {x})")
        else:
            # only inverse terms: -x - y ... or 1/x / y ...
            unit = "0" if op == "add" else "1"
            first = order_inv.pop(0)
            x = self._operand(first, target)
            self._emit(f"numpy.{inverse_op}({unit}, {x}, out={target})")
            rest = []
        for terms, name in ((rest, op), (order_inv, inverse_op)):
            for t in terms:
                leaf = self._leaf(t)
                if leaf is None:
                    tmp = self._take_like(t)
                    self._eval(t, tmp)
                    self._emit(f"numpy.{name}({target}, {tmp}, out={target})")
                    self._give(tmp)
                else:
                    self._emit(f"numpy.{name}({target}, {leaf}, out={target})")


def _is_gemm(term) -> bool:
    """A product of two matrices (not the batch-ones vector), possibly scaled."""
    if not isinstance(term, sp.MatMul):
        return False
    _, factors = term.args_cnc()
    return len(factors) == 2 and not isinstance(factors[0], sp.OneMatrix)


def _negated(term):
    """``x`` if ``term`` is ``-x`` (a negative coefficient), else ``None``."""
    coeff, rest = term.as_coeff_Mul()
    if coeff.is_Number and coeff < 0:
        return -coeff * rest if coeff != -1 else rest
    return None


def _inverted(term):
    """``x`` if ``term`` is ``1/x`` (a negative power), else ``None``."""
    if isinstance(term, sp.Pow) and term.exp.is_Number and term.exp < 0:
        return term.base ** (-term.exp)
    return None


class DerivationLatexPrinter(LatexPrinter):
    """The index notation of the pages (the conventions are stated on docs/notation.md)."""

    def _print_Symbol(self, expr, style="plain"):
        name = _GREEK_ALIASES.get(expr.name, expr.name)
        if name != expr.name:  # lam -> lambda (a Python keyword), eps -> epsilon
            return super()._print_Symbol(sp.Symbol(name), style)
        # A function name used as a symbol (the chain of ``softplus'``) is
        # upright, not a product of italic letters s o f t p l u s.
        word = re.fullmatch(r"([A-Za-z]{3,}(?:_[A-Za-z]{3,})*)('*)", name)
        if word and not set(word[1].lower().split("_")) & _GREEK:
            return rf"\operatorname{{{word[1].replace('_', chr(92) + '_')}}}{word[2]}"
        return super()._print_Symbol(expr, style)

    def _as_ordered_terms(self, expr, order=None):
        # Positive terms first, as one writes them: z - c, not -c + z; y - a, not -a + y.
        terms = list(super()._as_ordered_terms(expr, order))
        if isinstance(expr, sp.Add):
            terms.sort(key=lambda t: t.could_extract_minus_sign())
        return terms

    def _print_MatrixSymbol(self, expr):
        # The ones vector of a sum written as a product (db = 1^T dZ).
        if expr.name == "ones" and 1 in expr.shape:
            return r"\mathbf{1}^{\top}" if expr.shape[0] == 1 else r"\mathbf{1}"
        if expr.name in _GREEK_ALIASES:
            return self._print_Symbol(sp.Symbol(expr.name))
        return super()._print_MatrixSymbol(expr)

    def _print_expm1(self, expr, exp=None):
        tex = rf"\mathrm{{expm1}}\left({self._print(expr.args[0])}\right)"
        return tex if exp is None else rf"{tex}^{{{exp}}}"

    def _print_log1p(self, expr, exp=None):
        tex = rf"\mathrm{{log1p}}\left({self._print(expr.args[0])}\right)"
        return tex if exp is None else rf"{tex}^{{{exp}}}"

    # -- sums ---------------------------------------------------------------
    @property
    def bound(self) -> list:
        """Indices bound by the sums being printed; a range condition is solved for one."""
        if not hasattr(self, "_bound_stack"):
            self._bound_stack = []
        return self._bound_stack

    def _print_Sum(self, expr):
        # Both limits, 0-based as the arrays are: \sum_{i=0}^{m-1}. A formal
        # sum over all units of a layer (the catalog's (k, -oo, oo)) has no
        # size to print, so it shows its index alone: \sum_{k}.
        function, *limits = expr.args
        heads = []
        for var, lo, hi in limits:
            if (lo, hi) == (-sp.oo, sp.oo):
                heads.append(rf"\sum_{{{self._print(var)}}}")
            else:
                heads.append(rf"\sum_{{{self._print(var)}={self._print(lo)}}}^{{{self._print(hi)}}}")
        self.bound.extend(var for var, _, _ in limits)
        try:
            body = self._print(function)
        finally:
            del self.bound[-len(limits):]
        if isinstance(function, sp.Add):
            body = rf"\left({body}\right)"
        return " ".join(heads) + " " + body

    def _print_Indexed(self, expr):
        name = str(expr.base.label)
        head, _, tag = name.partition("_")
        indices = [self._positive_first(i) for i in expr.indices]  # t - 1, not -1 + t
        # Single letters run together (w_{jk}); anything longer (t - 1) is
        # separated, so H_{n, t - 1, f} does not read as H_{nt - 1f}.
        sep = "" if all(len(i) == 1 for i in indices) else ", "
        if head and tag:
            # W_ih indexed: the matrix W_{ih} of the text at (e, d), W_{ih,\,ed}; its
            # tag and indices in one subscript ({W_{ih}}_{ed} read as W_ihed).
            return (self._print(sp.Symbol(head)) + "_{" + tag.replace("_", ",")
                    + r",\," + sep.join(indices) + "}")
        return self._print(expr.base.label) + "_{" + sep.join(indices) + "}"

    def _print_Heaviside(self, expr):
        return rf"H\left({self._print(expr.args[0])}\right)"

    # -- the chain rule -----------------------------------------------------
    def _print_Derivative(self, expr):
        func = expr.expr
        if _is_g_prime(expr):
            return rf"{self._print(func.func)}'\left({self._print(func.args[0])}\right)"
        if len(expr.variables) == 1 and isinstance(func, sp.Indexed | sp.Symbol | sp.Function):
            # the textbook fraction, what is differentiated on top: dZ_ir/dW_uv
            return (rf"\frac{{\partial {self._print(func)}}}"
                    rf"{{\partial {self._print(expr.variables[0])}}}")
        if len(expr.variables) == 1:  # d/dw of a formula: the formula in brackets
            return (rf"\frac{{\partial}}{{\partial {self._print(expr.variables[0])}}}"
                    rf" \left({self._print(func)}\right)")
        return super()._print_Derivative(expr)

    def _print_Mul(self, expr):
        # -(a - 1) a reads a (1 - a): the sign goes into a factor with a constant
        if (flipped := _sign_into_factor(expr)) is not None:
            return self._print(flipped)
        if (tex := self._fraction_with_sign_moved(expr)) is not None:
            return tex
        # A chain-rule term: the local derivative first, then the upstream
        # gradient it multiplies, (dZ_ir/dW_uv) . dZ_ir.
        factors = sp.Mul.make_args(expr)
        local = [f for f in factors if isinstance(f, sp.Derivative) and not _is_g_prime(f)]
        if not local or len(local) == len(factors):
            return super()._print_Mul(expr)
        rest = sp.Mul(*[f for f in factors if f not in local])
        coeff, rest = rest.as_coeff_Mul()
        sign = "- " if coeff < 0 else ""
        head = "" if abs(coeff) == 1 else self._print(abs(coeff)) + " "
        tex = sign + head + " ".join(self._print(d) for d in local)
        if rest == 1:
            return tex
        return rf"{tex} \cdot {self.parenthesize(rest, PRECEDENCE['Mul'], strict=True)}"

    # -- conditions -----------------------------------------------------------
    def _fraction_with_sign_moved(self, expr) -> str | None:
        """``(y - a) / (a (a - 1))`` as ``(a - y) / (a (1 - a))``: the two signs of a
        numerator and a denominator factor swapped, when that leaves no minus in front
        (SymPy itself keeps ``1/(1 - a)`` as ``-1/(a - 1)``)."""
        numer, denom = sp.fraction(expr)
        below = list(sp.Mul.make_args(denom))
        flip = next((n for n, f in enumerate(below) if _negative_constant(f)), None)
        if flip is None or not numer.could_extract_minus_sign():
            return None
        others = sp.Mul(*below[:flip], *below[flip + 1:])
        bottom = self._print(-below[flip])
        if others != 1:
            bottom = (f"{self.parenthesize(others, PRECEDENCE['Mul'], strict=True)} "
                      rf"\left({bottom}\right)")
        return rf"\frac{{{self._print(-numer)}}}{{{bottom}}}"

    def _print_KroneckerDelta(self, expr, exp=None):
        # An Iverson bracket [p = k], so that the error delta_k keeps its letter.
        i, j = expr.args
        tex = rf"\left[{self._print(i)} = {self._print(j)}\right]"
        return tex if exp is None else rf"{tex}^{{{exp}}}"

    def _print_Piecewise(self, expr):
        # "x where the condition holds, 0 elsewhere" is the Iverson bracket [condition] x.
        if (body := iverson_body(expr)) is not None:
            bracket = rf"\left[{self.condition(expr.args[0].cond)}\right]"
            if body == 1:
                return bracket
            tex = self._print(body)
            if isinstance(body, sp.Add):
                tex = rf"\left({tex}\right)"
            return rf"{bracket} {tex}"
        return super()._print_Piecewise(expr)

    def _needs_mul_brackets(self, expr, first=False, last=False) -> bool:
        # [condition] x in a product needs brackets only where x would
        body = iverson_body(expr)
        if body is None:
            return super()._needs_mul_brackets(expr, first, last)
        if body == 1 or isinstance(body, sp.Add):  # [c], or [c] (x + y): delimited already
            return False
        return super()._needs_mul_brackets(body, first, last)

    def condition(self, cond) -> str:
        """A conjunction of index inequalities as ranges, one per index:
        ``j - w <= 0 and L - k >= w - j`` prints as ``k + w - L <= j <= w``."""
        return ",\\; ".join(self._ranges(cond))

    def _ranges(self, cond) -> list[str]:
        conjuncts = list(cond.args) if isinstance(cond, sp.And) else [cond]
        if not all(isinstance(c, sp.core.relational.Relational) for c in conjuncts):
            return [self._print(cond)]
        parts: list[str] = []
        while conjuncts:
            var = self._range_index(conjuncts)
            if var is None:
                parts.extend(self._print_Relational(c) for c in conjuncts)
                break
            lower, upper, rest = [], [], []
            for c in conjuncts:
                bound = _solve_bound(c, var)
                if bound is None:
                    rest.append(c)
                else:
                    (lower if bound[0] == "lower" else upper).append(bound[1:])
            parts.append(self._range(var, lower, upper))
            conjuncts = rest
        return parts

    def _range_index(self, conjuncts):
        """The index to solve for: the one in most conditions, a summed index first."""
        counts: dict = {}
        for c in conjuncts:
            for s in c.free_symbols:
                if s.is_integer and _solve_bound(c, s) is not None:
                    counts[s] = counts.get(s, 0) + 1
        if not counts:
            return None
        bound = list(self.bound)

        def rank(s):
            return (-counts[s], s not in bound, s.name not in _INDEX_LETTERS, s.name)

        return min(counts, key=rank)

    def _range(self, var, lower, upper) -> str:
        def side(bounds, rel_le, rel_lt):
            return [(self._positive_first(b), rel_lt if strict else rel_le) for b, strict in bounds]

        lows = side(lower, r"\leq", "<")
        highs = side(upper, r"\leq", "<")
        v = self._print(var)
        if len(lows) == 1 and len(highs) == 1:
            (lo, r1), (hi, r2) = lows[0], highs[0]
            return f"{lo} {r1} {v} {r2} {hi}"
        pieces = [f"{v} {r.replace('leq', 'geq').replace('<', '>')} {lo}" for lo, r in lows]
        pieces += [f"{v} {r} {hi}" for hi, r in highs]
        return ",\\; ".join(pieces)

    def _positive_first(self, expr) -> str:
        """A bound as one writes it, ``k + w - L`` rather than ``- L + k + w``."""
        if not isinstance(expr, sp.Add):
            return self._print(expr)
        terms = sorted(expr.args, key=lambda t: (t.could_extract_minus_sign(), t.is_number,
                                                 sp.default_sort_key(t)))
        tex = self._print(terms[0])
        for t in terms[1:]:
            tex += f" - {self._print(-t)}" if t.could_extract_minus_sign() else f" + {self._print(t)}"
        return tex

    def _print_Function(self, expr, exp=None):
        name = type(expr).__name__
        if name.endswith("'") and len(expr.args) == 1:  # g'(z): a named derivative
            tex = rf"{name}\left({self._print(expr.args[0])}\right)"
            return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"
        return super()._print_Function(expr, exp)

    def _print_CheckedOnExample(self, expr):
        # the step's label says it was only checked on an example
        return self._print(expr.args[0])

    def _print_RowSum(self, expr):
        return rf"\sum_{{\text{{units}}}} {self._print(expr.args[0])}"

    def _print_RowMax(self, expr):
        return rf"\max_{{\text{{units}}}} {self._print(expr.args[0])}"


_GREEK = {name.lower() for name in greek_letters_set}
# Scalar names spelled short in code because the Greek word is a Python keyword
# or too long: the pages print the letter.
# Symbols whose Python name is not the textbook's: lam and eps (lambda is a
# Python keyword), and the stride, a kernel argument named ``stride`` that the
# texts (and the pages) call s.
_GREEK_ALIASES = {"lam": "lambda", "eps": "epsilon", "stride": "s"}
# Letters of the engine's gradient indices (engine._GRADIENT_INDICES) and of
# the pages' units: preferred over a size (L, T) when solving a range.
_INDEX_LETTERS = set("uvwxyqijkpst")


def _sign_into_factor(expr):
    """``-(a - 1) b`` as ``(1 - a) b``, ``-(a - y) / (a - 1)`` as ``(a - y) / (1 - a)``;
    ``None`` if there is no minus sign to move or no factor with a negative constant."""
    coeff, rest = expr.as_coeff_Mul()
    if coeff != -1:
        return None
    factors = list(sp.Mul.make_args(rest))
    for n, f in enumerate(factors):
        if _negative_constant(f):
            factors[n] = -f
            return sp.Mul(*factors)
    return None


def _is_g_prime(expr) -> bool:
    """``Derivative(g(z), z)`` of an undefined one-argument function: printed ``g'(z)``."""
    func = expr.expr
    return (isinstance(func, sp.core.function.AppliedUndef) and len(func.args) == 1
            and len(expr.variables) == 1 and expr.variables[0] == func.args[0])


def _negative_constant(e) -> bool:
    """``a - 1``: a sum with a negative number among its terms."""
    return isinstance(e, sp.Add) and any(t.is_Number and t < 0 for t in e.args)


def iverson_body(expr):
    """``x`` if ``expr`` is ``Piecewise((x, condition), (0, True))``, else ``None``."""
    if (isinstance(expr, sp.Piecewise) and len(expr.args) == 2
            and expr.args[1].cond is sp.true and expr.args[1].expr == 0):
        return expr.args[0].expr
    return None


def _solve_bound(relation, var):
    """``("lower" | "upper", bound, strict)`` for a relation linear in ``var`` with a
    constant coefficient, as ``var >= bound`` or ``var <= bound``; else ``None``.

    Integers: ``var < b`` is written ``var <= b - 1`` when ``b`` is an integer.
    """
    if not isinstance(relation, sp.Le | sp.Lt | sp.Ge | sp.Gt) or var not in relation.free_symbols:
        return None
    # as "diff <= 0" or "diff < 0"
    if isinstance(relation, sp.Le | sp.Lt):
        diff = relation.lhs - relation.rhs
    else:
        diff = relation.rhs - relation.lhs
    strict = isinstance(relation, sp.Lt | sp.Gt)
    if not diff.is_polynomial(var):  # |a - y| < 1 is no index range
        return None
    coeff = sp.diff(diff, var)
    if not (coeff.is_number and coeff.is_extended_real and coeff.is_finite) or coeff == 0:
        return None
    bound = sp.expand(-(diff - coeff * var) / coeff)
    if bound.has(var):
        return None
    if strict and bound.is_integer and var.is_integer:
        # var < b is var <= b - 1; var > b is var >= b + 1
        bound, strict = (bound - 1, False) if coeff > 0 else (bound + 1, False)
    return ("upper" if coeff > 0 else "lower", bound, strict)


def _signs_out_of_sums(expr):
    """Display only: a sum of negated terms prints as the negated sum,
    -\\sum_p f_p rather than \\sum_p -f_p, the way a textbook writes it."""
    if not isinstance(expr, sp.Basic):
        return expr

    def negative(e) -> bool:
        return isinstance(e, sp.Sum) and e.function.as_coeff_Mul()[0].is_negative

    def pulled(e):
        coeff, rest = e.function.as_coeff_Mul()
        return coeff * sp.Sum(rest, *e.limits)

    shown = expr.replace(negative, pulled)
    # Pulling signs out can make two sums equal, which SymPy then merges
    # (sum a - sum(-a) becomes 2 sum a): that would hide the step, so the
    # expression is printed as it is.
    if sp.count_ops(shown, visual=False) > sp.count_ops(expr, visual=False) or \
            _sum_count(shown) != _sum_count(expr):
        return expr
    return shown


def _sum_count(expr) -> int:
    return sum(1 for e in sp.preorder_traversal(expr) if isinstance(e, sp.Sum))


def latex(expr, **settings) -> str:
    return DerivationLatexPrinter(settings).doprint(_signs_out_of_sums(expr))
