"""`bncli plot` as a library function: recognise what a results directory holds and draw its figures.

Every file of a results folder is read through the checked readers below: a file that is missing, truncated, not
JSON / CSV, or holds a value of the wrong type or lacks a column the figure needs is one `UsageError` naming the file
and what was expected ("<path>: damaged or not written by bncli (expected ...); run `bncli train` again"). Only the
reading and parsing steps catch exceptions; what is read is then validated, so that a failure while drawing valid
values is still reported as the bug it is.

Whatever a folder holds, `bncli plot` ends in bounded time and memory: every read goes through `bncli.safeio` (regular
files only, a size cap per file, JSON nesting bounded), and what is drawn is capped (runs, arms, rows, columns of
panels) far above what bncli writes. A file over a cap is one `UsageError` too ("<path>: too large to plot (...)").
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from . import plotting, safeio
from .errors import UsageError
from .experiment import draw_learning_curves, listed_curves
from .lrfind import flat_arms, lrfind_title
from .plotting.ranges import MAX_ARMS, MAX_RANGE_COLUMNS, MAX_RANGE_ROWS, range_columns, range_size_error  # noqa: F401
from .runs import read_metrics

FORMATS = ("png", "svg", "pdf")
COMMAND = {"train": "bncli train", "sweep": "bncli sweep", "lrfind": "bncli lrfind", "report": "bncli report"}
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")  # a run hash: a plain name, never a path
_NOT_A_FILE = (IsADirectoryError, NotADirectoryError)  # a folder where the file should be (or in its path)
# ValueError: JSONDecodeError, float('x'), safeio.Unreadable (a FIFO, a device, too large, nested too deeply)
_UNPARSABLE = (UnicodeDecodeError, ValueError, csv.Error, RecursionError)

# Caps: what bncli writes is far below each (an experiment.json of 30 runs is 7 KB, a sweep's range.csv of 128 points
# 20 KB, a run's metrics.csv of 20 evaluations 3 KB, its percentiles.csv of a long run a few MB).
JSON_LIMIT = 16 * safeio.MIB  # experiment.json, sweep.json, lr_find.json, report.json
TABLE_LIMIT = 16 * safeio.MIB  # range.csv, ranges.csv, lr_find.csv, a run's percentiles.csv
CONFIG_LIMIT = safeio.MIB  # a run's config.yaml (2 KB)
METRICS_BYTES = 16 * safeio.MIB  # the metrics.csv of all the runs of a train folder together (parsed to floats:
#                                  about 25x in memory at worst)
METRICS_ROWS = 50_000  # their rows together, each a point of a curve (at most 51 per run in the shipped experiments)
MAX_ROWS = 100_000  # rows kept from one table (lr_find.csv: iterations x arms; range.csv: points x arms)
PERCENTILE_ROWS = 5_000  # unit 0's rows of a percentiles.csv, each a point of 3 curves (51 in the published report)
MAX_COLUMNS = 1_000  # columns of one table (range.csv: the swept keys and 11 more)
MAX_RUNS = 2_000  # runs an experiment.json may list (arms x seeds: 30 in the published report)
CUT = "the last line is cut short (no newline at its end)"  # bncli ends every row of its CSV files with one


def damaged(path, expected: str, kind: str | None = None) -> UsageError:
    """The one message for a results file that cannot be what bncli wrote."""
    again = f"run `{COMMAND[kind]}` again" if kind in COMMAND else "run the command again"
    return UsageError(f"{path}: damaged or not written by bncli (expected {expected}); {again}")


def missing(path, expected: str, kind: str | None = None) -> UsageError:
    again = f"run `{COMMAND[kind]}` again" if kind in COMMAND else "run the command again"
    return UsageError(f"{path}: missing (expected {expected}); {again}")


def too_large(path, found: str) -> UsageError:
    """The one message for a results file holding more than `bncli plot` draws in bounded time: damaged, or written
    by bncli for an experiment too large to draw (running it again would not help)."""
    return UsageError(f"{path}: too large to plot ({found})")


def _unreadable(path, e: OSError, expected: str, kind: str) -> UsageError:
    if isinstance(e, FileNotFoundError):
        return missing(path, expected, kind)
    if isinstance(e, _NOT_A_FILE):
        return damaged(path, f"{expected}; it is a folder or in one that is not a folder", kind)
    return damaged(path, f"{expected}; it cannot be read: {e.strerror or type(e).__name__}", kind)


def _show(v, limit=40) -> str:
    """A value read from a damaged file, for a message: quoted and cut short."""
    text = repr(v)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


# -- checked readers -------------------------------------------------------------------------------------------------
def read_json(path: Path, expected: str, kind: str, limit: int = JSON_LIMIT) -> dict:
    """A JSON object (a dict), or a UsageError naming ``path``."""
    try:
        doc = safeio.read_json(path, limit)
    except OSError as e:
        raise _unreadable(path, e, expected, kind) from None
    except _UNPARSABLE as e:
        raise damaged(path, f"{expected}; {_why(e)}", kind) from None
    if not isinstance(doc, dict):
        raise damaged(path, f"{expected}; found a JSON {_json_type(doc)}", kind)
    return doc


def read_table(path: Path, columns, expected: str, kind: str, allow_empty=False, keep=None,
               max_rows=MAX_ROWS) -> list[dict]:
    """The rows of a CSV file with a header holding every one of ``columns``, each row as long as the header.
    ``allow_empty``: an empty file (a table without rows, as bncli writes it) is no rows. ``keep``: only the rows
    it is true of are kept, at most ``max_rows`` of them."""
    try:
        text = safeio.read_text(path, TABLE_LIMIT)
        if text and not text.endswith("\n"):
            raise damaged(path, f"{expected}; {CUT}", kind)
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames
        if header is not None and len(header) > MAX_COLUMNS:
            raise too_large(path, f"{len(header):,} columns, more than {MAX_COLUMNS:,}")
        rows = []
        for row in reader:
            if None in row or None in row.values():
                raise damaged(path, f"{expected}; line {reader.line_num} has {_cells(row)} cells for "
                                    f"{len(reader.fieldnames)} columns", kind)
            if keep is None or keep(row):
                if len(rows) == max_rows:
                    raise too_large(path, f"more than {max_rows:,} rows to draw")
                rows.append(row)
    except OSError as e:
        raise _unreadable(path, e, expected, kind) from None
    except _UNPARSABLE as e:
        raise damaged(path, f"{expected}; {_why(e)}", kind) from None
    if header is None and allow_empty:
        return []
    lacking = [c for c in columns if c not in (header or [])]
    if lacking:
        raise damaged(path, f"{expected}; no column {_show(lacking[0])}", kind)
    return rows


@dataclass
class Budget:
    """What the metrics.csv of the runs of one folder may still hold together: they are all kept and drawn."""
    bytes: int = METRICS_BYTES
    rows: int = METRICS_ROWS


def read_run_metrics(path: Path, kind="train", need=("train_loss", "test_acc"), budget: Budget | None = None):
    """A run's metrics.csv as (columns, rows of floats), checked: a header starting with 'step', the columns
    ``need``, every row as long as the header, numbers only ('' is NaN), finite non-negative steps; a file cut
    short (empty, or not ending with a newline) is damaged. ``budget``: what this file and the others read with
    it may still hold (the file's size is taken from it before it is read, its rows after)."""
    expected = "a run's metrics.csv: a header starting with 'step', then rows of numbers"
    try:
        if budget is not None:
            size = os.stat(path).st_size
            if size > budget.bytes:
                raise too_large(path, f"{size:,} bytes, more than the {budget.bytes:,} left of the {METRICS_BYTES:,} "
                                      "`bncli plot` reads from the runs' metrics together")
            budget.bytes -= size
        columns, rows = read_metrics(path)  # bounded (safeio); a file cut short is a ValueError
    except OSError as e:
        raise _unreadable(path, e, expected, kind) from None
    except StopIteration:
        raise damaged(path, f"{expected}; the file is empty", kind) from None
    except _UNPARSABLE as e:
        raise damaged(path, f"{expected}; {_why(e)}", kind) from None
    if not columns or columns[0] != "step" or len(set(columns)) != len(columns):
        raise damaged(path, f"{expected}; the header is {_show(','.join(columns), 80)}", kind)
    lacking = [c for c in need if c not in columns]
    if lacking:
        raise damaged(path, f"{expected}; no column {_show(lacking[0])}", kind)
    if not rows:
        raise damaged(path, f"{expected}; no rows", kind)
    if budget is not None:
        if len(rows) > budget.rows:
            raise too_large(path, f"{len(rows):,} rows, more than the {budget.rows:,} left of the {METRICS_ROWS:,} "
                                  "`bncli plot` draws from the runs' metrics together")
        budget.rows -= len(rows)
    for i, r in enumerate(rows, 2):
        if len(r) != len(columns):
            raise damaged(path, f"{expected}; line {i} has {len(r)} cells for {len(columns)} columns", kind)
        if not (math.isfinite(r[0]) and r[0] >= 0):
            raise damaged(path, f"{expected}; line {i} has step {r[0]!r}", kind)
    return columns, rows


def _why(e: BaseException) -> str:
    if isinstance(e, RecursionError):
        return "nested too deeply"
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return text[:120]


def _cells(row: dict) -> int:
    return sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _num_or_nan(v) -> float:
    """A JSON number, or NaN for null (the NaN rule of runs/store.py)."""
    return math.nan if v is None else float(v)


def _require(doc: dict, path, expected, kind, **fields):
    """Each ``fields`` key present in ``doc`` with a value of the given type(s); else a UsageError."""
    for key, types in fields.items():
        if key not in doc:
            raise damaged(path, f"{expected}; no {key!r}", kind)
        if not _of_type(doc[key], types):
            raise damaged(path, f"{expected}; {key!r} is a JSON {_json_type(doc[key])}", kind)


def _of_type(v, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    for t in types:
        if t is None and v is None:
            return True
        if t is float and _is_num(v):
            return True
        if t is str and isinstance(v, str):
            return True
        if t in (list, dict) and isinstance(v, t):
            return True
    return False


def _int_cell(v: str) -> bool:
    """A CSV cell holding a non-negative whole number (or empty)."""
    if v == "":
        return True
    try:
        x = float(v)
    except ValueError:
        return False
    return math.isfinite(x) and x >= 0 and x == int(x)


# -- the three kinds of results folder --------------------------------------------------------------------------------
def kind_of(results_dir: Path) -> str:
    for name, kind in (("report.json", "report"), ("sweep.json", "sweep"), ("experiment.json", "train"),
                       ("lr_find.json", "lrfind")):
        if (results_dir / name).exists():
            return kind
    raise UsageError(f"{results_dir}: no bncli results here (expected experiment.json from `bncli train`, "
                     "sweep.json from `bncli sweep`, lr_find.json from `bncli lrfind` or report.json)")


EXPERIMENT = "the experiment.json of `bncli train`: an object with 'name' and a list of 'runs' (arm, hash, status)"


def read_experiment(d: Path) -> dict:
    path = d / "experiment.json"
    exp = read_json(path, EXPERIMENT, "train")
    if "runs" not in exp:
        raise UsageError(f"{d}: written by an older bncli (no list of runs in experiment.json); run `bncli train` "
                         "again into this folder (its old <arm>/seed-<k> runs are not reused)")
    _require(exp, path, EXPERIMENT, "train", name=str, runs=list)
    for key, types in (("title", str), ("target", (dict, None))):
        if key in exp and not _of_type(exp[key], types):
            raise damaged(path, f"{EXPERIMENT}; {key!r} is a JSON {_json_type(exp[key])}", "train")
    target = exp.get("target") or {}
    if not (_of_type(target.get("accuracy"), (float, None)) and _of_type(target.get("split"), (str, None))):
        raise damaged(path, f"{EXPERIMENT}; 'target' needs a number 'accuracy' and a 'split' name", "train")
    _check_runs(path, exp["runs"], EXPERIMENT, "train")
    if len(exp["runs"]) > MAX_RUNS:
        raise too_large(path, f"{len(exp['runs']):,} runs, more than {MAX_RUNS:,}")
    arms = {r["arm"] for r in exp["runs"]}
    if len(arms) > MAX_ARMS:
        raise too_large(path, f"{len(arms):,} arms, more than {MAX_ARMS}")
    return exp


def _check_runs(path: Path, runs, expected: str, kind: str):
    """The list of runs a train or sweep folder names: each an object with an arm, a status and a safe run hash."""
    if not isinstance(runs, list):
        raise damaged(path, f"{expected}; 'runs' is a JSON {_json_type(runs)}", kind)
    for i, r in enumerate(runs):
        if not (isinstance(r, dict) and isinstance(r.get("arm"), str) and isinstance(r.get("status"), str)
                and isinstance(r.get("hash"), str) and _SAFE.fullmatch(r["hash"])):
            raise damaged(path, f"{expected}; run {i} is not an object with an arm, a status and a run hash", kind)


def read_train(d: Path) -> tuple[dict, dict, dict]:
    """experiment.json and the checked metrics of the finished runs it lists, per arm, with whether each diverged:
    this invocation's runs, never older runs kept in runs/ as a cache."""
    exp = read_experiment(d)
    budget = Budget()
    curves, diverged = listed_curves(exp, d, read=lambda path: read_run_metrics(path, budget=budget))
    if not curves:
        raise UsageError(f"{d}: the experiment has no finished runs to plot")
    return exp, curves, diverged


def train_figure(d) -> Figure:
    """The learning curves of a `bncli train` folder as `bncli plot` draws them, as a Figure; nothing written."""
    return draw_learning_curves(*read_train(Path(d)))


def plot_train(d: Path, out: Path, fmt: str) -> list[Path]:
    exp, curves, diverged = read_train(d)
    paths = [out / f"learning_curves.{fmt}"]
    draw_learning_curves(exp, curves, diverged, paths[0])
    gap = ("train_eval_acc", "test_acc", "train_eval_loss", "test_loss")
    if curves and all(all(c in cols for c in gap) for cs in curves.values() for cols, _ in cs):
        paths.append(out / f"generalization_gap.{fmt}")
        plotting.gap_curves(curves, paths[-1], title=exp.get("title", exp["name"]), diverged=diverged)
    pct = _percentile_curves(d, exp)
    if pct:
        from .report.figures import percentiles

        paths.append(out / f"percentiles.{fmt}")
        percentiles(exp.get("title", exp["name"]), pct["curves"], 0, paths[-1], layer=pct["layer"],
                    images=pct["images"], seed=pct["seed"], activation=pct["activation"])
    return paths


def _cell(v: str) -> float:
    """A CSV cell as a float; NaN (not plotted) for anything that is not a number."""
    try:
        return float(v)
    except ValueError:
        return math.nan


PERCENTILES = "the percentiles.csv of a run with `measure: [percentiles]`: step, unit, p15, p50, p85 per row"
RUN_CONFIG = "the config.yaml of a run: the YAML mapping `bncli train` wrote"


def _percentile_curves(d: Path, exp: dict) -> dict | None:
    """Unit 0's percentiles over training, per arm, from the lowest seed's finished run of each arm, if its
    config.yaml says it measured them (CLAIMS C9's figure for a `bncli train` folder; a percentiles.csv in a run that
    did not measure them is not the run's and is not drawn); None when no run did."""
    curves, labels, seen = {}, None, set()
    ok = [r for r in exp["runs"] if r.get("status") == "ok"]
    for r in sorted(ok, key=lambda r: r["seed"] if isinstance(r.get("seed"), int) else 1 << 62):
        if r["arm"] in seen:
            continue
        seen.add(r["arm"])  # the lowest seed's run of each arm only: at most MAX_ARMS configs are read
        run = d / "runs" / r["hash"]
        if not os.path.lexists(run / "percentiles.csv"):
            continue
        cfg = _run_config(run / "config.yaml")
        tc, mc = (v if isinstance(v, dict) else {} for v in (cfg.get("train"), cfg.get("model")))
        if not (isinstance(tc.get("measure"), list) and "percentiles" in tc["measure"]):
            continue
        rows = read_table(run / "percentiles.csv", ("step", "unit", "p15", "p50", "p85"), PERCENTILES, "train",
                          keep=lambda x: x["unit"] == "0", max_rows=PERCENTILE_ROWS)
        curves[r["arm"]] = tuple([_cell(x[k]) for x in rows] for k in ("step", "p15", "p50", "p85"))
        if labels is None:  # from the first run drawn: every run of an experiment has the same
            labels = {"layer": _of(tc.get("percentile_layer"), str, "last hidden layer"),
                      "images": _of(tc.get("percentile_images"), int, 1000), "seed": _of(r.get("seed"), int, 0),
                      "activation": _of(mc.get("activation"), str, "sigmoid")}
    return {"curves": curves, **labels} if curves else None


def _of(v, t: type, default):
    """``v`` if it is a ``t`` (not a bool), else ``default``: a label for a figure, never a number drawn."""
    return v if isinstance(v, t) and not isinstance(v, bool) else default


def _run_config(path: Path) -> dict:
    """A run's config.yaml as a mapping, read bounded, or a UsageError naming it."""
    from .yamlio import YamlError, load_with_lines

    try:
        cfg = load_with_lines(safeio.read_text(path, CONFIG_LIMIT))[0]
    except OSError as e:
        raise _unreadable(path, e, RUN_CONFIG, "train") from None
    except (ValueError, YamlError) as e:  # YamlError, safeio.Unreadable, UnicodeDecodeError
        raise damaged(path, f"{RUN_CONFIG}; {_why(e)}", "train") from None
    if not isinstance(cfg, dict):
        raise damaged(path, f"{RUN_CONFIG}; it is not a mapping", "train")
    return cfg


SWEEP = "the sweep.json of `bncli sweep`: an object with 'name', the swept 'keys' and the 'range_key'"
RANGE = "the range.csv of `bncli sweep`: one row per arm and swept point"
RANGES = "the ranges.csv of `bncli sweep`: one row per arm with its usable range"


def read_sweep_info(d: Path) -> dict:
    """sweep.json of a `bncli sweep` folder, checked (its list of runs too, when it has one: older sweeps do not)."""
    path = d / "sweep.json"
    info = read_json(path, SWEEP, "sweep")
    _require(info, path, SWEEP, "sweep", name=str, keys=list)
    if "runs" in info:
        _check_runs(path, info["runs"], SWEEP, "sweep")
    return info


def read_sweep(d: Path) -> dict:
    """The arguments of `plotting.range_figure` (but the path) read from a `bncli sweep` folder, checked."""
    path = d / "sweep.json"
    info = read_sweep_info(d)
    _require(info, path, SWEEP, "sweep", name=str, keys=list)
    rk = info.get("range_key")
    keys = info["keys"]
    if not keys or not all(isinstance(k, str) for k in keys) or not _of_type(rk, (str, None)) \
            or (rk is not None and rk not in keys):
        raise damaged(path, f"{SWEEP} (one of the keys)", "sweep")
    if "title" in info and not _of_type(info["title"], str):  # older sweeps have none: their name is the title
        raise damaged(path, f"{SWEEP}; 'title' is a JSON {_json_type(info['title'])}", "sweep")
    if not rk:
        raise UsageError(f"{d}: the sweep has no numeric key to draw a range figure for")
    others = [k for k in keys if k != rk]
    rows = read_table(d / "range.csv", ["arm", *keys, "acc_mean", "acc_ci_low", "acc_ci_high", "train_loss_mean",
                                        "diverged"], RANGE, "sweep")
    if not rows:
        raise damaged(d / "range.csv", f"{RANGE}; no rows", "sweep")
    too_many = range_size_error(rows, [], keys, rk)
    if too_many:
        raise too_large(d / "range.csv", too_many)
    for i, r in enumerate(rows, 2):
        if not _int_cell(r["diverged"]):
            raise damaged(d / "range.csv", f"{RANGE}; 'diverged' on line {i} is not a count", "sweep")
        lo, m, hi = (plotting.as_float(r[c]) for c in ("acc_ci_low", "acc_mean", "acc_ci_high"))
        if m - lo < 0 or hi - m < 0:  # NaN (not computed) passes; an interval not around its mean does not
            raise damaged(d / "range.csv", f"{RANGE}; on line {i} the interval [acc_ci_low, acc_ci_high] does not "
                                           "hold acc_mean", "sweep")
    usable = read_table(d / "ranges.csv", ["arm", *others, "n_learn", "n_seeds", "lo", "hi"], RANGES, "sweep",
                        allow_empty=True)
    if len(usable) > MAX_RANGE_ROWS:
        raise too_large(d / "ranges.csv", f"{len(usable):,} rows, more than {MAX_RANGE_ROWS:,}")
    for i, u in enumerate(usable, 2):
        if not (_int_cell(u["n_learn"]) and _int_cell(u["n_seeds"]) and u["n_seeds"] != ""):
            raise damaged(d / "ranges.csv", f"{RANGES}; 'n_learn' / 'n_seeds' on line {i} are not counts", "sweep")
    return {"range_rows": rows, "usable": usable, "keys": keys, "range_key": rk,
            "title": info.get("title", info["name"])}


def sweep_figure(d) -> Figure:
    """The range figure of a `bncli sweep` folder as `bncli plot` draws it, as a Figure; nothing written."""
    return plotting.range_figure(**read_sweep(Path(d)))


def plot_sweep(d: Path, out: Path, fmt: str) -> list[Path]:
    path = out / f"range.{fmt}"
    plotting.range_figure(**read_sweep(d), path=path)
    return [path]


LRFIND_JSON = "the lr_find.json of `bncli lrfind`: an object with 'name' and per arm its 'suggestions'"
LRFIND_CSV = "the lr_find.csv of `bncli lrfind`: arm, iteration, lr (> 0), loss, smoothed_loss per row"


def plot_lrfind(d: Path, out: Path, fmt: str) -> list[Path]:
    path = d / "lr_find.json"
    info = read_json(path, LRFIND_JSON, "lrfind")
    _require(info, path, LRFIND_JSON, "lrfind", name=str, suggestions=dict)
    if len(info["suggestions"]) > MAX_ARMS:
        raise too_large(path, f"{len(info['suggestions']):,} arms, more than {MAX_ARMS}")
    suggestions = {}
    for arm, s in info["suggestions"].items():
        if not (isinstance(s, dict) and all(k in s and _of_type(s[k], (float, None)) for k in ("steep_lr", "min_lr"))):
            raise damaged(path, f"{LRFIND_JSON}; the suggestions of {_show(arm)} are not numbers", "lrfind")
        suggestions[arm] = {**s, "steep_lr": _num_or_nan(s["steep_lr"]), "min_lr": _num_or_nan(s["min_lr"])}
    csv_path = d / "lr_find.csv"
    curves: dict[str, list] = {}
    for i, r in enumerate(read_table(csv_path, ["arm", "iteration", "lr", "loss", "smoothed_loss"], LRFIND_CSV,
                                     "lrfind"), 2):
        try:
            f = lambda v: float(v) if v != "" else math.nan  # noqa: E731
            point = (int(r["iteration"]), f(r["lr"]), f(r["loss"]), f(r["smoothed_loss"]))
        except ValueError:
            raise damaged(csv_path, f"{LRFIND_CSV}; line {i} holds a cell that is not a number", "lrfind") from None
        if not (math.isfinite(point[1]) and point[1] > 0):
            raise damaged(csv_path, f"{LRFIND_CSV}; line {i} has lr {_show(r['lr'])}", "lrfind")
        curves.setdefault(r["arm"], []).append(point)
    if not curves:
        raise damaged(csv_path, f"{LRFIND_CSV}; no rows", "lrfind")
    unknown = [arm for arm in curves if arm not in suggestions]
    if unknown:
        raise damaged(path, f"{LRFIND_JSON}; no suggestions for arm {_show(unknown[0])} of lr_find.csv", "lrfind")
    # an arm whose loss was never finite has nothing to draw (its table row says so)
    curves = {arm: c for arm, c in curves.items() if any(math.isfinite(p[3]) for p in c)}
    if not curves:
        raise UsageError(f"{d}: no finite loss at any learning rate in any arm: the range test has nothing to draw")
    for arm, c in curves.items():
        if not math.isfinite(c[0][3]):
            raise damaged(csv_path, f"{LRFIND_CSV}; the curve of {_show(arm)} starts with a non-finite smoothed loss",
                          "lrfind")
    path = out / f"lr_find.{fmt}"
    plotting.lrfind_plot(curves, suggestions, path, title=lrfind_title(info["name"], info.get("seed")),
                         flat=flat_arms(suggestions))
    return [path]


REPORT = "the report.json of `bncli report`: an object holding every number of the report"


def plot_dir(results_dir, fmt="png", out=None) -> list[Path]:
    d = Path(results_dir)
    try:
        is_dir = d.is_dir()
    except OSError as e:  # a name too long for the file system, ...
        raise UsageError(f"{str(d)[:200]}: not a directory ({e.strerror})") from None
    if not is_dir:
        raise UsageError(f"{d}: not a directory")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    out = Path(out) if out else d
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a directory (expected a folder for the figures)")
    kind = kind_of(d)
    # Values read back from a file may be odd (an edited folder): matplotlib's and numpy's warnings about them (an
    # empty legend, a log axis without positive values) are not the user's business; errors still are.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind == "report":
            from .report import plot_report

            read_json(d / "report.json", REPORT, "report")  # the folder's mark: damaged, the folder is
            return plot_report(d, out, fmt)
        return {"train": plot_train, "sweep": plot_sweep, "lrfind": plot_lrfind}[kind](d, out, fmt)
