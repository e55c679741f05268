"""Time loops found from the dependency graph of a kernel's statements.

A statement that reads an array the same kernel writes, at one of its own
indices shifted by a constant (the RNN's ``A[n, t, e]`` reads ``H[n, t - 1, f]``;
its gradient ``dH[u, v, w]`` reads ``dA[u, v + 1, e]``), carries a value from
one step of that index to the next: the statements on that cycle cannot be
evaluated for every step at once. :func:`schedule` puts them into one
:class:`.index_printer.Loop` over the index, forwards when the read looks back
(``t - 1``) and in reverse when it looks ahead (``v + 1``); the statements the
loop reads come before it, the ones that read its results after it. Nothing
about a layer is named here: a declaration with no shifted read of its own
writes is returned unchanged, and any layer whose equations carry a state
through an index gets its loop this way (the index printer then hoists what a
step does not need to wait for, and peels the first step).
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy as sp
from sympy import Indexed

from .index_printer import Assignment, Loop

__all__ = ["schedule"]


def _reads(a: Assignment) -> list[Indexed]:
    return sorted(a.expr.atoms(Indexed), key=sp.default_sort_key)


def _carried(statements: Sequence[Assignment]):
    """``(reader, writer, axis, shift, index)`` for each read of a written array at one of
    the reader's free indices plus a nonzero integer."""
    writers = {a.target: a for a in statements}
    found = []
    for a in statements:
        for x in _reads(a):
            w = writers.get(str(x.base.label))
            if w is None:
                continue
            for axis, idx in enumerate(x.indices):
                for s in a.indices:
                    c = sp.expand(idx - s)
                    if c != 0 and c.is_Integer:
                        found.append((a, w, axis, int(c), s))
    return found


def _edges(statements: Sequence[Assignment]) -> dict[str, set[str]]:
    """target -> the targets of the statements that read it."""
    written = {a.target for a in statements}
    out: dict[str, set[str]] = {a.target: set() for a in statements}
    for a in statements:
        for x in _reads(a):
            label = str(x.base.label)
            if label in written:
                out[label].add(a.target)
    return out


def _same_step(statements: Sequence[Assignment]) -> set[tuple[str, str]]:
    """``(writer, reader)`` for each read of a written array at no shift of the reader's
    indices: the reader waits for the writer within one step."""
    written = {a.target for a in statements}
    pairs = set()
    for a in statements:
        for x in _reads(a):
            label = str(x.base.label)
            if label in written and not any(
                    (c := sp.expand(idx - s)) != 0 and c.is_Integer
                    for idx in x.indices for s in a.indices):
                pairs.add((label, a.target))
    return pairs


def _closure(start: set[str], edges: dict[str, set[str]]) -> set[str]:
    seen, todo = set(start), list(start)
    while todo:
        for n in edges[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def _loop_indices(body: list[Assignment], writer: Assignment, axis: int) -> dict[str, sp.Symbol]:
    """Each body statement's index that runs along the loop: found from the carried array's
    axis, then from the reads between body statements (a statement reading a body array
    at ``s + c`` in that array's loop axis runs along ``s``; a statement whose loop axis
    is read at ``s + c`` by another runs along the position it is written at)."""
    index = {writer.target: writer.indices[axis]}
    axes = {writer.target: axis}
    changed = True
    while changed:
        changed = False
        for a in body:
            for x in _reads(a):
                label = str(x.base.label)
                if label not in axes or a.target in index:
                    continue
                for s in a.indices:  # a reads a body array along the loop: a runs along s
                    if (sp.expand(x.indices[axes[label]] - s)).is_Integer:
                        index[a.target], axes[a.target] = s, a.indices.index(s)
                        changed = True
                        break
        for a in body:  # a body array read along the loop by a statement placed already
            if a.target in index:
                continue
            for b in body:
                if b.target not in index:
                    continue
                for x in _reads(b):
                    if str(x.base.label) != a.target:
                        continue
                    for k, idx in enumerate(x.indices):
                        if (sp.expand(idx - index[b.target])).is_Integer:
                            index[a.target], axes[a.target] = a.indices[k], k
                            changed = True
                            break
                    if a.target in index:
                        break
                if a.target in index:
                    break
    missing = [a.target for a in body if a.target not in index]
    if missing:
        raise NotImplementedError(f"the time loop over {writer.target}'s axis {axis} holds "
                                  f"{missing}, which read no array of the loop along it")
    return index


def _renamed(a: Assignment, old: sp.Symbol, new: sp.Symbol) -> Assignment:
    """``a`` with its loop index ``old`` called ``new`` (a summed ``new`` in it renamed away)."""
    if old == new:
        return a
    mapping = {old: new}
    dummies = {v for s in a.expr.atoms(sp.Sum) for v in s.variables}
    if new in dummies or new in a.indices:
        mapping[new] = sp.Dummy(new.name, integer=True)
    return Assignment(a.target, tuple(mapping.get(i, i) for i in a.indices),
                      a.expr.xreplace(mapping), a.shape)


def _ordered(names: list[str], edges: dict[str, set[str]], keep: set[tuple[str, str]]):
    """``names`` in an order where each comes after what it reads through an edge in
    ``keep`` (same-step reads), stable: ties keep the given order."""
    placed: list[str] = []
    pending = list(names)
    while pending:
        for n in pending:
            if not any((m, n) in keep for m in pending if m != n):
                placed.append(n)
                pending.remove(n)
                break
        else:
            raise NotImplementedError(f"{pending} read each other at the same step: no order "
                                      "of evaluation exists")
    return placed


def schedule(statements: Sequence[Assignment]) -> tuple[Assignment | Loop, ...]:
    """The statements, with those that carry a value between steps of an index in a Loop."""
    statements = tuple(statements)
    carried = _carried(statements)
    if not carried:
        return statements
    loops = {(w.shape[axis] if w.shape else None, shift > 0) for _, w, axis, shift, _ in carried}
    if len(loops) != 1:
        raise NotImplementedError(f"the statements carry values along {len(loops)} loops "
                                  "(sizes and directions); one is supported")
    (size, reverse), = loops
    if size is None:
        raise NotImplementedError("a carried array needs its shape to size the loop")
    edges = _edges(statements)
    body_names: set[str] = set()
    for reader, writer, *_ in carried:  # the statements on a cycle through a carried read
        ancestors = {n for n in edges if writer.target in _closure({n}, edges)}
        body_names |= _closure({reader.target}, edges) & ancestors
    same_step = _same_step(statements)
    by_name = {a.target: a for a in statements}
    body = [by_name[n] for n in _ordered([a.target for a in statements if a.target in body_names],
                                         edges, same_step)]
    _, writer, axis, _, _ = carried[0]
    index = _loop_indices(body, writer, axis)
    step = index[writer.target]
    body = [_renamed(a, index[a.target], step) for a in body]
    loop = Loop(step, size, tuple(body), tuple((a.target, a.shape) for a in body),
                reverse=reverse)
    # the rest, ordered around the loop (a node for the whole body)
    rest = [a.target for a in statements if a.target not in body_names]
    node = "<loop>"
    outer: dict[str, set[str]] = {n: set() for n in [*rest, node]}
    for m, ns in edges.items():
        for n in ns:
            a, b = (node if m in body_names else m), (node if n in body_names else n)
            if a != b:
                outer[a].add(b)
    keep = {(m, n) for m in outer for n in outer[m]}
    names = list(dict.fromkeys(node if a.target in body_names else a.target
                               for a in statements))
    order = _ordered(names, outer, keep)
    return tuple(loop if n == node else by_name[n] for n in order)
