"""bncli.stats: t quantiles, describe (mean, sd n-1, t-interval), paired differences, formatting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bncli.stats import Summary, describe, fmt, fmt_ci, paired, t975


@pytest.mark.parametrize("df, t", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423)])
def test_t975_table(df, t):
    assert t975(df) == pytest.approx(t, abs=1e-4)


@pytest.mark.parametrize("df, t", [(31, 2.0395), (40, 2.0211), (60, 2.0003), (120, 1.9799), (1000, 1.9623)])
def test_t975_beyond_table(df, t):
    assert abs(t975(df) - t) < 1e-3


def test_t975_decreases_towards_z():
    ts = [t975(df) for df in range(1, 500)]
    assert all(a > b for a, b in zip(ts, ts[1:]))
    assert t975(10**6) == pytest.approx(1.959964, abs=1e-5)


@pytest.mark.parametrize("df", [0, -1])
def test_t975_undefined(df):
    assert math.isnan(t975(df))


def test_describe_known_data():
    s = describe([1.0, 2.0, 3.0, 4.0])
    assert s.n == 4
    assert s.mean == pytest.approx(2.5)
    sd = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # n - 1 in the denominator
    assert s.sd == pytest.approx(sd)
    h = 3.1824 * sd / 2  # t_{0.975, 3} * sd / sqrt(4)
    assert s.ci_low == pytest.approx(2.5 - h) and s.ci_high == pytest.approx(2.5 + h)
    assert s.half_width == pytest.approx(h)


def test_describe_matches_numpy_on_random_data():
    x = np.random.default_rng(1).normal(0.8, 0.05, size=12)
    s = describe(x)
    assert s.mean == pytest.approx(x.mean(), rel=1e-12)
    assert s.sd == pytest.approx(x.std(ddof=1), rel=1e-12)
    h = 2.2010 * x.std(ddof=1) / math.sqrt(12)
    assert (s.ci_low, s.ci_high) == (pytest.approx(x.mean() - h), pytest.approx(x.mean() + h))


def test_describe_drops_nan_none_and_inf():
    s = describe([1.0, None, 2.0, float("nan"), 3.0, float("inf"), np.float32("nan")])
    ref = describe([1.0, 2.0, 3.0])
    assert s == ref
    assert s.n == 3 and s.mean == pytest.approx(2.0) and s.sd == pytest.approx(1.0)


def test_describe_accepts_numpy_scalars_and_ints():
    s = describe(np.array([1, 2, 3], dtype=np.int64))
    assert s.n == 3 and s.mean == 2.0 and isinstance(s.mean, float)


def test_describe_empty():
    for values in ([], [None, float("nan")]):
        s = describe(values)
        assert s.n == 0
        assert all(math.isnan(v) for v in (s.mean, s.sd, s.ci_low, s.ci_high))


def test_describe_single_value():
    s = describe([0.7])
    assert s.n == 1 and s.mean == 0.7
    assert math.isnan(s.sd) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_describe_constant_values_zero_width():
    s = describe([0.5] * 5)
    assert s.sd == 0 and s.ci_low == s.ci_high == 0.5


def test_as_dict_prefix():
    d = describe([1.0, 3.0]).as_dict("acc_")
    assert set(d) == {"acc_n", "acc_mean", "acc_sd", "acc_ci_low", "acc_ci_high"}
    assert d["acc_n"] == 2 and d["acc_mean"] == 2.0


def test_paired_uses_common_seeds_and_b_minus_a():
    a = {0: 0.80, 1: 0.82, 2: 0.81, 5: 0.10}
    b = {0: 0.90, 1: 0.95, 2: 0.88, 7: 0.99}
    s = paired(a, b)
    diffs = [0.10, 0.13, 0.07]
    assert s.n == 3
    assert s.mean == pytest.approx(0.10)
    assert s.sd == pytest.approx(np.std(diffs, ddof=1))
    assert paired(b, a).mean == pytest.approx(-0.10)


def test_paired_is_not_the_unpaired_difference():
    # large between-seed spread, constant per-seed gain: the paired interval is tight
    a = {s: v for s, v in enumerate([0.5, 0.7, 0.9])}
    b = {s: v + 0.01 for s, v in a.items()}
    s = paired(a, b)
    assert s.mean == pytest.approx(0.01) and s.sd == pytest.approx(0.0, abs=1e-12)


def test_paired_skips_missing_and_nonfinite_values():
    a = {0: 1.0, 1: None, 2: 3.0, 3: float("nan")}
    b = {0: 2.0, 1: 5.0, 2: 5.0, 3: 1.0}
    s = paired(a, b)
    assert s.n == 2 and s.mean == pytest.approx(1.5)


def test_paired_without_common_seeds():
    s = paired({0: 1.0}, {1: 2.0})
    assert s.n == 0 and math.isnan(s.mean)


def test_fmt():
    assert fmt(describe([0.9, 0.8])) == "0.850±0.071"
    assert fmt(describe([0.9, 0.8]), digits=1, scale=100) == "85.0±7.1"
    assert fmt(describe([0.25])) == "0.250"
    assert fmt(describe([])) == "—"


def test_fmt_ci():
    s = Summary(n=3, mean=0.0, sd=1.0, ci_low=-0.0123, ci_high=0.5)
    assert fmt_ci(s) == "[-0.012, +0.500]"
    assert fmt_ci(s, digits=1, scale=100) == "[-1.2, +50.0]"
    assert fmt_ci(describe([1.0])) == "—"
    assert fmt_ci(describe([])) == "—"


# -- censored and order statistics (hand-computed cases) ----------------------------------------------------------------
from bncli.stats import (binom_cdf_half, censored_difference, fmt_interval, fmt_median, fmt_num,  # noqa: E402
                         median_interval, order_k, paired_censored, sign_test, time_to_event)


def test_binomial_and_sign_test_exact_values():
    assert binom_cdf_half(0, 5) == 1 / 32 and binom_cdf_half(1, 10) == 11 / 1024
    assert sign_test(5, 0) == pytest.approx(2 / 32)  # 5 of 5 cannot reach 5% two-sided
    assert sign_test(10, 0) == pytest.approx(2 / 1024)
    assert sign_test(9, 1) == pytest.approx(22 / 1024)
    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0


def test_order_statistic_k_for_a_95_percent_interval():
    assert order_k(5) == 0  # no two-sided 95% interval exists with 5 values
    assert order_k(6) == 1 and order_k(10) == 2 and order_k(20) == 6


def test_median_interval_of_exact_values():
    o = median_interval([float(v) for v in range(1, 11)])
    assert (o.est_low, o.est_high, o.ci_low, o.ci_high) == (5.5, 5.5, 2.0, 9.0)
    assert o.coverage == pytest.approx(1 - 2 * 11 / 1024)
    o5 = median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    assert o5.estimate == 3.0 and o5.ci_low == -math.inf and o5.ci_high == math.inf and math.isnan(o5.coverage)


def test_a_censored_pair_gives_a_one_sided_bound():
    assert censored_difference(None, 30, budget=100) == (70, math.inf)  # a > 100, so a - 30 > 70
    assert censored_difference(30, None, budget=100) == (-math.inf, -70)
    assert censored_difference(None, None, budget=100) == (-math.inf, math.inf)  # order unknown
    assert censored_difference(40, 40, budget=100) == (0, 0)  # a tie: neither faster


def test_paired_censored_counts_and_interval():
    none = {s: None for s in range(8)} | {8: 500, 9: 400}
    bn = {s: 100 + 10 * s for s in range(10)}
    o = paired_censored(none, bn, budget=1000)
    assert (o.n_pos, o.n_neg, o.n_unknown) == (10, 0, 0)
    # lower bounds: 900, 890, ..., 830 (censored), 500 - 180 = 320, 400 - 190 = 210; k = 2 -> 2nd smallest = 320
    assert o.ci_low == 320 and o.ci_high == math.inf and o.p_sign == pytest.approx(2 / 1024)
    assert fmt_median(o) == "≥ +855"  # (850 + 860) / 2: the median is only known from below


def test_a_seed_whose_every_run_diverged_counts_as_censored():
    """A diverged run never reaches the target: censored, like running out of budget (here both arms)."""
    o = paired_censored({0: None, 1: 50}, {0: None, 1: 30}, budget=100)
    assert (o.n_pos, o.n_neg, o.n_unknown) == (1, 0, 1)


def test_kaplan_meier_median_under_a_common_budget():
    o = time_to_event([100, 200, None, None, 300, 400, 500, 600, 700, 800])
    assert o.est_low == 550.0 and o.ci_low == 200.0 and o.ci_high == math.inf
    assert time_to_event([None] * 6 + [5.0]).est_low == math.inf  # most never reached it


def test_formatting_never_prints_nan():
    assert fmt_num(math.nan) == "n/a" and fmt_num(math.inf) == "+∞" and fmt_num(680.0) == "+680"
    assert fmt_num(0.0123) == "+0.0123" and fmt_num(None) == "n/a"
    assert fmt_interval(1.0, math.inf) == "[+1, +∞)" and fmt_interval(math.nan, 1.0) == "—"
    assert fmt_interval(0.0, 1.0, coverage=math.nan) == "none (n < 6)"


@pytest.mark.parametrize("value, digits, signed, text", [
    (1033.3, 3, True, "+1,030"),          # plain digits with separators, not '+1.03e+03'
    (-1033.3, 4, True, "-1,033"),
    (1234567.0, 4, False, "1,234,567"),   # integers (counts) in full
    (999.96, 4, True, "+1,000"),          # rounded to the digits first, no '999.960'
    (1.1, 4, True, "+1.1"),               # no trailing zeros
    (0.02357, 4, True, "+0.02357"),
    (0.0001, 3, False, "0.0001"),
    (2.111e-16, 4, True, "+2.1e-16"),     # tiny: short scientific, no '+2.111e-16'
    (2.598e-07, 4, False, "2.6e-7"),      # no zero-padded exponent
    (1.7e308, 4, False, "1.7e308"),       # huge
    (10**400, 3, True, "+∞"),             # an int past the float range
    (0.0, 4, True, "0"), (-0.0, 4, True, "0"),  # zero has no direction
    (-math.inf, 3, True, "-∞"), (math.inf, 3, False, "∞"),
])
def test_fmt_num_reads_as_prose(value, digits, signed, text):
    assert fmt_num(value, digits, signed) == text


def test_fmt_interval_of_one_point_is_that_point():
    assert fmt_interval(2.111e-16, 2.111e-16, 4) == "+2.1e-16"  # not '[+2.1e-16, +2.1e-16]'
    assert fmt_interval(2.111e-16, 2.111e-16, 4, signed=False) == "2.1e-16"
    assert fmt_interval(-math.inf, -800.0, 4) == "(-∞, -800]"
    assert fmt_interval(600.0, 1100.0) == "[+600, +1,100]"
    assert fmt_interval(0.1993, 0.2243, 4, signed=False) == "[0.1993, 0.2243]"


# -- huge and non-finite inputs: a diverged or blown-up run is an outcome, never a crash --------------------------------
def test_describe_of_values_too_large_to_square():
    s = describe([1e200, 3e200])  # (x - mean)**2 overflows a float: used to be an OverflowError
    assert s.n == 2 and s.mean == pytest.approx(2e200) and s.sd == pytest.approx(math.sqrt(2) * 1e200)
    assert s.ci_low == pytest.approx(2e200 - 12.7062 * 1e200) and s.ci_high == pytest.approx(2e200 + 12.7062 * 1e200)


def test_describe_whose_sum_overflows():
    s = describe([1.7e308, 1.7e308, 1.7e308])  # fsum overflows
    assert s.n == 3 and s.mean == pytest.approx(1.7e308, rel=1e-14) and s.sd < 1e-14 * s.mean
    assert s.ci_low == pytest.approx(1.7e308, rel=1e-14) and s.ci_high == pytest.approx(1.7e308, rel=1e-14)
    s = describe([1.7e308, -1.7e308, 1.7e308])  # an sd beyond the float range is +inf
    assert s.mean == pytest.approx(1.7e308 / 3) and s.sd == math.inf
    assert s.ci_low == -math.inf and s.ci_high == math.inf


def test_describe_leaves_out_non_finite_values_and_ints_too_large_for_a_float():
    s = describe([1.0, math.inf, -math.inf, math.nan, None, 10**400, -(10**400), 3.0])
    assert (s.n, s.mean) == (2, 2.0)
    assert describe([math.inf, math.nan]).n == 0


def test_describe_of_ordinary_values_is_unchanged_by_the_overflow_path():
    xs = [0.91, 0.93, 0.925, 0.9175]
    s = describe(xs)
    mean = math.fsum(xs) / 4
    assert s.mean == mean and s.sd == math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / 3)  # bit for bit


def test_paired_with_huge_and_non_finite_differences():
    s = paired({0: 1e308, 1: 1.0, 2: 10**400}, {0: -1e308, 1: 2.0, 2: 1.0})
    assert s.n == 1 and s.mean == 1.0  # -inf (overflowing difference) and the huge int are left out


def test_order_statistics_with_huge_values():
    from bncli.stats import median_interval, time_to_event

    o = median_interval([1.7e308, 1.7e308, 1.6e308, 1.7e308])  # the middle two sum past the float range
    assert o.est_low == o.est_high == pytest.approx(1.7e308)
    o = time_to_event([10**400, 5, None])  # an int too large for a float is +inf (censored-like), not a crash
    assert o.n == 3 and o.est_low == math.inf


def test_sign_test_beyond_the_float_range_of_binomial_coefficients():
    from bncli.stats import binom_cdf_half, order_k, sign_test

    assert binom_cdf_half(550, 1100) == pytest.approx(0.5120, abs=1e-3)  # 2**1100 is past the float range
    assert 0 < binom_cdf_half(500, 1100) < 0.01
    assert sign_test(600, 500) == pytest.approx(0.0029, abs=3e-4)
    assert 500 < order_k(1100) < 550
