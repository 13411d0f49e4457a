"""The pre-registered verdict rule of CLAIMS.md, and the intervals it is applied to.

Supported if the 95% interval of the effect excludes "no effect" in the claimed direction, contradicted if it
excludes it in the opposite direction, inconclusive otherwise. For claims of *no* difference (C7) the effect must
lie inside a margin fixed in advance (an equivalence test): supported if the whole interval is inside, contradicted
if it lies wholly outside, inconclusive otherwise. Verdicts are computed here and nowhere else.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from .. import stats

SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"
# How the analyses name a difference in an effect's label ('BN - no BN', 'log(time BN / time no BN)').
DIFFERENCE_MARKS = (" - ", " minus ", "log(", "log10(")


@dataclass
class Effect:
    """One measured quantity with its interval: the rows of a claim's table."""

    label: str
    n: int
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    unit: str = ""
    method: str = "paired t-interval over seeds"
    direction: int = 0  # +1 / -1: the sign the claim predicts; 0: reported, not judged
    margin: float | None = None  # equivalence margin (claims of no difference)
    verdict: str | None = None
    extra: dict = field(default_factory=dict)

    def estimate_text(self) -> str:
        """The point estimate for prose and tables: never 'nan'."""
        if "estimate_text" in self.extra:
            return self.extra["estimate_text"]
        unit = f" {self.unit}" if self.unit else ""
        return f"{stats.fmt_num(self.mean, 4, self._signed())}{unit}" if math.isfinite(self.mean) else "—"

    def interval_text(self) -> str:
        if "interval_text" in self.extra:
            return _point(self.extra["interval_text"])
        return stats.fmt_interval(self.ci_low, self.ci_high, 4, signed=self._signed())

    def _joint(self) -> tuple[str, str] | None:
        """Estimate and interval at one precision, for prose, or None when they are given as text or do not fit
        fixed notation."""
        if "estimate_text" in self.extra or "interval_text" in self.extra or self._decimals() is None:
            return None
        if not self.interval_text().startswith("["):
            return None
        unit = f" {self.unit}" if self.unit else ""
        return f"{self._num(self.mean)}{unit}", f"[{self._num(self.ci_low)}, {self._num(self.ci_high)}]"

    def _decimals(self) -> int | None:
        """The decimals shared by the estimate and its interval: 4 significant digits of the largest of the three,
        so that '+1 [+0.8876, +1.112]' reads '+1.000 [+0.888, +1.112]'. None when one of them is not finite or
        needs scientific notation (stats.fmt_num then formats each on its own)."""
        values = (self.mean, self.ci_low, self.ci_high)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return None
        top = max(abs(v) for v in values)
        if any(v != 0 and not stats.SCI_BELOW <= abs(v) < stats.SCI_FROM for v in values) or top == 0:
            return None
        return max(4 - 1 - math.floor(math.log10(top)), 0)

    def _num(self, v: float) -> str:
        d = self._decimals()
        if d is None:
            return stats.fmt_num(v, 4, self._signed())
        text = f"{v:,.{d}f}"
        if float(text.replace(",", "")) == 0:
            return f"{0:.{d}f}"  # no sign on a zero, not even '-0.000'
        return ("+" if self._signed() and v > 0 else "") + text

    def text(self) -> str:
        """Estimate and interval for prose: the interval left out when it is only the estimate again (an exact
        check, or every seed agreeing), said to be missing when there is none."""
        est, ci = self.estimate_text(), self.interval_text()
        if self.ci_low == self.ci_high:
            return est
        est, ci = self._joint() or (est, ci)
        if ci == "—":
            return f"{est} (no interval)"
        if ci.startswith(("none (", "no interval (")):  # 'none (n < 6)' as stats.fmt_interval writes it
            return f"{est} (no interval: {ci.partition('(')[2].rstrip(')')})"
        return f"{est} {ci}"

    def _signed(self) -> bool:
        """Whether a '+' belongs on the numbers: on a difference it gives the direction; a deterministic check's
        value (a relative error, a fraction) or one arm's own level has none to give."""
        if self.n == 1 and self.ci_low == self.mean == self.ci_high:
            return False
        if self.direction or self.margin is not None or "paired" in self.method or "sign test" in self.method:
            return True
        return any(mark in self.label for mark in DIFFERENCE_MARKS)

    def judge(self) -> "Effect":
        if self.margin is not None:
            self.verdict = equivalence(self.ci_low, self.ci_high, self.margin)
        elif self.direction:
            self.verdict = directional(self.ci_low, self.ci_high, self.direction)
        return self


