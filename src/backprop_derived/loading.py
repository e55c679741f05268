"""``backprop_derived.load(path)``: a saved `Network` or `Sequential`, rebuilt.

The file format is serialization.py's; this module knows the two model
classes and finds every layer class by its name in `backprop_derived.layers`.
"""

from __future__ import annotations

import os

from . import layers as layer_classes
from . import serialization
from .layers.base import Layer
from .layers.sequential import Sequential
from .network import Network

__all__ = ["load"]


def load(path):
    """The model saved at ``path`` by ``model.save``, with its parameters bit for bit.

    A ValueError says when the file is not a model file, is truncated, was
    written in a newer format, or does not fit the architecture it describes.
    """
    manifest, arrays = serialization.read(path)
    path = os.fspath(path)
    kind, config = manifest.get("class"), manifest.get("config", {})
    try:
        if kind == "Network":
            model = Network(**config)
        elif kind == "Sequential":
            model = Sequential([_build(path, entry, str(k))
                                for k, entry in enumerate(config.get("layers", []))],
                               loss=config.get("loss"), dtype=config.get("dtype"),
                               l2=config.get("l2", 0.0))
        else:
            raise ValueError(f"{path}: unknown model class {kind!r} (Network or Sequential)")
    except TypeError as error:
        raise ValueError(f"{path}: the manifest does not describe a valid {kind}: "
                         f"{error}") from None
    model._restore_state(path, config, arrays)
    return model


def _build(path, entry: dict, where: str) -> Layer:
    name = entry.get("class")
    cls = getattr(layer_classes, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(f"{path}: layer {where}: unknown layer class {name!r}")
    if "layers" in entry:  # a block: its inner layers are its arguments
        inner = [_build(path, child, f"{where}.{k}") for k, child in enumerate(entry["layers"])]
        return cls(*inner, **entry.get("config", {}))
    return cls(**entry.get("config", {}))
