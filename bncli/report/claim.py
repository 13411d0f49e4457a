"""What every claim analysis shares: the `Claim` it returns, the `Context` it is given, and small helpers over
run rows. Imported by the analyses (``ranges.py``, ``mechanisms.py``); it imports none of them (the list of claims
is ``registry.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import figspec
from .verdict import INCONCLUSIVE, SUPPORTED, Effect, combine


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
    # A manipulation check: effects that must be supported for the primaries to mean anything (CLAIMS.md, verdict
    # rule); otherwise the claim is inconclusive.
    requires: list[int] = field(default_factory=list)
    rule: str = ""
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verdict: str = "inconclusive"
    stability: dict = field(default_factory=dict)

    def decide(self):
        self.verdict = combine([self.effects[i] for i in self.primary])
        if any(self.effects[i].verdict != SUPPORTED for i in self.requires):
            self.verdict = INCONCLUSIVE
        return self


NOTES = {"000": "000 (Ng-style notes with NumPy code)", "001": "001 (notebook)", "002": "002 (summary)",
         "003": "003 (review with TF/Theano)", "004": "004 (Obsidian note)"}


@dataclass
class Context:
    studies: dict
    out_dir: Path
    fig_dir: Path
    fmt: str
    mode: str
    draw: bool = True  # False while recomputing verdicts for the stability check
    exclude_seed: int | None = None
    specs: list = field(default_factory=list)  # the figure specs drawn so far (``figspec``), in drawing order

    def figure(self, claim: Claim, name: str, drawer, **args):
        """Figure ``name`` of ``claim``: recorded as a spec (``drawer``, one of ``figspec.DRAWERS``, and its
        arguments but the path) and drawn from that spec into ``fig_dir``, exactly as `bncli plot` redraws it."""
        if not self.draw:
            return
        spec = figspec.make(name, drawer, args, claim=claim.id)
        path = figspec.draw(spec, self.fig_dir, self.fmt)
        self.specs.append(spec)
        claim.figures.append(str(path))


def study_seeds(study) -> list:
    return sorted({r["seed"] for r in study.rows}) if study.rows else list(study.cfg.train.seeds)


def diverged_notes(rows) -> list[str]:
    """'k of n runs diverged', broken down by arm and swept values, for the text of a claim (empty if none)."""
    finished = [r for r in rows if r.get("status") in ("ok", "diverged")]
    bad = [r for r in finished if r.get("diverged")]
    if not bad:
        return []
    from ..plotting import ARM_LABELS, short_key
    from ..training import DIVERGED_RULE

    point_keys = [k for k in bad[0] if "." in k]  # the swept keys (dotted); summary keys have no dot
    groups: dict[tuple, list] = {}
    for r in finished:
        groups.setdefault((r["arm"], *(str(r.get(k)) for k in point_keys)), []).append(r)
    parts = []
    for key, rs in groups.items():
        k = sum(bool(r.get("diverged")) for r in rs)
        if k:
            where = ", ".join(f"{short_key(pk)} {v}" for pk, v in zip(point_keys, key[1:]))
            parts.append(f"{ARM_LABELS.get(key[0], key[0])}{', ' + where if where else ''}: {k}/{len(rs)}")
    return [f"Diverged: {len(bad)} of {len(finished)} runs in this study diverged ({DIVERGED_RULE}); they are "
            f"counted, never averaged: " + "; ".join(parts) + "."]


# -- small helpers over run rows ------------------------------------------------------------------------------------
def select(rows, **where):
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def by_seed(rows, key):
    """{seed: value} over the runs that finished without diverging (diverged runs are counted, not averaged)."""
    return {r["seed"]: r.get(key) for r in rows if r.get("status") == "ok"}


def events(rows) -> dict:
    """{seed: steps to the target, or None if censored (never reached within the budget, or diverged first)}."""
    return {r["seed"]: r.get("steps_to_target") for r in rows if r.get("status") in ("ok", "diverged")}


def n_diverged(rows) -> int:
    return sum(bool(r.get("diverged")) for r in rows if r.get("status") in ("ok", "diverged"))


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