def _point(interval: str) -> str:
    """'[> 2000, > 2000]' -> '> 2000': an interval given as text (Kaplan-Meier, sign test) that is one value, shown
    as that value, like `stats.fmt_interval` shows one."""
    m = re.fullmatch(r"[\[(]((?:[^,]|,(?! ))+), \1[\])]", interval)  # ', ' parts the ends; '1,000' has no space
    return m[1] if m else interval


def directional(lo, hi, direction) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    lo, hi = sorted((direction * lo, direction * hi))
    if lo > 0:
        return SUPPORTED
    if hi < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def equivalence(lo, hi, margin) -> str:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    if -margin < lo and hi < margin:
        return SUPPORTED
    if lo > margin or hi < -margin:
        return CONTRADICTED
    return INCONCLUSIVE


def paired_effect(label, diffs, direction=0, unit="", margin=None, method="paired t-interval over seeds") -> Effect:
    s = stats.describe(diffs)
    return Effect(label, s.n, s.mean, s.sd, s.ci_low, s.ci_high, unit, method=method, direction=direction,
                  margin=margin).judge()


def censored_effect(label, o: "stats.OrderInterval", direction=0, unit="", what=("a", "b")) -> Effect:
    """A median paired difference with a sign-test interval (``stats.paired_censored``); ``what`` names the two
    arms of a - b for the counts of which was faster / larger."""
    a, b = what
    method = ("median paired difference, censored runs as bounds; sign-test interval"
              + (f" (coverage {o.coverage:.1%})" if math.isfinite(o.coverage) else " (none exists below 6 seeds)")
              + f"; {a} lower in {o.n_neg}, {b} lower in {o.n_pos}, order unknown or tied in {o.n_unknown}; "
              f"exact sign test p = {o.p_sign:.3g}")
    e = Effect(label, o.n, o.estimate, math.nan, o.ci_low, o.ci_high, unit, method=method, direction=direction,
               extra={"estimate_text": stats.fmt_median(o, 4) + (f" {unit}" if unit else ""),
                      "interval_text": stats.fmt_interval(o.ci_low, o.ci_high, 4, o.coverage),
                      "median_bounds": [o.est_low, o.est_high], "coverage": o.coverage,
                      "sign": {"a_larger": o.n_pos, "b_larger": o.n_neg, "unknown": o.n_unknown, "p": o.p_sign}})
    return e.judge()


def sign_check(label, diffs_lower, diffs_upper=None, unit="") -> Effect:
    """The sign test as a check beside a t-interval: counts of positive / negative per-seed differences (bounds
    allowed) and the exact two-sided p; reported, not judged."""
    o = stats.median_interval(diffs_lower, diffs_upper)
    return Effect(label, o.n, o.estimate, math.nan, o.ci_low, o.ci_high, unit,
                  method=f"sign test: {o.n_pos} seeds > 0, {o.n_neg} < 0, {o.n_unknown} tied or unknown; exact "
                         f"two-sided p = {o.p_sign:.3g}; median with sign-test interval",
                  extra={"estimate_text": stats.fmt_median(o, 4) + (f" {unit}" if unit else ""),
                         "interval_text": stats.fmt_interval(o.ci_low, o.ci_high, 4, o.coverage),
                         "sign": {"pos": o.n_pos, "neg": o.n_neg, "unknown": o.n_unknown, "p": o.p_sign}})


def bootstrap_effect(label, seeds, statistic, direction=0, unit="", n_boot=1000, seed=0) -> Effect:
    """Percentile bootstrap over seeds (resampled with replacement, the same resample for every arm, so the pairing
    is kept): ``statistic(list_of_seeds) -> float``. Deterministic: its Generator has a fixed seed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    point = statistic(list(seeds))
    seeds = list(seeds)
    draws = [statistic([seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]) for _ in range(n_boot)]
    draws = np.array([d for d in draws if math.isfinite(d)])
    lo, hi = (np.percentile(draws, [2.5, 97.5]) if len(draws) else (math.nan, math.nan))
    sd = float(draws.std(ddof=1)) if len(draws) > 1 else math.nan
    return Effect(label, len(seeds), point, sd, float(lo), float(hi), unit,
                  method=f"percentile bootstrap over seeds ({n_boot} resamples)", direction=direction).judge()


def check_effect(label, value, passed: bool, unit="", detail="") -> Effect:
    """A deterministic check (no sampling): supported if it passes, contradicted if it fails."""
    return Effect(label, 1, value, math.nan, value, value, unit, method=detail or "deterministic check",
                  verdict=SUPPORTED if passed else CONTRADICTED)


def combine(primary: list[Effect]) -> str:
    """The claim's verdict from its primary effects: all supported -> supported; any contradicted ->
    contradicted; otherwise inconclusive."""
    verdicts = [e.verdict for e in primary]
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == CONTRADICTED for v in verdicts):
        return CONTRADICTED
    return INCONCLUSIVE
