"""Which generated kernels run: the NumPy ones, or the fused Numba loops.

Both are printed by ``backprop-derived regenerate`` from the same
derivations: ``_generated/<module>.py`` (NumPy, always present, the
reference) and ``_generated/fused/<module>.py`` (Numba loops, printed by
``symbolic/numba_printer.py`` for the kernels it can fuse).

* ``BACKPROP_DERIVED_BACKEND=numpy|numba|auto`` (default ``auto``) chooses
  once, when a kernel is first looked up; :func:`set_backend` changes it at
  run time. ``auto`` and ``numba`` both mean "Numba where it imports": a
  missing or broken Numba gives NumPy and one warning, never an error.
* ``BACKPROP_DERIVED_CACHE_DIR`` is where Numba keeps its compiled kernels
  (``cache=True``): it becomes ``NUMBA_CACHE_DIR`` before Numba is imported,
  for installs whose package directory is read-only.
* Per model: :func:`use` is a context manager that overrides the choice for
  the code it encloses (one thread or task: a :class:`contextvars.ContextVar`),
  ``with backend.use("numpy"): net.fit(...)``; a model built with
  ``backend="numba"`` enters it around its own passes. :func:`resolve` turns a
  requested name into the one that runs (``None``: the global choice).
* :func:`kernels` gives a module-like object whose attributes are the active
  backend's kernels, chosen *per kernel*: the NumPy kernel where the Numba
  module has none, or where :data:`NUMPY_IS_FASTER` says the benchmark
  measured NumPy faster.

The module itself is callable: ``backprop_derived.backend()`` is
:func:`active` (the active backend's name).
"""

from __future__ import annotations

import contextvars
import importlib
import os
import sys
import threading
import types
import warnings

__all__ = ["BACKENDS", "NOT_PARALLEL", "NUMPY_IS_FASTER", "activation", "active", "choose", "kernels",
           "numba_kernels", "output", "resolve", "set_backend", "use"]

BACKENDS = ("numpy", "numba", "auto")
ENV = "BACKPROP_DERIVED_BACKEND"
CACHE_ENV = "BACKPROP_DERIVED_CACHE_DIR"

# Kernels the Numba printer produces but the runtime does not use, with the
# measurement behind the choice (benchmarks/backends.py times these kernels
# directly, NumPy's against the fused one; results in
# benchmarks/backend_results.json). A residual is one add per element:
# NumPy's ufunc loop is already the single pass a fused loop would make, so
# there is nothing to gain and a compile to pay. (Dropout, two operations
# and a temporary in NumPy, measured faster fused: 32 against 59 us at
# 256 x 512 float32, fastest of 15 x 50 calls, so it is not listed.)
NUMPY_IS_FASTER: dict[tuple[str, str], str] = {
    ("simple", "residual_forward"): "one add per element, already one pass in NumPy: measured "
                                    "equal in float32 and 15 % faster in float64 than the "
                                    "fused loop (256 x 512), and no compile",
    ("simple", "residual_backward"): "as residual_forward",
    # Transcendentals: in the fused loop each math.tanh / math.sin / math.exp is a
    # scalar libm call (no SIMD math library here), while NumPy's ufuncs are SIMD
    # loops. Measured at 256 x 512, fastest of 9 x 20 calls, fused / NumPy time
    # (float32, float64); kept on NumPy where the fused loop lost in both dtypes
    # or by more than 1.5x in one:
    ("activations", "tanh"): "fused / NumPy 7.9 (float32), 1.27 (float64): NumPy's tanh is SIMD",
    ("activations", "sin"): "fused / NumPy 6.5 (float32), 1.24 (float64): NumPy's sin is SIMD",
    ("activations", "sin_backward"): "fused / NumPy 5.2 (float32), 1.27 (float64): cos, as sin",
    ("activations", "elu_backward"): "fused / NumPy 2.6 (float32), 1.8 (float64): NumPy's exp is "
                                     "SIMD",
}

