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
