"""A second printer: the same exported kernels as fused Numba loops.

The NumPy printers (:mod:`.printers`, :mod:`.index_printer`) evaluate one
array operation at a time, each a pass over memory. This printer reads the
same :class:`.kernels.Kernel` definitions and prints explicit loops instead:

1. *Lowering.* Every kernel becomes a list of operations on index-form
   entries over a batch laid out as (rows, columns): assignments
   ``T[i, j] = f(...)`` and reductions (a ``Sum`` over whole ranges, the
   output layer's ``RowSum`` and ``RowMax``) turned into accumulators. The
   elementwise kernels (``ufunc``/``array``/``fused``/``scalar`` styles,
   written over whole-array symbols) are first written in index form, a
   symbol ``z`` becoming ``Z[i, j]``.
2. *Fusion.* The operations are placed, in order, into loop nests: an outer
   loop over rows holding inner loops over columns (several operations share
   one inner loop when what they read is complete there: a row reduction is
   complete after its inner loop, a column reduction after the whole nest),
   per-row statements between the inner loops, and loops over columns alone.
   So layer norm is one pass per row for each statistic and one for the
   output; batch norm's column statistics take a nest each.
3. *Printing.* Scalar expressions go through a SymPy ``PythonCodePrinter``
   subclass (``math`` functions, which Numba compiles); every number and
   scalar parameter is converted to the arrays' dtype (``dt(0.5)``) and every
   accumulator starts as ``dt(0)``, so float32 code stays float32 and
   vectorizes. Per-row values read inside the nest that computes them are
   local scalars; an intermediate full array read only in its own nest is one
   row's buffer.

Kernels this printer cannot lower (index loops, contractions that are GEMMs,
the convolutions, the embedding's gather and scatter) raise
:class:`NotPrintable`; the module records them and the runtime keeps the NumPy
kernel (backend.py). GEMMs stay with NumPy's matmul (BLAS).

Compiled with ``@numba.njit(cache=True, fastmath=FASTMATH)``: the flags allow
reassociation (vectorized reductions), contraction to FMA, reciprocals and
signless zeros, but not ``nnan``/``ninf``, which the stable forms (a row
maximum starting at -inf, overflow-free softplus) rely on.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import sympy as sp
from sympy import Indexed, IndexedBase, Sum
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.pycode import PythonCodePrinter

from .codegen import GENERATED_PACKAGE, MODULE_DOCS, python_header
from .kernels import Kernel
from .printers import RowMax, RowSum

__all__ = ["FASTMATH", "NotPrintable", "render_numba_kernel", "render_numba_modules"]

FASTMATH = ("arcp", "contract", "nsz", "reassoc")
PACKAGE = f"{GENERATED_PACKAGE}/fused"
BUFFERS = ("scratch", "rows", "units", "transposed")  # the NumPy kernels' work buffers


# The elementwise styles name whole arrays and scalars alike by plain symbols; in these
# modules every parameter is an array except the integer batch size m.
ELEMENTWISE_MODULES = ("activations", "losses")


class NotPrintable(NotImplementedError):
    """This kernel has no fused-loop form here; the NumPy kernel is used."""


# -- lowering ---------------------------------------------------------------------------

ROW, COL = "row", "col"  # the two axes of the batch: outer loop, inner loop


@dataclass
class Op:
    """``target[free] = expr`` (``kind == "set"``) or an accumulation of ``expr`` over
    ``summed`` into ``target[free]`` (``kind`` ``"sum"`` or ``"max"``)."""

    target: str
    free: tuple  # index symbols of the target
    expr: sp.Expr
    kind: str = "set"
    summed: tuple = ()
    dims: frozenset = frozenset()  # axes the op iterates over

    def reads(self) -> set[str]:
        return {str(x.base.label) for x in self.expr.atoms(Indexed)}


@dataclass
class Plan:
    ops: list[Op]
    axis: dict  # index symbol -> ROW or COL
    outputs: dict  # target -> "alloc" (returned, allocated) | "param" (written into a param)
    returns: tuple  # what the function returns (target names, or "_total")
    inputs: dict  # input array label -> parameter name
    sizes: dict = field(default_factory=dict)  # ROW/COL -> (param, axis) giving the size
    matrices: tuple = ()  # the two-index input parameters


def _index_form(kernel: Kernel):
    """The elementwise styles written as index-form assignments over (_r, _c)."""
    i, j = sp.Symbol("_r", integer=True), sp.Symbol("_c", integer=True)
    rows, cols = sp.Symbol("_rows", integer=True, positive=True), sp.Symbol(
        "_cols", integer=True, positive=True)
    kinds = dict(kernel.kinds)
    if kernel.module not in ELEMENTWISE_MODULES:
        raise NotPrintable("its scalar parameters are not marked (only the activation and "
                           "loss kernels' are known: every one an array but the batch size m)")
    if kernel.style != "fused" and not isinstance(kernel.expr, sp.Expr):
        raise NotPrintable(f"{type(kernel.expr).__name__} statements (GEMMs and tap loops)")
    if kernel.style == "fused":
        pairs = list(kernel.expr)
    elif kernel.style in ("ufunc", "array"):
        pairs = [("out", kernel.expr)]
    elif kernel.style == "scalar":
        pairs = [("return", kernel.expr)]
    else:
        raise NotPrintable(f"style {kernel.style}")
    arrays = {}
    for _, e in pairs:
        if e.atoms(sp.MatrixSymbol, Indexed):
            raise NotPrintable("matrix or index expressions in an elementwise style")
        for s in e.free_symbols:
            if s.name not in kernel.params:
                raise NotPrintable(f"{s} is not a parameter")
            kind = kinds.get(s.name, "scalar" if s.is_integer else "full")
            if kind == "full":
                arrays[s] = IndexedBase(s.name, shape=(rows, cols))[i, j]
            elif kind != "scalar":
                raise NotPrintable(f"input kind {kind}")
    t = sp.Symbol("_t", integer=True)

    def reductions(e):
        # RowSum(f) -> Sum over the columns; RowMax(f) -> a max accumulation (_RowMaxOf)
        e = e.replace(lambda x: isinstance(x, RowSum),
                      lambda x: Sum(x.args[0].xreplace({j: t}), (t, 0, cols - 1)))
        return e.replace(lambda x: isinstance(x, RowMax),
                         lambda x: _MaxOver(x.args[0].xreplace({j: t}), sp.Tuple(t, 0, cols - 1)))

    assignments = []
    for target, e in pairs:
        e = reductions(e.xreplace(arrays))
        if target == "return":
            e = Sum(e.xreplace({j: t}), (i, 0, rows - 1), (t, 0, cols - 1))
            assignments.append(("_total", (), e))
        else:
            assignments.append((target, (i, j), e))
    return assignments


class _MaxOver(sp.Function):
    """max over ``limits`` of ``expr`` (the output layer's RowMax, in index form)."""

    nargs = 2


def _fresh_indices(k: int, target: str, indices: tuple, e):
    """One assignment with its own index symbols: a page may reuse ``u`` for rows in
    one equation and for columns in the next."""
    used = set(indices) | {i for x in e.atoms(Indexed) for i in x.indices
                           if isinstance(i, sp.Symbol)}
    used |= {lim[0] for s in e.atoms(Sum) for lim in s.limits}
    used |= {s.args[1][0] for s in e.atoms(_MaxOver)}
    fresh = {v: sp.Symbol(f"{v.name}_{k}", integer=True) for v in used}
    return target, tuple(fresh.get(v, v) for v in indices), e.xreplace(fresh)


def lower(kernel: Kernel) -> Plan:
    """The kernel's operations in order, with the reductions as accumulators."""
    if kernel.style == "index":
        if any(not hasattr(a, "target") or not hasattr(a, "indices") for a in kernel.expr):
            raise NotPrintable("an index loop (a recurrence)")
        assignments = [(a.target, tuple(a.indices), a.expr) for a in kernel.expr]
        returns = tuple(kernel.returns)
        outputs = dict.fromkeys(returns, "alloc")
    else:
        assignments = _index_form(kernel)
        returns = ("_total",) if any(t == "_total" for t, _, _ in assignments) else ()
        outputs = {t: "param" for t, _, _ in assignments if t != "_total"}
        if kernel.style in ("ufunc", "array"):
            returns = ("out",)
    assignments = [_fresh_indices(k, *a) for k, a in enumerate(assignments)]
    targets = {t for t, _, _ in assignments}
    # every index's size, from the shapes of the arrays it indexes
    size_of: dict = {}
    inputs: dict = {}
    for target, indices, e in assignments:
        if e.atoms(sp.MatrixSymbol) or e.atoms(sp.KroneckerDelta):
            raise NotPrintable("a scatter-add or matrix form")
        if not indices and target != "_total":
            raise NotPrintable(f"{target}: a whole-array statement")
        for x in e.atoms(Indexed):
            label = str(x.base.label)
            if x.base.shape is None or len(x.indices) != len(x.base.shape):
                raise NotPrintable(f"{x}: no shape")
            if len(x.indices) > 2:
                raise NotPrintable(f"{x}: rank {len(x.indices)}")
            for idx, d in zip(x.indices, x.base.shape, strict=True):
                if not isinstance(idx, sp.Symbol):
                    raise NotPrintable(f"{x}: index {idx} is not a plain index")
                if size_of.setdefault(idx, d) != d:
                    raise NotPrintable(f"{idx} runs over {size_of[idx]} and {d}")
            if label not in targets:
                name = label.lower()
                if name not in kernel.params:
                    raise NotPrintable(f"{label} is not a parameter")
                inputs[label] = name
        for s in e.atoms(Sum, _MaxOver):
            for lim in (s.limits if isinstance(s, Sum) else (s.args[1],)):
                v, lo, hi = lim
                size_of.setdefault(v, hi + 1)
                if lo != 0 or sp.simplify(hi + 1 - size_of[v]) != 0:
                    raise NotPrintable(f"a sum over part of the range of {v}")
    # the two axes: the first two-index input's (rows, columns)
    two = [x for _, _, e in assignments for x in sorted(e.atoms(Indexed), key=str)
           if len(x.indices) == 2 and str(x.base.label) in inputs]
    if not two:
        raise NotPrintable("no two-index input array")
    row_size, col_size = two[0].base.shape
    if row_size == col_size:
        raise NotPrintable("rows and columns of the same size symbol")
    axis = {}
    for idx, d in size_of.items():
        if d == row_size:
            axis[idx] = ROW
        elif d == col_size:
            axis[idx] = COL
        else:
            raise NotPrintable(f"{idx} runs over {d}, neither rows nor columns")
    for _, _, e in assignments:
        for x in e.atoms(Indexed):
            if len(x.indices) == 2 and (axis[x.indices[0]], axis[x.indices[1]]) != (ROW, COL):
                raise NotPrintable(f"{x}: a transposed entry")
    sizes = {}
    for x in two:
        for pos, (d, ax) in enumerate(zip(x.base.shape, (ROW, COL), strict=True)):
            sizes.setdefault(ax, (inputs[str(x.base.label)], pos, d))
    ops: list[Op] = []
    shared: dict = {}  # the same reduction twice: one accumulator

    def accumulate(e):
        """``e`` with its innermost reductions replaced by accumulators' entries."""
        while True:
            inner = [s for s in e.atoms(Sum, _MaxOver) if not s.args[0].has(Sum, _MaxOver)]
            if not inner:
                return e
            for s in sorted(inner, key=sp.default_sort_key):
                body, limits = (s.function, s.limits) if isinstance(s, Sum) else (
                    s.args[0], (tuple(s.args[1]),))
                summed = tuple(v for v, _, _ in limits)
                free = tuple(sorted((v for v in body.free_symbols
                                     if v in axis and v not in summed),
                                    key=lambda v: axis[v] != ROW))
                # the same reduction in another equation, whatever its index names
                canon = {v: sp.Symbol(f"_{axis[v]}{k}") for k, v in enumerate(free)}
                canon.update({v: sp.Symbol(f"_summed{k}") for k, v in enumerate(summed)})
                key = (type(s).__name__, body.xreplace(canon),
                       tuple(canon[v] for v in summed))
                if key not in shared:
                    name = f"_acc{len(shared)}"
                    shared[key] = name
                    ops.append(Op(name, free, body, "sum" if isinstance(s, Sum) else "max",
                                  summed, frozenset(axis[v] for v in free + summed)))
                base = IndexedBase(shared[key], shape=tuple(size_of[v] for v in free))
                e = e.xreplace({s: base[free] if free else base[()]})
        return e

    for target, indices, e in assignments:
        if len(indices) > 2:
            raise NotPrintable(f"{target}: rank {len(indices)}")
        if target == "_total" and isinstance(e, Sum):
            body = accumulate(e.function)
            ops.append(Op(target, (), body, "sum", tuple(v for v, _, _ in e.limits),
                          frozenset(axis[v] for v, _, _ in e.limits)))
            continue
        if isinstance(e, Sum | _MaxOver) and not e.args[0].has(Sum, _MaxOver):
            body, limits = (e.function, e.limits) if isinstance(e, Sum) else (
                e.args[0], (tuple(e.args[1]),))
            free = tuple(sorted(indices, key=lambda v: axis[v] != ROW))
            if free == tuple(indices):  # the accumulator is the target itself
                summed = tuple(v for v, _, _ in limits)
                ops.append(Op(target, free, body, "sum" if isinstance(e, Sum) else "max",
                              summed, frozenset(axis[v] for v in free + summed)))
                continue
        e = accumulate(e)
        ops.append(Op(target, tuple(indices), e, "set", (),
                      frozenset(axis[v] for v in indices)))
    for op in ops:
        if op.kind != "set" and op.dims != {ROW, COL}:
            raise NotPrintable(f"a reduction over {sorted(op.dims)} only")
    plan = Plan(ops, axis, outputs, returns, inputs, sizes)
    plan.matrices = tuple(dict.fromkeys(inputs[str(x.base.label)] for x in two))
    return plan


# -- fusion -----------------------------------------------------------------------------

@dataclass
class Inner:
    ops: list


@dataclass
class Block:
    kind: str  # "nest" (rows, with inner loops and per-row ops), "cols", "scalar"
    items: list = field(default_factory=list)  # nest: Inner | Op; cols/scalar: Op


def schedule(plan: Plan) -> list[Block]:
    """Each op in the first place where everything it reads is complete."""
    blocks: list[Block] = []
    where: dict[str, tuple] = {}  # target -> (block, item, op)

    def earliest_item(op, b: int) -> int | None:
        """In nest ``b``: the first item index the op may join, or None."""
        need = 0
        for name in op.reads():
            if name not in where or where[name][0] != b:
                continue
            _, k, prod = where[name]
            dims = prod.dims if prod.kind == "set" else frozenset(
                plan.axis[v] for v in prod.free)
            if prod.kind == "set" and dims == {ROW, COL}:
                need = max(need, k)  # the same entry, written earlier in the same pass
            elif dims == {ROW}:
                need = max(need, k + 1)  # a per-row value: complete after its item
            else:
                return None  # a column or total reduction: complete after the nest
        return need

    def after(op) -> int:
        """The last block holding something the op reads (-1: only inputs)."""
        return max((where[n][0] for n in op.reads() if n in where), default=-1)

    for op in plan.ops:
        if op.dims == {ROW, COL} or op.dims == {ROW}:
            # the first nest, from the last block it reads from on, that can take it
            b, k = None, None
            for c in range(max(after(op), 0), len(blocks)):
                if blocks[c].kind == "nest":
                    k = earliest_item(op, c)
                    if k is not None:
                        b = c
                        break
            if b is None:
                blocks.append(Block("nest"))
                b, k = len(blocks) - 1, 0
            nest = blocks[b]
            if op.dims == {ROW, COL}:
                at = next((n for n in range(k, len(nest.items))
                           if isinstance(nest.items[n], Inner)), None)
                if at is None:
                    nest.items.append(Inner([]))
                    at = len(nest.items) - 1
                nest.items[at].ops.append(op)
            else:
                nest.items.append(op)
                at = len(nest.items) - 1
            where[op.target] = (b, at, op)
        elif op.dims == {COL}:
            # a column reduction is complete after its nest: the first column loop after
            # the last block the op reads from
            start = after(op)
            if start >= 0 and blocks[start].kind == "nest":
                start += 1
            b = next((c for c in range(max(start, 0), len(blocks))
                      if blocks[c].kind == "cols"), None)
            if b is None:
                blocks.append(Block("cols"))
                b = len(blocks) - 1
            blocks[b].items.append(op)
            where[op.target] = (b, 0, op)
        else:
            blocks.append(Block("scalar", [op]))
            where[op.target] = (len(blocks) - 1, 0, op)
    return blocks


# -- printing ---------------------------------------------------------------------------

class ScalarPrinter(PythonCodePrinter):
    """One scalar expression of a loop body, in the arrays' dtype ``dt``.

    ``entry`` maps an array entry (``Indexed``) to its code: a parameter's
    element, a local per-row scalar, an accumulator.
    """

    def __init__(self, entry, settings=None):
        super().__init__({"fully_qualified_modules": True, "standard": "python3",
                          **(settings or {})})
        self._entry = entry

    def doprint(self, expr, assign_to=None):
        try:
            return super().doprint(expr, assign_to)
        except PrintMethodNotImplementedError as err:
            raise NotPrintable(str(err).splitlines()[0]) from None

    def _print_Indexed(self, expr):
        return self._entry(expr)

    def _print_Symbol(self, expr):
        return f"dt({expr.name})"  # a scalar parameter or a size, in the arrays' dtype

    def _number(self, value: str) -> str:
        return f"dt({value})"

    def _print_Integer(self, expr):
        return self._number(str(int(expr)))

    def _print_Rational(self, expr):
        return self._number(repr(float(expr)))

    def _print_Float(self, expr):
        return self._number(repr(float(expr)))

    def _print_Half(self, expr):
        return self._print_Rational(expr)

    def _print_One(self, expr):
        return self._print_Integer(expr)

    _print_Zero = _print_NegativeOne = _print_One

    def _print_NumberSymbol(self, expr):
        return self._number(repr(float(expr)))

    _print_Pi = _print_Exp1 = _print_NumberSymbol

    def _print_Pow(self, expr, rational=False):
        base, e = expr.args
        b = self.parenthesize(base, PRECEDENCE["Pow"])
        if e == 2:
            return f"({b}*{b})"
        if e == -1:
            return f"(dt(1)/{b})"
        if e == sp.S.Half:
            return f"math.sqrt({self._print(base)})"
        if e == -sp.S.Half:
            return f"(dt(1)/math.sqrt({self._print(base)}))"
        if e.is_Integer and 2 < e <= 4:
            return "(" + "*".join([b] * int(e)) + ")"
        return f"({b}**{self._print(e)})"

    def _print_Mul(self, expr):
        coeff, rest = expr.as_coeff_Mul()
        if coeff.is_Number and coeff < 0:
            return "-" + self.parenthesize(-expr, PRECEDENCE["Mul"])
        num, den = [], []
        for f in sp.Mul.make_args(expr):
            if f.is_Pow and f.exp.is_Rational and f.exp.is_negative and f.exp != -sp.S.Half:
                den.append(f.base ** -f.exp)
            elif f.is_Rational and not f.is_Integer:
                if f.p != 1:
                    num.append(sp.Integer(f.p))
                den.append(sp.Integer(f.q))
            else:
                num.append(f)
        text = "*".join(self.parenthesize(f, PRECEDENCE["Mul"]) for f in num) or "dt(1)"
        for d in den:
            text += "/" + self.parenthesize(d, PRECEDENCE["Mul"] + 1)
        return text

    def parenthesize(self, item, level, strict=False):
        text = self._print(item)
        if precedence(item) < level or (strict and precedence(item) == level):
            return f"({text})"
        return text

    def _print_Abs(self, expr):
        return f"abs({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr):
        if len(expr.args) != 2:
            raise NotPrintable(f"Heaviside needs its value at 0: {expr}")
        x, at_zero = expr.args
        x = self._print(x)
        return (f"(dt(1) if {x} > 0 else (dt(0) if {x} < 0 else "
                f"{self._print(sp.sympify(at_zero))}))")

    def _print_sign(self, expr):
        x = self._print(expr.args[0])
        return f"(dt(1) if {x} > 0 else (dt(-1) if {x} < 0 else dt(0)))"

    def _print_Max(self, expr):
        return self._fold("max", expr.args)

    def _print_Min(self, expr):
        return self._fold("min", expr.args)

    def _fold(self, f, args):
        text = self._print(args[0])
        for a in args[1:]:
            text = f"{f}({text}, {self._print(a)})"
        return text

    def _print_Piecewise(self, expr):
        if expr.args[-1].cond is not sp.true:
            raise NotPrintable(f"a Piecewise without an otherwise branch: {expr}")
        text = self._print(expr.args[-1].expr)
        for then, cond in reversed(expr.args[:-1]):
            text = f"({self._print(then)} if {self._print(cond)} else {text})"
        return text

    def _print_Relational(self, expr):
        op = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[expr.rel_op]
        return f"({self._print(expr.lhs)} {op} {self._print(expr.rhs)})"

    def _print_CheckedOnExample(self, expr):
        from .checked import assert_proven

        assert_proven(expr, "kernel expression")

    def _print_Sum(self, expr):
        raise NotPrintable("a sum left in a loop body")

    def _print_Function(self, expr):
        name = type(expr).__name__
        known = {"exp", "log", "tanh", "sin", "cos", "atan", "erf", "log1p", "expm1",
                 "sqrt", "cosh", "sinh", "atanh"}
        if name in known:
            fn = {"atan": "atan"}.get(name, name)
            return f"math.{fn}({', '.join(self._print(a) for a in expr.args)})"
        raise NotPrintable(f"no scalar form for {name}")

    _print_exp = _print_log = _print_tanh = _print_sin = _print_cos = _print_Function
    _print_atan = _print_erf = _print_log1p = _print_expm1 = _print_Function


class _Writer:
    """Prints a scheduled plan as the body of one ``@numba.njit`` function."""

    def __init__(self, plan: Plan, blocks: list[Block], params: tuple[str, ...]):
        self.plan, self.blocks, self.params = plan, blocks, params
        self.lines: list[str] = []
        self.where = {}
        for b, block in enumerate(blocks):
            for k, item in enumerate(block.items):
                for op in (item.ops if isinstance(item, Inner) else [item]):
                    self.where[op.target] = (b, k, op)
        # who reads what, from where
        self.readers: dict[str, set[int]] = {}
        for name, (b, _, op) in self.where.items():
            for r in op.reads():
                self.readers.setdefault(r, set()).add(b)
        self.block = -1

    # storage: where each computed target lives
    def _dims(self, op) -> frozenset:
        return frozenset(self.plan.axis[v] for v in op.free) if op.kind != "set" else op.dims

    def _local_only(self, name) -> bool:
        """Read only inside the block that computes it, and not returned or a parameter."""
        b = self.where[name][0]
        return (name not in self.plan.outputs and name not in self.plan.returns
                and self.readers.get(name, set()) <= {b})

    def storage(self, name) -> str:
        """"full", "rowbuf" (one row), "local" (a scalar), "row", "col", "scalar"."""
        b, _, op = self.where[name]
        dims = self._dims(op)
        if dims == {ROW, COL}:
            return "rowbuf" if self._local_only(name) else "full"
        if dims == {ROW}:
            return "local" if self._local_only(name) else "row"
        if dims == {COL}:
            return "col"
        return "scalar"

    def entry(self, x: Indexed) -> str:
        name = str(x.base.label)
        loop = {ROW: "_i", COL: "_j"}
        if name in self.plan.inputs:
            return f"{self.plan.inputs[name]}[{', '.join(loop[self.plan.axis[v]] for v in x.indices)}]"
        kind = self.storage(name)
        here = self.where[name][0] == self.block
        if kind in ("local", "scalar") or (kind == "row" and here):
            return _local(name)
        if kind == "rowbuf":
            return f"{_var(name)}[_j]"
        if kind == "row":
            return f"{_var(name)}[_i]"
        if kind == "col":
            return f"{_var(name)}[_j]"
        return f"{_var(name)}[_i, _j]"

    def expr(self, e) -> str:
        return ScalarPrinter(self.entry).doprint(e)

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def size(self, ax) -> str:
        return {ROW: "_m", COL: "_n"}[ax]

    def write(self) -> list[str]:
        first = self.plan.sizes[ROW][0]  # the first two-index input: its dtype
        self.emit(0, f"dt = {first}.dtype.type")
        for ax in (ROW, COL):
            if ax in self.plan.sizes:
                param, pos, _ = self.plan.sizes[ax]
                self.emit(0, f"{self.size(ax)} = {param}.shape[{pos}]")
        # sizes named in the formulas (m, n): the same numbers
        for ax, (_, _, d) in self.plan.sizes.items():
            if isinstance(d, sp.Symbol) and not d.name.startswith("_"):
                used = any(d in op.expr.free_symbols for op in self.plan.ops)
                if used:
                    self.emit(0, f"{d.name} = {self.size(ax)}")
        for name, (b, _, op) in self.where.items():
            kind = self.storage(name)
            if self.plan.outputs.get(name) == "param" or kind in ("local", "scalar"):
                continue
            shape = {"full": "(_m, _n)", "rowbuf": "_n", "row": "_m", "col": "_n"}[kind]
            make = "numpy.empty"
            if op.kind == "sum" and kind == "col":
                make = "numpy.zeros"
            self.emit(0, f"{_var(name)} = {make}({shape}, {first}.dtype)")
            if op.kind == "max" and kind == "col":
                self.emit(0, f"{_var(name)}[:] = -numpy.inf")
        for b, block in enumerate(self.blocks):
            self.block = b
            if block.kind == "nest":
                self._nest(block)
            elif block.kind == "cols":
                self.emit(0, "for _j in range(_n):")
                for op in block.items:
                    self.emit(1, f"{self.target(op)} = {self.expr(op.expr)}")
            else:
                for op in block.items:
                    if op.kind != "set":
                        raise NotPrintable("a scalar reduction outside a nest")
                    self.emit(0, f"{_local(op.target)} = {self.expr(op.expr)}")
        rets = [(_local(r) if self.storage(r) == "scalar" else _var(r)) for r in self.plan.returns]
        if rets:
            self.emit(0, "return " + ", ".join(rets))
        return self.lines

    def target(self, op) -> str:
        name = op.target
        kind = self.storage(name)
        if self.plan.outputs.get(name) == "param":
            return f"{name}[_i, _j]"
        if kind in ("local", "scalar"):
            return _local(name)
        if kind == "rowbuf":
            return f"{_var(name)}[_j]"
        if kind == "row":
            return f"{_var(name)}[_i]"
        if kind == "col":
            return f"{_var(name)}[_j]"
        return f"{_var(name)}[_i, _j]"

    def _nest(self, block: Block) -> None:
        # totals over the whole nest start before it
        for item in block.items:
            for op in (item.ops if isinstance(item, Inner) else []):
                if op.kind != "set" and self._dims(op) == frozenset():
                    self.emit(0, f"{_local(op.target)} = {self._start(op)}")
        self.emit(0, "for _i in range(_m):")
        for item in block.items:
            if isinstance(item, Inner):
                rows = [op for op in item.ops if op.kind != "set" and self._dims(op) == {ROW}]
                for op in rows:
                    self.emit(1, f"{_local(op.target)} = {self._start(op)}")
                self.emit(1, "for _j in range(_n):")
                for op in item.ops:
                    value = self.expr(op.expr)
                    dims = self._dims(op)
                    if op.kind == "set":
                        self.emit(2, f"{self.target(op)} = {value}")
                        continue
                    acc = (_local(op.target) if dims in ({ROW}, frozenset())
                           else self.target(op))
                    if op.kind == "sum":
                        self.emit(2, f"{acc} += {value}")
                    else:
                        self.emit(2, f"{acc} = max({acc}, {value})")
                for op in rows:
                    if self.storage(op.target) == "row":
                        self.emit(1, f"{_var(op.target)}[_i] = {_local(op.target)}")
            else:
                op = item
                self.emit(1, f"{_local(op.target)} = {self.expr(op.expr)}")
                if self.storage(op.target) == "row":
                    self.emit(1, f"{_var(op.target)}[_i] = {_local(op.target)}")

    @staticmethod
    def _start(op) -> str:
        return "dt(0)" if op.kind == "sum" else "dt(-numpy.inf)"


def _var(name: str) -> str:
    return name.lower()


def _local(name: str) -> str:
    return f"{name.lower()}_here"


def render_numba_kernel(kernel: Kernel) -> str:
    """The source of one kernel as a compiled function with the NumPy kernel's signature.

    Raises :class:`NotPrintable` for a kernel without a fused form.
    """
    plan = lower(kernel)
    blocks = schedule(plan)
    used = [p for p in kernel.params if p not in BUFFERS]
    body = _Writer(plan, blocks, tuple(used)).write()
    doc = f'"""{kernel.doc}\n\n{kernel.equation}; derived in {kernel.source}. Fused loops.\n"""'
    # An elementwise index kernel (no reduction) serves layers that take any rank
    # (dropout): the NumPy kernel broadcasts, these loops are two-index, so other
    # ranks go to the NumPy kernel.
    any_rank = kernel.style == "index" and all(op.kind == "set" for op in plan.ops)
    needs_wrapper = len(used) != len(kernel.params) or any_rank
    core = f"_{kernel.name}_loops" if needs_wrapper else kernel.name
    text = f"@numba.njit(cache=True, fastmath=FASTMATH)\ndef {core}({', '.join(used)}):\n"
    text += textwrap.indent(("" if needs_wrapper else doc + "\n") + "\n".join(body), "    ")
    text += "\n"
    if needs_wrapper:
        # the NumPy kernel's signature; its work buffers are not needed here
        ret = "return " if plan.returns else ""
        text += f"\n\ndef {kernel.name}({', '.join(kernel.params)}):\n"
        call = f"{ret}{core}({', '.join(used)})"
        if kernel.style in ("ufunc", "array"):
            call = f"{core}({', '.join(used)})"
        if any_rank:
            ranks = " or ".join(f"{x}.ndim != 2" for x in plan.matrices)
            call = (f"if {ranks}:  # any other rank: the NumPy kernel, which broadcasts\n"
                    f"    return _numpy.{kernel.name}({', '.join(kernel.params)})\n{call}")
        text += textwrap.indent(doc + "\n" + call + ("\nreturn out" if kernel.style in (
            "ufunc", "array") else ""), "    ") + "\n"
    return text


def render_numba_modules(kernels: list[Kernel]) -> dict[str, str]:
    """``{relative path: text}``: ``_generated/fused/<module>.py`` for every module with a
    fused kernel, and the package's ``__init__.py``."""
    by_module: dict[str, list[Kernel]] = {}
    for k in kernels:
        by_module.setdefault(k.module, []).append(k)
    files = {}
    printed = []
    for module in sorted(by_module):
        ks = sorted(by_module[module], key=lambda k: k.name)
        parts, skipped = [], []
        for k in ks:
            try:
                parts.append(render_numba_kernel(k))
            except NotPrintable as why:
                skipped.append((k.name, str(why).splitlines()[0]))
        if not parts:
            continue
        printed.append(module)
        head = python_header([k.source for k in ks])
        doc = (f'"""{MODULE_DOCS.get(module, module)}\n\nFused Numba loops printed by '
               "symbolic/numba_printer.py from the same kernel definitions as\n"
               f"``_generated/{module}.py``. Not printed here (the runtime uses the NumPy "
               "kernel):\n\n")
        doc += "".join(f"* ``{name}``: {why}\n" for name, why in skipped) or "(none)\n"
        doc += '"""\n'
        numpy_import = (f"\nfrom .. import {module} as _numpy\n"
                        if any("_numpy." in p for p in parts) else "")
        lines = [head, doc, "import math\n", "import numba\nimport numpy\n" + numpy_import,
                 "FASTMATH = {" + ", ".join(repr(f) for f in FASTMATH) + "}\n"]
        lines.append("NOT_PRINTED = {" + "".join(
            f"\n    {name!r}: {why!r}," for name, why in skipped) + ("\n}" if skipped else "}"))
        files[f"{PACKAGE}/{module}.py"] = "\n".join(lines) + "\n\n\n" + "\n\n".join(parts)
    files[f"{PACKAGE}/__init__.py"] = (
        python_header([k.source for k in kernels])
        + '"""Fused Numba loops, one module per generated NumPy module that has any: '
        + ", ".join(printed) + '."""\n')
    return files
