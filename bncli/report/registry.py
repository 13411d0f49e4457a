"""The claims of CLAIMS.md in report order, each with the study whose runs it reads and the function that analyses
it; `analyse` runs them and checks each verdict leaving one seed out.

Imports flow one way: ``claim`` (Claim, Context, helpers) <- ``ranges``, ``mechanisms`` (the analyses) <- here."""

from __future__ import annotations

from copy import copy
from pathlib import Path

from . import figspec, images, mechanisms, ranges, why
from .claim import Claim, Context, diverged_notes, study_seeds

# (study, claim id, analysis): the whole list, in report order.
REGISTRY = [
    ("c01_faster_training", "C1", ranges.c01),
    ("c02_lr_range", "C2", ranges.c02),
    ("c03_init_scale", "C3", ranges.c03),
    ("c04_regularization", "C4", mechanisms.c04),
    ("c05_test_time", "C5", mechanisms.c05),
    ("c06_placement", "C6", ranges.c06),
    ("c07_bias", "C7", mechanisms.c07),
    ("c08_gamma_beta", "C8", mechanisms.c08),
    ("c09_covariate_shift", "C9", mechanisms.c09),
    ("c10_depth", "C10", ranges.c10),
    ("c11_batch_size", "C11", ranges.c11),
    ("c12_cost", "C12", mechanisms.c12),
    ("c13_per_channel", "C13", images.c13),
    ("c14_why_bn", "C14", why.c14),
    ("c14_why_bn", "C15", why.c15),
    ("c14_why_bn", "C16", why.c16),
]

# Claims whose statistics are not over seeds: leaving a seed out does not apply.
NO_SEEDS = {"c12_cost": "timings over interleaved repetitions, not seeds"}


def analyse(studies: dict, out_dir: Path, mode: str, fig_dir: Path | None = None, fmt="png",
            stability=True) -> list[Claim]:
    """Every claim whose study is present, its verdict, and (``stability``) the verdict recomputed leaving out each
    seed in turn: a claim whose verdict changes when one seed is left out is marked fragile. The figures are drawn
    into ``fig_dir`` (default ``out_dir/figures``) from their specs, which are written there as ``figures.json``."""
    fig_dir = Path(fig_dir or Path(out_dir) / "figures")
    fig_dir.mkdir(parents=True, exist_ok=True)
    claims, specs = [], []
    for name, cid, fn in REGISTRY:
        if name not in studies:
            continue
        ctx = Context(studies, Path(out_dir), fig_dir, fmt, mode, specs=specs)
        c = fn(ctx).decide()
        assert c.id == cid and c.study == name, (c.id, c.study, cid, name)
        c.notes[:0] = diverged_notes(studies[name].rows)
        if stability:
            c.stability = leave_one_seed_out(fn, studies, name, out_dir, fig_dir, fmt, mode, c.verdict)
        claims.append(c)
    figspec.write(fig_dir / figspec.FILE, specs)
    return claims


def leave_one_seed_out(fn, studies, name, out_dir, fig_dir, fmt, mode, verdict) -> dict:
    """The claim's verdict recomputed without each seed in turn (no figures drawn)."""
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
