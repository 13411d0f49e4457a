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
arguments but ``path``, which replay supplies as ``<figures folder>/<name>.<format>``. An argument added to a drawer
later has a default (the older drawing), so that a file written before it still replays. Arguments are stored as JSON:
numpy arrays become (nested) lists, numpy scalars Python numbers, tuples lists; dictionaries need string keys.

One rule for floats that JSON cannot hold: a NaN, +inf or -inf, wherever it occurs (inside arrays or alone), is
written as the object ``{"$float": "nan"}``, ``{"$float": "inf"}`` or ``{"$float": "-inf"}`` and read back as that
float. ``null`` stays ``None`` (some arguments use None for "absent", which is not NaN). The file is strict JSON.

A file read back is bounded before anything is drawn, so that any file accepted draws in bounded time: at most
``LIMIT`` bytes (read through `bncli.safeio`: a regular file, JSON nested at most 64 levels), ``MAX_FIGURES`` figures,
``MAX_VALUES`` JSON values in one figure's arguments and ``MAX_FILE_VALUES`` in all of them, ``MAX_PANELS`` panels
(or arms, or rows of differences) in one figure, range figures of the size `bncli plot` draws for a sweep and
``MAX_FILE_RANGE_COLUMNS`` columns of them in all. The published reports are well below each cap (results/report-quick:
19 figures, 300 KB, 20,577 values in all and at most 5,441 in one figure, 8 range columns, at most 128 range rows).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import atomic, plotting, safeio
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
    "bncli.report.figures.differences": figures.differences,
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
    """Draw one spec into ``fig_dir/<name>.<fmt>``; returns the path. For a spec made by `make` (the report's own
    figures): a failure here is a bug and propagates. Specs read from a file go through `replay`."""
    fn = DRAWERS.get(spec.get("draw"))
    name = spec.get("name")
    if fn is None or not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
        raise UsageError(f"figure spec {name!r}: unknown drawing function {spec.get('draw')!r} or bad name "
                         f"(allowed functions: {', '.join(DRAWERS)})")
    path = Path(fig_dir) / f"{name}.{fmt}"
    fn(path=path, **decode(spec["args"]))
    return path


# The shape of every argument a stored spec may give each drawer, checked before anything is drawn from a file. A
# shape is a type (float: any number, NaN and infinities included; None: null), ANY, or ("list", shape), ("tuple",
# [shapes]) (a list of that length), ("dict", shape) (string keys), ("or", shape, ...).
ANY = "any"
NUMS = ("list", float)
CURVE4 = ("tuple", [NUMS, NUMS, NUMS, NUMS])
ARG_SHAPES = {
    "bncli.report.figures.bars": {
        "title": str, "ylabel": str, "note": str, "over": str, "zero": bool,
        "panels": ("list", ("tuple", [str, ("list", ANY), ("dict", ("list", ("tuple", [float, float, float])))]))},
    "bncli.report.figures.lines": {
        "title": str, "xlabel": str, "ylabel": str, "logx": bool, "logy": bool, "band": str,
        "panels": ("list", ("tuple", [str, ("dict", CURVE4)]))},
    "bncli.report.figures.percentiles": {"title": str, "curves": ("dict", CURVE4), "unit": int, "layer": str,
                                         "images": int, "seed": int, "activation": str},
    "bncli.report.figures.differences": {
        "title": str, "ylabel": str, "margin": ("or", float, None), "note": str,
        "rows": ("list", ("tuple", [str, NUMS, ("tuple", [float, float, float])]))},
    "bncli.plotting.learning_curves": {
        "curves_by_arm": ("dict", ("list", ("tuple", [("list", str), ("list", NUMS)]))), "title": str,
        "target": ("or", float, None), "diverged": ("or", None, ("dict", ("list", bool))), "target_column": str},
    "bncli.plotting.range_figure": {
        "range_rows": ("list", ("dict", ANY)), "usable": ("list", ("dict", ANY)), "keys": ("list", str),
        "range_key": str, "title": str},
}
PANEL_ARGS = {"panels", "curves", "curves_by_arm", "rows"}  # one panel or column each: capped
MAX_PANELS = 100
LIMIT = 16 * safeio.MIB  # bytes of figures.json
MAX_FIGURES = 40  # 19 in the published quick report; each takes ~0.4 s to draw, up to ~0.7 s at the caps below
MAX_VALUES = 100_000  # JSON values (numbers, strings, arrays, ...) in one figure's arguments
MAX_FILE_VALUES = 250_000  # in all the figures' arguments together
MAX_FILE_RANGE_COLUMNS = 32  # columns of panels of all the range figures together (each takes ~0.4 s to draw)
_JSON_NAMES = {dict: "an object", list: "an array", str: "a string", bool: "true or false", int: "an integer",
               float: "a number", type(None): "null"}


