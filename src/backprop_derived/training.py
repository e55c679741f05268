"""The one training loop of `Network` and `Sequential`: `fit`, and what it returns.

Both models inherit `TrainingMixin`. A model supplies the few things that
differ, through ``_training_session(X, Y, validation)``: its data checks,
the arrays training updates (``params``), one pass on a minibatch that
returns the cost and the gradients (``run(rows, scale)``) and the validation
numbers. Everything else is here, once: the argument checks, the shuffling,
the optimizer steps (optim.py), gradient clipping, the learning-rate
schedule, early stopping, divergence, interruption, the progress bar and
the `History`.

Checked once, then fast: `fit` checks its arguments, the data and the
parameters once, before any work; the minibatches then run without per-call
checks. For plain SGD (no momentum, no weight decay, no clipping) the
learning rate is folded into the pass (``scale``), so that a step is one
subtraction, as in a careful hand-written loop.

Optimizers, as in the notes' step 6 ("use gradient descent or a built-in
optimization function"): ``"sgd"``, ``"adam"``, ``"adamw"`` or an object of
optim.py (PyTorch's update rules and defaults), reshuffled every epoch with
``numpy.random.default_rng(seed)``; or ``"lbfgs"``, the analogue of the
notes' ``fminunc``: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``
on the unrolled parameter vector, for at most ``max_iter`` iterations.

Interrupting (Ctrl-C, a KeyboardInterrupt) stops after the step in progress:
the model keeps its last completed step and `fit` returns the `History` so
far with ``interrupted`` set.
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .checks import is_real as _is_real
from .optim import LRSchedule, Optimizer, clip_grad_norm, make_optimizer

OPTIMIZERS = ("sgd", "adam", "adamw", "lbfgs")
SGD_SETTINGS = ("epochs", "batch_size", "learning_rate", "lr", "momentum", "weight_decay",
                "seed", "clip_grad_norm", "lr_schedule", "early_stopping")


class _Default:
    """A setting left at its default. Shown as the value itself in the signature;
    `fit` tells it from a value passed on purpose (an SGD setting given to L-BFGS)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or infinite; the model keeps its last finite parameters.

    A FloatingPointError, hence an ArithmeticError. ``epoch`` is 1-based;
    ``history`` holds the epochs completed before the divergence.
    """

    def __init__(self, message: str, epoch: int, history: History):
        super().__init__(message)
        self.epoch = epoch
        self.history = history


@dataclass
class History:
    """What `fit` returns: one entry per epoch (per iteration for L-BFGS).

    The training cost J is the model's cost over all m training examples
    (for `Network`: (1/m) sum of the per-example losses + (l2/2m) sum ||W||^2).

    ``loss``
        the mean of the epoch's minibatch costs, each taken at the parameters
        the step starts from and weighted by the minibatch's size. It is what
        the passes compute anyway, so recording it is free; it lags the
        end-of-epoch J by about half an epoch of training. With
        ``batch_size=None`` (full batch) it is exactly J at the start of the
        epoch. L-BFGS: J at the end of each iteration.
    ``initial_loss``
        the cost of the first minibatch at the initial parameters (J itself
        for full batch); L-BFGS: J at the initial parameters.
    ``val_loss``, ``val_score``
        filled when ``validation_data`` is given, at the end of each epoch:
        the validation cost and `score` on the validation set, an accuracy for
        the classification losses, a mean squared error for squared_error
        (``score_name`` says which).
    ``lr``
        the learning rate of each epoch (the schedule's, if one was given).
    ``best_epoch``, ``stopped_early``
        with ``early_stopping``: the 1-based epoch of the lowest ``val_loss``,
        whose parameters the model ends with, and whether training stopped
        before ``epochs``.
    ``interrupted``
        a KeyboardInterrupt stopped the fit; ``steps`` is the number of
        completed optimizer steps (L-BFGS iterations).
    """

    optimizer: str
    score_name: str
    initial_loss: float
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""
    steps: int = 0
    best_epoch: int | None = None
    stopped_early: bool = False
    interrupted: bool = False

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @property
    def val_accuracy(self) -> list[float]:
        if self.score_name != "accuracy":
            raise AttributeError(
                "val_accuracy exists for classification losses only; see val_score"
            )
        return self.val_score


def score_name(loss_name: str) -> str:
    return "mean_squared_error" if loss_name == "squared_error" else "accuracy"


def _progress_bar(enabled: bool, total: int, unit: str, delay: float = 0.0):
    """A tqdm bar (the notebook widget in Jupyter), or None when progress is off."""
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is wanted

    return tqdm(total=total, unit=unit, delay=delay, dynamic_ncols=True)


@contextmanager
def _deferred_interrupt():
    """Ctrl-C sets a flag instead of raising, so that a step is never cut in half.

    The loop checks ``flag["set"]`` after every step. A second Ctrl-C raises
    at once. Only in the main thread (the only one Python delivers signals to).
    """
    flag = {"set": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True

    try:
        signal.signal(signal.SIGINT, handler)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


class _Interrupted(Exception):
    """Raised inside the loop when the deferred Ctrl-C flag is seen after a step."""


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class TrainingMixin:
    """`fit` for a model that implements ``_training_session`` (see the module docstring)."""

    def fit(
        self,
        X,
        Y,
        *,
        optimizer="sgd",
        lr: float | None = _Default(None),
        epochs: int = _Default(10),
        batch_size: int | None = _Default(32),
        momentum: float | None = _Default(None),
        weight_decay: float | None = _Default(None),
        clip_grad_norm: float | None = _Default(None),
        lr_schedule: LRSchedule | None = _Default(None),
        validation_data=None,
        early_stopping: int | None = _Default(None),
        seed=None,
        callback=None,
        progress: bool = False,
        max_iter: int = _Default(200),
        learning_rate: float | None = _Default(None),
    ) -> History:
        """Minimize the training cost on (X, Y) and return a `History`.

        ``optimizer``: ``"sgd"``, ``"adam"``, ``"adamw"`` (built with ``lr``,
        ``momentum`` (sgd only) and ``weight_decay``; unset ones take
        PyTorch's defaults, e.g. lr 1e-3), an `Optimizer` object of optim.py
        (its own settings; then do not pass them here), or ``"lbfgs"``.
        ``learning_rate`` is another name of ``lr`` (the notes' name).

        For the gradient optimizers: ``epochs``, ``batch_size`` (None = full
        batch), ``seed`` (the shuffling, and the masks of any layer with its
        own generator, e.g. Dropout: the same seed gives the same run),
        ``clip_grad_norm`` (the global gradient norm is clipped to it before
        every step), ``lr_schedule`` (an optim.py schedule, called at the
        start of every epoch), ``early_stopping`` (a patience in epochs:
        stop when ``val_loss`` has not improved for that many epochs and
        return to the parameters of the best epoch; needs
        ``validation_data``). ``callback(epoch, history)`` runs after every
        epoch (iteration); returning True stops the fit. ``max_iter``
        drives "lbfgs". A setting the chosen optimizer would ignore is a
        ValueError.

        Every argument, the data and the parameters are checked once,
        before any work. A non-finite loss raises `TrainingDivergedError`
        after restoring the parameters of the end of the last epoch (the
        initial ones in the first). Ctrl-C (KeyboardInterrupt) ends the fit
        after the step in progress and returns the history so far. With
        ``progress=True`` a tqdm bar (a widget in Jupyter) shows the epochs;
        by default nothing is printed, as in PyTorch.
        """
        settings = self._resolve_settings(optimizer, {
            "lr": lr, "learning_rate": learning_rate, "epochs": epochs,
            "batch_size": batch_size, "momentum": momentum, "weight_decay": weight_decay,
            "clip_grad_norm": clip_grad_norm, "lr_schedule": lr_schedule,
            "early_stopping": early_stopping, "seed": seed, "max_iter": max_iter,
        })
        lbfgs = isinstance(optimizer, str) and optimizer.lower() == "lbfgs"
        if lbfgs:
            opt = None
            _check_positive_int("max_iter", settings["max_iter"])
        else:
            opt = self._make_optimizer(optimizer, settings)
            self._check_loop_settings(settings, validation_data)
        if callback is not None and not callable(callback):
            raise ValueError(f"callback must be a function (epoch, history), got {callback!r}")
        if validation_data is not None:
            try:
                X_val, Y_val = validation_data
            except (TypeError, ValueError):
                raise ValueError("validation_data must be a pair (X_val, Y_val)") from None
            validation_data = (X_val, Y_val)
        session = self._training_session(X, Y, validation_data)
        name = "lbfgs" if lbfgs else (optimizer.lower() if isinstance(optimizer, str)
                                      else type(opt).__name__)
        history = History(name, score_name(self.loss_name), math.nan)
        loop = _Loop(session, history, callback)
        start = time.perf_counter()
        try:
            # A diverging fit overflows; the non-finite loss is detected explicitly
            # and turned into TrainingDivergedError, so NumPy need not warn.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"), \
                    _deferred_interrupt() as interrupt:
                loop.interrupt = interrupt
                if lbfgs:
                    loop.bar = _progress_bar(progress, settings["max_iter"], "iteration")
                    loop.lbfgs(settings["max_iter"])
                else:
                    loop.bar = _progress_bar(progress, settings["epochs"], "epoch")
                    self._reseed(settings["seed"])
                    loop.gradient_descent(opt, settings)
        finally:
            history.seconds = time.perf_counter() - start
            session.close()
            if loop.bar is not None:
                loop.bar.close()
        return history

    # ----------------------------------------------------------------- checks
    @staticmethod
    def _resolve_settings(optimizer, settings: dict) -> dict:
        """Values of the settings; an error for one that the optimizer would ignore."""
        given = [name for name, value in settings.items()
                 if not isinstance(value, _Default) and not (name == "seed" and value is None)]
        if isinstance(optimizer, str) and optimizer.lower() == "lbfgs":
            ignored = [name for name in given if name in SGD_SETTINGS]
            if ignored:
                raise ValueError(
                    f"{', '.join(ignored)} set for optimizer='lbfgs', which would ignore "
                    f"{'it' if len(ignored) == 1 else 'them'}: L-BFGS runs on the full batch "
                    "for at most max_iter iterations"
                )
        elif "max_iter" in given:
            raise ValueError("max_iter is a setting of optimizer='lbfgs'; "
                             f"{optimizer!r} runs for `epochs` epochs")
        values = {name: value.value if isinstance(value, _Default) else value
                  for name, value in settings.items()}
        if values["learning_rate"] is not None:
            if values["lr"] is not None:
                raise ValueError("lr and learning_rate are the same setting; give one")
            values["lr"] = values["learning_rate"]
            values["lr_name"] = "learning_rate"
        else:
            values["lr_name"] = "lr"
        return values

    @staticmethod
    def _make_optimizer(optimizer, settings) -> Optimizer:
        lr = settings["lr"]
        if lr is not None and (not _is_real(lr) or not (0.0 < lr < math.inf)):
            raise ValueError(f"{settings['lr_name']} must be a finite number > 0, got {lr!r}")
        if isinstance(optimizer, str) and optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid optimizers: "
                             f"{', '.join(OPTIMIZERS)}, or an Optimizer object (optim.py)")
        if not isinstance(optimizer, str | Optimizer):
            raise ValueError(f"optimizer must be a name ({', '.join(OPTIMIZERS)}) or an "
                             f"Optimizer object (optim.py), got {optimizer!r}")
        try:
            return make_optimizer(optimizer, lr=lr, momentum=settings["momentum"],
                                  weight_decay=settings["weight_decay"])
        except ValueError as error:
            message = str(error)
            if settings["lr_name"] == "learning_rate":  # the name the caller used
                message = re.sub(r"\blr\b", "learning_rate", message)
            raise ValueError(message) from None

    @staticmethod
    def _check_loop_settings(settings, validation_data) -> None:
        _check_positive_int("epochs", settings["epochs"])
        b = settings["batch_size"]
        if b is not None and (isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1):
            raise ValueError(f"batch_size must be an integer >= 1 or None (full batch), got {b!r}")
        clip = settings["clip_grad_norm"]
        if clip is not None and (not _is_real(clip) or not (0 < clip < math.inf)):
            raise ValueError(f"clip_grad_norm must be a finite number > 0 or None, got {clip!r}")
        schedule = settings["lr_schedule"]
        if schedule is not None and not isinstance(schedule, LRSchedule):
            raise ValueError("lr_schedule must be a schedule of optim.py (StepLR, "
                             f"CosineAnnealingLR, LambdaLR) or None, got {schedule!r}")
        patience = settings["early_stopping"]
        if patience is not None:
            _check_positive_int("early_stopping (the patience in epochs)", patience)
            if validation_data is None:
                raise ValueError("early_stopping watches the validation loss: "
                                 "give validation_data=(X_val, Y_val)")

    def _reseed(self, seed) -> None:
        """Seed every layer's own generator from ``seed`` (child seeds, one per layer)."""
        if seed is None:
            return
        generators = [layer for layer in _all_layers(getattr(self, "layers", []))
                      if isinstance(getattr(layer, "rng", None), np.random.Generator)]
        children = np.random.SeedSequence(seed).spawn(len(generators))
        for layer, child in zip(generators, children, strict=True):
            layer.rng = np.random.default_rng(child)


def _all_layers(layers):
    for layer in layers:
        yield layer
        yield from _all_layers(getattr(layer, "layers", []))


class _Loop:
    """One fit: the epochs, the steps, and the bookkeeping at the end of each epoch."""

    def __init__(self, session, history: History, callback):
        self.session = session
        self.history = history
        self.callback = callback
        self.bar = None
        self.interrupt = {"set": False}

    def _end_epoch(self, loss: float) -> bool:
        """Record the epoch; True if the callback asks to stop."""
        history = self.history
        history.loss.append(loss)
        postfix = {"loss": f"{loss:.4g}"}
        scores = self.session.validate()
        if scores is not None:
            history.val_loss.append(scores[0])
            history.val_score.append(scores[1])
            postfix["val_loss"] = f"{scores[0]:.4g}"
            postfix[f"val_{history.score_name}"] = f"{scores[1]:.4g}"
        if self.bar is not None:
            self.bar.set_postfix(postfix, refresh=False)
            self.bar.update()
        if self.callback is not None:
            return bool(self.callback(len(history.loss), history))
        return False

    def _snapshot(self) -> list[np.ndarray]:
        return [p.copy() for p in self.session.params]

    def _restore(self, saved) -> None:
        for p, s in zip(self.session.params, saved, strict=True):
            np.copyto(p, s)

    def gradient_descent(self, opt: Optimizer, settings) -> None:
        session, history = self.session, self.history
        m = session.m
        epochs, clip, schedule = (settings["epochs"], settings["clip_grad_norm"],
                                  settings["lr_schedule"])
        patience = settings["early_stopping"]
        b = m if settings["batch_size"] is None else min(settings["batch_size"], m)
        n_batches = -(-m // b)
        session.batch_sizes({b, m - (n_batches - 1) * b})
        rng = np.random.default_rng(settings["seed"])
        params = session.params
        base_lr = opt.lr
        # The parameters at the end of the last epoch (at first the initial ones):
        # what a divergence falls back to. One copy per epoch, not per step.
        checkpoint = self._snapshot()
        best, since_best = None, 0
        try:
            for epoch in range(1, epochs + 1):
                if schedule is not None:
                    opt.lr = schedule(epoch - 1, base_lr)
                history.lr.append(opt.lr)
                # plain SGD: the pass returns lr dJ/dtheta, and a step is one subtraction
                scale = opt.lr if session.folds_lr and clip is None and opt._plain() else 1.0
                order = rng.permutation(m)
                total = 0.0
                for k in range(n_batches):
                    rows = order[k * b : (k + 1) * b]
                    loss, grads = session.run(rows, scale)
                    if not math.isfinite(loss):
                        self._restore(checkpoint)
                        raise self._diverged(epoch, f" (minibatch {k + 1} of {n_batches})",
                                             loss, settings["lr_name"], opt.lr)
                    if epoch == 1 and k == 0:
                        history.initial_loss = loss
                    total += loss * len(rows)
                    if scale != 1.0:
                        for p, g in zip(params, grads, strict=True):
                            np.subtract(p, g, out=p)
                    else:
                        if clip is not None:
                            clip_grad_norm(grads, clip)
                        opt.step(params, grads)
                    history.steps += 1
                    if self.interrupt["set"]:
                        raise _Interrupted
                stop = self._end_epoch(total / m)
                for p, s in zip(params, checkpoint, strict=True):
                    np.copyto(s, p)
                if patience is not None:
                    if best is None or history.val_loss[-1] < best[0]:
                        best, since_best = (history.val_loss[-1], epoch, self._snapshot()), 0
                    else:
                        since_best += 1
                    if since_best >= patience and epoch < epochs:
                        history.stopped_early = True
                        history.message = (f"stopped early after epoch {epoch}: no lower "
                                           f"val_loss for {patience} epochs")
                        break
                if stop:
                    history.message = f"stopped by the callback after epoch {epoch}"
                    break
        except (KeyboardInterrupt, _Interrupted):
            history.interrupted = True
            history.message = (f"interrupted in epoch {len(history.loss) + 1} after "
                               f"{history.steps} steps; the model holds the last completed step")
        finally:
            opt.lr = base_lr
        if best is not None and not history.interrupted:
            self._restore(best[2])
            history.best_epoch = best[1]

    def _diverged(self, epoch: int, where: str, loss: float, lr_name: str, lr: float):
        history = self.history
        if epoch > 1:
            kept = f"end of epoch {epoch - 1} (mean minibatch loss {history.loss[-1]:.6g})"
        else:
            kept = "initial parameters"
        return TrainingDivergedError(
            f"training diverged in epoch {epoch}{where}: the loss became {loss}. The "
            f"parameters were restored to the {kept}. Try a smaller {lr_name} (was {lr}).",
            epoch,
            history,
        )

    def lbfgs(self, max_iter: int) -> None:
        from scipy.optimize import minimize  # optional dependency (extra "train")

        session, history = self.session, self.history
        session.batch_sizes({session.m})
        params = session.params
        sizes = [p.size for p in params]
        offsets = np.cumsum([0, *sizes])

        def set_theta(theta) -> None:
            for p, lo, hi in zip(params, offsets[:-1], offsets[1:], strict=True):
                np.copyto(p, theta[lo:hi].reshape(p.shape), casting="same_kind")

        theta0 = np.concatenate([p.ravel() for p in params]).astype(np.float64)
        last_finite = theta0.copy()

        def cost_and_gradient(theta):
            # Everything goes through the model: J and the unrolled gradient.
            set_theta(theta)
            loss, grads = session.run(None, 1.0)
            if math.isnan(history.initial_loss):
                history.initial_loss = loss
            if not math.isfinite(loss):
                # Tell the line search this point is unusable instead of failing inside scipy.
                return np.inf, np.zeros_like(theta)
            return loss, np.concatenate([g.ravel() for g in grads]).astype(np.float64)

        iteration = 0

        def diverged(where):
            set_theta(last_finite)
            return TrainingDivergedError(
                f"L-BFGS diverged {where}: the loss is not finite. The parameters were restored "
                f"to the last iterate with a finite loss (iteration {len(history.loss)}).",
                iteration,
                history,
            )

        class _Stop(Exception):
            pass

        def callback(intermediate_result):
            # Called once per L-BFGS iteration, our "epoch", with J at the new iterate.
            nonlocal iteration
            iteration += 1
            if not np.isfinite(intermediate_result.fun):
                raise diverged(f"at iteration {iteration}")
            set_theta(intermediate_result.x)
            last_finite[...] = intermediate_result.x
            history.steps = iteration
            if self._end_epoch(float(intermediate_result.fun)):
                raise _Stop
            if self.interrupt["set"]:
                raise _Interrupted

        if not math.isfinite(cost_and_gradient(theta0)[0]):
            raise TrainingDivergedError(
                f"the loss is already {history.initial_loss} at the initial parameters; "
                "nothing was trained", 0, history)
        try:
            result = minimize(cost_and_gradient, theta0, jac=True, method="L-BFGS-B",
                              callback=callback, options={"maxiter": max_iter})
        except _Stop:
            set_theta(last_finite)
            history.message = f"stopped by the callback after iteration {iteration}"
            return
        except (KeyboardInterrupt, _Interrupted):
            set_theta(last_finite)  # the last accepted iterate, not a line-search trial
            history.interrupted = True
            history.message = (f"interrupted after {iteration} iterations; the model holds "
                               "the last completed iterate")
            return
        set_theta(result.x)
        if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
            raise diverged(f"after {iteration} iterations")
        history.message = str(result.message)
