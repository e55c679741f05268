"""Worked examples of the training workflow; each runs offline in seconds.

- `digits`: scikit-learn's bundled 8x8 handwritten digits, 64-25-10, softmax output.
- `regression`: the notes' "NN for linear systems" bonus, tanh hidden layer, linear output.
- `xor`: a 2-2-1 sigmoid network and what its two hidden units compute.

Each module has a ``run_*`` function returning a small dataclass that a site page
plots and a test checks.
"""
