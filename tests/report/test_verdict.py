"""The pre-registered verdict rule (bncli.report.verdict): directional and equivalence verdicts on hand-made
intervals, the paired t-interval and percentile-bootstrap effects, deterministic checks and how a claim's primary
effects combine into its verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bncli import stats
from bncli.report.verdict import (CONTRADICTED, INCONCLUSIVE, SUPPORTED, Effect, bootstrap_effect, check_effect,
                                  combine, directional, equivalence, paired_effect)

NAN, INF = math.nan, math.inf


# -- directional ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lo, hi, direction, expected", [
    (0.1, 0.5, +1, SUPPORTED),          # above 0, claimed positive
    (0.1, 0.5, -1, CONTRADICTED),       # above 0, claimed negative
    (-0.5, -0.1, -1, SUPPORTED),        # below 0, claimed negative
    (-0.5, -0.1, +1, CONTRADICTED),     # below 0, claimed positive
    (-0.1, 0.2, +1, INCONCLUSIVE),      # straddles 0
    (-0.1, 0.2, -1, INCONCLUSIVE),
    (0.3, 0.3, +1, SUPPORTED),          # a degenerate interval (every seed gave the same difference)
    (-2.0, -2.0, +1, CONTRADICTED),
    (1e-12, 1.0, +1, SUPPORTED),        # just above 0
    (-1.0, -1e-12, +1, CONTRADICTED),   # just below 0
])
def test_directional(lo, hi, direction, expected):
    assert directional(lo, hi, direction) == expected


@pytest.mark.parametrize("lo, hi", [(0.0, 0.5), (-0.5, 0.0), (0.0, 0.0)])
@pytest.mark.parametrize("direction", [+1, -1])
def test_directional_interval_touching_zero_does_not_exclude_it(lo, hi, direction):
    assert directional(lo, hi, direction) == INCONCLUSIVE


@pytest.mark.parametrize("lo, hi", [(NAN, 0.5), (0.1, NAN), (NAN, NAN), (-INF, 0.5), (0.1, INF), (INF, INF)])
@pytest.mark.parametrize("direction", [+1, -1])
def test_directional_undefined_interval_is_inconclusive(lo, hi, direction):
    assert directional(lo, hi, direction) == INCONCLUSIVE


# -- equivalence (claims of no difference) ----------------------------------------------------------------------------
M = 0.005


@pytest.mark.parametrize("lo, hi, expected", [
    (-0.004, 0.004, SUPPORTED),                 # wholly inside the margin
    (0.0, 0.0, SUPPORTED),
    (-M + 1e-6, M - 1e-6, SUPPORTED),           # just inside on both sides
    (-M - 1e-6, 0.001, INCONCLUSIVE),           # just over the lower margin
    (-0.001, M + 1e-6, INCONCLUSIVE),           # just over the upper margin
    (-0.01, 0.01, INCONCLUSIVE),                # wider than the margin band
    (0.004, 0.01, INCONCLUSIVE),                # straddles the upper margin
    (-0.01, -0.004, INCONCLUSIVE),              # straddles the lower margin
    (M + 1e-6, 0.02, CONTRADICTED),             # wholly above
    (-0.02, -M - 1e-6, CONTRADICTED),           # wholly below
    (0.3, 0.3, CONTRADICTED),
])
def test_equivalence(lo, hi, expected):
    assert equivalence(lo, hi, M) == expected


@pytest.mark.parametrize("lo, hi", [(NAN, 0.001), (-0.001, NAN), (NAN, NAN), (-INF, INF), (0.1, INF)])
def test_equivalence_undefined_interval_is_inconclusive(lo, hi):
    assert equivalence(lo, hi, M) == INCONCLUSIVE


def test_judge_uses_the_margin_before_the_direction():
    # inside the margin but not excluding 0: the equivalence verdict, not the directional one
    e = Effect("x", 5, 0.0, 0.001, -0.001, 0.002, direction=+1, margin=M).judge()
    assert e.verdict == SUPPORTED
    assert Effect("x", 5, 0.0, 0.001, -0.001, 0.002, direction=+1).judge().verdict == INCONCLUSIVE
    assert Effect("x", 5, 0.0, 0.001, -0.001, 0.002).judge().verdict is None  # reported, not judged


# -- paired t-interval ------------------------------------------------------------------------------------------------
DIFFS = [0.1, 0.3, 0.2, 0.4, 0.25]


def test_paired_effect_numbers_are_stats_describe_of_the_differences():
    e = paired_effect("d", DIFFS, direction=+1, unit="accuracy")
    s = stats.describe(DIFFS)
    assert (e.n, e.mean, e.sd, e.ci_low, e.ci_high) == (s.n, s.mean, s.sd, s.ci_low, s.ci_high)
    # and independently: mean, sample sd, t_{0.975, 4} = 2.7764
    sd = float(np.std(DIFFS, ddof=1))
    assert e.n == 5 and e.mean == pytest.approx(0.25) and e.sd == pytest.approx(sd)
    h = 2.7764 * sd / math.sqrt(5)
    assert (e.ci_low, e.ci_high) == pytest.approx((0.25 - h, 0.25 + h), rel=1e-4)
    assert e.unit == "accuracy" and e.label == "d" and e.direction == 1 and e.margin is None
    assert e.verdict == SUPPORTED


@pytest.mark.parametrize("direction, expected", [(+1, SUPPORTED), (-1, CONTRADICTED), (0, None)])
def test_paired_effect_verdict_follows_direction(direction, expected):
    assert paired_effect("d", DIFFS, direction=direction).verdict == expected


def test_paired_effect_straddling_zero_is_inconclusive():
    e = paired_effect("d", [-0.2, 0.1, 0.3, -0.1, 0.05], direction=+1)
    assert e.ci_low < 0 < e.ci_high and e.verdict == INCONCLUSIVE


def test_paired_effect_with_a_margin_is_an_equivalence_test():
    assert paired_effect("d", [0.0, 0.001, -0.001, 0.0005, -0.0005], margin=M).verdict == SUPPORTED
    assert paired_effect("d", [0.02, 0.021, 0.019, 0.02], margin=M).verdict == CONTRADICTED
    assert paired_effect("d", [-0.01, 0.01, 0.0, 0.004], margin=M).verdict == INCONCLUSIVE


def test_paired_effect_ignores_non_finite_differences():
    e = paired_effect("d", DIFFS + [NAN, INF, None], direction=+1)
    s = stats.describe(DIFFS)
    assert (e.n, e.mean, e.ci_low, e.ci_high) == (5, s.mean, s.ci_low, s.ci_high)


@pytest.mark.parametrize("diffs", [[], [0.5], [NAN, 0.5]])
def test_paired_effect_without_an_interval_is_inconclusive(diffs):
    e = paired_effect("d", diffs, direction=+1)
    assert math.isnan(e.ci_low) and math.isnan(e.ci_high)
    assert e.verdict == INCONCLUSIVE
    assert paired_effect("d", diffs, margin=M).verdict == INCONCLUSIVE


# -- percentile bootstrap over seeds ----------------------------------------------------------------------------------
def _mean_of(values):
    return lambda seeds: float(np.mean([values[s] for s in seeds]))


def test_bootstrap_effect_is_deterministic():
    v = np.random.default_rng(7).normal(0.2, 1.0, 12)
    a = bootstrap_effect("b", range(12), _mean_of(v), direction=+1)
    b = bootstrap_effect("b", range(12), _mean_of(v), direction=+1)
    assert (a.n, a.mean, a.sd, a.ci_low, a.ci_high, a.verdict) == (b.n, b.mean, b.sd, b.ci_low, b.ci_high, b.verdict)
    assert math.isfinite(a.ci_low) and a.ci_low < a.ci_high
    # the resampling seed matters (the intervals are not a constant)
    c = bootstrap_effect("b", range(12), _mean_of(v), direction=+1, seed=1)
    assert (c.ci_low, c.ci_high) != (a.ci_low, a.ci_high)


def test_bootstrap_effect_point_estimate_and_interval():
    v = np.random.default_rng(3).normal(0.0, 1.0, 8)
    e = bootstrap_effect("b", list(range(8)), _mean_of(v), unit="decades")
    assert e.n == 8 and e.unit == "decades"
    assert e.mean == pytest.approx(float(np.mean(v)))  # the statistic on all seeds, not a bootstrap mean
    assert e.ci_low <= e.mean <= e.ci_high
    assert min(v) <= e.ci_low and e.ci_high <= max(v)  # a mean of resampled values lies within their range
    assert "bootstrap" in e.method and e.verdict is None


def test_bootstrap_effect_is_close_to_the_t_interval_for_normal_data_with_many_seeds():
    v = np.random.default_rng(0).normal(0.5, 1.0, 200)
    e = bootstrap_effect("b", range(200), _mean_of(v), direction=+1)
    s = stats.describe(v)
    half = (s.ci_high - s.ci_low) / 2
    assert abs(e.ci_low - s.ci_low) < 0.2 * half
    assert abs(e.ci_high - s.ci_high) < 0.2 * half
    assert e.sd == pytest.approx(s.sd / math.sqrt(200), rel=0.15)  # bootstrap standard error of the mean
    assert e.verdict == SUPPORTED
    assert bootstrap_effect("b", range(200), _mean_of(v), direction=-1).verdict == CONTRADICTED


def test_bootstrap_effect_keeps_the_pairing_of_arms():
    # arm b = arm a + 1 for every seed, with a widely spread: every paired resample gives exactly 1
    a = {s: float(x) for s, x in enumerate(np.random.default_rng(5).normal(0, 10, 10))}
    b = {s: x + 1.0 for s, x in a.items()}
    e = bootstrap_effect("b", range(10), lambda ss: np.mean([b[s] for s in ss]) - np.mean([a[s] for s in ss]),
                         direction=+1)
    assert e.ci_low == pytest.approx(1.0, abs=1e-9) and e.ci_high == pytest.approx(1.0, abs=1e-9)
    assert e.verdict == SUPPORTED


def test_bootstrap_effect_with_an_undefined_statistic_is_inconclusive():
    e = bootstrap_effect("b", range(5), lambda ss: math.nan, direction=+1)
    assert math.isnan(e.ci_low) and math.isnan(e.ci_high) and e.verdict == INCONCLUSIVE


# -- deterministic checks ---------------------------------------------------------------------------------------------
def test_check_effect():
    ok = check_effect("max |x|", 1e-16, True, unit="relative", detail="float64")
    assert ok.verdict == SUPPORTED
    assert (ok.n, ok.mean, ok.ci_low, ok.ci_high) == (1, 1e-16, 1e-16, 1e-16) and math.isnan(ok.sd)
    assert ok.method == "float64" and ok.unit == "relative"
    bad = check_effect("max |x|", 0.3, False)
    assert bad.verdict == CONTRADICTED and bad.method == "deterministic check"
    # judging again does not change a check's verdict (no direction, no margin)
    assert bad.judge().verdict == CONTRADICTED


# -- combining the primary effects ------------------------------------------------------------------------------------
def _e(verdict):
    return Effect("x", 5, 0.0, 1.0, -1.0, 1.0, verdict=verdict)


@pytest.mark.parametrize("verdicts, expected", [
    ([SUPPORTED], SUPPORTED),
    ([SUPPORTED, SUPPORTED, SUPPORTED], SUPPORTED),
    ([CONTRADICTED], CONTRADICTED),
    ([SUPPORTED, CONTRADICTED], CONTRADICTED),
    ([INCONCLUSIVE, CONTRADICTED, SUPPORTED], CONTRADICTED),
    ([SUPPORTED, INCONCLUSIVE], INCONCLUSIVE),
    ([INCONCLUSIVE], INCONCLUSIVE),
    ([SUPPORTED, None], INCONCLUSIVE),   # an unjudged effect cannot support a claim
    ([], INCONCLUSIVE),                  # no evidence is not support
])
def test_combine(verdicts, expected):
    assert combine([_e(v) for v in verdicts]) == expected
