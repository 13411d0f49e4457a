"""`bncli sweep` as a library function: hyperparameter-range studies, parallel and resumable.

    results/<name>/config.yaml       the experiment config with its sweep section
                   runs/<hash>/      one run (see runs.py), keyed by the hash of its resolved config
                   failed/<hash>.json  the error of a run that raised (retried by the next invocation)
                   summary.csv       one row per run: swept keys, arm, seed, results, status
                   range.csv         per arm and swept point: n, mean, sd, 95% CI of the final accuracy, diverged
                   ranges.csv        per arm (and other swept keys): usable range of ``range_key``
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, stats
from .config import ExperimentConfig, Source, SweepParam, to_yaml, validate
from .errors import UsageError
from .executor import execute
from .experiment import check_with_data, prepare_output
from .runs import dumps, is_current, run_task, versions


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
            row.update({k: s.get(k) for k in ("status", "final_test_acc", "best_test_acc", "final_train_loss",
                                              "steps_to_target", "time_s", "initial_test_loss")})
            row["diverged"] = is_diverged(s)
        else:
            row.update(status="failed" if r.hash in failed_hashes else "missing",
                       error=failed_hashes.get(r.hash, {}).get("error"))
        rows.append(row)
    range_rows = range_table(cfg, keys, rows)
    usable = usable_ranges(cfg, keys, range_rows)
    rk = _range_key(cfg, keys, rows)
    columns = keys + ["arm", "seed", "status", "diverged", "final_test_acc", "best_test_acc", "final_train_loss",
                      "steps_to_target", "time_s", "hash", "error"]
    atomic.write_text(out_dir / "summary.csv", _csv(columns, rows))
    atomic.write_text(out_dir / "range.csv", _csv(list(range_rows[0]) if range_rows else [], range_rows))
    atomic.write_text(out_dir / "ranges.csv", _csv(list(usable[0]) if usable else [], usable))
    atomic.write_text(out_dir / "sweep.json", dumps({
        "name": cfg.name, "keys": keys, "range_key": rk,
        "n_runs": len(rows), "failed": failed, "usable_ranges": usable, "range": range_rows,
        "ci": "95% Student-t interval of the mean over seeds",
        "diverged": "non-finite loss, or final training loss > 4x the initial loss",
        "versions": versions()}))
    if rk is not None and range_rows:
        from .plotting import range_figure

        range_figure(range_rows, usable, keys, rk, out_dir / "range.png", title=cfg.name)
    return SweepResult(out_dir, keys, rows, range_rows, usable, failed, skipped)


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def is_diverged(s: dict) -> bool:
    """CLAIMS C2: a non-finite loss, or a final training loss above 4x the initial loss."""
    if s.get("status") == "diverged":
        return True
    final, initial = s.get("final_train_loss"), s.get("initial_test_loss")
    return final is not None and initial is not None and final > 4 * initial


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
    """Per arm and swept point: statistics of the final test accuracy over seeds (diverged runs included —
    a learning rate that diverges is not usable), and the count of diverged runs."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arm"], *(_hashable(r[k]) for k in keys)), []).append(r)
    out = []
    for (arm, *_), rs in groups.items():
        vals = [rs[0][k] for k in keys]
        done = [r for r in rs if r.get("final_test_acc") is not None]
        acc = stats.describe(r["final_test_acc"] for r in done)
        loss = stats.describe(r.get("final_train_loss") for r in done)
        out.append({"arm": arm, **dict(zip(keys, vals)), "n": len(done), "n_planned": len(rs),
                    "acc_mean": acc.mean, "acc_sd": acc.sd, "acc_ci_low": acc.ci_low, "acc_ci_high": acc.ci_high,
                    "train_loss_mean": loss.mean, "train_loss_sd": loss.sd,
                    "diverged": sum(bool(r.get("diverged")) for r in done)})
    return out


def usable_ranges(cfg, keys, range_rows) -> list[dict]:
    """Per arm (and every combination of the other swept keys): the values of the range key whose mean final
    accuracy is within ``tol`` of that group's best; the usable range is the contiguous block of grid values
    around the best one, its width in decades log10(hi/lo)."""
    rk = _range_key(cfg, keys, [{k: r[k] for k in keys} for r in range_rows])
    if rk is None:
        return []
    others = [k for k in keys if k != rk]
    groups: dict[tuple, list[dict]] = {}
    for r in range_rows:
        groups.setdefault((r["arm"], *(_hashable(r[k]) for k in others)), []).append(r)
    out = []
    for (arm, *_), rs in groups.items():
        vals = [rs[0][k] for k in others]
        rs = sorted((r for r in rs if r["n"] > 0 and math.isfinite(r["acc_mean"])), key=lambda r: r[rk])
        if not rs:
            continue
        best_i = max(range(len(rs)), key=lambda i: rs[i]["acc_mean"])
        best = rs[best_i]["acc_mean"]
        row = {"arm": arm, **dict(zip(others, vals)), "range_key": rk, "best_value": rs[best_i][rk],
               "best_acc": best, "n_values": len(rs)}
        for tol in cfg.sweep.target_points:
            floor = best - tol - 1e-9  # inclusive: accuracies are multiples of 1/n_test, ties are common
            lo = hi = best_i
            while lo > 0 and rs[lo - 1]["acc_mean"] >= floor:
                lo -= 1
            while hi < len(rs) - 1 and rs[hi + 1]["acc_mean"] >= floor:
                hi += 1
            a, b = rs[lo][rk], rs[hi][rk]
            pts = f"{tol * 100:g}"
            row[f"lo_{pts}pt"], row[f"hi_{pts}pt"] = a, b
            row[f"decades_{pts}pt"] = round(math.log10(b / a), 9) if a > 0 and b > 0 else math.nan  # 0, not -1e-16
            row[f"n_usable_{pts}pt"] = hi - lo + 1
        out.append(row)
    return out


__all__ = ["SweepRun", "SweepResult", "grid_values", "points", "plan", "run_sweep", "collect"]
