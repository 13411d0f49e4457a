"""Figure specs: every figure of the report is stored as the drawing function's name and its arguments, and drawn
from that record, so that `bncli plot` on a report redraws it from the stored numbers alone (no experiments
folder, dataset, run folders, training or timing).

The file is ``figures/figures.json`` in the report folder (written atomically by ``analyse``)::

    {"format": "bncli-figure-specs", "version": 1, "nonfinite": "<the rule below>",
     "figures": [
      {"name": "c01_learning_curves", "claim": "C1", "draw": "bncli.plotting.learning_curves",
       "args": {"curves_by_arm": {...}, "title": "...", ...}},
      ...one line per figure, in the report's order
     ]}

``draw`` is one of `DRAWERS` (an explicit allow-list: nothing else is ever called); ``args`` are its keyword
arguments but ``path``, which replay supplies as ``<figures folder>/<name>.<format>``. Arguments are stored as JSON:
numpy arrays become (nested) lists, numpy scalars Python numbers, tuples lists; dictionaries need string keys.

One rule for floats that JSON cannot hold: a NaN, +inf or -inf, wherever it occurs (inside arrays or alone), is
written as the object ``{"$float": "nan"}``, ``{"$float": "inf"}`` or ``{"$float": "-inf"}`` and read back as that
float. ``null`` stays ``None`` (some arguments use None for "absent", which is not NaN). The file is strict JSON.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from .. import atomic, plotting
from ..errors import UsageError
from . import figures

FORMAT, VERSION = "bncli-figure-specs", 1
FILE = "figures.json"  # inside the report's figures/ folder
FLOAT = "$float"
NONFINITE_RULE = ('a NaN, +inf or -inf anywhere in "args" is written as {"$float": "nan" | "inf" | "-inf"} and '
                  'read back as that float; null is None')

# The only functions a spec may name: every drawing function the claim analyses use.
DRAWERS = {
    "bncli.report.figures.bars": figures.bars,
    "bncli.report.figures.lines": figures.lines,
    "bncli.report.figures.percentiles": figures.percentiles,
    "bncli.plotting.learning_curves": plotting.learning_curves,
    "bncli.plotting.range_figure": plotting.range_figure,
}
_NAMES = {fn: name for name, fn in DRAWERS.items()}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def encode(x):
    """``x`` as JSON values by the rule of this module (TypeError for anything that has no faithful JSON form)."""
    if isinstance(x, np.ndarray):
        return encode(x.tolist())
    if isinstance(x, np.generic):
        return encode(x.item())
    if x is None or isinstance(x, (bool, int, str)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else {FLOAT: repr(x)}  # 'nan', 'inf', '-inf'
    if isinstance(x, (list, tuple)):
        return [encode(v) for v in x]
    if isinstance(x, dict):
        bad = [k for k in x if not isinstance(k, str) or k == FLOAT]
        if bad:
            raise TypeError(f"figure arguments: dictionary key {bad[0]!r} cannot be stored (string keys only, "
                            f"not {FLOAT!r})")
        return {k: encode(v) for k, v in x.items()}
    raise TypeError(f"figure arguments: a {type(x).__name__} cannot be stored as JSON")


def decode(x):
    """The inverse of `encode` on parsed JSON (lists stay lists)."""
    if isinstance(x, list):
        return [decode(v) for v in x]
    if isinstance(x, dict):
        if x.keys() == {FLOAT}:
            if x[FLOAT] not in ("nan", "inf", "-inf"):
                raise ValueError(f"{FLOAT}: expected 'nan', 'inf' or '-inf', got {x[FLOAT]!r}")
            return float(x[FLOAT])
        return {k: decode(v) for k, v in x.items()}
    return x


def make(name: str, drawer, args: dict, claim: str | None = None) -> dict:
    """The spec of figure ``name`` drawn by ``drawer(path=..., **args)``, exactly as it is written to the file (so
    that drawing it here and replaying it from the file run the same code on the same values)."""
    if drawer not in _NAMES:
        raise ValueError(f"{getattr(drawer, '__qualname__', drawer)!r} is not an allowed figure function "
                         f"({', '.join(DRAWERS)})")
    if not _SAFE_NAME.fullmatch(name):
        raise ValueError(f"figure name {name!r}: letters, digits, '_', '.' and '-' only")
    if "path" in args:
        raise ValueError("figure arguments: the path is not stored (replay chooses the folder and format)")
    spec = {"name": name, "claim": claim, "draw": _NAMES[drawer], "args": encode(args)}
    return json.loads(json.dumps(spec, allow_nan=False))


def draw(spec: dict, fig_dir, fmt: str) -> Path:
    """Draw one spec into ``fig_dir/<name>.<fmt>``; returns the path."""
    fn = DRAWERS.get(spec.get("draw"))
    name = spec.get("name")
    if fn is None or not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise UsageError(f"figure spec {name!r}: unknown drawing function {spec.get('draw')!r} or bad name "
                         f"(allowed functions: {', '.join(DRAWERS)})")
    path = Path(fig_dir) / f"{name}.{fmt}"
    fn(path=path, **decode(spec["args"]))
    return path


def write(path, specs: list[dict]):
    """The spec file, one figure per line (strict JSON)."""
    head = json.dumps({"format": FORMAT, "version": VERSION, "nonfinite": NONFINITE_RULE})[:-1]
    body = ",\n".join(json.dumps(s, allow_nan=False, ensure_ascii=False) for s in specs)
    atomic.write_text(path, f'{head},\n "figures": [\n{body}\n]}}\n' if specs else f'{head}, "figures": []}}\n')


def read(report_dir) -> list[dict]:
    """The figure specs of a report folder; a UsageError if there are none to read (an older report)."""
    path = Path(report_dir) / "figures" / FILE
    if not path.is_file():
        raise UsageError(f"{report_dir}: no figures/{FILE} (the report was made by an older bncli, which did not "
                         "store how its figures are drawn): run `bncli report` again to write it (finished runs "
                         "are reused), then `bncli plot` can redraw the figures")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: unreadable figure specs ({e}); run `bncli report` again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise UsageError(f"{path}: not a version-{VERSION} {FORMAT} file; run `bncli report` again")
    return doc["figures"]


def replay(report_dir, fig_dir, fmt: str) -> list[Path]:
    """Redraw every figure of the report from its specs into ``fig_dir`` in format ``fmt``."""
    return [draw(spec, fig_dir, fmt) for spec in read(report_dir)]
