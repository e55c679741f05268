# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # One pass by hand: a 2-2-2 network
#
# The derivation pages prove the backpropagation equations for every network.
# This page runs them **once, on numbers**: a network with 2 inputs, 2 hidden
# units and 2 outputs, sigmoid units, squared error, one training example.
# Every intermediate value is printed, so you can redo the arithmetic with a
# calculator. At the end the same numbers are compared with two independent
# computations: the generated NumPy code that `Network` runs, and SymPy
# differentiating the whole error expression at once.
#
# The symbols are those of the scalar derivation ([Notation](../notation.md)):
# inputs $a_i$, weights $w_{ij}$ into hidden unit $j$, hidden biases $b_j$,
# weights $w_{jk}$ into output $k$, output biases $b_k$, targets $t_k$ and
# $E = \frac{1}{2}\sum_k (a_k - t_k)^2$.

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import sympy as sp
from IPython.display import Markdown, display

from backprop_derived import Network
from backprop_derived.symbolic.catalog import ACTIVATIONS, z

# g and g' come from the catalog's SymPy expression, not from a formula typed here.
g_expr = ACTIVATIONS["sigmoid"]
g = sp.lambdify(z, g_expr, "numpy")
g_prime = sp.lambdify(z, sp.diff(g_expr, z), "numpy")


def table(header, rows, digits=6):
    """A Markdown table; numbers to `digits` significant figures."""
    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, float | np.floating) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    display(Markdown("\n".join(lines)))


# %% [markdown]
# ## The network and the example
#
# Small round numbers, so that nothing is hidden by the scale. The weight
# $w_{ij}$ connects input $i$ to hidden unit $j$: it is row $i$, column $j$ of
# the array `w_ij` below (source first, as in the scalar derivation).

# %% tags=["hide-input"]
a_i = np.array([0.05, 0.10])          # the inputs a_1, a_2
t_k = np.array([0.01, 0.99])          # the targets t_1, t_2
w_ij = np.array([[0.15, 0.25],        # w_11, w_12
                 [0.20, 0.30]])       # w_21, w_22
b_j = np.array([0.35, 0.35])
w_jk = np.array([[0.40, 0.50],        # w_11, w_12 (hidden 1 -> outputs 1, 2)
                 [0.45, 0.55]])       # w_21, w_22
b_k = np.array([0.60, 0.60])
table(["quantity", "unit 1", "unit 2"],
      [["input $a_i$", *a_i], ["target $t_k$", *t_k], ["hidden bias $b_j$", *b_j],
       ["output bias $b_k$", *b_k],
       ["$w_{1j}$ (from input 1)", *w_ij[0]], ["$w_{2j}$ (from input 2)", *w_ij[1]],
       ["$w_{1k}$ (from hidden 1)", *w_jk[0]], ["$w_{2k}$ (from hidden 2)", *w_jk[1]]])

# %% [markdown]
# ## Forward pass
#
# Each hidden unit sums its weighted inputs and its bias,
# $z_j = b_j + \sum_i a_i w_{ij}$, and squashes the sum, $a_j = g(z_j)$. The
# output units do the same with the hidden activations. The error compares the
# outputs with the targets.

# %% tags=["hide-input"]
z_j = b_j + a_i @ w_ij
a_j = g(z_j)
z_k = b_k + a_j @ w_jk
a_k = g(z_k)
E = 0.5 * np.sum((a_k - t_k) ** 2)
table(["unit", "pre-activation $z$", "activation $a = g(z)$"],
      [[f"hidden {j + 1}", z_j[j], a_j[j]] for j in range(2)]
      + [[f"output {k + 1}", z_k[k], a_k[k]] for k in range(2)])
display(Markdown(f"Error: $E = \\tfrac12\\left[({a_k[0]:.6f} - {t_k[0]})^2 + "
                 f"({a_k[1]:.6f} - {t_k[1]})^2\\right] = {E:.6f}$"))

