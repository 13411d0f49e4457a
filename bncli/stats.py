"""Statistics over seeds: mean, sample standard deviation and a Student-t 95% confidence interval of the mean.

Paired comparisons (same seeds in both arms) use the t-interval of the per-seed differences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (standard tables).
_T975 = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281, 2.2010, 2.1788, 2.1604,
         2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860, 2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555,
         2.0518, 2.0484, 2.0452, 2.0423]


def t975(df: int) -> float:
    """t_{0.975} quantile; beyond the table, the Cornish-Fisher expansion around z = 1.959964 (error < 1e-4)."""
    if df < 1:
        return math.nan
    if df <= 30:
        return _T975[df - 1]
    z = 1.959963985
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass
class Summary:
    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self):
        return (self.ci_high - self.ci_low) / 2

    def as_dict(self, prefix=""):
        return {f"{prefix}n": self.n, f"{prefix}mean": self.mean, f"{prefix}sd": self.sd,
                f"{prefix}ci_low": self.ci_low, f"{prefix}ci_high": self.ci_high}


def as_float(v) -> float:
    """``float(v)``, with a number too large for a float (a huge int) as +-inf instead of an OverflowError."""
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def describe(values) -> Summary:
    """Mean, sample sd (n-1) and the 95% t-interval of the mean over the finite values (NaN where undefined).
    Values too large to square (a run whose loss grew to 1e200 without becoming non-finite) are summarized exactly
    as far as floats allow: a mean or sd beyond the float range is +-inf, never an OverflowError."""
    xs = [x for x in (as_float(v) for v in values if v is not None) if math.isfinite(x)]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    try:
        mean = math.fsum(xs) / n
        if n == 1:
            return Summary(1, mean, math.nan, math.nan, math.nan)
        sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    except OverflowError:  # only for values near the float range: the same sums on values scaled by a power of 2
        mean, sd = _scaled_mean_sd(xs)
        if n == 1:
            return Summary(1, mean, math.nan, math.nan, math.nan)
    h = t975(n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - h, mean + h)


def _scaled_mean_sd(xs: list[float]) -> tuple[float, float]:
    """Mean and sample sd of finite ``xs`` computed on xs / 2**e (exact) with |xs / 2**e| < 1, scaled back; a result
    beyond the float range is +-inf."""
    e = math.frexp(max(abs(x) for x in xs))[1]
    ys = [math.ldexp(x, -e) for x in xs]
    n = len(ys)
    m = math.fsum(ys) / n
    sd = math.sqrt(math.fsum((y - m) ** 2 for y in ys) / (n - 1)) if n > 1 else math.nan
    up = 2.0 ** (e - 1)  # e <= 1024: two factors, each representable; a product past the range is inf
    return m * up * 2.0, sd * up * 2.0


def _diff(x, y) -> float:
    """y - x; for a huge int against a float (an OverflowError in Python), the difference of their float values."""
    try:
        return y - x
    except OverflowError:
        return as_float(y) - as_float(x)


def paired(a: dict, b: dict) -> Summary:
    """Differences b[seed] - a[seed] over the seeds present (and finite) in both."""
    common = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    return describe([_diff(a[s], b[s]) for s in common])


def fmt(s: Summary, digits=3, scale=1.0) -> str:
    """'mean ± sd' for tables."""
    if s.n == 0:
        return "—"
    if s.n == 1 or math.isnan(s.sd):
        return f"{s.mean * scale:.{digits}f}"
    return f"{s.mean * scale:.{digits}f}±{s.sd * scale:.{digits}f}"


def fmt_ci(s: Summary, digits=3, scale=1.0) -> str:
    if s.n < 2:
        return "—"
    return f"[{s.ci_low * scale:+.{digits}f}, {s.ci_high * scale:+.{digits}f}]"


# -- censored and paired order statistics -------------------------------------------------------------------------
# "Steps to a target" is time-to-event data: a run that never reached the target within its budget (or diverged,
# after which it never will) is right-censored, and only bounds are known for it. Every run of a comparison has the
# same budget (type-I censoring), so the Kaplan-Meier estimate is the empirical distribution up to the budget, and
# order-statistic (sign-test) intervals stay exact and distribution-free when censored values enter as bounds.


def binom_cdf_half(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2), exactly (math.comb)."""
    if k < 0:
        return 0.0
    if n > 1000:  # 2**n and the binomial coefficients are past the float range: exact integers, one rounding
        return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n
    return math.fsum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2**n


