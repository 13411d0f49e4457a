"""bncli.report.why: the per-run probe summaries C14 and C15 read, and the manipulation-check rule."""

from __future__ import annotations

import math

import pytest

from bncli.report import _matches
from bncli.report.claim import Claim
from bncli.report.verdict import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Effect, combine
from bncli.report.why import _run_mean, ics_by_step, smoothness_by_step


def _csv(path, head, rows):
    path.write_text(",".join(head) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


def test_ics_by_step_averages_the_layers_of_each_step(tmp_path):
    _csv(tmp_path / "ics.csv", ["step", "layer", "rel_change", "cosine", "grad_norm", "l2_diff"],
         [[0, "dense2", 0.2, 0.9, 1, 0.2], [0, "out", 0.4, 0.5, 2, 0.8], [100, "dense2", 1.0, -0.1, 1, 1.0],
          [100, "out", 0.0, 0.3, 1, 0.0]])
    got = ics_by_step(tmp_path)
    assert got == {0.0: (pytest.approx(0.3), pytest.approx(0.7)), 100.0: (pytest.approx(0.5), pytest.approx(0.1))}
    assert _run_mean(got, 0) == pytest.approx(0.4) and _run_mean(got, 1) == pytest.approx(0.4)
    assert ics_by_step(tmp_path / "nowhere") is None


def test_smoothness_by_step_includes_the_base_point_and_divides_by_the_distance_moved(tmp_path):
    # base loss 1.0, ||g|| = 2; eta 0.1 -> loss 0.8, gradient change 0.1; eta 0.4 -> loss 1.5, change 1.2
    _csv(tmp_path / "smoothness.csv", ["step", "multiple", "eta", "loss", "grad_diff", "base_loss", "grad_norm"],
         [[0, 1.0, 0.1, 0.8, 0.1, 1.0, 2.0], [0, 4.0, 0.4, 1.5, 1.2, 1.0, 2.0]])
    (var, pred, beta, lo, hi, at_lr, dlo, dhi), = smoothness_by_step(tmp_path).values()
    assert var == pytest.approx(1.5 - 0.8) and (lo, hi) == (0.8, 1.5)
    assert pred == 1.2 and (dlo, dhi) == (0.1, 1.2) and at_lr == 0.1
    assert beta == pytest.approx(max(0.1 / (0.1 * 2), 1.2 / (0.4 * 2)))
    # the base point counts: with one eta whose loss equals nothing else, the variation is |L(eta) - L(0)|
    _csv(tmp_path / "smoothness.csv", ["step", "multiple", "eta", "loss", "grad_diff", "base_loss", "grad_norm"],
         [[5, 1.0, 0.1, 0.25, 0.3, 1.0, 3.0]])
    (var, *_), = smoothness_by_step(tmp_path).values()
    assert var == pytest.approx(0.75)


def test_smoothness_of_a_zero_gradient_is_not_a_number(tmp_path):
    _csv(tmp_path / "smoothness.csv", ["step", "multiple", "eta", "loss", "grad_diff", "base_loss", "grad_norm"],
         [[0, 1.0, 0.1, 1.0, 0.0, 1.0, 0.0]])
    (_, _, beta, *_), = smoothness_by_step(tmp_path).values()
    assert math.isnan(beta)


def _effect(verdict):
    return Effect("x", 10, 1.0, 0.1, 0.9, 1.1, verdict=verdict)


@pytest.mark.parametrize("check, primaries, expected", [
    (SUPPORTED, [CONTRADICTED, INCONCLUSIVE], CONTRADICTED),
    (SUPPORTED, [SUPPORTED, SUPPORTED], SUPPORTED),
    (INCONCLUSIVE, [CONTRADICTED, CONTRADICTED], INCONCLUSIVE),  # the test did not take place
    (CONTRADICTED, [SUPPORTED, SUPPORTED], INCONCLUSIVE),
])
def test_a_manipulation_check_that_fails_makes_the_claim_inconclusive(check, primaries, expected):
    c = Claim("C14", "t", "s", "n", "p", "c14_why_bn", effects=[_effect(check), *map(_effect, primaries)],
              primary=[1, 2], requires=[0])
    assert c.decide().verdict == expected
    c.requires = []  # without the check, the ordinary rule
    assert c.decide().verdict == combine([_effect(v) for v in primaries])


@pytest.mark.parametrize("wanted", ["C14", "C15", "c16", "C015", "c14_why_bn"])
def test_only_c14_c15_c16_select_their_shared_study(wanted):
    assert _matches("c14_why_bn", wanted)
    assert not _matches("c13_per_channel", wanted)
