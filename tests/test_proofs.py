"""A ✓ means proven for every size; a step only checked on an example never feeds a kernel.

The four false steps an audit planted in the pages, each true on a layer of
three units and false on any other, must be refused; the true steps they
imitate must be proven for any number of units ("index sums").
"""

import os
import shutil
import subprocess
import sys

import pytest
import sympy as sp
from sympy import KroneckerDelta, Sum, exp, log, oo

from backprop_derived.symbolic.catalog import ACTIVATIONS, COST, LOSSES, L, a, m, y, zv
from backprop_derived.symbolic.checked import (
    PROOFS,
    Chain,
    CheckedOnExample,
    StepNotVerified,
    assert_proven,
    concretize,
    expand_sums,
    is_evidence_only,
    prove_equal,
)
from backprop_derived.symbolic.kernels import Kernel
from backprop_derived.symbolic.printers import ArrayPrinter, UfuncPrinter
from backprop_derived.symbolic.techniques import shift_exponentials, to_batch

j, k, p, q = sp.symbols("j k p q", integer=True)
c = sp.Symbol("c", real=True)
SOFTMAX = ACTIVATIONS["softmax"]
CE = LOSSES["cross_entropy"].xreplace({k: q})
CE_TERMS = ("softmax", "cross_entropy")  # the one pair whose delta goes through a Jacobian


def softmax_at(index):
    return SOFTMAX.subs(k, index)


def in_z(e):
    """a_p = softmax(z)_p at every index of ``e``."""
    return e.replace(lambda x: isinstance(x, sp.Indexed) and x.base == a,
                     lambda x: softmax_at(x.indices[0]))


def first_three(s):
    """The same sum over units 0..2 only."""
    (v, _, _), = s.limits
    return Sum(s.function, (v, 0, 2))


# -- the true steps, proven for every number of units --------------------------

def test_softmax_shift_is_proven_for_every_size():
    chain = shift_exponentials(SOFTMAX, c, sp.Symbol("a_k"))
    assert chain.steps[-1].proof == "index sums"
    assert chain.result.has(exp(zv[k] - c))


def log_quotient_chain():
    chain = Chain(sp.Symbol("E"), in_z(CE), "definition")
    lse = log(Sum(exp(zv[j]), (j, -oo, oo)))
    return chain.step(Sum(y[q] * (lse - zv[q]), (q, -oo, oo)), "log of a quotient")


def test_log_of_a_quotient_and_shifted_log_sum_exp_are_proven_for_every_size():
    chain = log_quotient_chain()
    shifted = c + log(Sum(exp(zv[j] - c), (j, -oo, oo)))
    chain.step(Sum(y[q] * (shifted - zv[q]), (q, -oo, oo)), "shifted")
    assert [s.proof for s in chain.steps] == ["given", "index sums", "index sums"]


def softmax_delta_chain():
    dE_da = expand_sums(sp.diff(CE, a[p]).doit())
    direct = expand_sums(sp.diff(in_z(CE), zv[k]).doit())
    jac_a = a[p] * (KroneckerDelta(p, k) - a[k])
    chain = Chain(sp.Symbol("delta_k"), direct, "direct", definitions=in_z)
    return chain, dE_da * jac_a


def test_softmax_jacobian_and_chain_rule_are_proven_for_every_size():
    jac = expand_sums(sp.diff(softmax_at(p), zv[k]).doit())
    jacobian = Chain(sp.Symbol("J"), jac, "d a_p / d z_k", definitions=in_z)
    jacobian.step(a[p] * (KroneckerDelta(p, k) - a[k]), "through the outputs")
    chain, summand = softmax_delta_chain()
    chain.step(Sum(summand, (p, -oo, oo)), "chain rule")
    chain.then(lambda e: sp.factor_terms(expand_sums(e)), "sum the delta")
    assert [s.proof for s in jacobian.steps + chain.steps] == [
        "given", "index sums", "given", "index sums", "index sums"]
    assert chain.result == a[k] * Sum(y[p], (p, -oo, oo)) - y[k]


def test_the_cost_gives_one_over_m():
    s = sp.Symbol("s", integer=True)
    chain = Chain(sp.Symbol("dC/dL_s"), sp.diff(COST, L[s]), "diff", ranges={s: (0, m - 1)})
    chain.then(lambda e: expand_sums(e, {s: (0, m - 1)}), "the delta picks s")
    assert chain.result == 1 / m and chain.steps[-1].proof == "index sums"
    # without knowing that s is one of the batch, the sum of deltas stays a sum
    assert expand_sums(sp.diff(COST, L[s])).has(Sum)


# -- the four planted false steps: each must be refused -------------------------

