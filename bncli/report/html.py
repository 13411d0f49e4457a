"""report.html: one standalone page from the report's sections — Markdown rendered by markdown-it (raw HTML in
the text escaped), a table of contents with an anchor per claim, verdicts as worded badges, figures embedded with
alt text that says what each shows (from the figure specs)."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

VERDICTS = ("supported", "contradicted", "inconclusive")


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


# -- alt text: what each figure shows, from the figure specs the analysis stored (figures/figures.json) ----------------
def figure_alts(out_dir: Path) -> dict:
    """{figure name: alt text}. A missing or unreadable spec file leaves every figure to `fallback_alt`: alt text
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


def fallback_alt(c, figure) -> str:
    return f"Figure for {c.id} ({c.title}): {Path(figure).stem.replace('_', ' ')}"


def md_alt(text: str) -> str:
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
