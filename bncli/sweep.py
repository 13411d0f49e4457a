"""`bncli sweep` as a library function: hyperparameter-range studies, parallel and resumable.

    results/<name>/config.yaml       the experiment config with its sweep section
                   runs/<hash>/      one run (see runs.py), keyed by the hash of its resolved config
                   failed/<hash>.json  the error of a run that raised (retried by the next invocation)
                   summary.csv       one row per run: swept keys, arm, seed, results, status
                   range.csv         per arm and swept point: n, mean, sd, 95% CI of the final accuracy of the runs
                                     that did not diverge, and how many diverged
                   ranges_by_seed.csv  per arm, other swept keys and seed: the usable range of ``range_key``
                   ranges.csv        per arm (and other swept keys): seeds that learn, usable range over seeds
                   sweep.json        all of the above, with versions

A run is finished when its directory exists (they are created atomically), so an interrupted or killed sweep
resumes by running only what is missing. Run seeds are the experiment's seeds; random-search draws come from
``SeedSequence(sweep.seed)``: a run's numbers depend on its resolved config alone, never on scheduling.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, stats
from .config import ExperimentConfig, Source, SweepParam, to_yaml, validate
from .errors import UsageError
from .executor import execute
from .experiment import check_with_data, prepare_output
from .runs import dumps, is_current, run_task, versions
from .train import DIVERGED_RULE as DIVERGED, TAIL_EVALS



@dataclass
class SweepRun:
    point: dict
    arm: str
    seed: int
    config: ExperimentConfig
    hash: str
    run_dir: Path
    done: bool = False


@dataclass
class SweepResult:
    out_dir: Path
    keys: list[str]
    rows: list[dict]
    range_rows: list[dict]
    usable: list[dict]
    failed: list[dict] = field(default_factory=list)
    skipped: int = 0


# -- the points of a sweep ---------------------------------------------------------------------------------------
def _nice(v: float) -> float:
    return float(f"{v:.6g}")


def grid_values(p: SweepParam) -> list:
    if p.values is not None:
        return list(p.values)
    if p.scale == "log":
        lo, hi = math.log10(p.min), math.log10(p.max)
        if p.per_decade:
            n = int(math.floor((hi - lo) * p.per_decade + 1e-9)) + 1
            return [_nice(10 ** (lo + k / p.per_decade)) for k in range(n)]
        return [_nice(v) for v in np.logspace(lo, hi, p.num)]
    vals = np.linspace(p.min, p.max, p.num)
    if float(p.min).is_integer() and float(p.max).is_integer() and all(float(v).is_integer() for v in vals):
        return [int(v) for v in vals]
    return [_nice(v) for v in vals]


def random_value(p: SweepParam, rng: np.random.Generator):
    if p.values is not None:
        return p.values[int(rng.integers(len(p.values)))]
    if p.distribution == "int_uniform":
        return int(rng.integers(int(p.min), int(p.max) + 1))
    if p.distribution == "uniform" or (p.distribution is None and p.scale == "linear"):
        return _nice(rng.uniform(p.min, p.max))
    return _nice(math.exp(rng.uniform(math.log(p.min), math.log(p.max))))


def points(spec) -> list[dict]:
    keys = list(spec.parameters)
    if spec.method == "random":
        rng = np.random.default_rng(np.random.SeedSequence(spec.seed))
        return [{k: random_value(spec.parameters[k], rng) for k in keys} for _ in range(spec.count)]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid_values(spec.parameters[k]) for k in keys))]


def _set(data: dict, dotted: str, value):
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[last] = value


def plan(cfg: ExperimentConfig, src: Source, out_dir: Path, runs_dir: Path | None = None) -> list[SweepRun]:
    """Every run of the sweep, validated; runs whose directory exists are marked done. ``runs_dir`` (default
    ``out_dir/runs``) may be shared by several sweeps: runs are keyed by their config hash alone."""
    runs_dir = Path(runs_dir) if runs_dir is not None else Path(out_dir) / "runs"
    if cfg.sweep is None:
        raise src.error(("sweep",), "this config has no sweep section; add one, or sweep from the command line "
                                    "with key=v1,v2,... or key=logrange(1e-4,10,3)")
    base = copy.deepcopy(src.raw)
    base.pop("sweep", None)
    runs, seen = [], set()
    for point in points(cfg.sweep):
        data = copy.deepcopy(base)
        for key, value in point.items():
            _set(data, key, value)
        try:
            point_cfg = validate(data, src)
        except UsageError as e:
            raise UsageError(f"sweep point {point}:\n{e}") from None
        for arm in point_cfg.model.bn:
            for seed in point_cfg.train.seeds:
                rc = point_cfg.run_config(arm, seed)
                h = rc.hash()
                if h in seen:
                    continue
                seen.add(h)
                run_dir = runs_dir / h
                runs.append(SweepRun(point, arm, seed, rc, h, run_dir, is_current(run_dir)))
    return runs


# -- running -----------------------------------------------------------------------------------------------------
def run_sweep(cfg: ExperimentConfig, src: Source, out_dir, *, workers=1, executor=None, runs=None,
              on_progress=None, on_done=None) -> SweepResult:
    out_dir = Path(out_dir)
    check_with_data(cfg, src)
    prepare_output(out_dir)
    runs = runs if runs is not None else plan(cfg, src, out_dir)
    for runs_dir in {r.run_dir.parent for r in runs}:
        atomic.clean_stale(runs_dir)
    atomic.write_text(out_dir / "config.yaml", to_yaml(cfg))
    todo = [r for r in runs if not r.done]
    tasks = [{"config": r.config.to_dict(), "run_dir": str(r.run_dir)} for r in todo]
    results = execute(tasks, run_task, workers=min(workers, max(len(tasks), 1)), executor=executor,
                      on_progress=on_progress, on_done=on_done)
    failed = []
    for r, res in zip(todo, results):
        if isinstance(res, BaseException):
            err = {"hash": r.hash, "point": r.point, "arm": r.arm, "seed": r.seed,
                   "error": f"{type(res).__name__}: {res}"}
            failed.append(err)
            atomic.write_text(out_dir / "failed" / f"{r.hash}.json", dumps(err))
        else:
            (out_dir / "failed" / f"{r.hash}.json").unlink(missing_ok=True)
    return collect(cfg, out_dir, runs, failed, skipped=len(runs) - len(todo))


def collect(cfg, out_dir: Path, runs: list[SweepRun], failed: list[dict], skipped=0) -> SweepResult:
    keys = list(cfg.sweep.parameters)
    failed_hashes = {f["hash"]: f for f in failed}
    rows = []
    for r in runs:
        row = {**{k: r.point[k] for k in keys}, "arm": r.arm, "seed": r.seed, "hash": r.hash}
        summary_path = r.run_dir / "summary.json"
        if summary_path.exists():
            s = json.loads(summary_path.read_text())
            row.update({k: s.get(k) for k in ("status", "final_test_acc", "tail_test_acc", "best_test_acc",
                                              "final_train_loss", "steps_to_target", "total_steps", "time_s",
                                              "diverged_reason")})
            row["diverged"] = s.get("status") == "diverged"
        else:
            row.update(status="failed" if r.hash in failed_hashes else "missing",
                       error=failed_hashes.get(r.hash, {}).get("error"))
        rows.append(row)
    range_rows = range_table(cfg, keys, rows)
    per_seed = seed_ranges(cfg, keys, rows)
    usable = usable_ranges(cfg, keys, rows, per_seed)
    rk = _range_key(cfg, keys, rows)
    columns = keys + ["arm", "seed", "status", "diverged", "final_test_acc", "tail_test_acc", "best_test_acc",
                      "final_train_loss", "steps_to_target", "total_steps", "time_s", "hash", "diverged_reason",
                      "error"]
    atomic.write_text(out_dir / "summary.csv", _csv(columns, rows))
    atomic.write_text(out_dir / "range.csv", _csv(list(range_rows[0]) if range_rows else [], range_rows))
    atomic.write_text(out_dir / "ranges.csv", _csv(list(usable[0]) if usable else [], usable))
    atomic.write_text(out_dir / "ranges_by_seed.csv", _csv(list(per_seed[0]) if per_seed else [], per_seed))
    atomic.write_text(out_dir / "sweep.json", dumps({
        "name": cfg.name, "keys": keys, "range_key": rk,
        "n_runs": len(rows), "n_diverged": sum(bool(r.get("diverged")) for r in rows), "failed": failed,
        "usable_ranges": usable, "usable_ranges_by_seed": per_seed, "range": range_rows,
        "ci": "95% Student-t interval of the mean over seeds; means leave out diverged runs (counted)",
        "usable": f"per seed: the contiguous values around the seed's best whose run did not diverge and whose tail "
                  f"test accuracy (mean of its last {TAIL_EVALS} evaluations) is >= {cfg.sweep.floor:g}; an arm that learns nowhere has no usable range",
        "diverged": DIVERGED,
        "versions": versions()}))
    if rk is not None and range_rows:
        from .plotting import range_figure

        range_figure(range_rows, usable, keys, rk, out_dir / "range.png", title=cfg.name)
    return SweepResult(out_dir, keys, rows, range_rows, usable, failed, skipped)


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in r.items()})
    return buf.getvalue()


# -- statistics --------------------------------------------------------------------------------------------------
def _range_key(cfg, keys, rows):
    if cfg.sweep.range_key:
        return cfg.sweep.range_key
    for k in keys:
        if all(isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows):
            return k
    return None


def range_table(cfg, keys, rows) -> list[dict]:
    """Per arm and swept point: statistics over seeds of the final test accuracy and training loss of the runs that
    did not diverge, and the count of those that did (a diverged run is an outcome, never a number in a mean)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], *(_hashable(r[k]) for k in keys)), []).append(r)
    out = []
    for (arm, *_), rs in groups.items():
        vals = [rs[0][k] for k in keys]
        finished = [r for r in rs if r.get("status") in ("ok", "diverged")]
        ok = [r for r in finished if not r.get("diverged")]
        acc = stats.describe(r.get("final_test_acc") for r in ok)
        loss = stats.describe(r.get("final_train_loss") for r in ok)
        out.append({"arm": arm, **dict(zip(keys, vals)), "n": len(ok), "n_planned": len(rs),
                    "n_finished": len(finished), "diverged": len(finished) - len(ok),
                    "acc_mean": acc.mean, "acc_sd": acc.sd, "acc_ci_low": acc.ci_low, "acc_ci_high": acc.ci_high,
                    "tail_acc_mean": stats.describe(r.get("tail_test_acc") for r in ok).mean,
                    "train_loss_mean": loss.mean, "train_loss_sd": loss.sd})
    return out