# %% [markdown]
# ## Backward pass
#
# **Output errors**, eq. (5): $\delta_k = (a_k - t_k)\, g'(z_k)$. The miss
# $a_k - t_k$ times the slope of the sigmoid at $z_k$.
#
# **Hidden errors**, eq. (11): $\delta_j = g'(z_j) \sum_k w_{jk} \delta_k$.
# Each hidden unit collects the output errors through the weights it feeds.
#
# **Gradients**: $\partial E/\partial w_{jk} = a_j \delta_k$,
# $\partial E/\partial w_{ij} = a_i \delta_j$, and a bias gets the error of
# its unit, $\partial E/\partial b = \delta$ (eq. (6) and (12)).

# %% tags=["hide-input"]
delta_k = (a_k - t_k) * g_prime(z_k)
back_k = w_jk @ delta_k                     # sum_k w_jk delta_k, one entry per j
delta_j = g_prime(z_j) * back_k
table(["unit", "miss $a_k - t_k$", "$g'(z_k)$", "$\\delta_k$"],
      [[f"output {k + 1}", a_k[k] - t_k[k], g_prime(z_k[k]), delta_k[k]] for k in range(2)])
table(["unit", "$\\sum_k w_{jk}\\delta_k$", "$g'(z_j)$", "$\\delta_j$"],
      [[f"hidden {j + 1}", back_k[j], g_prime(z_j[j]), delta_j[j]] for j in range(2)])
dE_dwjk = np.outer(a_j, delta_k)
dE_dwij = np.outer(a_i, delta_j)
table(["gradient", "to unit 1", "to unit 2"],
      [[f"$\\partial E/\\partial w_{{{j + 1}k}}$ (from hidden {j + 1})", *dE_dwjk[j]]
       for j in range(2)]
      + [[f"$\\partial E/\\partial w_{{{i + 1}j}}$ (from input {i + 1})", *dE_dwij[i]]
         for i in range(2)]
      + [["$\\partial E/\\partial b_k$", *delta_k], ["$\\partial E/\\partial b_j$", *delta_j]])

# %% [markdown]
# ## The flow, as a computational graph
#
# The same numbers on the graph of the computation. Forward, values flow left
# to right (black: the pre-activation $z$ and the activation $a$ of each
# unit). Backward, errors flow right to left (red: the $\delta$ of each unit).
# Every weight's gradient is the product of the black number at its tail and
# the red number at its head.

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(9.6, 4.8), dpi=100)
pos = {("i", 0): (0, 1.6), ("i", 1): (0, 0.4), ("j", 0): (1, 1.6), ("j", 1): (1, 0.4),
       ("k", 0): (2, 1.6), ("k", 1): (2, 0.4), ("E", 0): (2.85, 1.0)}
for (i, j) in [(i, j) for i in range(2) for j in range(2)]:
    for src, dst in ((("i", i), ("j", j)), (("j", i), ("k", j))):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        ax.annotate("", xy=(x1 - 0.13, y1), xytext=(x0 + 0.13, y0),
                    arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 1})
for k in range(2):
    (x0, y0), (x1, y1) = pos["k", k], pos["E", 0]
    ax.annotate("", xy=(x1 - 0.1, y1), xytext=(x0 + 0.13, y0),
                arrowprops={"arrowstyle": "->", "color": "0.55", "lw": 1})
labels = {("i", 0): f"$a_1$={a_i[0]:.2f}", ("i", 1): f"$a_2$={a_i[1]:.2f}"}
for n in range(2):
    labels["j", n] = f"$z$={z_j[n]:.4f}\n$a$={a_j[n]:.4f}"
    labels["k", n] = f"$z$={z_k[n]:.4f}\n$a$={a_k[n]:.4f}"
labels["E", 0] = f"$E$\n{E:.4f}"
for key, (x, y) in pos.items():
    ax.add_patch(plt.Circle((x, y), 0.13 if key[0] != "E" else 0.1, fc="white", ec="0.2"))
    ax.text(x, y + 0.2, labels[key], ha="center", va="bottom", fontsize=11)
for n in range(2):
    for layer, d in (("j", delta_j), ("k", delta_k)):
        x, y = pos[layer, n]
        ax.text(x, y - 0.2, f"$\\delta$={d[n]:.5f}", ha="center", va="top", fontsize=11,
                color="#b2182b")
ax.annotate("", xy=(0.6, -0.35), xytext=(2.4, -0.35),
            arrowprops={"arrowstyle": "->", "color": "#b2182b", "lw": 1.5})
