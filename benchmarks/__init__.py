"""Benchmarks of issue 5: ``Network.gradients`` against the bare GEMMs (the
bound), hand-written NumPy, PyTorch CPU autograd and the per-example loop.

``python -m benchmarks`` (``make bench``) runs them and writes
``benchmarks/results.json``, which the site's Performance page plots.
"""
