"""Gradient checking, as in the notes: compare backpropagation with central differences.

For every parameter theta_i (every entry of every ``net.weights[l]`` and
``net.biases[l]`` of a `Network`; of every array in every layer's ``params``
of a `Sequential`)::

    gradApprox_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

and compare with the analytic gradient from ``model.gradients``. A block is
one parameter array of one layer: a `Network` layer's ``"weights"`` or
``"biases"``, a `Sequential` layer's ``params[key]`` (``"W"``, ``"gamma"``,
...); the report is keyed by (layer, kind) with that kind.

For a `Sequential` the check runs in training mode (the mode of
``gradients``): every evaluation of J starts from the same generator state of
every layer that draws (Dropout: the same mask for the analytic gradient and
for every difference) and from the same running statistics (BatchNorm), and
the model is put back in that state at the end.

The error measure. An entry's error is measured against the scale of its
block (one layer's weights, or its biases)::

    error_i = |analytic_i - numeric_i| / max(largest |gradient| in the block, floor)

rather than against the entry itself, because the central difference is not
exact: its truncation error, about eps^2 |d^3J/dtheta^3| / 6, follows the
size of the block's derivatives, not of the one entry. On correct code it
was 1e-9 to 1e-8 of the block's largest gradient at eps = 1e-4 (float64) on
every network measured, from 4-5-3 to 500-300-100-10; divided by an entry
that happens to be near 0 it grows without bound, which is how
``--layers 300,200,10 --batch 20`` used to fail on correct code (2.3e-5
against a pass mark of 1e-5). A wrong derivative, on the other hand, is wrong
on the scale of its block: a dropped transpose, a wrong sign, a missing 1/m
or a wrong g' give errors of 1e-2 to 1 and more, a gradient 1 % too large
gives 1e-2 (the tests check each). The pass mark, 1e-5, sits three orders of
magnitude from either side.

Why a ``floor``: J is only known to about u |J| (u = machine epsilon of the
network's dtype), so the difference quotient cannot resolve a gradient
better than about u |J| / eps in absolute terms (5e-12 for J ~ 2 at eps = 1e-4
in float64). A block whose largest gradient is below that resolution divided
by the tolerance cannot be checked to ``tolerance``, so it is measured
against ``floor = 10 u max(1, |J|) / (eps * tolerance)`` instead, about
2e-6 max(1, |J|) with the defaults in float64. In float32 the floor is so
high that the report says the check means little.

A relu is not differentiable at 0. When the two perturbed evaluations put some
relu pre-activation on different sides of 0 for some example, the finite
difference measures a mixture of both slopes; such parameters get a kink
warning and are left out of the verdict instead of reported as failures.

`eps_sweep` repeats the check over eps = 1e-1 ... 1e-10: the error first falls
like eps^2 (truncation error of the central difference), then rises like
machine-epsilon / eps (rounding error in J(theta + eps) - J(theta - eps)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backprop_derived.reference_loop import forward_layers
from backprop_derived.training import _progress_bar

__all__ = ["KINDS", "KINKS", "GradientCheckReport", "KinkWarning", "gradient_check"]

# Activations with a kink (a point where g' jumps), and where it is.
KINKS = {"relu": 0.0}
KINDS = ("weights", "biases")  # the kinds of a Network's blocks


@dataclass(frozen=True)
class KinkWarning:
    layer: int
    kind: str
    index: tuple[int, ...]
    relative_error: float
    crossing: tuple[int, int, int]  # (layer of the relu, example, unit) whose side changed

    def __str__(self) -> str:
        where = ", ".join(map(str, self.index))
        rl, t, j = self.crossing
        return (
            f"{self.kind}[{self.layer}][{where}]: perturbing it by +-eps moves unit {j} of "
            f"relu layer {rl} across its kink for example {t}; finite difference unreliable "
            f"there (rel. error {self.relative_error:.1e}), not counted"
        )


@dataclass
class GradientCheckReport:
    """Result of `gradient_check`; ``passed`` and a readable ``str(report)``."""

    eps: float
    tolerance: float
    floor: float
    loss: float
    description: str
    # keyed by (layer l, kind); arrays shaped like the parameters
    analytic: dict[tuple[int, str], np.ndarray]
    numerical: dict[tuple[int, str], np.ndarray]
    relative_error: dict[tuple[int, str], np.ndarray]
    on_kink: dict[tuple[int, str], np.ndarray]
    kink_warnings: list[KinkWarning] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    block: str = "the layer's weights or biases"  # what one block is, for the report

    def _max(self, keys) -> float:
        errors = [self.relative_error[k][~self.on_kink[k]] for k in keys]
        errors = [e for e in errors if e.size]
        return float(max(e.max() for e in errors)) if errors else 0.0

    @property
    def max_relative_error(self) -> float:
        """Largest error (relative to its block's scale) over all parameters not on a kink."""
        return self._max(self.relative_error)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of block, in the order they first appear ("weights", "biases" for a
        `Network`; the layers' ``params`` keys for a `Sequential`)."""
        return tuple(dict.fromkeys(kind for _, kind in self.relative_error))

    @property
    def by_layer(self) -> dict[int, dict[str, float]]:
        layers = sorted({l for l, _ in self.relative_error})
        return {l: {kind: self._max([(l, kind)]) for kind in self.kinds
                    if (l, kind) in self.relative_error} for l in layers}

    @property
    def by_kind(self) -> dict[str, float]:
        return {kind: self._max([k for k in self.relative_error if k[1] == kind])
                for kind in self.kinds}

    @property
    def worst(self) -> tuple[int, str, tuple[int, ...]] | None:
        """(layer, kind, index) of the largest counted relative error."""
        best, where = -1.0, None
        for key, err in self.relative_error.items():
            masked = np.where(self.on_kink[key], -1.0, err)
            if masked.size and masked.max() > best:
                best = masked.max()
                where = (*key, tuple(int(i) for i in np.unravel_index(masked.argmax(), err.shape)))
        return where

    @property
    def norm_difference(self) -> float:
        """The programming exercise's single figure, norm(numgrad - grad) / norm(numgrad + grad),
        over all parameters (kinks included)."""
        a = np.concatenate([g.ravel() for g in self.analytic.values()])
        n = np.concatenate([g.ravel() for g in self.numerical.values()])
        total = np.linalg.norm(a + n)
        return float(np.linalg.norm(a - n) / total) if total else 0.0

    @property
    def passed(self) -> bool:
        return self.max_relative_error <= self.tolerance

    def __str__(self) -> str:
        lines = [
            f"gradient check: {self.description}",
            (
                f"central differences, eps = {self.eps:g}; error = |analytic - numeric| / "
                f"(largest |gradient| of {self.block}, at least "
                f"{self.floor:.1e}); tolerance {self.tolerance:g}"
            ),
            "",
            f"{'layer':<7}{'kind':<9}{'count':>6}  max error",
        ]
        for l, kinds in self.by_layer.items():
            for kind, error in kinds.items():
                n = self.relative_error[(l, kind)].size
                lines.append(f"{l:<7}{kind:<9}{n:>6}  {error:.2e}")
        total = sum(e.size for e in self.relative_error.values())
        lines.append(f"{'all':<16}{total:>6}  {self.max_relative_error:.2e}")
        if self.worst is not None:
            l, kind, idx = self.worst
            a = self.analytic[(l, kind)][idx]
            n = self.numerical[(l, kind)][idx]
            where = f"{kind}[{l}][{', '.join(map(str, idx))}]"
            lines.append(f"worst: {where}  analytic {a:.10g}  numeric {n:.10g}")
        lines.append(
            f"norm(numeric - analytic) / norm(numeric + analytic) = {self.norm_difference:.2e}"
        )
        if self.kink_warnings:
            lines.append("")
            lines.append(f"{len(self.kink_warnings)} parameter(s) on a relu kink:")
            lines += [f"  {w}" for w in self.kink_warnings]
        lines += [f"note: {note}" for note in self.notes]
        lines.append("")
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(
            f"{verdict}: max relative error {self.max_relative_error:.2e} "
            f"{'<=' if self.passed else '>'} {self.tolerance:g}"
        )
        return "\n".join(lines)


@dataclass
class _Problem:
    """What the check needs from a model, the same for `Network` and `Sequential`."""

    loss: float
    blocks: list  # (layer, kind, parameter array, analytic gradient), in report order
    J: object  # () -> float, J at the current parameters
    kink_sides: object  # () -> [sign(z - kink)] of the kinked layers, after J()
    kinked: list[int]  # the layer of each entry of kink_sides()
    description: str
    dtype: np.dtype
    block: str
    finish: object = None  # () -> None, puts the model back as it was


def _kink_sides(net, X) -> list[np.ndarray]:
    """sign(z) of every pre-activation of every kinked layer (empty list if none)."""
    if not any(name in KINKS for name in net.activations):
        return []
    zs, _ = forward_layers(net, X)
    return [
        np.sign(z - KINKS[name])
        for z, name in zip(zs, net.activations, strict=True)
        if name in KINKS
    ]


def _network_problem(net, X, Y) -> _Problem:
    loss, dW, db = net.gradients(X, Y)
    blocks = [(l, "weights", p, g) for l, (p, g) in enumerate(zip(net.weights, dW, strict=True))]
    blocks += [(l, "biases", p, g) for l, (p, g) in enumerate(zip(net.biases, db, strict=True))]
    return _Problem(
        loss=float(loss), blocks=blocks, J=net._loss_closure(X, Y),
        kink_sides=lambda: _kink_sides(net, X),
        kinked=[l for l, name in enumerate(net.activations) if name in KINKS],
        description=(
            f"{'-'.join(map(str, net.layer_sizes))} {','.join(net.activations)}, "
            f"loss {net.loss_name}, l2 {net.l2:g}, {len(X)} example(s), {np.dtype(net.dtype).name}"
        ),
        dtype=np.dtype(net.dtype), block="the layer's weights or biases")


def _sequential_problem(model, X, Y) -> _Problem:
    J, reset, activation_inputs = model._loss_closure(X, Y)
    reset()  # the analytic gradient from the state every J starts from
    loss, grads = model.gradients(X, Y)
    blocks = [(k, key, p, grads[k].get(key)) for k, layer in enumerate(model.layers)
              for key, p in layer.params.items()]
    if not blocks:
        raise ValueError("gradient_check: the model has no parameters to check")
    J()
    kinked = [k for k, name, _ in activation_inputs() if name in KINKS]

    def kink_sides():
        return [np.sign(z - KINKS[name]) for _, name, z in activation_inputs() if name in KINKS]

    names = ", ".join(layer.name for layer in model.layers)
    return _Problem(
        loss=float(loss), blocks=blocks, J=J, kink_sides=kink_sides, kinked=kinked,
        description=(f"Sequential({names}), loss {model.loss_name}, l2 {model.l2:g}, "
                     f"{len(X)} example(s), {model.dtype.name}"),
        dtype=model.dtype, block="the layer's parameter array", finish=reset)


def gradient_check(net, X, Y, eps: float = 1e-4, tolerance: float = 1e-5, floor=None,
                   progress: bool = False):
    """Check ``net.gradients(X, Y)`` against central differences of the loss.

    ``net`` is a `Network` or a `Sequential` (any layers). Every parameter is
    perturbed in place and restored exactly afterwards, so the model is
    unchanged on return. ``floor=None`` picks the resolution-based floor
    described in the module docstring. ``progress`` shows a tqdm bar (after a
    second, so that short checks stay quiet). Returns a `GradientCheckReport`.
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    sequential = isinstance(getattr(net, "layers", None), list)
    problem = (_sequential_problem if sequential else _network_problem)(net, X, Y)
    try:
        return _check(problem, eps, tolerance, floor, progress)
    finally:
        if problem.finish is not None:
            problem.finish()


def _check(problem: _Problem, eps, tolerance, floor, progress) -> GradientCheckReport:
    if floor is None:
        u = float(np.finfo(problem.dtype).eps)
        floor = 10 * u * max(1.0, abs(problem.loss)) / (eps * tolerance)
    report = GradientCheckReport(
        eps=float(eps),
        tolerance=float(tolerance),
        floor=float(floor),
        loss=problem.loss,
        description=problem.description,
        analytic={},
        numerical={},
        relative_error={},
        on_kink={},
        block=problem.block,
    )
    total = sum(p.size for _, _, p, _ in problem.blocks)
    bar = _progress_bar(progress, total, "parameter", delay=1.0)
    try:
        _differences(problem, eps, report, bar)
    finally:
        if bar is not None:
            bar.close()
    largest = max(float(np.abs(g).max()) for g in report.analytic.values() if g.size)
    if report.floor > 0.01 * largest:
        report.notes.append(
            f"the finite differences resolve only gradients above ~{report.floor:.1e} "
            f"(eps {eps:g} in {problem.dtype.name}) while the largest is {largest:.1e}: "
            "this check says little; use float64 or a larger eps"
        )
    # present layers in order, each layer's kinds in the order they first appear
    kinds = report.kinds
    for name in ("analytic", "numerical", "relative_error", "on_kink"):
        d = getattr(report, name)
        setattr(report, name, {k: d[k] for k in sorted(d, key=lambda k: (k[0], kinds.index(k[1])))})
    report.kink_warnings.sort(key=lambda w: (w.layer, kinds.index(w.kind), w.index))
    return report


def _differences(problem: _Problem, eps, report, bar):
    """Fill the report, block by block: numeric gradients, errors, kink warnings."""
    J, kinked = problem.J, problem.kinked
    worst = 0.0
    for l, kind, p, g in problem.blocks:
        if np.shape(g) != p.shape:
            raise ValueError(
                f"the analytic gradient of {kind}[{l}] has shape {np.shape(g)}, but "
                f"{kind}[{l}] has shape {p.shape}"
            )
        numeric = np.zeros(p.shape, dtype=np.float64)
        on_kink = np.zeros(p.shape, dtype=bool)
        crossings = {}
        for idx in np.ndindex(p.shape):
            original = p[idx]
            p[idx] = original + eps
            step_up = float(p[idx]) - float(original)  # the step actually taken in p's dtype
            J_plus = J()
            sides_plus = problem.kink_sides() if kinked else []
            p[idx] = original - eps
            step_down = float(original) - float(p[idx])
            J_minus = J()
            sides_minus = problem.kink_sides() if kinked else []
            p[idx] = original
            if bar is not None:
                bar.update()
            if step_up + step_down == 0.0:
                raise ValueError(
                    f"eps = {eps:g} is below the resolution of {p.dtype} at "
                    f"{kind}[{l}][{', '.join(map(str, idx))}] = {float(original):g}: "
                    "theta + eps rounds back to theta"
                )
            numeric[idx] = (J_plus - J_minus) / (step_up + step_down)
            for rl, s_plus, s_minus in zip(kinked, sides_plus, sides_minus, strict=True):
                changed = np.argwhere(s_plus != s_minus)
                if changed.size:
                    on_kink[idx] = True
                    # (example, unit): the first and the last index of the pre-activation
                    crossings[idx] = (rl, int(changed[0][0]), int(changed[0][-1]))
                    break
        analytic = np.asarray(g, dtype=np.float64)
        # The block's scale: its largest gradient (entries on a kink left out,
        # their finite difference is meaningless), at least the floor.
        counted = ~on_kink
        scale = max(float(np.abs(analytic[counted]).max(initial=0.0)),
                    float(np.abs(numeric[counted]).max(initial=0.0)), report.floor)
        rel = np.abs(analytic - numeric) / scale
        key = (l, kind)
        report.analytic[key] = analytic
        report.numerical[key] = numeric
        report.relative_error[key] = rel
        report.on_kink[key] = on_kink
        report.kink_warnings += [
            KinkWarning(l, kind, tuple(int(i) for i in idx), float(rel[idx]), crossing)
            for idx, crossing in crossings.items()
        ]
        if bar is not None:
            if counted.any():
                worst = max(worst, float(rel[counted].max()))
            bar.set_postfix({"loss": f"{report.loss:.4g}", "worst error": f"{worst:.1e}"},
                            refresh=False)
