"""The saved-model file: a portable ``.npz`` with a versioned JSON manifest, no pickle.

A file holds one array per parameter (and per buffer, e.g. batch norm's
running statistics) under a name that says where it goes (``weights.0``,
``3.W``, ``2.0.b`` for the first inner layer of a residual block), and
``manifest.json``, a UTF-8 JSON document stored as a uint8 array::

    {"format": "backprop-derived model", "version": 1,
     "class": "Network" | "Sequential", "dtype": "float64",
     "config": {...}, "arrays": [names...], "library": "0.1.0"}

For `Sequential` the config lists every layer: its class, its ``get_config()``
(the arguments that rebuild it), the names of its parameter and buffer
arrays, the state of its own random generator if it has one (Dropout), and
for a block its inner layers. NumPy reads the file with
``allow_pickle=False``; nothing in it is executed.

Writing is atomic: the file is written under a temporary name in the same
directory, flushed to disk, then renamed over ``path`` (``os.replace``), so
a crash mid-write leaves the old file as it was.

This module knows the format, not the models: `Network.save` and
`Sequential.save` give it their config and arrays, and
``backprop_derived.load`` (loading.py) rebuilds them.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["FORMAT", "FORMAT_VERSION", "SavingMixin", "read", "write"]

FORMAT = "backprop-derived model"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("backprop-derived")
    except PackageNotFoundError:
        return "unknown"


def write(path, model_class: str, dtype: np.dtype, config: dict,
          arrays: dict[str, np.ndarray]) -> None:
    """Write a model file at ``path`` atomically (see the module docstring)."""
    path = os.fspath(path)
    manifest = {"format": FORMAT, "version": FORMAT_VERSION, "class": model_class,
                "dtype": np.dtype(dtype).name, "config": config, "arrays": list(arrays),
                "library": _library_version()}
    if _MANIFEST in arrays:
        raise ValueError(f"an array may not be called {_MANIFEST!r}")
    encoded = np.frombuffer(json.dumps(manifest, sort_keys=True).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as file:
            np.savez(file, **{_MANIFEST: encoded}, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """The manifest and the arrays of a model file, checked; a ValueError says what is wrong."""
    path = os.fspath(path)
    try:
        # Our own file object: np.load leaves its own open when the zip is unreadable.
        with open(path, "rb") as file, np.load(file, allow_pickle=False) as archive:
            if _MANIFEST not in archive.files:
                raise ValueError(f"{path}: not a backprop-derived model file (no {_MANIFEST})")
            contents = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f"{path}: not a complete model file (truncated or corrupt: "
                         f"{error})") from None
    except ValueError as error:
        if str(error).startswith(path):
            raise
        raise ValueError(f"{path}: not a complete model file (truncated or corrupt: "
                         f"{error})") from None
    try:
        manifest = json.loads(contents.pop(_MANIFEST).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the manifest is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a backprop-derived model file (format "
                         f"{manifest.get('format') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: the manifest has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: written in format version {version} by a newer "
                         f"backprop-derived ({manifest.get('library', '?')}); this version "
                         f"reads format {FORMAT_VERSION}: upgrade backprop-derived")
    missing = [name for name in manifest.get("arrays", []) if name not in contents]
    if missing:
        raise ValueError(f"{path}: arrays {', '.join(missing)} are listed in the manifest but "
                         "missing from the file")
    dtype = manifest.get("dtype")
    for name in manifest["arrays"]:
        if contents[name].dtype.name != dtype:
            raise ValueError(f"{path}: array {name} is {contents[name].dtype.name}, the model "
                             f"is {dtype}")
    return manifest, contents


def check_config(path, found: dict, expected: dict, what: str) -> None:
    """A ValueError naming the first setting in which a file's model differs from ``expected``."""
    if found == expected:
        return
    for key in sorted(set(found) | set(expected)):
        if found.get(key) != expected.get(key):
            raise ValueError(f"{path}: the file holds another architecture: {what} {key} is "
                             f"{found.get(key)!r} in the file, {expected.get(key)!r} here")
    raise ValueError(f"{path}: the file holds another architecture ({what})")


def copy_array(path, name: str, source: np.ndarray, target: np.ndarray) -> None:
    """Copy a saved array into the model's own array of the same shape, bit for bit."""
    if source.shape != target.shape:
        raise ValueError(f"{path}: array {name} has shape {source.shape}, the model's has "
                         f"{target.shape} (another architecture)")
    np.copyto(target, source, casting="no")