ax.text(1.5, -0.42, "backward: errors", color="#b2182b", ha="center", va="top", fontsize=11)
ax.annotate("", xy=(2.4, 2.25), xytext=(0.6, 2.25),
            arrowprops={"arrowstyle": "->", "color": "0.2", "lw": 1.5})
ax.text(1.5, 2.32, "forward: values", ha="center", va="bottom", fontsize=11)
ax.set_xlim(-0.35, 3.1)
ax.set_ylim(-0.7, 2.6)
ax.set_aspect("equal")
ax.axis("off")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Checked against the generated code and against SymPy
#
# `Network` runs the NumPy kernels generated from the derivations. It stores
# weights destination first, `weights[0][j, i]` $= w_{ij}$ (see
# [Notation](../notation.md)), so the arrays above are transposed on the way
# in and the gradients transposed on the way out. SymPy, for its part,
# differentiates the error written out in full with respect to every
# parameter, without any of the equations above. The table shows the largest
# difference between the hand computation and each of the two.

# %% tags=["hide-input"]
net = Network(layer_sizes=[2, 2, 2], activations=["sigmoid", "sigmoid"],
              loss="squared_error", dtype=np.float64, seed=0)
net.weights = [w_ij.T.copy(), w_jk.T.copy()]
net.biases = [b_j.copy(), b_k.copy()]
loss, dW, db = net.gradients(a_i[None, :], t_k[None, :])

# SymPy: the error as one expression of all twelve parameters.
W1, W2 = sp.Matrix(2, 2, sp.symbols("w1_:2:2")), sp.Matrix(2, 2, sp.symbols("w2_:2:2"))
B1, B2 = sp.Matrix(sp.symbols("b1_:2")), sp.Matrix(sp.symbols("b2_:2"))
gs = sp.Lambda(z, g_expr)
hidden = (W1.T * sp.Matrix(a_i) + B1).applyfunc(gs)
output = (W2.T * hidden + B2).applyfunc(gs)
E_sym = sum((output[k] - t_k[k]) ** 2 for k in range(2)) / 2
values = {**dict(zip(W1, w_ij.flat, strict=True)), **dict(zip(W2, w_jk.flat, strict=True)),
          **dict(zip(B1, b_j, strict=True)), **dict(zip(B2, b_k, strict=True))}


def sympy_grad(params: sp.Matrix) -> np.ndarray:
    return np.array([[float(sp.diff(E_sym, p).subs(values)) for p in params.row(r)]
                     for r in range(params.rows)]).reshape(params.shape if params.cols > 1
                                                           else (params.rows,))


hand = {"E": np.array([E]), "dE/dw_ij": dE_dwij, "dE/dw_jk": dE_dwjk,
        "dE/db_j": delta_j, "dE/db_k": delta_k}
generated = {"E": np.array([loss]), "dE/dw_ij": dW[0].T, "dE/dw_jk": dW[1].T,
             "dE/db_j": db[0], "dE/db_k": db[1]}
symbolic = {"E": np.array([float(E_sym.subs(values))]),
            "dE/dw_ij": sympy_grad(W1), "dE/dw_jk": sympy_grad(W2),
            "dE/db_j": sympy_grad(B1), "dE/db_k": sympy_grad(B2)}
rows = []
for name, value in hand.items():
    d_gen = float(np.max(np.abs(value - generated[name])))
    d_sym = float(np.max(np.abs(value - symbolic[name])))
    assert d_gen < 1e-12 and d_sym < 1e-12, (name, d_gen, d_sym)
    rows.append([name, f"{d_gen:.1e}", f"{d_sym:.1e}"])
table(["quantity", "max difference to the generated code", "max difference to SymPy"], rows)

# %% [markdown]
# All three agree to rounding error (a difference of order $10^{-17}$ is the
# last bit of a float64); the page fails to build if any differs by more than
# $10^{-12}$. One learning step with rate $\eta$ would now move every weight
# against its gradient, $w \leftarrow w - \eta\, \partial E/\partial w$; the
# [Putting it together](../practice/putting_it_together.py) page does that
# many times on real data.