# prange on the outer (row) loop: tried, and not printed. benchmarks/backends.py's
# prange probe times each printed kernel against the same loops with the row loop a
# numba.prange (parallel=True), on one and two Numba threads, 256 and 2048 rows x 512,
# float32 and float64 (results in backend_results.json, "prange"). On this 2-core
# machine, shared with other processes, two threads were never faster: 1.2-1.3x
# slower at 2048 rows, 4-100x slower at 256 (the threads wait for a core; the issue
# measured the same 29-35x oversubscription inside layer calls). One thread under
# prange only adds the parallel runtime. So every fused kernel stays serial; a
# kernel listed here is one whose rows are independent (prange would be correct).
NOT_PARALLEL: dict[tuple[str, str], str] = {
    ("norm", "layer_norm_forward"): "2 threads / serial 1.2-4.2 at 2048 x 512, 17-107 at "
                                    "256 x 512 (median of 12 interleaved rounds)",
    ("losses", "cross_entropy__softmax_output"): "2 threads / serial 1.2 at 2048 x 512, "
                                                 "4.2-5.0 at 256 x 512",
}

_requested: str | None = None  # set_backend's choice; None: the environment's
_active: str | None = None
_warned = False
_usable: bool | None = None  # _numba_usable's answer, asked once
_override: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "backprop_derived_backend", default=None)  # use()'s choice, "numpy" or "numba"
_numba_modules: dict[str, types.ModuleType | None] = {}


def _validate(name, source: str = "") -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}{source}")
    return name.strip().lower()


def _numba_usable() -> bool:
    """Numba imports (its cache directory set first); else one warning, and False."""
    global _warned, _usable
    if _usable is not None:
        return _usable
    _usable = False
    cache = os.environ.get(CACHE_ENV)
    if cache:
        os.environ["NUMBA_CACHE_DIR"] = cache
    try:
        numba = importlib.import_module("numba")
        if cache and "numba.core.config" in sys.modules:
            numba.core.config.reload_config()  # imported earlier: read NUMBA_CACHE_DIR again
        importlib.import_module("backprop_derived._generated.fused")
        _usable = True
        return True
    except Exception as err:  # ImportError, or an llvmlite that does not load
        if not _warned:
            _warned = True
            warnings.warn(f"backprop_derived: Numba is not usable ({type(err).__name__}: "
                          f"{err}); using the NumPy kernels", RuntimeWarning, stacklevel=3)
        return False


def active() -> str:
    """The backend in use, ``"numpy"`` or ``"numba"``: :func:`use`'s if inside one,
    else the global choice (decided on first call)."""
    global _active
    here = _override.get()
    if here is not None:
        return here
    if _active is None:
        wanted = (_validate(_requested) if _requested is not None
                  else _validate(os.environ.get(ENV, "auto"), f" (from ${ENV})"))
        _active = "numpy" if wanted == "numpy" or not _numba_usable() else "numba"
    return _active


def set_backend(name: str) -> str:
    """Use ``name`` (``numpy``, ``numba`` or ``auto``) from now on; returns the active name.

    Layers look their kernels up at every call, so existing layers switch too.
    """
    global _requested, _active
    _validate(name)  # a bad name changes nothing
    _requested, _active = name, None
    return active()


def resolve(name: str | None) -> str | None:
    """The backend that runs for a requested ``name``: ``"numpy"``; ``"numba"`` or
    ``"auto"`` give ``"numba"`` where Numba is usable, else ``"numpy"`` (one warning);
    ``None`` stays ``None`` (follow the global choice). A bad name is a ValueError."""
    if name is None:
        return None
    name = _validate(name)
    return "numpy" if name == "numpy" or not _numba_usable() else "numba"


