"""REPORT.md, a self-contained report.html (figures embedded) and report.json, from the analysed claims."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic, stats
from ..errors import UsageError
from ..runs import dumps, platform_info, versions
from .html import Section, fallback_alt, figure_alts, md_alt, to_html

SEEDS_NOTE = ("Seeds: the rules of C1, C2, C3, C4 and C6 were revised on 2026-12-01 after their data (seeds 0-4) had "
              "been seen (CLAIMS.md, 'Revisions'); every study of this report runs on seeds 100-109, which were not "
              "used while revising them.")

# Verdicts are written as their plain words everywhere (emoji render as empty boxes where no emoji font is
# installed); report.html shows them as coloured badges.

ERRATA = [
    ("000", "Backward pass `dZ = dZnorm / sqrt(var + eps)`",
     "ignores the paths through the batch mean and variance. bncli uses the exact gradient (Ioffe & Szegedy Alg. 1): "
     "dx = (1/(Nσ)) (N g − Σg − x̂ Σ(g x̂)), g = dy·γ. Against central differences the note's formula has a "
     "relative error of {naive_err:.2f}; bncli's {exact_err_text}."),
    ("000", "Forward pass `Znorm = (Z - mu) / (sigmasqr + epsilon)`",
     "forgets the square root: the output's variance is then {nosqrt_var:.3g} instead of 1 (for inputs 5·randn + 12)."),
    ("000", "`mu = np.sum(Z) / m`, `sigmasqr = np.sum((Z - mu)**2) / m`",
     "sum over every axis, i.e. one mean for the whole layer; BN's statistics are per feature (axis=1 in the note's "
     "layout)."),
    ("003", "Test-time formula `(x - μ) / log(σ² + ε)`",
     "must be `/ sqrt(σ² + ε)`. On the C12 network the note's formula gives {note003_acc:.1%} test accuracy "
     "instead of {correct_acc:.1%}."),
    ("004", "\"σ² is the batch std\"", "σ² is the batch variance; σ is the standard deviation."),
    ("004", "\"ε, γ and β are hyperparameters to be tuned\"",
     "γ and β are learned parameters (updated by the optimizer like weights); ε is a fixed numerical constant."),
]


def errata_numbers(studies) -> dict:
    """The numbers quoted in the errata, computed now (small, float64)."""
    import numpy as np

    from ..core import bn_backward, bn_train_forward

    rng = np.random.default_rng(0)
    x = 5 * rng.standard_normal((4, 5)) + 12
    gamma, beta, dy = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((4, 5))
    y, cache, _, var = bn_train_forward(x.copy(), gamma, beta, 1e-5)
    dx, _, _ = bn_backward(dy, cache)
    num = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        for sgn in (1, -1):
            xp = x.copy()
            xp[idx] += sgn * 1e-6
            num[idx] += sgn * (bn_train_forward(xp, gamma, beta, 1e-5)[0] * dy).sum() / 2e-6
    rel = lambda a, b: float(np.abs(a - b).max() / max(np.abs(a).max() + np.abs(b).max(), 1e-300))  # noqa: E731
    naive = dy * gamma / np.sqrt(var + 1e-5)
    xs = 5 * rng.standard_normal((1000, 5)) + 12
    nosqrt = (xs - xs.mean(0)) / (xs.var(0) + 1e-5)
    out = {"naive_err": rel(naive, num), "exact_err": rel(dx, num), "nosqrt_var": float(nosqrt.var(0).mean())}
    m = getattr(studies.get("c12_cost"), "measure", None) or {}
    out["note003_acc"] = m.get("note003_log_acc", math.nan)
    out["correct_acc"] = m.get("correct_acc", math.nan)
    return out


def errata_text(text: str, err: dict) -> str:
    """An erratum with its numbers; a sentence quoting a number that was not measured (its study not in this
    report, e.g. `--only c07`) is left out rather than printed with 'nan'."""
    values = {**err, "exact_err_text": stats.fmt_num(err.get("exact_err"), 2, signed=False)}
    keep = [sentence for sentence in text.split(". ")
            if all(math.isfinite(values.get(k, math.nan)) for k in re.findall(r"\{(\w+)[:}]", sentence)
                   if k != "exact_err_text")]
    out = ". ".join(keep)
    return (out if out.endswith(".") or not text.endswith(".") else out + ".").format(**values)


def _effect_row(e) -> list[str]:
    sd = stats.fmt_num(e.sd, 3, signed=False) if math.isfinite(e.sd) else "—"
    return [e.label, str(e.n), e.estimate_text(), sd, e.interval_text(), e.verdict or "(reported)", e.method]


def primary_text(c) -> str:
    return "; ".join(f"{c.effects[i].label}: {c.effects[i].text()}" for i in c.primary)


def stability_text(c) -> str:
    st = c.stability or {}
    if not st:
        return "not checked"
    if not st.get("applicable"):
        return f"n/a ({st.get('why', '')})"
    if not st["fragile"]:
        return f"stable (same verdict leaving out any one of {len(st['verdicts'])} seeds)"
    return "**fragile**: leaving out " + ", ".join(f"seed {sd} gives {v}" for sd, v in st["changed"].items())


def _md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def _summary_table(claims) -> str:
    return _md_table(["claim", "verdict", "primary effect (estimate, 95% interval)", "leave one seed out"],
                     [[f"{c.id}: {c.title}", c.verdict, primary_text(c), stability_text(c)] for c in claims])


def write_report(claims, studies, out_dir: Path, mode: str, elapsed: float, n_trained: int, failed: list):
    out_dir = Path(out_dir)
    err = errata_numbers(studies)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"bncli report ({mode})"
    intro = [f"Generated {when} by bncli {versions()['bncli']} (numpy {versions()['numpy']}) in {elapsed / 60:.1f} "
             f"min ({n_trained:,} runs trained now, the rest reused from `runs/`). Every number below is computed "
             "from the runs in this folder; verdicts follow the pre-registered rule of CLAIMS.md: **supported** if "
             "the 95% interval of the effect excludes \"no effect\" in the claimed direction, **contradicted** if it "
             "excludes it in the opposite direction, **inconclusive** otherwise. Each verdict is recomputed leaving "
             "out one seed at a time; a verdict that changes is marked **fragile**. Diverged runs are counted and "
             "named, never averaged; runs that never reach a target are censored at their budget, never given the "
             "budget as a value.", "", SEEDS_NOTE, ""]
    md, page = pages(title, intro, claims, failed, err, out_dir)
    atomic.write_text(out_dir / "REPORT.md", md)
    atomic.write_text(out_dir / "report.html", page)
    atomic.write_text(out_dir / "report.json", dumps({
        "mode": mode, "generated": when, "elapsed_s": elapsed, "n_trained": n_trained, "failed": failed,
        **experiments_record(studies), "studies": list(studies),
        "claims": [{**asdict(c), "fragile": bool(c.stability.get("fragile")),
                    "effects": [{**asdict(e), "estimate_text": e.estimate_text(), "interval_text": e.interval_text()}
                                for e in c.effects]} for c in claims],
        "seeds_note": SEEDS_NOTE,
        "errata": err, "versions": versions(), "platform": platform_info()}))
    return claims


def experiments_record(studies) -> dict:
    """Which configs the studies came from, without the author's file system: "shipped" (the package's own), or
    the folder as it was given; and each config's SHA-256, which identifies it wherever it lives."""
    import hashlib

    from ..examples import SHIPPED

    paths = {name: Path(s.path) for name, s in studies.items()}
    folders = {p.parent.resolve() for p in paths.values()}
    where = "shipped with bncli" if folders == {SHIPPED.resolve()} else ", ".join(sorted({str(p.parent) for p in
                                                                                paths.values()}))
    return {"experiments": where,
            "experiment_sha256": {n: hashlib.sha256(p.read_bytes()).hexdigest() for n, p in paths.items()}}


