"""Optimizers, gradient clipping and learning-rate schedules, with PyTorch's rules.

Each optimizer updates a list of parameter arrays in place from a list of
gradient arrays of the same shapes (``step(params, grads)``), with the update
rule and the defaults of the class of the same name in ``torch.optim``
(PyTorch 2.x documentation, the single-tensor code paths):

``SGD(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False)``
    g := g + weight_decay p; with momentum, b := g at the first step and
    b := momentum b + (1 - dampening) g after it; g := g + momentum b
    (Nesterov) or g := b; p := p - lr g.
``Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0)``
    g := g + weight_decay p (L2 added to the gradient); t := t + 1;
    m := m + (1 - beta1)(g - m); v := beta2 v + (1 - beta2) g^2;
    p := p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps).
``AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)``
    Adam with decoupled weight decay (Loshchilov & Hutter, 2019): first
    p := p (1 - lr weight_decay), then Adam's step without the L2 term.

The state (momentum buffers, moments, the step count t) is created at the
first step for the shapes it is given and kept while they stay the same, so
one optimizer object passed to several `fit` calls continues where it
stopped, as a PyTorch optimizer does. ``reset()`` forgets it.

``clip_grad_norm(grads, max_norm)`` is ``torch.nn.utils.clip_grad_norm_``:
the gradients are scaled by max_norm / (total_norm + 1e-6) when that is
below 1, total_norm being the 2-norm of all of them together.

A schedule gives the learning rate of each epoch from the optimizer's base
rate; `fit` calls it once at the start of every epoch (``epoch`` counts from
0), like ``scheduler.step()`` once per epoch in PyTorch: `StepLR`,
`CosineAnnealingLR` (its closed form) and `LambdaLR` (a factor per epoch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from .checks import is_real as _is_real

__all__ = [
    "SGD", "Adam", "AdamW", "Optimizer", "OPTIMIZERS", "make_optimizer", "clip_grad_norm",
    "LRSchedule", "StepLR", "CosineAnnealingLR", "LambdaLR",
]


def _check(name: str, value, low: float, high: float = math.inf, *, low_open=False,
           high_open=True) -> float:
    """``value`` as a float in the interval, or a ValueError naming the setting."""
    ok = _is_real(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low:g}, {high:g}{hi}, "
                         f"got {value!r}")
    return float(value)


class Optimizer:
    """What the optimizers share: the learning rate ``lr`` and state per parameter array."""

    def __init__(self, lr: float):
        self.lr = _check(f"{type(self).__name__}: lr", lr, 0.0, low_open=True)
        self._shapes: tuple | None = None
        self.state: list[dict] = []

    def reset(self) -> None:
        """Forget the state (buffers, moments, step count)."""
        self._shapes = None
        self.state = []

    def _state_for(self, params: Sequence[np.ndarray]) -> list[dict]:
        shapes = tuple((p.shape, p.dtype) for p in params)
        if shapes != self._shapes:
            self._shapes, self.state = shapes, [{} for _ in params]
        return self.state

    def _plain(self) -> bool:
        """Whether a step is p := p - lr g and nothing else (`fit` then folds lr into g)."""
        return False

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update every ``params[i]`` in place from ``grads[i]``; may overwrite ``grads``."""
        raise NotImplementedError

    def _settings(self) -> str:
        return f"lr={self.lr:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings()})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, as ``torch.optim.SGD``.

    ``momentum`` in [0, 1) (PyTorch allows any value >= 0; 1 or more never
    settles), ``dampening`` in [0, 1], ``weight_decay`` >= 0 (an L2 term
    added to the gradient, on every parameter including biases), ``nesterov``
    needs momentum > 0 and dampening 0, as in PyTorch.
    """

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        self.momentum = _check("SGD: momentum", momentum, 0.0, 1.0)
        self.dampening = _check("SGD: dampening", dampening, 0.0, 1.0, high_open=False)
        self.weight_decay = _check("SGD: weight_decay", weight_decay, 0.0)
        if not isinstance(nesterov, bool | np.bool_):
            raise ValueError(f"SGD: nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("SGD: Nesterov momentum requires a momentum > 0 and zero dampening")

    def _plain(self) -> bool:
        return self.momentum == 0 and self.weight_decay == 0

    def step(self, params, grads) -> None:
        state = self._state_for(params)
        lr, mu, wd = self.lr, self.momentum, self.weight_decay
        for p, g, s in zip(params, grads, state, strict=True):
            if wd:
                g += wd * p
            if mu:
                buf = s.get("momentum_buffer")
                if buf is None:  # PyTorch's first step: the buffer is the gradient itself
                    buf = s["momentum_buffer"] = g.copy()
                else:
                    buf *= mu
                    if self.dampening:
                        buf += (1.0 - self.dampening) * g
                    else:
                        buf += g
                if self.nesterov:
                    g += mu * buf
                else:
                    g = buf
            p -= lr * g

    def _settings(self) -> str:
        return (f"lr={self.lr:g}, momentum={self.momentum:g}, dampening={self.dampening:g}, "
                f"weight_decay={self.weight_decay:g}, nesterov={self.nesterov}")


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) as ``torch.optim.Adam``: L2 ``weight_decay`` added to g."""

    _decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(lr)
        name = type(self).__name__
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (_check(f"{name}: betas[0]", beta1, 0.0, 1.0),
                      _check(f"{name}: betas[1]", beta2, 0.0, 1.0))
        self.eps = _check(f"{name}: eps", eps, 0.0)
        self.weight_decay = _check(f"{name}: weight_decay", weight_decay, 0.0)

    def step(self, params, grads) -> None:
        state = self._state_for(params)
        lr, wd = self.lr, self.weight_decay
        beta1, beta2 = self.betas
        for p, g, s in zip(params, grads, state, strict=True):
            if not s:
                s["step"] = 0
                s["exp_avg"] = np.zeros_like(p)
                s["exp_avg_sq"] = np.zeros_like(p)
            s["step"] += 1
            t = s["step"]
            if wd and self._decoupled:
                p *= 1.0 - lr * wd  # AdamW: decay the weights, not the gradient
            elif wd:
                g += wd * p
            m, v = s["exp_avg"], s["exp_avg_sq"]
            m += (1.0 - beta1) * (g - m)  # torch's lerp(m, g, 1 - beta1)
            v *= beta2
            v += (1.0 - beta2) * (g * g)
            step_size = lr / (1.0 - beta1 ** t)
            denom = np.sqrt(v)
            denom /= math.sqrt(1.0 - beta2 ** t)
            denom += self.eps
            p -= step_size * (m / denom)

    def _settings(self) -> str:
        return (f"lr={self.lr:g}, betas=({self.betas[0]:g}, {self.betas[1]:g}), "
                f"eps={self.eps:g}, weight_decay={self.weight_decay:g}")


