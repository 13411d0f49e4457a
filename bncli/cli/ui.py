"""The consoles and the result tables of the commands (rich). User-supplied text in a table is escaped, never
read as markup."""

from __future__ import annotations

import codecs
import sys
import unicodedata

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import stats

# -- output in any encoding ----------------------------------------------------------------------------------------
# What a character of bncli's output becomes in a stream whose encoding lacks it (PYTHONIOENCODING=ascii, latin-1,
# a C locale). Any other such character is escaped (\xe9): it may be a user's value quoted in an error message,
# which must not look like another value ('rélu' is not 'relu').
ASCII_FALLBACK = {"±": "+-", "…": "...", "—": "-", "–": "-", "−": "-", "×": "x", "·": ".", "•": "*", "→": "->",
                  "←": "<-", "≥": ">=", "≤": "<=", "≈": "~", "≠": "!=", "∞": "inf", "²": "^2", "µ": "u", "μ": "u",
                  "σ": "sigma", "‘": "'", "’": "'", "“": '"', "”": '"', "✓": "ok", "✗": "x"}
FALLBACK_ERRORS = "bncli-ascii"  # the codec error handler that writes them


def ascii_for(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # a byte of a file name that is not text (surrogateescape): \xff
        return f"\\x{ord(ch) - 0xDC00:02x}"
    text = ASCII_FALLBACK.get(ch)
    if text is None and "\u2500" <= ch <= "\u257f":  # box drawing (rich draws ASCII boxes itself for such a stream)
        name = unicodedata.name(ch, "")
        text = "+" if ("HORIZONTAL" in name) == ("VERTICAL" in name) else "-" if "HORIZONTAL" in name else "|"
    return text if text is not None else ch.encode("ascii", "backslashreplace").decode()


def plain(text: str, encoding: str) -> str:
    """``text`` with the characters ``encoding`` cannot write in ASCII."""
    if encoding.startswith("utf"):
        return text
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        pass
    except LookupError:  # an encoding Python does not know: the stream itself would fail the same way
        encoding = "ascii"

    def fits(ch):
        try:
            ch.encode(encoding)
            return True
        except UnicodeEncodeError:
            return False

    return "".join(ch if fits(ch) else ascii_for(ch) for ch in text)


def _write_fallback(e: UnicodeEncodeError):
    return ascii_for(e.object[e.start]), e.start + 1  # one character at a time: the codec calls again for the next


codecs.register_error(FALLBACK_ERRORS, _write_fallback)


def degrade_streams():
    """Make stdout and stderr write what their encoding lacks in ASCII instead of raising UnicodeEncodeError (the
    command line's entry point calls this; imported in-process, the callers' streams are left as they are)."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=FALLBACK_ERRORS)


class _Console(Console):
    # Text is made writable before rich measures it, so that a table's columns still line up in ASCII: rich turns
    # every string it prints, every cell, title and caption into Text here.
    def render_str(self, text: str, **kw):
        return super().render_str(plain(text, self.encoding), **kw)


# Piped output (CI logs, files) gets 120 columns instead of rich's 80, so the tables are not folded. (stdout is None
# when it was closed and nobody reopened it; bncli's entry point does, see __main__.py.)
_WIDTH = None if sys.stdout is not None and sys.stdout.isatty() else 120
console = _Console(width=_WIDTH, soft_wrap=True)  # a path or a message is never cut into lines
err_console = _Console(stderr=True, width=_WIDTH, soft_wrap=True)  # paths stay on one line

VERBOSITY = {"level": 0}  # -1: --quiet, 0: default, 1: --verbose (set once by the app's callback)


def set_verbosity(level: int):
    VERBOSITY["level"] = level


def status(*objects, **kw):
    """A status line (what is about to run, what was written): left out by --quiet. Results tables are not."""
    if VERBOSITY["level"] >= 0:
        console.print(*objects, **kw)


def detail(*objects, **kw):
    """A line only --verbose prints."""
    if VERBOSITY["level"] > 0:
        console.print(*objects, **kw)


def warn(text: str):
    """A warning: on stderr, printed literally, kept by --quiet."""
    err_console.print("[yellow]warning:[/] ", end="", highlight=False)
    err_console.print(text, markup=False, highlight=False)


def no_interval(ci_text: str) -> str:
    """An interval cell: 'none (n < 6)' (stats.fmt_interval, kept in summary files) would read as the no-BN arm
    'none' in a table whose rows are arms."""
    return "no interval" + ci_text[len("none"):] if ci_text.startswith("none (") else ci_text


def _summary(d: dict) -> stats.Summary:
    return stats.Summary(**{k: d[k] for k in ("n", "mean", "sd", "ci_low", "ci_high")})


def experiment_tables(cfg, result):
    t = cfg.train
    table = Table(title=f"{escape(cfg.name)}: mean ± sd over seeds (test split, eval mode)", title_justify="left",
                  caption=f"means leave out diverged runs (counted in runs). Steps to {t.target_accuracy:g} on the "
                          f"{t.target_split} split: Kaplan-Meier median [95% interval], runs that never reached it "
                          "(or diverged first) censored at the budget; reached/runs", caption_justify="left")
    for name in ("arm", "ok/runs", "final acc", "best acc", "steps to target", "reached", "train loss", "s/run"):
        table.add_column(name, justify="left" if name == "arm" else "right", no_wrap=True)
    for arm, a in result.arms.items():
        status = a["status"]
        runs = f"{status['ok']}/{a['n_runs']}" + (f" ({status['diverged']} diverged)" if status["diverged"] else "") \
            + (f" ({status['failed']} failed)" if status["failed"] else "")
        st = a["steps_to_target"]
        steps = f"{st['median_text']} {no_interval(st['ci_text'])}" if st["n"] else "—"
        table.add_row(arm, runs, stats.fmt(_summary(a["final_test_acc"])), stats.fmt(_summary(a["best_test_acc"])),
                      steps, f"{a['reached_target']}/{a['n_runs']}", stats.fmt(_summary(a["final_train_loss"])),
                      stats.fmt(_summary(a["time_s"]), 2))
    tables = [table]
    if result.comparisons:
        comp = Table(title="paired differences by seed", title_justify="left",
                     caption="accuracy and loss: mean and 95% t-interval over the seeds where neither run diverged; "
                             "steps: median paired difference over every seed, censored pairs as bounds, sign-test "
                             "interval (none below 6 seeds) and exact sign-test p", caption_justify="left")
        for c in ("difference", "metric", "n", "estimate", "95% interval", "note"):
            comp.add_column(c, justify="left" if c in ("difference", "note") else "right")
        for c in result.comparisons:
            if c["metric"] == "steps_to_target":
                f = c["faster"]
                arm, base = c["arm"], c["baseline"]
                note = (f"faster: {arm} {f[arm]}, {base} {f[base]}, unknown {f['unknown']}; sign test "
                        f"p={c['sign_test_p']:.3g}")
                comp.add_row(c["difference"], "steps to target", str(c["n"]), c["median_text"],
                             no_interval(c["ci_text"]), note)
                continue
            s = _summary(c)
            note = f"{c['excluded_diverged']} seeds left out (diverged)" if c.get("excluded_diverged") else ""
            comp.add_row(c["difference"], c["metric"], str(s.n), f"{s.mean:+.4f}" if s.n else "—",
                         stats.fmt_ci(s, 4), note)
        tables.append(comp)
    return tables


def _fmt_value(v):
    return escape(f"{v:.3g}" if isinstance(v, float) else str(v))


def plan_table(runs, keys, limit=60):
    table = Table(title=f"{len(runs)} runs ({sum(r.done for r in runs)} already done)", title_justify="left")
    for c in ("#", *(escape(k) for k in keys), "arm", "seed", "hash", "status"):
        table.add_column(c, justify="right" if c in ("#", "seed") else "left")
    for i, r in enumerate(runs[:limit]):
        table.add_row(str(i), *(_fmt_value(r.point[k]) for k in keys), r.arm, str(r.seed), r.hash,
                      "done" if r.done else "pending")
    if len(runs) > limit:
        table.caption = f"... and {len(runs) - limit} more"
    return table


def usable_table(result):
    if not result.usable:
        return None
    u0 = result.usable[0]
    rk = u0["range_key"]
    pts = [k[len("decades_"):-2] for k in u0 if k.startswith("decades_") and k.endswith("pt")]
    grid = [r[rk] for r in result.rows if isinstance(r.get(rk), (int, float)) and not isinstance(r.get(rk), bool)]
    ends = (min(grid), max(grid)) if grid else (None, None)
    table = Table(title=f"usable range of {escape(rk)}, per seed: the contiguous values around the seed's best where the run "
                        f"did not diverge and its tail test accuracy is >= {u0['floor']:g}",
                  title_justify="left",
                  caption="range: median lower and upper end over the seeds that learn; widths: mean ± sd over them "
                          "(decades); within N pt: around the seed's own best (descriptive); ≥ W: the range reaches an "
                          "end of the grid, so it is at least W decades wide (a wider grid would measure it)",
                  caption_justify="left")
    others = [k for k in result.keys if k != rk]
    for c in ("arm", *(escape(k) for k in others), "seeds that learn", "usable range", "width", *(f"within {p} pt" for p in pts),
              "diverged runs"):
        table.add_column(c, justify="left" if c in ("arm", *others) else "right")
    for u in result.usable:
        learn = f"{u['n_learn']}/{u['n_seeds']}"
        if not u["n_learn"]:
            cells = ["never learns", "—", *("—" for _ in pts)]
        else:
            w = lambda sfx: _width_cell(u, sfx, ends)  # noqa: E731
            cells = [f"[{_fmt_value(u['lo'])}, {_fmt_value(u['hi'])}]", w(""), *(w(f"_{p}pt") for p in pts)]
        table.add_row(u["arm"], *(_fmt_value(u[k]) for k in others), learn, *cells, str(u["n_diverged"]))
    return table


def _width_cell(u: dict, sfx: str, ends) -> str:
    """A usable width, mean ± sd over the seeds that learn; '≥ mean' when the (median) range reaches the first or
    last value of the grid: the grid cut it there, so its width was not measured, only bounded below."""
    lo, hi = u.get(f"lo{sfx}"), u.get(f"hi{sfx}")
    if None not in ends and ((lo is not None and lo <= ends[0]) or (hi is not None and hi >= ends[1])):
        return f"≥ {u[f'decades{sfx}']:.2f}"
    return stats.fmt(stats.Summary(u["n_learn"], u[f"decades{sfx}"], u[f"decades{sfx}_sd"], 0, 0), 2)
