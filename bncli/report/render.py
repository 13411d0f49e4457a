"""REPORT.md, a self-contained report.html (figures embedded) and report.json, from the analysed claims."""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

from .. import atomic, stats
from ..errors import UsageError
from ..runs import dumps, platform_info, versions

SEEDS_NOTE = ("Seeds: the rules of C1, C2, C3, C4 and C6 were revised on 2026-12-01 after their data (seeds 0-4) had "
              "been seen (CLAIMS.md, 'Revisions'); every study of this report runs on seeds 100-109, which were not "
              "used while revising them.")

# Verdicts are written as their plain words everywhere (emoji render as empty boxes where no emoji font is
# installed); report.html shows them as coloured badges.
VERDICTS = ("supported", "contradicted", "inconclusive")

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


@dataclass
class Section:
    """One '## ' section of the report: REPORT.md writes it as Markdown, report.html as a <section> that the
    table of contents links to by ``anchor``."""

    anchor: str
    heading: str
    body: list[str]
    verdict: str | None = None
    fragile: bool = False

    def markdown(self) -> list[str]:
        return [f"## {self.heading}" + (f" — {self.verdict}" if self.verdict else ""), "", *self.body]


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
        md += [f"![{_md_alt(alts.get(Path(f).stem) or _fallback_alt(c, f))}](figures/{Path(f).name})", ""]
    return md + [f"_Note: {n}_" for n in c.notes] + ([""] if c.notes else [])


def _anchor(text: str, taken: set) -> str:
    """A stable HTML id from ``text`` ('C1' -> 'c1'), unique among ``taken`` (which it joins)."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    anchor, k = base, 2
    while anchor in taken:
        anchor, k = f"{base}-{k}", k + 1
    taken.add(anchor)
    return anchor


# -- alt text: what each figure shows, from the figure specs the analysis stored (figures/figures.json) ----------------
def figure_alts(out_dir: Path) -> dict:
    """{figure name: alt text}. A missing or unreadable spec file leaves every figure to `_fallback_alt`: alt text
    is not worth failing a report over."""
    from .figspec import FILE

    try:
        specs = json.loads((Path(out_dir) / "figures" / FILE).read_text(encoding="utf-8"))["figures"]
        return {s["name"]: describe_figure(s) for s in specs if isinstance(s, dict) and isinstance(s.get("name"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def describe_figure(spec: dict) -> str:
    """Alt text: the figure's title, then what is plotted against what, for which arms (a figure of a kind not in
    FIGURE_KINDS gets its title only)."""
    from ..plotting import ARM_LABELS

    a = spec.get("args") or {}
    names = lambda keys: ", ".join(ARM_LABELS.get(k, str(k)) for k in keys)  # noqa: E731
    kind = FIGURE_KINDS.get(str(spec.get("draw", "")).rsplit(".", 1)[-1])
    what = kind(a, names) if kind else ""
    title = str(a.get("title") or spec.get("name", "figure")).rstrip(".")
    return f"{title}. {what[:1].upper()}{what[1:]}." if what else title


def _curves_alt(a, names) -> str:
    what = f"training loss and test accuracy against the training step for {names(a.get('curves_by_arm') or {})}"
    if isinstance(a.get("target"), (int, float)):
        what += f", and the share of runs that have reached {a['target']:g} test accuracy by each step"
    return what


def _range_alt(a, names) -> str:
    arms = dict.fromkeys(r.get("arm") for r in a.get("range_rows") or [] if isinstance(r, dict))
    return (f"final test accuracy and training loss against {a.get('range_key')} for {names(arms)}, with each "
            "arm's usable range marked")


def _panels_alt(shape):
    def alt(a, names) -> str:
        panels = a.get("panels") or []
        series = dict.fromkeys(k for p in panels if p and isinstance(p[-1], dict) for k in p[-1])
        titles = [str(p[0]) for p in panels if p and p[0]]
        return (shape.format(**{k: a.get(k) for k in ("xlabel", "ylabel")}) + f" for {names(series)}"
                + (f"; panels: {', '.join(titles)}" if titles else ""))
    return alt


def _differences_alt(a, names) -> str:
    rows = [" ".join(str(r[0]).split()) for r in a.get("rows") or [] if r]
    margin = a.get("margin")
    return (f"{a.get('ylabel')}: each seed's value as a dot, with their mean and 95% interval, for {', '.join(rows)}"
            + (f"; the band ±{margin:g} is the equivalence margin" if isinstance(margin, float) else ""))


def _percentiles_alt(a, names) -> str:
    return ("the 15th, 50th and 85th percentiles of the input to one sigmoid of the last hidden layer during "
            f"training, for {names(a.get('curves') or {})}")


# One line per drawing function of figspec.DRAWERS, by its name (tests/report/test_html.py checks that none lacks
# one).
FIGURE_KINDS = {
    "learning_curves": _curves_alt,
    "range_figure": _range_alt,
    "bars": _panels_alt("bar chart of {ylabel} (mean and 95% interval)"),
    "lines": _panels_alt("{ylabel} against {xlabel} (mean with a 95% band)"),
    "differences": _differences_alt,
    "percentiles": _percentiles_alt,
}


def _fallback_alt(c, figure) -> str:
    return f"Figure for {c.id} ({c.title}): {Path(figure).stem.replace('_', ' ')}"


def _md_alt(text: str) -> str:
    """Alt text as Markdown image text: brackets and the characters that start markup escaped, one line."""
    return re.sub(r"([\\\[\]*_`<>!])", r"\\\1", " ".join(text.split()))


# -- report.html ------------------------------------------------------------------------------------------------------
STYLE = """
:root{color-scheme:light}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;line-height:1.5;color:#1f2328;
  background:#fff;max-width:72rem;margin:0 auto;padding:1rem 1.25rem 3rem}
