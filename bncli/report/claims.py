"""The claims of CLAIMS.md: statement, source notes, protocol, and the analysis that turns runs into effects,
figures and a verdict. The analyses themselves live in ``ranges.py`` (speed and hyperparameter ranges) and
``mechanisms.py`` (regularization, test-time statistics, bias, gamma/beta, covariate shift, cost)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from .verdict import Effect, combine


@dataclass
class Claim:
    id: str
    title: str
    statement: str
    sources: str
    protocol: str
    study: str
    effects: list[Effect] = field(default_factory=list)
    primary: list[int] = field(default_factory=list)  # indices of the effects the verdict rests on
    rule: str = ""
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = "inconclusive"

    def decide(self):
        self.verdict = combine([self.effects[i] for i in self.primary])
        return self


NOTES = {"000": "000 (Ng-style notes with NumPy code)", "001": "001 (notebook)", "002": "002 (summary)",
         "003": "003 (review with TF/Theano)", "004": "004 (Obsidian note)"}


def analyse(studies: dict, out_dir: Path, mode: str, fig_dir: Path | None = None, fmt="png") -> list[Claim]:
    from . import mechanisms, ranges

    fig_dir = Path(fig_dir or Path(out_dir) / "figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    ctx = Context(studies, Path(out_dir), fig_dir, fmt, mode)
    claims = []
    for fn in (ranges.c01, ranges.c02, ranges.c03, mechanisms.c04, mechanisms.c05, ranges.c06, mechanisms.c07,
               mechanisms.c08, mechanisms.c09, ranges.c10, ranges.c11, mechanisms.c12):
        name = fn.__doc__.split(":", 1)[0].strip()  # the study the analysis needs
        if name in studies:
            claims.append(fn(ctx).decide())
    return claims


@dataclass
class Context:
    studies: dict
    out_dir: Path
    fig_dir: Path
    fmt: str
    mode: str

    def fig(self, name: str) -> Path:
        return self.fig_dir / f"{name}.{self.fmt}"


# -- small helpers over run rows ------------------------------------------------------------------------------------
def select(rows, **where):
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def by_seed(rows, key):
    return {r["seed"]: r.get(key) for r in rows if r.get("status") in ("ok", "diverged")}


def steps_censored(r):
    """Steps to the target; a run that never reached it counts as its whole budget (favours the slower arm)."""
    if r.get("status") not in ("ok", "diverged"):
        return None
    s = r.get("steps_to_target")
    return float(s) if s is not None else float(r.get("total_steps", math.nan))


def diff_by_seed(a: dict, b: dict) -> dict:
    """{seed: b - a} over the seeds present in both with finite values."""
    return {s: b[s] - a[s] for s in a if s in b and a[s] is not None and b[s] is not None
            and math.isfinite(a[s]) and math.isfinite(b[s])}


def paired_diffs(a: dict, b: dict) -> list:
    """b - a over the seeds present in both (finite values)."""
    return list(diff_by_seed(a, b).values())


def mean(xs):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return sum(xs) / len(xs) if xs else math.nan
