"""`bncli train` as a library function: the arms x seeds of one experiment, their statistics and outputs.

    results/<experiment>/config.yaml          the resolved experiment config
                         <arm>/seed-<k>/      one run (see runs.py)
                         summary.csv          one row per run
                         experiment.json      per-arm statistics and paired comparisons with the no-BN arm
                         learning_curves.png  mean over seeds with a 95% band, one colour per placement
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from . import atomic, stats
from .config import ExperimentConfig, Source, resolved_budget, to_yaml
from .data import DataCorruptError, DataError
from .errors import UsageError
from .executor import execute
from .runs import dataset_for, dumps, read_metrics, run_task, versions
from .train import DIVERGED_RULE as DIVERGED

SUMMARY_COLUMNS = ["experiment", "arm", "seed", "status", "final_test_acc", "best_test_acc", "best_step",
                   "steps_to_target", "total_steps", "target_split", "target_accuracy", "final_train_loss", "final_test_loss",
                   "mean_train_loss", "steps_done", "diverged_at_step", "time_s", "config_hash", "error"]
TARGET_COLUMN = {"test": "test_acc", "val": "val_acc", "train": "train_eval_acc"}
METRICS = ("final_test_acc", "best_test_acc", "final_train_loss", "mean_train_loss", "time_s")  # means over ok runs


@dataclass
class ExperimentResult:
    out_dir: Path
    runs: list[dict]
    arms: dict
    comparisons: list[dict]
    figure: Path | None = None


def check_with_data(cfg: ExperimentConfig, src: Source):
    """Checks that need the dataset; raised as config errors pointing at the key."""
    try:
        data = dataset_for(cfg)
    except DataCorruptError:
        raise  # a damaged or hostile file: a runtime failure naming the file (exit 1)
    except DataError as e:  # missing files, unknown name: a config error at data.name (exit 2)
        raise src.error(("data", "name"), str(e)) from None
    n = len(data.X_train)
    if cfg.train.batch_size > n:
        raise src.error(("train", "batch_size"),
                        f"{cfg.train.batch_size} is larger than the training split ({n} examples)")
    return data


def plan(cfg: ExperimentConfig, out_dir: Path) -> list[dict]:
    return [{"arm": arm, "seed": seed, "config": cfg.run_config(arm, seed).to_dict(),
             "run_dir": str(out_dir / arm / f"seed-{seed}")}
            for arm in cfg.model.bn for seed in cfg.train.seeds]


def prepare_output(out_dir: Path):
    try:
        atomic.check_writable(out_dir)
    except OSError as e:
        raise UsageError(f"--out {out_dir}: cannot write there ({e.strerror or e})") from None


def run_experiment(cfg: ExperimentConfig, src: Source, out_dir, *, workers=1, on_progress=None,
                   on_done=None) -> ExperimentResult:
    out_dir = Path(out_dir)
    data = check_with_data(cfg, src)
    prepare_output(out_dir)
    tasks = plan(cfg, out_dir)
    atomic.write_text(out_dir / "config.yaml", to_yaml(cfg))
    results = execute(tasks, run_task, workers=min(workers, len(tasks)), on_progress=on_progress,
                      on_done=on_done)
    runs = []
    for task, res in zip(tasks, results):
        if isinstance(res, BaseException):
            runs.append({"arm": task["arm"], "seed": task["seed"], "status": "failed",
                         "error": f"{type(res).__name__}: {res}"})
        else:
            runs.append(res)
    total, _ = resolved_budget(cfg.train, len(data.X_train))
    return finish(cfg, out_dir, runs, total)


def finish(cfg, out_dir: Path, runs: list[dict], total_steps: int) -> ExperimentResult:
    arms, comparisons = aggregate(cfg, runs)
    atomic.write_text(out_dir / "summary.csv", summary_csv(cfg, runs))
    atomic.write_text(out_dir / "experiment.json", dumps({
        "name": cfg.name, "config_hash": cfg.hash(), "arms": arms, "comparisons": comparisons,
        "target": {"split": cfg.train.target_split, "accuracy": cfg.train.target_accuracy},
        "ci": "95% Student-t interval of the mean over seeds, over the runs that did not diverge (counted in "
              "status); comparisons are paired by seed", "diverged": DIVERGED,
        "steps_to_target": "runs that never reached the target, or diverged first, are censored at the budget: "
                           "Kaplan-Meier medians with order-statistic intervals; comparisons: " + CENSORED_METHOD,
        "versions": versions()}))
    result = ExperimentResult(out_dir, runs, arms, comparisons)
    curves, diverged = {}, {}
    for r in runs:
        if r.get("run_dir") and (Path(r["run_dir"]) / "metrics.csv").exists():
            curves.setdefault(r["arm"], []).append(read_metrics(Path(r["run_dir"]) / "metrics.csv"))
            diverged.setdefault(r["arm"], []).append(r["status"] == "diverged")
    if curves:
        from .plotting import learning_curves

        result.figure = out_dir / "learning_curves.png"
        learning_curves(curves, result.figure, title=f"{cfg.name}: {describe_setup(cfg)}",
                        target=cfg.train.target_accuracy, diverged=diverged,
                        target_column=TARGET_COLUMN[cfg.train.target_split])
    return result


def describe_setup(cfg: ExperimentConfig) -> str:
    m, o, t = cfg.model, cfg.optimizer, cfg.train
    return (f"{cfg.data.name}, {'-'.join(map(str, m.hidden))} {m.activation}, {o.name} lr={o.lr:g}, "
            f"batch {t.batch_size}, {len(t.seeds)} seeds")


def aggregate(cfg: ExperimentConfig, runs: list[dict]):
    """Per-arm statistics and paired comparisons with the no-BN arm (or the first arm).

    Means, sds and t-intervals are over the runs that did not diverge (how many did is counted). Steps to the target
    are time-to-event data: a run that did not reach the target within its budget, or diverged before reaching it,
    is censored at the budget; per arm the Kaplan-Meier median with an order-statistic interval, and between arms
    the median paired difference over every seed with a sign-test interval (censored pairs enter as bounds)."""
    arms, by_arm = {}, {}
    budget = budget_of(runs)
    for arm in cfg.model.bn:
        rs = [r for r in runs if r["arm"] == arm]
        done = [r for r in rs if r["status"] != "failed"]
        by_arm[arm] = {r["seed"]: r for r in done}
        entry = {"n_runs": len(rs), "status": {s: sum(r["status"] == s for r in rs) for s in
                                               ("ok", "diverged", "failed")}}
        for m in METRICS:
            entry[m] = stats.describe(r.get(m) for r in done if r["status"] == "ok").as_dict()
        entry["reached_target"] = sum(r.get("steps_to_target") is not None for r in done)
        km = stats.time_to_event(r.get("steps_to_target") for r in done)
        entry["steps_to_target"] = km_entry(km, entry["reached_target"], budget)
        arms[arm] = entry
    base = "none" if "none" in by_arm else cfg.model.bn[0]
    comparisons = []
    for arm in cfg.model.bn:
        if arm == base:
            continue
        for m in ("final_test_acc", "best_test_acc", "final_train_loss"):
            ok = lambda a: {s: r.get(m) for s, r in by_arm[a].items() if r["status"] == "ok"}  # noqa: E731
            d = stats.paired(ok(base), ok(arm))
            excluded = len(set(by_arm[base]) & set(by_arm[arm])) - d.n
            comparisons.append({"arm": arm, "baseline": base, "metric": m, "difference": f"{arm} - {base}",
                                "method": "paired t-interval over the seeds where neither run diverged",
                                "excluded_diverged": excluded, **d.as_dict()})
        o = stats.paired_censored({s: r.get("steps_to_target") for s, r in by_arm[arm].items()},
                                  {s: r.get("steps_to_target") for s, r in by_arm[base].items()}, budget)
        comparisons.append({"arm": arm, "baseline": base, "metric": "steps_to_target",
                            "difference": f"{arm} - {base}", "method": CENSORED_METHOD,
                            "n": o.n, "median": o.est_low, "median_high": o.est_high, "ci_low": o.ci_low,
                            "ci_high": o.ci_high, "coverage": o.coverage,
                            "faster": {arm: o.n_neg, base: o.n_pos, "unknown": o.n_unknown},
                            "sign_test_p": o.p_sign, "median_text": stats.fmt_median(o, 4),
                            "ci_text": stats.fmt_interval(o.ci_low, o.ci_high, 4, o.coverage)})
    return arms, comparisons


def budget_of(runs):
    return next((r.get("total_steps") for r in runs if r.get("total_steps") is not None), None)


def km_entry(km: stats.OrderInterval, reached: int, budget) -> dict:
    """A Kaplan-Meier median of steps to target for tables: '> budget' where the median run never got there."""
    cens = f"> {budget}" if budget is not None else "not reached"
    text = lambda v: cens if math.isinf(v) else f"{v:.0f}"  # noqa: E731
    ci = "none (n < 6)" if math.isnan(km.coverage) else f"[{text(km.ci_low)}, {text(km.ci_high)}]"
    return {"n": km.n, "reached": reached, "median": km.est_low, "median_high": km.est_high, "ci_low": km.ci_low,
            "ci_high": km.ci_high, "coverage": km.coverage,
            "median_text": text(km.est_low) if km.est_low == km.est_high else f"{text(km.est_low)}…{text(km.est_high)}",
            "ci_text": ci}


CENSORED_METHOD = ("median paired difference over every seed; a run that did not reach the target (or diverged first) "
                   "is censored at the budget and enters as a bound; distribution-free interval by inverting the "
                   "sign test (coverage given, >= 95%; none exists below 6 seeds); exact sign test over the pairs "
                   "whose order is known")


def summary_csv(cfg, runs) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in runs:
        row = {"experiment": cfg.name, **r}
        row = {k: ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v) for k, v in row.items()}
        w.writerow(row)
    return buf.getvalue()
