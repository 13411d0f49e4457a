"""report.html as a page (read with the stdlib's html.parser, no browser): language and viewport, a table of contents
whose every link lands on an element, one anchor per claim, figures embedded with alt text that says what they
show, verdicts as worded badges, no emoji, Markdown tables as <table>, claim text escaped; and the numbers of the
report's prose."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
import zlib
from html.parser import HTMLParser

import pytest

from bncli.report.claim import Claim
from bncli.report.render import pages
from bncli.report.verdict import Effect, check_effect, paired_effect

ERRATA_NUMBERS = {"naive_err": 0.49, "exact_err": 1.5e-9, "nosqrt_var": 0.04, "note003_acc": math.nan,
                  "correct_acc": math.nan}
# Emoji and pictograph blocks, the variation selector that turns a symbol into an emoji, and the keycap mark.
EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF\uFE0F\u20E3]")


def png(width=3, height=2) -> bytes:
    """A valid tiny PNG (grey), so that the page embeds real image bytes without matplotlib."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Page(HTMLParser):
    """What the tests look at: ids, links (and whether inside the contents), images, badges, tables, text."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.ids, self.toc_links, self.links, self.imgs, self.tables, self.metas = [], [], [], [], 0, []
        self.badges, self.lang, self.text = [], None, []
        self._in_nav = self._badge = 0
        self._wrapped = []  # for each <table>: was it inside a div.table-wrap
        self._stack = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("meta", "img", "br", "hr"):
            self._stack.append((tag, a.get("class", "")))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "meta":
            self.metas.append(a)
        if tag == "nav":
            self._in_nav += 1
        if tag == "a" and "href" in a:
            (self.toc_links if self._in_nav else self.links).append(a["href"])
        if tag == "img":
            self.imgs.append(a)
        if tag == "table":
            self.tables += 1
            self._wrapped.append(any(t == "div" and "table-wrap" in c.split() for t, c in self._stack[:-1]))
        if tag == "span" and "badge" in a.get("class", "").split():
            self.badges.append([a["class"], ""])
            self._badge = 1

    def handle_endtag(self, tag):
        if tag == "nav":
            self._in_nav -= 1
        if tag == "span":
            self._badge = 0
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)
        if self._badge:
            self.badges[-1][1] += data


def claim(i, verdict, title=None, statement="BN does something measurable.", figures=(), effects=None):
    c = Claim(f"C{i}", title or f"claim number {i}", statement, "000", "3 seeds", f"c{i:02d}_study",
              rule="supported if the interval lies above 0", figures=list(figures), verdict=verdict,
              stability={"applicable": True, "fragile": False, "verdicts": {0: verdict, 1: verdict}})
    c.effects = effects or [paired_effect("final test accuracy, BN - no BN", [0.01, 0.02, 0.03], direction=+1,
                                          unit="accuracy")]
    c.primary = [0]
    return c


@pytest.fixture
def report(tmp_path):
    """Three claims, one verdict each; C1 has a figure with a stored spec, C2 one without."""
    figs = tmp_path / "figures"
    figs.mkdir()
    for name in ("c01_curves", "c02_bars"):
        (figs / f"{name}.png").write_bytes(png())
    (figs / "figures.json").write_text(json.dumps({"format": "bncli-figure-specs", "version": 1, "figures": [
        {"name": "c01_curves", "claim": "C1", "draw": "bncli.plotting.learning_curves",
         "args": {"curves_by_arm": {"none": [], "before": []}, "title": "C1: sigmoid 3 x 100, SGD lr 3",
                  "target": 0.9}}]}))
    claims = [claim(1, "supported", figures=[figs / "c01_curves.png"]),
              claim(2, "contradicted", title="BN widens the range", figures=[figs / "c02_bars.png"],
                    effects=[check_effect("max |dL/d bias| / max |dL/dW|", 2.111e-16, True)]),
              claim(3, "inconclusive")]
    md, page = pages("bncli report (quick)", ["Intro with **bold** and a `runs/` path.", ""], claims, [],
                     ERRATA_NUMBERS, tmp_path)
    return tmp_path, claims, md, page


def test_the_page_declares_its_language_charset_and_viewport(report):
    _, _, _, page = report
    p = Page(page)
    assert p.lang == "en"
    assert {"charset": "utf-8"} in p.metas
    viewport = [m for m in p.metas if m.get("name") == "viewport"]
    assert viewport and "width=device-width" in viewport[0]["content"]


def test_every_contents_link_lands_on_an_element_and_each_claim_has_one(report):
    _, claims, _, page = report
    p = Page(page)
    assert len(p.ids) == len(set(p.ids)), "duplicate ids"
    assert p.toc_links and all(h.startswith("#") and h[1:] in p.ids for h in p.toc_links), p.toc_links
    assert all(h[1:] in p.ids for h in p.links if h.startswith("#")), p.links  # 'back to contents' too
    claim_links = [h for h in p.toc_links if re.fullmatch(r"#c\d+", h)]
    assert claim_links == [f"#{c.id.lower()}" for c in claims]  # one stable anchor per claim, in order
    assert {"#summary", "#errata"} <= set(p.toc_links)


def test_figures_are_embedded_with_alt_text_that_says_what_they_show(report):
    _, claims, md, page = report
    imgs = Page(page).imgs
    assert len(imgs) == 2
    for img in imgs:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]) == png()
    with_spec, without_spec = (img["alt"] for img in imgs)
    assert "sigmoid 3 x 100, SGD lr 3" in with_spec and "test accuracy against the training step" in with_spec
    assert "BN widens the range" in without_spec  # no spec: the claim's title, not just 'C2'
    for alt in (with_spec, without_spec):
        assert len(alt.split()) >= 4 and alt.strip() not in {c.id for c in claims}
    assert "![C1]" not in md and "](figures/c01_curves.png)" in md
    assert "max-width:100%" in page.replace(" ", "") and "height:auto" in page.replace(" ", "")


def test_every_drawing_function_has_a_description_beyond_its_title():
    """A new kind of figure (figspec.DRAWERS) needs its line in describe_figure, or its alt text is the title only."""
    from bncli.report.figspec import DRAWERS
    from bncli.report.html import describe_figure

    for draw in DRAWERS:
        alt = describe_figure({"name": "f", "draw": draw, "args": {"title": "Title"}})
        assert alt.startswith("Title. ") and len(alt.split()) > 5, (draw, alt)


def test_verdicts_are_badges_that_carry_their_word(report):
    _, claims, md, page = report
    badges = Page(page).badges
    for c in claims:
        worded = [b for b in badges if b[0].split() == ["badge", c.verdict]]
        # contents, the heading and the summary table's verdict cell
        assert len(worded) >= 3 and all(text == c.verdict for _, text in worded), (c.verdict, badges)
    for v in ("supported", "contradicted", "inconclusive"):
        assert re.search(rf"\.badge\.{v}\{{[^}}]*background", page)  # each verdict has its colour
    assert "## C2: BN widens the range — contradicted" in md


def test_no_emoji_anywhere(report):
    _, _, md, page = report
    assert not EMOJI.search(page), EMOJI.search(page)
    assert not EMOJI.search(md)


def test_markdown_tables_become_wrapped_tables(report):
    _, claims, _, page = report
    p = Page(page)
    assert p.tables == 1 + len(claims) + 1  # summary, one per claim, errata
    assert all(p._wrapped) and len(p._wrapped) == p.tables  # each scrolls sideways on a narrow screen
    text = "".join(p.text)
    assert "|---" not in text and "max |dL/d bias| / max |dL/dW|" in text  # the escaped '\\|' unescaped
    assert "<strong>bold</strong>" in page and "<code>runs/</code>" in page  # Markdown inline markup rendered


def test_claim_text_is_escaped_and_cannot_embed_other_files(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "secret.png").write_bytes(b"\x89PNG-secret-bytes")
    hostile = claim(1, "supported", title="<script>alert(1)</script> title",
                    statement="<img src=x onerror=alert(2)> and ![x](secret.png) and ![y](figures/../secret.png)")
    md, page = pages("report", [], [hostile], [], ERRATA_NUMBERS, tmp_path)
    assert "<script" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; title" in page
    parsed = Page(page)
    assert "<img src=x onerror=alert(2)>" in "".join(parsed.text)  # shown as text, not dropped
    assert base64.b64encode(b"\x89PNG-secret-bytes").decode() not in page
    assert not parsed.imgs
    assert "<script>alert(1)</script> title" in md  # REPORT.md keeps the author's Markdown as it is


def test_the_page_is_deterministic(report):
    out, claims, md, page = report
    again = pages("bncli report (quick)", ["Intro with **bold** and a `runs/` path.", ""], claims, [],
                  ERRATA_NUMBERS, out)
    assert again == (md, page)


def test_an_unmeasured_erratum_number_is_left_out_not_printed_as_nan(report):
    _, _, md, page = report
    assert "nan" not in md.lower() and "nan" not in page.lower()
    assert "bncli's 1.5e-9." in md


# -- numbers in the report's text --------------------------------------------------------------------------------------
def test_an_exact_check_reads_as_one_unsigned_value():
    e = check_effect("max |dL/d bias| / max |dL/dW|", 2.111e-16, True)
    assert e.estimate_text() == e.interval_text() == e.text() == "2.1e-16"


def test_a_difference_keeps_its_sign_and_large_numbers_have_separators():
    e = paired_effect("steps(no BN) - steps(BN)", [1020.0, 1030.0, 1040.0], direction=+1, unit="steps")
    assert e.estimate_text() == "+1,030 steps"
    assert re.fullmatch(r"\+1,030 steps \[\+1,00\d, \+1,05\d\]", e.text()), e.text()
    assert paired_effect("BN - no BN", [-0.5, -0.25, -0.75]).estimate_text() == "-0.5"


def test_one_arms_own_level_has_no_sign():
    e = Effect("drift, none", 10, 2.237, 0.2, 2.085, 2.389, "spreads", method="t-interval over seeds")
    assert e.text() == "2.237 spreads [2.085, 2.389]"


def test_a_text_interval_of_one_value_is_that_value():
    e = Effect("steps to target, BN after", 10, math.inf, math.nan, math.inf, math.inf, "steps",
               extra={"estimate_text": "> 2000 steps (reached 0/10)", "interval_text": "[> 2000, > 2000]"})
    assert e.interval_text() == "> 2000" and e.text() == "> 2000 steps (reached 0/10)"
    wide = Effect("x", 10, 5, math.nan, 1, 9, extra={"estimate_text": "5", "interval_text": "[1,000, 2,000]"})
    assert wide.interval_text() == "[1,000, 2,000]"


def test_no_interval_is_said_not_printed_as_a_dash():
    e = Effect("BN - no BN", 1, 0.5, math.nan, math.nan, math.nan)
    assert e.text() == "+0.5 (no interval)"
