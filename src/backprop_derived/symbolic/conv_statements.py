"""How a lowered convolution is written into ``out``: GEMMs by ``numpy.matmul``.

:func:`.conv_forms.lower` turns an index-form assignment into nodes that say
*what* is summed (:class:`.conv_forms.Contraction` of arrays, windows of an
array, a :class:`.conv_forms.ShiftedAdd`); :class:`IntoOut` says *how* the
kernel computes it, as statements that write into the kernel's ``out``. The
sums are the same; only the order in which NumPy adds the terms differs (so
results agree to rounding). The rules, measured on the benchmark sizes
(benchmarks/layers.py, one thread):

* **two operands: one ``numpy.matmul``.** The output's axes are split into
  leading (batch) axes, then the axes of one operand, then those of the other;
  the summed axes go into the matmul's inner dimension, and summed axes that
  lead *both* operands (the batch of a weight gradient) stay batch axes of the
  matmul, reduced after it by ``numpy.add.reduce(..., out=)``. Each operand
  is reshaped to a (batch..., rows, columns) matrix: a view where its axes
  already come in that order (a swapped pair is a transposed view, which BLAS
  reads as such), else one copy, in the order whose innermost axis is the
  array's own innermost and not a kernel tap (so the copy runs over long
  contiguous rows). For windows over two or more axes that copy is *im2col*.
* **windows over one axis whose tap indexes the output: a loop over the
  taps** (the 1-d weight gradient). Fixing the tap leaves a strided matrix
  view of the input (``x[:, :, j:j + P]``), so each tap is one matmul with no
  copy, written into its own slice of ``out``. A tap that is summed (the
  forward map) is not looped over: accumulating per tap re-reads ``out`` once
  per tap and gives BLAS an inner dimension of only ``C_in``; it goes into
  the im2col copy and the single matmul instead (measured 1.0 against 1.25 ms
  in float32 at the benchmark's Conv1d size).
* **a ShiftedAdd (the input gradient): per tap, one matmul and one
  slice-add.** The contraction over the output channels for one tap is a
  matmul of that tap's kernel slice (transposed) with ``dY``, added into
  ``out`` at the tap's offset (*col2im*): no padded copy of ``dY``. Per tap
  rather than all taps in one matmul, because the all-taps product is a
  (batch, ``C_in`` taps, positions) array that leaves the cache (measured
  2.0 against 3.2 ms for the float64 Conv2d, 1.23 against 1.29 ms for the
  float32 Conv1d).
* results go straight into ``out`` (``out=``); where ``out`` must be seen with
  fewer axes, ``out.reshape`` is a view of a contiguous ``out`` and the
  result is copied back if it was not (``numpy.may_share_memory``).

Anything else falls back to the expression form (``numpy.copyto(out, ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from .conv_forms import Aligned, Contraction, ShiftedAdd, Windows, _Node

__all__ = ["IntoOut"]


class _NoPlan(Exception):
    """The statement forms do not cover this contraction; print the expression."""


@dataclass
class _Operand:
    code: str
    axes: list[str]  # one letter per axis
    rank: list[int]  # the array's axis each axis strides like (larger: faster)
    taps: set[str] = field(default_factory=set)  # letters that are kernel taps
    window_taps: list[str] = field(default_factory=list)  # taps of a windows node

    def indexed(self, at: dict) -> _Operand:
        """The operand with the axes of the letters in ``at`` fixed there (a view)."""
        fixed = [n for n, s in enumerate(self.axes) if s in at]
        if not fixed:
            return self
        index = [at.get(s, ":") for s in self.axes[:fixed[-1] + 1]]
        keep = [n for n in range(len(self.axes)) if n not in fixed]
        return _Operand(f"{self.code}[{', '.join(index)}]", [self.axes[n] for n in keep],
                        [self.rank[n] for n in keep], self.taps - set(at))


class _Writer:
    def __init__(self, printer):
        self.printer = printer
        self.lines: list[str] = []
        self.count = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"_{prefix}{self.count - 1}"

    def local(self, code: str, prefix: str = "a") -> str:
        if code.isidentifier():
            return code
        name = self.name(prefix)
        self.lines.append(f"{name} = {code}")
        return name

    def operand(self, node, letters: str) -> _Operand:
        if isinstance(node, Windows):
            _, axes, _, kernel_windows = node.args
            ndim = len(letters) - len(axes)
            positions = [int(a) for a in axes]
            rank = list(range(ndim)) + positions
            taps = [letters[ndim + n] if bool(kw) else letters[pos]
                    for n, (pos, kw) in enumerate(zip(positions, kernel_windows, strict=True))]
            code = self.local(self.printer._print(node), "w")
            return _Operand(code, list(letters), rank, set(taps), taps)
        code = self.local(self.printer._print(node), "a")
        return _Operand(code, list(letters), list(range(len(letters))))


def _product(codes: list[str]) -> str:
    return " * ".join(codes) if codes else "1"


class IntoOut(_Node):
    """``expr`` written into ``out`` by the statements of the module docstring.

    Its expression form is ``expr``'s; :mod:`.codegen` prints :meth:`statements`.
    """

    def __new__(cls, expr):
        return super().__new__(cls, expr)

    def _numpycode(self, printer):
        return printer._print(self.args[0])

    def statements(self, printer, out: str = "out") -> list[str]:
        (expr,) = self.args
        main = [t for t in sp.Add.make_args(expr) if isinstance(t, Contraction | ShiftedAdd)]
        rest = [t for t in sp.Add.make_args(expr) if not isinstance(t, Contraction | ShiftedAdd)]
        if len(main) == 1 and all(isinstance(t, Aligned) for t in rest):
            w = _Writer(printer)
            try:
                if isinstance(main[0], ShiftedAdd):
                    _shifted_add(w, main[0], out)
                else:
                    _contraction(w, main[0], out)
            except _NoPlan:
                pass
            else:
                if rest:
                    added = printer._print(sp.Add(*rest))
                    w.lines.append(f"numpy.add({out}, {added}, out={out})")
                return w.lines
        return [f"numpy.copyto({out}, {printer._print(expr)})"]


def _parse(c: Contraction) -> tuple[list[str], str]:
    inputs, output = str(c.args[0]).split("->")
    return inputs.split(","), output


def _sum_all_but(x: str, p: int, ndim: int, out: str) -> str:
    """``x`` summed over every axis but ``p`` (a bias gradient), as products with
    ones: GEMVs, 2-4x faster here than ``numpy.add.reduce`` over those axes
    (dY of (64, 32, 252) and (64, 8, 30, 30), float32 and float64)."""
    ones = "numpy.ones({}, {}.dtype)".format
    if p == 0:
        return (f"numpy.matmul({x}.reshape({x}.shape[0], -1), "
                f"{ones(f'{x}.size // {x}.shape[0]', x)}, out={out})")
    before = " * ".join(f"{x}.shape[{k}]" for k in range(p))
    if p == ndim - 1:
        return (f"numpy.matmul({ones(f'{x}.size // {x}.shape[-1]', x)}, "
                f"{x}.reshape(-1, {x}.shape[-1]), out={out})")
    rows = f"numpy.matmul({x}.reshape({before}, {x}.shape[{p}], -1), " \
           f"{ones(f'{x}.size // ({before} * {x}.shape[{p}])', x)})"
    return f"numpy.matmul({ones(before, x)}, {rows}, out={out})"


def _contraction(w: _Writer, c: Contraction, out: str) -> None:
    """Statements that assign the contraction ``c`` to ``out`` (axes in its output order)."""
    inputs, output = _parse(c)
    if any(len(set(s)) != len(s) for s in inputs):
        raise _NoPlan
    ops = [w.operand(node, letters) for node, letters in zip(c.args[1:], inputs, strict=True)]
    if len(ops) == 1:
        (op,) = ops
        summed = tuple(n for n, s in enumerate(op.axes) if s not in output)
        kept = [s for s in op.axes if s in output]
        if kept != list(output) or not summed:
            raise _NoPlan
        if len(kept) == 1 and op.code.isidentifier():
            w.lines.append(_sum_all_but(op.code, op.axes.index(kept[0]), len(op.axes), out))
            return
        axis = summed[0] if len(summed) == 1 else summed
        w.lines.append(f"numpy.add.reduce({op.code}, axis={axis}, out={out})")
        return
    if len(ops) != 2:
        raise _NoPlan
    sizes = {}
    for op in ops:
        for n, s in enumerate(op.axes):
            sizes.setdefault(s, f"{op.code}.shape[{n}]")
    # windows over one axis whose tap indexes the output: a loop over the taps
    looped = [op for op in ops if len(op.window_taps) == 1 and op.window_taps[0] in output]
    if len(looped) != 1:
        _gemm(w, ops, list(output), out, sizes)
        return
    (tap,) = looped[0].window_taps
    k = w.name("k")
    pos = output.index(tap)
    w.lines.append(f"for {k} in range({sizes[tap]}):")
    inner = _Writer(w.printer)
    inner.count = w.count
    _gemm(inner, [op.indexed({tap: k}) for op in ops],
          [s for s in output if s != tap], f"{out}[{', '.join([':'] * pos + [k])}]", sizes)
    w.count = inner.count
    w.lines += ["    " + line for line in inner.lines]


def _split(ops: list[_Operand], output: list[str]):
    """``(lead, first, second, m, n)``: output = lead + m + n, m read by ``first`` only."""
    a, b = ops
    for t in range(len(output)):
        rest = output[t:]
        for cut in range(1, len(rest)):
            m, n = rest[:cut], rest[cut:]
            for first, second in ((a, b), (b, a)):
                if all(s in first.axes and s not in second.axes for s in m) and all(
                        s in second.axes and s not in first.axes for s in n):
                    return output[:t], first, second, m, n
    raise _NoPlan


def _matrix(w: _Writer, op: _Operand, lead: list[str], rows: list[str], cols: list[str],
            sizes: dict) -> str:
    """``op`` as a (lead..., rows, cols) array: a view where the axes allow, else one copy.

    A lead letter ``op`` lacks is a length-1 axis (matmul broadcasts it); those
    before the first one it has are left out.
    """
    present = [s for s in lead if s in op.axes]
    first = lead.index(present[0]) if present else len(lead)
    options = {False: present + rows + cols, True: present + cols + rows}
    shape = {}
    for swap in (False, True):
        groups = [[s] if s in op.axes else [] for s in lead[first:]]
        groups += [cols, rows] if swap else [rows, cols]
        shape[swap] = [_product([sizes[s] for s in g]) for g in groups]
    identity = list(range(len(op.axes)))
    perms = {swap: [op.axes.index(s) for s in order] for swap, order in options.items()}
    reshaped = len(rows) != 1 or len(cols) != 1 or present != lead[first:]
    # merging axes of windows copies them whatever the order: choose the copy's order
    views = [] if op.window_taps and reshaped else [
        swap for swap in (False, True) if perms[swap] == identity]
    if views:
        swap = views[0]
    else:
        def score(swap):
            last = options[swap][-1]
            return (op.rank[op.axes.index(last)] == max(op.rank), last not in op.taps)

        swap = score(True) > score(False)
    code = (op.code if perms[swap] == identity
            else f"numpy.transpose({op.code}, {tuple(perms[swap])})")
    if reshaped:
        code = f"{code}.reshape({', '.join(shape[swap])})"
    if swap:
        code = f"numpy.swapaxes({code}, -1, -2)"
    return code


def _plan(w: _Writer, ops: list[_Operand], output: list[str], sizes: dict) -> tuple:
    """``(product, reduced, lead, m, n)``: ``product`` (a matmul) has axes
    (reduced..., lead..., m, n) with ``m`` and ``n`` flattened; ``output`` is
    lead + m + n."""
    a, b = ops
    summed = [s for s in a.axes if s in b.axes and s not in output]
    if any(s not in output and s not in summed for s in a.axes + b.axes):
        raise _NoPlan  # an index summed within one operand
    reduced = []
    for s, t in zip(a.axes, b.axes, strict=False):
        if s != t or s not in summed:
            break
        reduced.append(s)
    inner = [s for s in summed if s not in reduced]
    lead, first, second, m, n = _split(ops, output)
    # the summed order of the operand that is read as it is (not copied windows)
    order_from = second if first.window_taps and not second.window_taps else first
    inner.sort(key=order_from.axes.index)
    x = _matrix(w, first, reduced + lead, m, inner, sizes)
    y = _matrix(w, second, reduced + lead, inner, n, sizes)
    return f"numpy.matmul({x}, {y})", reduced, lead, m, n


def _gemm(w: _Writer, ops: list[_Operand], output: list[str], out: str, sizes: dict) -> None:
    """One matmul of the two operands, assigned to ``out``."""
    product, reduced, lead, m, n = _plan(w, ops, output, sizes)
    target = out
    if len(m) != 1 or len(n) != 1:
        flat = [sizes[s] for s in lead] + [_product([sizes[s] for s in m]),
                                          _product([sizes[s] for s in n])]
        target = w.local(f"{out}.reshape({', '.join(flat)})", "o")
    if reduced:
        axis = tuple(range(len(reduced)))
        axis_code = axis[0] if len(axis) == 1 else axis
        w.lines.append(f"numpy.add.reduce({product}, axis={axis_code}, out={target})")
    else:
        w.lines.append(f"{product[:-1]}, out={target})")
    _guard(w, target, out)


def _guard(w: _Writer, target: str, out: str) -> None:
    """``target`` is ``out.reshape(...)``: copy back if that reshape was a copy."""
    if target == out:
        return
    w.lines.append(f"if not numpy.may_share_memory({target}, {out}):")
    w.lines.append(f"    numpy.copyto({out}, {target}.reshape({out}.shape))")


def _shifted_add(w: _Writer, s: ShiftedAdd, out: str) -> None:
    """Per tap, one matmul over the summed channels, added into ``out``'s slice at the
    tap's offset (col2im); the first tap assigns and the rest of ``out`` is zeroed."""
    c, pattern = s.args
    inputs, t_output = _parse(c)
    ops = [w.operand(node, letters) for node, letters in zip(c.args[1:], inputs, strict=True)]
    if len(ops) != 2 or any(op.window_taps for op in ops):
        raise _NoPlan
    sizes = {}
    for op in ops:
        for n, letter in enumerate(op.axes):
            sizes.setdefault(letter, f"{op.code}.shape[{n}]")
    axes = str(pattern).split(",")
    shifted = [a.split("+") for a in axes if "+" in a]
    taps = [tap for tap, _ in shifted]
    loops = {tap: w.name("k") for tap in taps}
    kept = [letter for letter in t_output if letter not in taps]

    def tap_term(at: dict) -> tuple[str, str, bool]:
        """``(out slice, product, whether it has the slice's axes)`` of the taps at ``at``."""
        product, reduced, _, m, n = _plan(w, [op.indexed(at) for op in ops], kept, sizes)
        if reduced:
            raise _NoPlan
        flat = len(m) == 1 and len(n) == 1  # the product has out's axes
        if not flat:
            product += f".reshape({', '.join(sizes[letter] for letter in kept)})"
        dst = []
        for a in axes:
            if "+" in a:
                tap, pos = a.split("+")
                dst.append(f":{sizes[pos]}" if at[tap] == "0"
                           else f"{at[tap]}:{at[tap]} + {sizes[pos]}")
            else:
                dst.append(":")
        while dst and dst[-1] == ":":
            dst.pop()
        return f"{out}[{', '.join(dst)}]", product, flat

    first_dst, first_product, flat = tap_term({tap: "0" for tap in taps})
    if flat:  # a strided view of out takes the product directly
        w.lines.append(f"{first_product[:-1]}, out={first_dst})")
    else:
        w.lines.append(f"{first_dst} = {first_product}")
    done = []
    for tap in taps:
        index = []
        for a in axes:
            if "+" not in a:
                index.append(":")
                continue
            other, pos = a.split("+")
            index.append(f"{sizes[pos]}:" if other == tap
                         else f":{sizes[pos]}" if other in done else ":")
        while index and index[-1] == ":":
            index.pop()
        w.lines.append(f"{out}[{', '.join(index)}] = 0")
        done.append(tap)
    indent = ""
    for n, tap in enumerate(taps):
        start = "1, " if len(taps) == 1 else ""
        w.lines.append(f"{indent}for {loops[tap]} in range({start}{sizes[tap]}):")
        indent += "    "
        if len(taps) > 1 and n == len(taps) - 1:
            w.lines.append(f"{indent}if {' or '.join(loops.values())}:")
            indent += "    "
    dst, product, _ = tap_term(loops)
    w.lines.append(f"{indent}{dst} += {product}")
