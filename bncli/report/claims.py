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
    stability: dict = field(default_factory=dict)

    def decide(self):
        self.verdict = combine([self.effects[i] for i in self.primary])
        return self


NOTES = {"000": "000 (Ng-style notes with NumPy code)", "001": "001 (notebook)", "002": "002 (summary)",
         "003": "003 (review with TF/Theano)", "004": "004 (Obsidian note)"}


def _registry():
    from . import mechanisms, ranges

    return [("c01_faster_training", ranges.c01), ("c02_lr_range", ranges.c02), ("c03_init_scale", ranges.c03),
            ("c04_regularization", mechanisms.c04), ("c05_test_time", mechanisms.c05),
            ("c06_placement", ranges.c06), ("c07_bias", mechanisms.c07), ("c08_gamma_beta", mechanisms.c08),
            ("c09_covariate_shift", mechanisms.c09), ("c10_depth", ranges.c10), ("c11_batch_size", ranges.c11),
            ("c12_cost", mechanisms.c12)]


def analyse(studies: dict, out_dir: Path, mode: str, fig_dir: Path | None = None, fmt="png",
            stability=True) -> list[Claim]:
    """Every claim whose study is present, its verdict, and (``stability``) the verdict recomputed leaving out each
    seed in turn: a claim whose verdict changes when one seed is left out is marked fragile."""
    fig_dir = Path(fig_dir or Path(out_dir) / "figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    claims = []
    for name, fn in _registry():
        if name not in studies:
            continue
        ctx = Context(studies, Path(out_dir), fig_dir, fmt, mode)
        c = fn(ctx).decide()
        c.notes[:0] = diverged_notes(studies[name].rows)
        if stability:
            c.stability = leave_one_seed_out(fn, studies, name, out_dir, fig_dir, fmt, mode, c.verdict)
        claims.append(c)
    return claims


def study_seeds(study) -> list:
    return sorted({r["seed"] for r in study.rows}) if study.rows else list(study.cfg.train.seeds)


def leave_one_seed_out(fn, studies, name, out_dir, fig_dir, fmt, mode, verdict) -> dict:
    """The claim's verdict recomputed without each seed in turn (no figures drawn)."""
    from copy import copy

    if name in NO_SEEDS:
        return {"applicable": False, "why": NO_SEEDS[name]}
    out = {}
    for seed in study_seeds(studies[name]):
        trimmed = dict(studies)
        s = copy(studies[name])
        s.rows = [r for r in s.rows if r["seed"] != seed]
        trimmed[name] = s
        ctx = Context(trimmed, Path(out_dir), fig_dir, fmt, mode, draw=False, exclude_seed=seed)
        out[seed] = fn(ctx).decide().verdict
    changed = {sd: v for sd, v in out.items() if v != verdict}
    return {"applicable": True, "verdicts": out, "fragile": bool(changed), "changed": changed}


# Claims whose statistics are not over seeds: leaving a seed out does not apply.
NO_SEEDS = {"c12_cost": "timings over interleaved repetitions, not seeds"}


def diverged_notes(rows) -> list[str]:
    """'k of n runs diverged', broken down by arm and swept values, for the text of a claim (empty if none)."""
    finished = [r for r in rows if r.get("status") in ("ok", "diverged")]
    bad = [r for r in finished if r.get("diverged")]
    if not bad:
        return []
    from ..plotting import ARM_LABELS, short_key
    from ..train import DIVERGED_RULE

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


@dataclass
class Context:
    studies: dict
    out_dir: Path
    fig_dir: Path
    fmt: str
    mode: str
    draw: bool = True  # False while recomputing verdicts for the stability check
    exclude_seed: int | None = None

    def fig(self, name: str) -> Path:
        return self.fig_dir / f"{name}.{self.fmt}"


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