def pages(title: str, intro: list[str], claims, failed: list, err: dict, out_dir: Path) -> tuple[str, str]:
    """(REPORT.md, report.html) from the same sections; the figures are read from ``out_dir/figures``."""
    sections = report_sections(claims, failed, err, figure_alts(out_dir))
    md = [f"# {title}", "", *intro] + [line for s in sections for line in s.markdown()]
    return "\n".join(md) + "\n", to_html(title, intro, sections, out_dir)


def report_sections(claims, failed: list, err: dict, alts: dict) -> list[Section]:
    summary = [_summary_table(claims), ""]
    if failed:
        summary += [f"**{len(failed)} runs failed** and are missing from the statistics: "
                    + "; ".join(f"{f['arm']} seed {f['seed']} {f['point']}: {f['error']}" for f in failed[:10]), ""]
    taken = {"contents", "summary", "errata"}
    sections = [Section("summary", "Summary", summary)]
    for c in claims:
        sections.append(Section(_anchor(c.id, taken), f"{c.id}: {c.title}", claim_body(c, alts), c.verdict,
                                bool((c.stability or {}).get("fragile"))))
    errata = _md_table(["note", "what it says", "what is right"],
                       [[n, w, errata_text(r, err)] for n, w, r in ERRATA])
    return sections + [Section("errata", "Errors in the notes that bncli corrects", [errata, ""])]