def _width(lo, hi):
    """Width of [lo, hi] in decades (log10(hi / lo)); nan when a bound is missing or not positive."""
    if lo is None or hi is None or not (lo > 0 and hi > 0):
        return math.nan
    return round(math.log10(hi / lo), 9)  # 0, not -1e-16


def _block(ok: list[bool], i: int) -> tuple[int, int]:
    """The contiguous run of True around index i (which must be True)."""
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(ok) - 1 and ok[hi + 1]:
        hi += 1
    return lo, hi


def seed_ranges(cfg, keys, rows) -> list[dict]:
    """Per arm, combination of the other swept keys, and seed: where that seed's runs learn.

    A value of the range key is *usable* for a seed when its run did not diverge and its tail test accuracy (the
    mean of its last evaluations) is >= ``sweep.floor``. The seed's usable range is the contiguous block of usable
    grid values around its best value (highest tail accuracy); ``hi`` is the largest usable value, the width is in
    decades. A seed whose best run is below the floor does not learn and has no usable range. The narrower
    within-N-points widths (``sweep.target_points``, around the seed's own best) are descriptive."""
    rk = _range_key(cfg, keys, rows)
    if rk is None:
        return []
    others = [k for k in keys if k != rk]
    floor = cfg.sweep.floor
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("status") in ("ok", "diverged"):
            groups.setdefault((r["arm"], *(_hashable(r[k]) for k in others), r["seed"]), []).append(r)
    out = []
    for (arm, *_), rs in groups.items():
        rs = sorted(rs, key=lambda r: r[rk])
        xs = [r[rk] for r in rs]
        acc = [r.get("tail_test_acc", r.get("final_test_acc")) for r in rs]
        fine = [not r.get("diverged") and a is not None and math.isfinite(a) for r, a in zip(rs, acc)]
        row = {"arm": arm, **{k: rs[0][k] for k in others}, "seed": rs[0]["seed"], "range_key": rk, "floor": floor,
               "n_values": len(rs), "n_diverged": sum(bool(r.get("diverged")) for r in rs), "best_value": None,
               "best_acc": math.nan, "learns": False, "lo": None, "hi": None, "decades": math.nan, "n_usable": 0}
        if any(fine):
            best = max((i for i in range(len(rs)) if fine[i]), key=lambda i: acc[i])  # first of equal maxima
            row.update(best_value=xs[best], best_acc=acc[best], learns=acc[best] >= floor)
        for tol in [None, *cfg.sweep.target_points]:
            suffix = "" if tol is None else f"_{tol * 100:g}pt"
            if not row["learns"]:
                row.update({f"lo{suffix}": None, f"hi{suffix}": None, f"decades{suffix}": math.nan,
                            f"n_usable{suffix}": 0})
                continue
            cut = floor if tol is None else row["best_acc"] - tol - 1e-9  # accuracies tie often: inclusive
            lo, hi = _block([f and a >= cut for f, a in zip(fine, acc)], best)
            row.update({f"lo{suffix}": xs[lo], f"hi{suffix}": xs[hi], f"decades{suffix}": _width(xs[lo], xs[hi]),
                        f"n_usable{suffix}": hi - lo + 1})
        out.append(row)
    return out