def sign_test(n_pos: int, n_neg: int) -> float:
    """Exact two-sided sign test of 'positive and negative equally likely' (ties and unknown orders left out)."""
    n = n_pos + n_neg
    if n == 0:
        return 1.0
    return min(1.0, 2 * binom_cdf_half(min(n_pos, n_neg), n))


@dataclass
class OrderInterval:
    """A median with a distribution-free interval from order statistics of values known within [lower, upper]."""

    n: int
    est_low: float  # the sample median lies in [est_low, est_high] (equal when the middle values are exact)
    est_high: float
    ci_low: float  # may be -inf / +inf: the data bound the median on one side only
    ci_high: float
    coverage: float  # the exact coverage of [x_(k), x_(n-k+1)], >= the nominal level (nan when n is too small)
    n_pos: int = 0  # values known to be > 0, < 0, and = 0 or of unknown sign (the sign test's counts)
    n_neg: int = 0
    n_unknown: int = 0
    p_sign: float = 1.0

    @property
    def estimate(self) -> float:
        return self.est_low if self.est_low == self.est_high else math.nan


def _median(sorted_xs):
    n = len(sorted_xs)
    if n % 2:
        return sorted_xs[n // 2]
    a, b = sorted_xs[n // 2 - 1], sorted_xs[n // 2]
    if math.isinf(a) and a == b:
        return a
    if math.isinf(a) or math.isinf(b):
        return a if math.isinf(a) else b
    mid = (a + b) / 2
    return a / 2 + b / 2 if math.isinf(mid) else mid  # two values near the float range: their sum overflows


def order_k(n: int, level: float = 0.95) -> int:
    """The largest k >= 1 with P(Bin(n, 1/2) <= k - 1) <= (1 - level) / 2, or 0 if none (n too small)."""
    k = 0
    while k + 1 <= n and binom_cdf_half(k, n) <= (1 - level) / 2:
        k += 1
    return k


def median_interval(lower, upper=None, level: float = 0.95) -> OrderInterval:
    """Distribution-free interval for the median of n values, each known to lie in [lower_i, upper_i] (equal for an
    exact value; -inf / +inf for a censored side). By inverting the sign test: [k-th smallest lower bound, k-th
    largest upper bound] covers the median with probability >= 1 - 2 P(Bin(n, 1/2) <= k - 1) >= ``level``.
    With n = 5 no k reaches 95% (the best is 93.75%): the interval is then unbounded and says so."""
    lower = [as_float(v) for v in lower]
    upper = lower if upper is None else [as_float(v) for v in upper]
    n = len(lower)
    lo_s, hi_s = sorted(lower), sorted(upper)
    n_pos = sum(lo > 0 for lo in lower)
    n_neg = sum(hi < 0 for hi in upper)
    unknown = n - n_pos - n_neg
    if n == 0:
        return OrderInterval(0, math.nan, math.nan, math.nan, math.nan, math.nan)
    k = order_k(n, level)
    if k:
        ci = (lo_s[k - 1], hi_s[n - k])
        coverage = 1 - 2 * binom_cdf_half(k - 1, n)
    else:
        ci, coverage = (-math.inf, math.inf), math.nan
    return OrderInterval(n, _median(lo_s), _median(hi_s), *ci, coverage, n_pos, n_neg, unknown,
                         sign_test(n_pos, n_neg))


def censored_difference(a, b, budget):
    """Bounds of a - b for two times to an event where None means 'not within ``budget``' (> budget)."""
    if a is not None and b is not None:
        return (a - b, a - b)
    if a is None and b is not None:
        return (budget - b, math.inf)
    if a is not None and b is None:
        return (-math.inf, a - budget)
    return (-math.inf, math.inf)


def paired_censored(a: dict, b: dict, budget, level: float = 0.95) -> OrderInterval:
    """Median of the paired differences a[seed] - b[seed] of times to an event (None = censored at ``budget``),
    over every seed present in both; censored pairs enter as bounds, a pair censored on both sides as unknown."""
    seeds = [s for s in a if s in b]
    bounds = [censored_difference(a[s], b[s], budget) for s in seeds]
    return median_interval([lo for lo, _ in bounds], [hi for _, hi in bounds], level)


def time_to_event(times, level: float = 0.95) -> OrderInterval:
    """Kaplan-Meier median time of runs censored at a common budget (None = not reached): the empirical median with
    censored runs as +inf, and its order-statistic interval."""
    vals = [math.inf if t is None else as_float(t) for t in times]
    return median_interval(vals, vals, level)


# Plain digits read best for every size a report prints (steps, accuracies, losses); scientific notation is kept
# for magnitudes where counting zeros is the hard part (rounding-level errors, blown-up losses).
SCI_BELOW, SCI_FROM = 1e-4, 1e9
SCI_DIGITS = 2  # such values are checks against a tolerance or signs of divergence: two digits say enough


def fmt_num(v: float, digits=3, signed=True) -> str:
    """A number for prose and tables, to ``digits`` significant digits (integers in full, trailing zeros dropped),
    with thousands separators ('1,030'); scientific notation only for tiny or huge magnitudes, short ('2.1e-16').
    ``signed`` puts '+' on positive numbers: for differences, whose sign is their direction. Never 'nan'; infinity
    as a symbol."""
    if v is None:
        return "n/a"
    v = as_float(v)
    if math.isnan(v):
        return "n/a"
    plus = "+" if signed and v > 0 else ""
    if math.isinf(v):
        return f"{plus}∞" if v > 0 else "-∞"  # the same minus as the numbers beside it: '(-∞, -800]'
    if v == 0:
        return "0"  # no direction, so no sign
    if not SCI_BELOW <= abs(v) < SCI_FROM:
        return plus + _sci(v, min(digits, SCI_DIGITS))
    if v.is_integer():
        return plus + f"{int(v):,d}"
    return plus + _fixed(v, digits)


def _fixed(v: float, digits: int) -> str:
    r = float(f"{v:.{digits}g}")  # round to the significant digits first: 999.96 -> 1000, not 999.960
    decimals = max(digits - 1 - math.floor(math.log10(abs(r))), 0)
    text = f"{r:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _sci(v: float, digits: int) -> str:
    mantissa, exponent = f"{v:.{max(digits, 1) - 1}e}".split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"  # 'e-16', not 'e-016' or 'e+09'


def fmt_interval(lo: float, hi: float, digits=3, coverage=None, signed=True) -> str:
    """'[a, b]', with an open side for an unbounded end; the single value when the interval is a point (an exact
    check, or every seed agreeing); 'none (n < 6)' when no order-statistic interval exists. ``signed`` as for
    `fmt_num`."""
    if coverage is not None and math.isnan(coverage):
        return "none (n < 6)"
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return "—"
    if lo == hi:
        return fmt_num(lo, digits, signed)
    left = "(" if math.isinf(lo) else "["
    right = ")" if math.isinf(hi) else "]"
    return f"{left}{fmt_num(lo, digits, signed)}, {fmt_num(hi, digits, signed)}{right}"


def fmt_median(o: OrderInterval, digits=3) -> str:
    """'+440' or '>= +440' (when censored values leave the median known on one side only)."""
    if o.n == 0:
        return "—"
    if o.est_low == o.est_high:
        return fmt_num(o.est_low, digits)
    if math.isinf(o.est_high) and not math.isinf(o.est_low):
        return f"≥ {fmt_num(o.est_low, digits)}"
    if math.isinf(o.est_low) and not math.isinf(o.est_high):
        return f"≤ {fmt_num(o.est_high, digits)}"
    if math.isinf(o.est_low) and math.isinf(o.est_high):
        return "unknown"
    return f"{fmt_num(o.est_low, digits)}…{fmt_num(o.est_high, digits)}"