def claim_body(c, alts: dict) -> list[str]:
    header = ["effect", "n", "estimate", "sd", "95% interval", "verdict", "method"]
    md = [f"**Claim.** {c.statement}  ", f"**From the notes:** {c.sources}.  ", f"**Protocol.** {c.protocol}  ",
          f"**Verdict rule.** {c.rule}  ", f"**Stability.** {stability_text(c)}", "",
          _md_table(header, [_effect_row(e) for e in c.effects]), ""]
    for f in c.figures:  # a paragraph each, so that each is its own block in HTML
        md += [f"![{md_alt(alts.get(Path(f).stem) or fallback_alt(c, f))}](figures/{Path(f).name})", ""]
    return md + [f"_Note: {n}_" for n in c.notes] + ([""] if c.notes else [])


def _anchor(text: str, taken: set) -> str:
    """A stable HTML id from ``text`` ('C1' -> 'c1'), unique among ``taken`` (which it joins)."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor


START, END = "<!-- REPORT-SUMMARY:start -->", "<!-- REPORT-SUMMARY:end -->"
# The full report has its own block, so that the README shows both sets of verdicts, one after the other.
MARKERS = {"quick": (START, END), "full": ("<!-- REPORT-FULL:start -->", "<!-- REPORT-FULL:end -->")}
HEADLINE = ["c01_learning_curves", "c02_range", "c09_percentiles"]


def data_text(mode: str) -> str:
    return ("the bundled MNIST subset (4,000 training / 1,000 test images) with 10 seeds per arm" if mode == "quick"
            else "the complete MNIST with the full budgets")


def update_readme(readme: Path, out_dir: Path, claims, mode: str):
    """Rewrite the block between the markers of ``mode`` (MARKERS) in ``readme`` with the summary table of this
    report, and for the quick report its headline figures (paths relative to the README)."""
    start, end = MARKERS[mode]
    text = readme.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise UsageError(f"{readme}: no {start} ... {end} block to update")
    rel = Path(os.path.relpath(out_dir, readme.parent))
    figs = [f for name in HEADLINE for c in claims for f in c.figures if Path(f).stem == name] if mode == "quick" \
        else []
    title = "What the data say" if mode == "quick" else "The same claims on the complete MNIST"
    block = [start, "", f"## {title} (`bncli report --{mode}`, regenerated by "
             f"`bncli report --{mode} --force --readme README.md`)", "",
             f"Each claim of the course notes, measured on {data_text(mode)} and judged by the rule of "
             f"[CLAIMS.md](CLAIMS.md) (estimate and 95% interval of each primary effect; a verdict that changes when "
             f"any one seed is left out is marked fragile). {SEEDS_NOTE} Full report: [{rel}/REPORT.md]({rel}/REPORT.md) "
             f"(self-contained: [{rel}/report.html]({rel}/report.html)).", "",
             _summary_table(claims), ""]
    alts = figure_alts(out_dir)
    block += [f"![{md_alt(alts.get(Path(f).stem) or Path(f).stem)}]({rel}/figures/{Path(f).name})" for f in figs]
    block += ["", end]
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    atomic.write_text(readme, head + "\n".join(block) + tail)