def usable_ranges(cfg, keys, rows, per_seed: list[dict] | None = None) -> list[dict]:
    """Per arm (and every combination of the other swept keys): how many seeds learn, and over those seeds the
    usable range (median lower and upper end, mean width in decades with its t-interval) and the descriptive
    within-N-points widths. Computed from the per-seed ranges (``seed_ranges``), never from a seed-mean curve."""
    per_seed = seed_ranges(cfg, keys, rows) if per_seed is None else per_seed
    if not per_seed:
        return []
    rk = per_seed[0]["range_key"]
    others = [k for k in keys if k != rk]
    groups: dict[tuple, list[dict]] = {}
    for r in per_seed:
        groups.setdefault((r["arm"], *(_hashable(r[k]) for k in others)), []).append(r)
    out = []
    for (arm, *_), rs in groups.items():
        learn = [r for r in rs if r["learns"]]
        row = {"arm": arm, **{k: rs[0][k] for k in others}, "range_key": rk, "floor": cfg.sweep.floor,
               "n_seeds": len(rs), "n_learn": len(learn),
               "best_value": statistics.median_low([r["best_value"] for r in learn]) if learn else None,
               "best_acc_mean": stats.describe(r["best_acc"] for r in rs).mean,
               "n_diverged": sum(r["n_diverged"] for r in rs)}
        for suffix in ["", *(f"_{t * 100:g}pt" for t in cfg.sweep.target_points)]:
            w = stats.describe(r[f"decades{suffix}"] for r in learn)
            row.update({f"lo{suffix}": statistics.median_low([r[f"lo{suffix}"] for r in learn]) if learn else None,
                        f"hi{suffix}": statistics.median_low([r[f"hi{suffix}"] for r in learn]) if learn else None,
                        f"decades{suffix}": w.mean, f"decades{suffix}_sd": w.sd,
                        f"decades{suffix}_ci_low": w.ci_low, f"decades{suffix}_ci_high": w.ci_high})
        out.append(row)
    return out


__all__ = ["SweepRun", "SweepResult", "grid_values", "points", "plan", "run_sweep", "collect"]