def test_planted_softmax_denominator_over_three_units_is_refused():
    denominator = next(iter(SOFTMAX.atoms(Sum)))
    with pytest.raises(StepNotVerified):
        Chain(sp.Symbol("a_k"), SOFTMAX, "definition").step(
            SOFTMAX.xreplace({denominator: first_three(denominator)}), "planted")
    shifted = shift_exponentials(SOFTMAX, c, sp.Symbol("a_k")).result
    s = next(iter(shifted.atoms(Sum)))
    with pytest.raises(StepNotVerified):
        Chain(sp.Symbol("a_k"), SOFTMAX, "definition").step(
            shifted.xreplace({s: first_three(s)}), "planted")


def test_planted_log_sum_exp_over_three_units_is_refused():
    chain = log_quotient_chain()
    planted = c + log(Sum(exp(zv[j] - c), (j, 0, 2)))
    with pytest.raises(StepNotVerified):
        chain.step(Sum(y[q] * (planted - zv[q]), (q, -oo, oo)), "planted")


def test_planted_log_of_a_third_per_unit_is_refused():
    chain = log_quotient_chain()
    current = chain.result
    with pytest.raises(StepNotVerified):
        chain.step(current + log(Sum(sp.Rational(1, 3), (j, -oo, oo))), "planted")
    # on three units it is log 1 = 0: exactly what an example-only check accepts
    assert prove_equal(current, current + log(Sum(sp.Rational(1, 3), (j, -oo, oo))),
                       instance=concretize(3)) == "checked on n = 3"


def test_planted_softmax_chain_rule_over_three_units_is_refused():
    chain, summand = softmax_delta_chain()
    with pytest.raises(StepNotVerified):
        chain.step(Sum(summand, (p, 0, 2)), "planted")


@pytest.mark.slow
def test_a_planted_step_fails_regenerate(tmp_path, root):
    """The chain rule over p = 0..2, planted in the function page 07 calls: regenerate refuses it."""
    dst = tmp_path / "repo"
    shutil.copytree(root / "src", dst / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "derivations").mkdir()
    shutil.copy(root / "derivations" / "07_losses_x_activations.py", dst / "derivations")
    entries = dst / "src" / "backprop_derived" / "symbolic" / "entries.py"
    text = entries.read_text()
    true_step = '(p, -oo, oo)), "chain rule through the Jacobian")'
    assert text.count(true_step) == 1
    entries.write_text(text.replace(true_step, '(p, 0, 2)), "chain rule through the Jacobian")'))
    result = subprocess.run(
        [sys.executable, "-m", "backprop_derived", "regenerate", "--root", str(dst)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(dst / "src")})
    assert result.returncode != 0
    assert "StepNotVerified" in result.stderr and "chain rule through the Jacobian" in result.stderr


# -- evidence only: shown with its own label, never in a kernel ------------------

def evidence_chain():
    """A false step (+ log of n/3 for n units) that an example of 3 units accepts."""
    chain = Chain(sp.Symbol("a_k"), SOFTMAX, "definition", instance=concretize(3, free=(k,)))
    return chain.step(SOFTMAX + log(Sum(sp.Rational(1, 3), (j, -oo, oo))), "planted")


def test_an_example_check_has_its_own_label_and_a_proof_is_still_preferred():
    chain = evidence_chain()
    assert chain.steps[-1].proof == "checked on n = 3"
    assert is_evidence_only(chain.steps[-1].proof) and chain.evidence_only
    assert not any(is_evidence_only(label) for label in PROOFS if label != "checked on n = N")
    # a true step with the same instance available is proven, not sampled
    proven = Chain(sp.Symbol("a_k"), SOFTMAX, "definition", instance=concretize(3, free=(k,)))
    shifted = shift_exponentials(SOFTMAX, c, sp.Symbol("a_k")).result
    assert proven.step(shifted, "shift").steps[-1].proof == "index sums"


def test_steps_after_an_example_check_are_evidence_only_too():
    chain = evidence_chain()
    chain.then(lambda e: e, "nothing")  # structurally equal, but built on evidence
    assert chain.steps[-1].proof == "checked on n = 3"
    assert isinstance(chain.steps[-1].expr, CheckedOnExample)


def test_evidence_cannot_reach_a_kernel():
    chain = evidence_chain()
    with pytest.raises(StepNotVerified, match="cannot feed a kernel"):
        chain.result  # noqa: B018 -- the access itself must refuse
    tainted = chain.steps[-1].expr  # the deliberate way around .result
    batch = to_batch(tainted)  # the taint survives rewriting into batch form
    assert batch.has(CheckedOnExample)
    with pytest.raises(StepNotVerified):
        assert_proven(batch)
    with pytest.raises(StepNotVerified):
        ArrayPrinter().doprint(batch)
    with pytest.raises(StepNotVerified):
        UfuncPrinter().statements(batch, "out")
    z = sp.Symbol("z", real=True)
    with pytest.raises(StepNotVerified):
        UfuncPrinter().fused_statements((("out", batch * z),), {"z": "full"})
    for style in ("ufunc", "array", "scalar"):
        # refused as soon as a kernel is made of it, whatever its style
        with pytest.raises(StepNotVerified):
            Kernel("activations", "planted", ("z", "out", "scratch"), batch, "doc",
                   "equation", "derivations/test.py", style=style)