h1{font-size:1.75rem;line-height:1.25;margin:.5rem 0 1rem}
h2{font-size:1.3rem;line-height:1.3;margin:2.5rem 0 .75rem;padding-bottom:.3rem;border-bottom:1px solid #d0d7de}
p,li,td,th{overflow-wrap:break-word}
code{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.9em;background:#f6f8fa;padding:.1em .3em;
  border-radius:4px}
.table-wrap{overflow-x:auto;margin:1rem 0;border:1px solid #d0d7de;border-radius:6px}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{padding:.4rem .6rem;text-align:left;vertical-align:top;border-top:1px solid #d0d7de}
th + th,td + td{border-left:1px solid #d0d7de}
thead th{background:#f6f8fa;border-top:0}
tbody tr:nth-child(even){background:#fafbfc}
img{display:block;max-width:100%;height:auto;margin:1rem auto}
.badge{display:inline-block;padding:.1em .6em;border-radius:1em;font-size:.8rem;font-weight:600;line-height:1.5;
  color:#fff;white-space:nowrap;vertical-align:.1em}
.badge.supported{background:#1a7f37}
.badge.contradicted{background:#cf222e}
.badge.inconclusive{background:#7d4e00}
.badge.fragile{background:#fff;color:#7d4e00;border:1px solid #7d4e00}
h2 .badge{font-size:.9rem;margin-left:.4em}
nav.toc{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.25rem 1.25rem .75rem;margin:1.5rem 0}
nav.toc h2{border:0;margin:.5rem 0;font-size:1.1rem}
nav.toc ol{margin:0;padding-left:1.5rem}
nav.toc li{margin:.2rem 0}
nav.toc .badge{margin-left:.4em;font-size:.75rem}
a{color:#0969da}
.top{font-size:.85rem}
@media (max-width:700px){
  body{padding:.75rem .75rem 2rem}
  h1{font-size:1.45rem}
  h2{font-size:1.15rem}
  table{width:max-content;min-width:100%;font-size:.8rem}
  th,td{max-width:18rem}
  th:first-child,td:first-child{max-width:10rem}  /* the name, then the verdict, on the first screen */
}
"""


def _markdown():
    """CommonMark with tables; raw HTML in the text is escaped (html=False), never passed through. Figures are
    embedded as data URIs, tables wrapped so that they scroll sideways on a narrow screen, and a table cell that
    is only a verdict becomes its badge."""
    from markdown_it import MarkdownIt
    from markdown_it.renderer import RendererHTML

    md = MarkdownIt("commonmark", {"html": False}).enable("table")

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        path = _figure_file(env["out_dir"], token.attrGet("src"))
        if path is None:  # not one of this report's figures: its alt text only, nothing read or linked
            return html.escape(self.renderInlineAsText(token.children or [], options, env))
        token.attrSet("src", _data_uri(path))
        return RendererHTML.image(self, tokens, idx, options, env)

    def table_open(self, tokens, idx, options, env):
        return '<div class="table-wrap">' + self.renderToken(tokens, idx, options, env)

    def table_close(self, tokens, idx, options, env):
        return self.renderToken(tokens, idx, options, env) + "</div>\n"

    md.add_render_rule("image", image)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("table_close", table_close)
    md.add_render_rule("badge", lambda self, tokens, idx, options, env: badge(tokens[idx].content))
    return md


def _render(md, lines: list[str], env: dict) -> str:
    from markdown_it.token import Token

    tokens = md.parse("\n".join(lines), env)
    for prev, tok in pairwise(tokens):
        if prev.type == "td_open" and tok.type == "inline" and tok.content.strip() in VERDICTS:
            tok.children = [Token("badge", "span", 0, content=tok.content.strip())]
    return md.renderer.render(tokens, md.options, env)


def badge(verdict: str | None, fragile: bool = False) -> str:
    """The verdict as a coloured badge that carries its word (colour alone would say nothing to a screen reader
    or in print)."""
    out = f'<span class="badge {verdict}">{verdict}</span>' if verdict in VERDICTS else ""
    return out + (' <span class="badge fragile">fragile</span>' if fragile else "")


def _figure_file(out_dir: Path, src: str) -> Path | None:
    """The file an image of the Markdown names, if it is a PNG or SVG inside the report's figures/ folder: text that
    names any other file (a claim quoting '![x](../../secret)') must not get it embedded into the page."""
    folder = (Path(out_dir) / "figures").resolve()
    path = (Path(out_dir) / src).resolve()
    if path.parent != folder or path.suffix not in (".png", ".svg") or not path.is_file():
        return None
    return path


def _data_uri(path: Path) -> str:
    kind = "svg+xml" if path.suffix == ".svg" else "png"
    return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode()}"


def to_html(title: str, intro: list[str], sections: list[Section], out_dir: Path) -> str:
    """A standalone page: figures embedded, a table of contents linking to one anchor per section."""
    md, env = _markdown(), {"out_dir": Path(out_dir)}
    toc = "".join(f'<li><a href="#{s.anchor}">{md.renderInline(s.heading)}</a>{" " if s.verdict else ""}'
                  f'{badge(s.verdict, s.fragile)}</li>' for s in sections)
    body = [f"<header>\n<h1>{md.renderInline(title)}</h1>\n{_render(md, intro, env)}</header>",
            f'<nav class="toc" aria-labelledby="contents">\n<h2 id="contents">Contents</h2>\n<ol>{toc}</ol>\n</nav>',
            "<main>"]
    for s in sections:
        body += [f'<section id="{s.anchor}">\n<h2>{md.renderInline(s.heading)}{" " if s.verdict else ""}'
                 f'{badge(s.verdict, s.fragile)}</h2>\n{_render(md, s.body, env)}'
                 '<p class="top"><a href="#contents">Back to contents</a></p>\n</section>']
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</main>\n</body>\n</html>\n")


START, END = "<!-- REPORT-SUMMARY:start -->", "<!-- REPORT-SUMMARY:end -->"
HEADLINE = ["c01_learning_curves", "c02_range", "c09_percentiles"]


def data_text(mode: str) -> str:
    return ("the bundled MNIST subset (4,000 training / 1,000 test images) with 10 seeds per arm" if mode == "quick"
            else "the complete MNIST with the full budgets")


def update_readme(readme: Path, out_dir: Path, claims, mode: str):
    """Rewrite the block between the REPORT-SUMMARY markers of ``readme`` with the summary table and headline
    figures of this report (paths relative to the README)."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise UsageError(f"{readme}: no {START} ... {END} block to update")
    rel = Path(os.path.relpath(out_dir, readme.parent))
    figs = [f for name in HEADLINE for c in claims for f in c.figures if Path(f).stem == name]
    block = [START, "", f"## What the data say (`bncli report --{mode}`, regenerated by "
             f"`bncli report --{mode} --readme README.md`)", "",
             f"Each claim of the course notes, measured on {data_text(mode)} and judged by the rule of "
             f"[CLAIMS.md](CLAIMS.md) (estimate and 95% interval of each primary effect; a verdict that changes when "
             f"any one seed is left out is marked fragile). {SEEDS_NOTE} Full report: [{rel}/REPORT.md]({rel}/REPORT.md) "
             f"(self-contained: [{rel}/report.html]({rel}/report.html)).", "",
             _summary_table(claims), ""]
    alts = figure_alts(out_dir)
    block += [f"![{_md_alt(alts.get(Path(f).stem) or Path(f).stem)}]({rel}/figures/{Path(f).name})" for f in figs]
    block += ["", END]
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    atomic.write_text(readme, head + "\n".join(block) + tail)
