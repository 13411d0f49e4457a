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
                   .bncli.json       the kind of command and the files bncli wrote here (runs/owner.py)

A run is finished when its directory exists (they are created atomically), so an interrupted or killed sweep
resumes by running only what is missing. Run seeds are the experiment's seeds; random-search draws come from
``SeedSequence(sweep.seed)``: a run's numbers depend on its resolved config alone, never on scheduling.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, stats
from .config import ExperimentConfig, Source, to_yaml
from .runs import RunSpec, check_with_data, dict_csv, dispatch, dumps, plan, run_rows, sweep_points, versions
from .runs.owner import claim, publishing
from .training import DIVERGED_RULE as DIVERGED, TAIL_EVALS


@dataclass
class SweepResult:
    out_dir: Path
    keys: list[str]
    rows: list[dict]
    range_rows: list[dict]
    usable: list[dict]
    failed: list[dict] = field(default_factory=list)
    skipped: int = 0
    figure_skipped: str | None = None  # why range.png was not drawn (too large to draw in bounded time)


SUMMARY_COLUMNS = ["arm", "seed", "status", "diverged", "final_test_acc", "tail_test_acc", "best_test_acc",
                   "final_train_loss", "steps_to_target", "total_steps", "time_s", "hash", "diverged_reason", "error"]


def plan_sweep(cfg: ExperimentConfig, src: Source, out_dir, runs_dir=None) -> list[RunSpec]:
    """Every run of the sweep (points x arms x seeds), validated; finished ones marked done. ``runs_dir`` (default
    ``out_dir/runs``) may be shared by several sweeps: runs are keyed by their config hash alone."""
    check_with_data(cfg, src)
    return plan(cfg, src, Path(runs_dir) if runs_dir is not None else Path(out_dir) / "runs", sweep_points(cfg, src))


def run_sweep(cfg: ExperimentConfig, src: Source, out_dir, *, workers=1, executor=None, runs=None,
              on_progress=None, on_done=None, force=False) -> SweepResult:
    """Run what is missing, then write the tables and figure; ``out_dir`` is held for the whole call (runs/owner.py;
    ``force``: write there even if it holds files bncli did not write or results of another command)."""
    out_dir = Path(out_dir)
    runs = plan_sweep(cfg, src, out_dir) if runs is None else runs
    with claim(out_dir, "sweep", force=force):
        skipped = sum(r.done for r in runs)
        failed = dispatch(runs, out_dir, workers=workers, executor=executor, on_progress=on_progress,
                          on_done=on_done)
        return collect(cfg, out_dir, runs, failed, skipped=skipped, config=True)


def collect(cfg, out_dir: Path, runs: list[RunSpec], failed: list[dict], skipped=0, config=False) -> SweepResult:
    """The sweep's tables and figure, from exactly the planned runs (``config``: with the config.yaml they are of,
    written with them, after the runs, so that an interrupted sweep never leaves a config its tables disagree
    with)."""
    keys = list(cfg.sweep.parameters)
    rows = run_rows(runs, failed)
    range_rows = range_table(cfg, keys, rows)
    per_seed = seed_ranges(cfg, keys, rows)
    usable = usable_ranges(cfg, keys, rows, per_seed)
    rk = _range_key(cfg, keys, rows)
    with publishing(out_dir, replacing=("sweep.json", "range.png")):  # sweep.json, what the folder is known by, last
        if config:
            atomic.write_text(out_dir / "config.yaml", to_yaml(cfg))
        atomic.write_text(out_dir / "summary.csv", dict_csv(rows, keys + SUMMARY_COLUMNS))
        atomic.write_text(out_dir / "range.csv", dict_csv(range_rows))
        atomic.write_text(out_dir / "ranges.csv", dict_csv(usable))
        atomic.write_text(out_dir / "ranges_by_seed.csv", dict_csv(per_seed))
        atomic.write_text(out_dir / "sweep.json", dumps({
            "name": cfg.name, "keys": keys, "range_key": rk, "title": _title(cfg, keys),
            "n_runs": len(rows), "n_diverged": sum(bool(r.get("diverged")) for r in rows), "failed": failed,
            "usable_ranges": usable, "usable_ranges_by_seed": per_seed, "range": range_rows,
            "runs": [{**{k: r[k] for k in keys}, "arm": r["arm"], "seed": r["seed"], "hash": r["hash"],
                      "status": r["status"]} for r in rows],  # what bncli.load reopens
            "ci": "95% Student-t interval of the mean over seeds; means leave out diverged runs (counted)",
            "usable": f"per seed: the contiguous values around the seed's best whose run did not diverge and whose "
                      f"tail test accuracy (mean of its last {TAIL_EVALS} evaluations) is >= {cfg.sweep.floor:g}; an "
                      "arm that learns nowhere has no usable range",
            "diverged": DIVERGED,
            "versions": versions()}))
    too_large = None
    if rk is not None and range_rows:
        from .plotting.ranges import range_figure, range_size_error

        # a figure `bncli plot` would refuse is not drawn here either (the tables hold every number)
        too_large = range_size_error(range_rows, usable, keys, rk)
        if too_large is None:
            range_figure(range_rows, usable, keys, rk, out_dir / "range.png", title=_title(cfg, keys))
    return SweepResult(out_dir, keys, rows, range_rows, usable, failed, skipped, figure_skipped=too_large)


def _title(cfg, keys) -> str:
    from .experiment import describe_setup

    return f"{cfg.name}: {describe_setup(cfg, swept=keys)}"


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


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


__all__ = ["SweepResult", "plan_sweep", "run_sweep", "collect", "range_table", "seed_ranges", "usable_ranges"]