# -- the layers of a Sequential ------------------------------------------------------
def layer_entry(layer, prefix: str, arrays: dict[str, np.ndarray]) -> dict:
    """The manifest entry of one layer; its arrays go into ``arrays`` under ``prefix``."""
    entry = {"class": type(layer).__name__, "config": layer.get_config()}
    inner = getattr(layer, "layers", None)
    if inner is not None:  # a block (Residual): its own params are its inner layers'
        entry["layers"] = [layer_entry(child, f"{prefix}{k}.", arrays)
                           for k, child in enumerate(inner)]
    else:
        entry["params"] = list(layer.params)
        for key, value in layer.params.items():
            arrays[f"{prefix}{key}"] = value
    entry["buffers"] = list(layer.BUFFERS)
    for key in layer.BUFFERS:
        arrays[f"{prefix}{key}"] = getattr(layer, key)
    rng = getattr(layer, "rng", None)
    if isinstance(rng, np.random.Generator):
        entry["rng"] = rng.bit_generator.state
    return entry


def restore_layer(path, layer, entry: dict, prefix: str, arrays: dict[str, np.ndarray]) -> None:
    """Copy a layer's saved arrays (and generator state) into ``layer``, checking the fit."""
    where = f"layer {prefix[:-1]}"
    if entry.get("class") != type(layer).__name__:
        raise ValueError(f"{path}: the file holds another architecture: {where} is "
                         f"{entry.get('class')} in the file, {type(layer).__name__} here")
    check_config(path, entry.get("config", {}), layer.get_config(),
                 f"{where} ({type(layer).__name__})")
    inner = getattr(layer, "layers", None)
    if inner is not None:
        children = entry.get("layers", [])
        if len(children) != len(inner):
            raise ValueError(f"{path}: the file holds another architecture: {where} has "
                             f"{len(children)} inner layers in the file, {len(inner)} here")
        for k, (child, child_entry) in enumerate(zip(inner, children, strict=True)):
            restore_layer(path, child, child_entry, f"{prefix}{k}.", arrays)
    else:
        if list(entry.get("params", [])) != list(layer.params):
            raise ValueError(f"{path}: the file holds another architecture: {where} has "
                             f"parameters {entry.get('params')}, here {list(layer.params)}")
        for key, target in layer.params.items():
            copy_array(path, f"{prefix}{key}", arrays[f"{prefix}{key}"], target)
    for key in layer.BUFFERS:
        copy_array(path, f"{prefix}{key}", arrays[f"{prefix}{key}"], getattr(layer, key))
    if "rng" in entry and isinstance(getattr(layer, "rng", None), np.random.Generator):
        state = entry["rng"]
        bit_generator = getattr(np.random, state.get("bit_generator", ""), None)
        if bit_generator is None:
            raise ValueError(f"{path}: {where}: unknown random generator "
                             f"{state.get('bit_generator')!r}")
        generator = bit_generator()
        generator.state = state
        layer.rng = np.random.Generator(generator)


class SavingMixin:
    """``save(path)`` and ``load_parameters(path)`` for a model that gives its state.

    The model implements ``_saved_state() -> (config, arrays)`` and
    ``_restore_state(path, config, arrays)``; ``_saved_class`` is the name
    written to the manifest (what ``backprop_derived.load`` rebuilds).
    """

    _saved_class: str

    def save(self, path) -> None:
        """Write the model to ``path`` (a portable .npz, no pickle), atomically.

        ``backprop_derived.load(path)`` gives the model back, predictions bit
        for bit; ``model.load_parameters(path)`` reads it into a model of the
        same architecture.
        """
        config, arrays = self._saved_state()
        write(path, self._saved_class, self.dtype, config, arrays)

    def load_parameters(self, path) -> None:
        """Replace this model's parameters (and buffers) with those saved at ``path``.

        The file must hold the same architecture: a ValueError names the first
        difference. Nothing is changed when it is raised.
        """
        manifest, arrays = read(path)
        if manifest.get("class") != self._saved_class:
            raise ValueError(f"{os.fspath(path)}: the file holds another architecture: a "
                             f"{manifest.get('class')}, not a {self._saved_class}")
        if manifest.get("dtype") != self.dtype.name:
            raise ValueError(f"{os.fspath(path)}: the file's model is {manifest.get('dtype')}, "
                             f"this one is {self.dtype.name}")
        backup = self._saved_state()[1]
        backup = {name: value.copy() for name, value in backup.items()}
        try:
            self._restore_state(os.fspath(path), manifest.get("config", {}), arrays)
        except BaseException:
            self._restore_state(os.fspath(path), self._saved_state()[0], backup)
            raise
