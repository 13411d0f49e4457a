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


def describe(values) -> Summary:
    """Mean, sample sd (n-1) and the 95% t-interval of the mean over the finite values (NaN where undefined)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    h = t975(n - 1) * sd / math.sqrt(n)
    return Summary(n, mean, sd, mean - h, mean + h)


def paired(a: dict, b: dict) -> Summary:
    """Differences b[seed] - a[seed] over the seeds present (and finite) in both."""
    common = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    return describe([b[s] - a[s] for s in common])


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