class AdamW(Adam):
    """AdamW as ``torch.optim.AdamW``: decoupled ``weight_decay``, default 1e-2."""

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        super().__init__(lr, betas, eps, weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}


def make_optimizer(optimizer, **settings) -> Optimizer:
    """An optimizer from its name (``"sgd"``, ``"adam"``, ``"adamw"``) and the settings
    given (``None`` = the class's default), or the optimizer object itself."""
    given = {name: value for name, value in settings.items() if value is not None}
    if isinstance(optimizer, Optimizer):
        if given:
            raise ValueError(
                f"{', '.join(sorted(given))} given to fit together with the optimizer object "
                f"{optimizer!r}: set {'it' if len(given) == 1 else 'them'} on the object")
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; give an Optimizer object or one of "
                         f"{', '.join(OPTIMIZERS)}, 'lbfgs'")
    cls = OPTIMIZERS[optimizer.lower()]
    if "momentum" in given and cls is not SGD:
        raise ValueError(f"momentum is a setting of optimizer='sgd'; {optimizer!r} has betas "
                         f"(pass {cls.__name__}(betas=...) as the optimizer)")
    return cls(**given)


def clip_grad_norm(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """Scale ``grads`` in place so that their global 2-norm is at most about ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_`` (norm_type 2): the factor is
    max_norm / (total_norm + 1e-6), applied only when it is below 1. Returns
    the total norm before clipping.
    """
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for g in grads:
            g *= coef
    return total


class LRSchedule:
    """A learning rate per epoch: ``schedule(epoch, base_lr)``, epochs counted from 0."""

    def __call__(self, epoch: int, base_lr: float) -> float:
        raise NotImplementedError


class StepLR(LRSchedule):
    """``base_lr * gamma ** (epoch // step_size)``, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int | np.integer) \
                or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _check("StepLR: gamma", gamma, 0.0, low_open=True)

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self) -> str:
        return f"StepLR(step_size={self.step_size}, gamma={self.gamma:g})"


class CosineAnnealingLR(LRSchedule):
    """``eta_min + (base_lr - eta_min) (1 + cos(pi epoch / T_max)) / 2``.

    The closed form that ``torch.optim.lr_scheduler.CosineAnnealingLR``
    documents (SGDR without restarts, Loshchilov & Hutter, 2017): base_lr at
    epoch 0, eta_min at epoch T_max.
    """

    def __init__(self, T_max: int, eta_min: float = 0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, int | np.integer) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be an integer >= 1, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = _check("CosineAnnealingLR: eta_min", eta_min, 0.0)

    def __call__(self, epoch: int, base_lr: float) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (
            1.0 + math.cos(math.pi * epoch / self.T_max)) / 2.0

    def __repr__(self) -> str:
        return f"CosineAnnealingLR(T_max={self.T_max}, eta_min={self.eta_min:g})"


class LambdaLR(LRSchedule):
    """``base_lr * factor(epoch)``, as ``torch.optim.lr_scheduler.LambdaLR``."""

    def __init__(self, factor: Callable[[int], float]):
        if not callable(factor):
            raise ValueError(f"LambdaLR: factor must be a function of the epoch, got {factor!r}")
        self.factor = factor

    def __call__(self, epoch: int, base_lr: float) -> float:
        return base_lr * float(self.factor(epoch))

    def __repr__(self) -> str:
        return f"LambdaLR({self.factor!r})"