class use:  # noqa: N801 (used as a function: ``with backend.use("numpy"):``)
    """``with backend.use(name):`` runs the enclosed code on backend ``name``
    (``numpy``, ``numba``, ``auto``; ``None`` changes nothing); yields the active name.

    Layers look their kernels up at each call, so every layer called inside
    follows. Nested blocks restore the outer choice on exit; other threads and
    asyncio tasks keep theirs (a ContextVar). Entering costs well under a
    microsecond, so a model may enter it around every pass.
    """

    __slots__ = ("_name", "_tokens")

    def __init__(self, name: str | None) -> None:
        self._name = resolve(name)
        # One stack of reset tokens per thread: a model holds one `use` and
        # enters it on every pass, possibly from several threads at once, and
        # a token may only be reset in the thread (context) that set it.
        self._tokens = threading.local()

    def _stack(self) -> list:
        stack = getattr(self._tokens, "stack", None)
        if stack is None:
            stack = self._tokens.stack = []
        return stack

    def __enter__(self) -> str:
        if self._name is not None:
            self._stack().append(_override.set(self._name))
        return active()

    def __exit__(self, *exc_info) -> None:
        if self._name is not None:
            _override.reset(self._stack().pop())


def _reset() -> None:
    """Forget every choice (tests: a changed environment is read again)."""
    global _requested, _active, _warned, _usable
    _requested, _active, _warned, _usable = None, None, False, None
    _numba_modules.clear()


def numba_kernels(module: str) -> types.ModuleType | None:
    """The generated Numba module for ``module``, or None if none was printed."""
    if module not in _numba_modules:
        try:
            _numba_modules[module] = importlib.import_module(
                f"backprop_derived._generated.fused.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"backprop_derived._generated.fused.{module}":
                raise
            _numba_modules[module] = None
    return _numba_modules[module]


def _numpy_module(module: str) -> types.ModuleType:
    try:
        return importlib.import_module(f"backprop_derived._generated.{module}")
    except ModuleNotFoundError as err:
        raise ValueError(f"no generated kernel module {module!r}") from err


def choose(module: str, name: str, backend: str | None = None):
    """The kernel ``module.name`` the given (default: active) backend runs."""
    reference = getattr(_numpy_module(module), name)  # AttributeError names a bad kernel
    if (backend or active()) == "numba" and (module, name) not in NUMPY_IS_FASTER:
        fused = numba_kernels(module)
        if fused is not None and hasattr(fused, name):
            return getattr(fused, name)
    return reference


class Kernels:
    """``kernels("norm").layer_norm_forward``: the active backend's kernel, looked up
    at each access (a dictionary lookup), so :func:`set_backend` reaches every layer."""

    def __init__(self, module: str) -> None:
        _numpy_module(module)  # a bad name fails here, at import of the layer
        self._module = module
        self._cache: dict[tuple[str, str], object] = {}

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        key = (active(), name)
        try:
            return self._cache[key]
        except KeyError:
            kernel = self._cache[key] = choose(self._module, name, key[0])
            return kernel

    def __repr__(self) -> str:
        return f"<kernels of {self._module!r}>"


def kernels(module: str) -> Kernels:
    """The kernels of the generated module ``module`` for the active backend."""
    return Kernels(module)


def _swap(entry, module: str, fields: tuple[str, ...], backend: str | None):
    """A registry entry with each kernel field replaced by ``backend``'s kernel (None:
    the active backend's)."""
    backend = resolve(backend) or active()
    return entry._replace(**{f: choose(module, getattr(entry, f).__name__, backend)
                             for f in fields if getattr(entry, f) is not None})


def activation(name: str, backend: str | None = None):
    """``ACTIVATIONS[name]`` with ``backend``'s (default: the active one's) forward,
    derivative and backward."""
    from ._generated import ACTIVATIONS

    return _swap(ACTIVATIONS[name], "activations", ("forward", "derivative", "backward"),
                 backend)


def output(activation_name: str, loss: str, backend: str | None = None):
    """``OUTPUTS[activation_name, loss]`` with ``backend``'s (default: the active one's)
    value, delta and fused."""
    from ._generated import OUTPUTS

    return _swap(OUTPUTS[activation_name, loss], "losses", ("value", "delta", "fused"),
                 backend)


class _CallableModule(types.ModuleType):
    def __call__(self) -> str:
        return active()


sys.modules[__name__].__class__ = _CallableModule