def shape_error(v, shape, where: str) -> str | None:
    """None if ``v`` has ``shape``, else what is wrong and where (``where``: the path to ``v``)."""
    if shape == ANY:
        return None
    if isinstance(shape, tuple):
        kind = shape[0]
        if kind == "or":
            errors = [shape_error(v, s, where) for s in shape[1:]]
            return None if None in errors else errors[0]
        if kind == "dict":
            if not isinstance(v, dict):
                return f"{where} to be an object, found {_json_name(v)}"
            return next((e for k, x in v.items() if (e := shape_error(x, shape[1], f"{where}[{k!r}]"))), None)
        if not isinstance(v, list):
            return f"{where} to be an array, found {_json_name(v)}"
        if kind == "list":
            return next((e for i, x in enumerate(v) if (e := shape_error(x, shape[1], f"{where}[{i}]"))), None)
        if len(v) != len(shape[1]):
            return f"{where} to be an array of {len(shape[1])}, found {len(v)} values"
        return next((e for i, (x, s) in enumerate(zip(v, shape[1])) if (e := shape_error(x, s, f"{where}[{i}]"))),
                    None)
    ok = (v is None if shape is None else
          isinstance(v, (int, float)) and not isinstance(v, bool) if shape is float else
          isinstance(v, int) and not isinstance(v, bool) if shape is int else isinstance(v, shape))
    return None if ok else f"{where} to be {_JSON_NAMES[shape or type(None)]}, found {_json_name(v)}"


def _json_name(v) -> str:
    return _JSON_NAMES.get(type(v), type(v).__name__)


def count_values(x, limit: int) -> int:
    """The JSON values in ``x`` (itself included), counted without recursion; stops once past ``limit``."""
    n, stack = 0, [x]
    while stack and n <= limit:
        v = stack.pop()
        n += 1
        if isinstance(v, (dict, list)):
            stack.extend(v.values() if isinstance(v, dict) else v)
    return n


@dataclass
class Budget:
    """What the figures of one file may still hold together."""
    values: int = MAX_FILE_VALUES
    range_columns: int = MAX_FILE_RANGE_COLUMNS


def _check_spec(spec, i: int, path: Path, budget: Budget | None = None) -> tuple:
    """(drawing function, name, decoded arguments) of the ``i``-th spec of the file ``path``, or a UsageError naming
    the file, the figure and what was expected. ``budget``: what the figures of the file may still hold (taken from
    it)."""
    budget = Budget() if budget is None else budget
    if not isinstance(spec, dict):
        raise _damaged(path, f"figure {i + 1}", "an object with 'name', 'draw' and 'args'")
    name = spec.get("name")
    label = f"figure {name!r}" if isinstance(name, str) else f"figure {i + 1}"
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or len(name) > 100:
        raise _damaged(path, label, "a 'name' of at most 100 letters, digits, '_', '.' and '-'")
    fn = DRAWERS.get(spec.get("draw")) if isinstance(spec.get("draw"), str) else None
    if fn is None:
        raise _damaged(path, label, f"'draw' naming one of {', '.join(DRAWERS)}")
    shapes = ARG_SHAPES[spec["draw"]]
    args = spec.get("args")
    if not isinstance(args, dict):
        raise _damaged(path, label, "'args', an object of the drawing function's arguments")
    left = min(MAX_VALUES, budget.values)
    n = count_values(args, left)
    if n > left:
        raise _damaged(path, label, f"at most {MAX_VALUES:,} values in 'args' and {MAX_FILE_VALUES:,} in all the "
                                    "figures")
    budget.values -= n
    try:
        args = decode(args)
    except (ValueError, RecursionError) as e:
        raise _damaged(path, label, "nesting within bounds" if isinstance(e, RecursionError) else str(e)) from None
    required = [p.name for p in inspect.signature(fn).parameters.values()
                if p.default is inspect.Parameter.empty and p.name != "path"]
    for key in required:
        if key not in args:
            raise _damaged(path, label, f"argument {key!r} in 'args'")
    for key, v in args.items():
        if key not in shapes:
            raise _damaged(path, label, f"only the arguments {', '.join(shapes)}; found {key[:40]!r}")
        if key in PANEL_ARGS and len(v if isinstance(v, (list, dict)) else ()) > MAX_PANELS:
            raise _damaged(path, label, f"at most {MAX_PANELS} entries in {key!r}, found {len(v)}")
        try:
            wrong = shape_error(v, shapes[key], f"args[{key!r}]")
        except RecursionError:
            wrong = f"args[{key!r}] nested within bounds"
        if wrong:
            raise _damaged(path, label, wrong[:200])
    if fn is plotting.range_figure:
        from ..plotting.ranges import range_columns, range_size_error

        too_many = range_size_error(args["range_rows"], args["usable"], args["keys"], args["range_key"])
        if too_many:
            raise _damaged(path, label, f"a range figure of at most the size `bncli plot` draws; found {too_many}")
        budget.range_columns -= range_columns(args["range_rows"], args["keys"], args["range_key"])
        if budget.range_columns < 0:
            raise _damaged(path, label, f"at most {MAX_FILE_RANGE_COLUMNS} columns of panels in all the range "
                                        "figures together")
    return fn, name, args


