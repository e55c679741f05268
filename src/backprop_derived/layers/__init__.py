"""Layers that train with the generated kernels, and ``Sequential`` to compose them.

Every layer has ``params`` (a dict of arrays, updated in place by training),
``forward(X, train=True)`` which keeps what the backward pass needs, and
``backward(dY)`` which returns the input gradient and fills ``grads`` (same
keys and shapes as ``params``).
"""

from .base import Layer

__all__ = ["Layer"]