def _damaged(path, label: str, expected: str) -> UsageError:
    return UsageError(f"{path}: {label}: damaged or not written by bncli (expected {expected}); run `bncli report` "
                      "again")


def write(path, specs: list[dict]):
    """The spec file, one figure per line (strict JSON)."""
    head = json.dumps({"format": FORMAT, "version": VERSION, "nonfinite": NONFINITE_RULE})[:-1]
    body = ",\n".join(json.dumps(s, allow_nan=False, ensure_ascii=False) for s in specs)
    atomic.write_text(path, f'{head},\n "figures": [\n{body}\n]}}\n' if specs else f'{head}, "figures": []}}\n')


def read(report_dir) -> list:
    """The figure specs of a report folder (the list as stored: `replay` checks each); a UsageError if there are
    none to read (an older report) or the file is damaged."""
    path = Path(report_dir) / "figures" / FILE
    if not os.path.lexists(path):
        raise UsageError(f"{report_dir}: no figures/{FILE} (the report was made by an older bncli, which did not "
                         "store how its figures are drawn): run `bncli report` again to write it (finished runs "
                         "are reused), then `bncli plot` can redraw the figures")
    try:
        doc = safeio.read_json(path, LIMIT)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8, safeio.Unreadable
        why = ("nested too deeply" if isinstance(e, RecursionError) else
               e.strerror or type(e).__name__ if isinstance(e, OSError) else str(e).splitlines()[0][:120])
        raise UsageError(f"{path}: damaged or not written by bncli (expected the figure specs of `bncli report`, "
                         f"strict JSON; {why}); run `bncli report` again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise UsageError(f"{path}: not a version-{VERSION} {FORMAT} file; run `bncli report` again")
    if not isinstance(doc.get("figures"), list):
        raise UsageError(f"{path}: damaged or not written by bncli (expected a list of figure specs under "
                         "'figures'); run `bncli report` again")
    if len(doc["figures"]) > MAX_FIGURES:
        raise UsageError(f"{path}: damaged or not written by bncli (expected at most {MAX_FIGURES} figure specs, "
                         f"found {len(doc['figures']):,}); run `bncli report` again")
    return doc["figures"]


# What a drawing function raises when stored arguments of the right types hold the wrong shapes or values (a list
# where a number is expected, a row without a column, ...). Only a replay from a file catches them.
DATA_ERRORS = (TypeError, ValueError, LookupError, ArithmeticError)


def replay(report_dir, fig_dir, fmt: str) -> list[Path]:
    """Redraw every figure of the report from its specs into ``fig_dir`` in format ``fmt``. Every spec is checked
    first (drawing function, name, argument names and types), so that a damaged file draws nothing; a drawing
    function that fails on the stored values is a UsageError naming the file and the figure."""
    path = Path(report_dir) / "figures" / FILE
    budget = Budget()
    checked = [_check_spec(spec, i, path, budget) for i, spec in enumerate(read(report_dir))]
    out = []
    for fn, name, args in checked:
        target = Path(fig_dir) / f"{name}.{fmt}"
        try:
            fn(path=target, **args)
        except DATA_ERRORS as e:
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
            raise _damaged(path, f"figure {name!r}", f"arguments {_NAMES[fn]} can draw; it failed with {why}") from None
        out.append(target)
    return out
