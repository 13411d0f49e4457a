"""`bncli train` as a library function: the arms x seeds of one experiment — a plan without sweep points — their
statistics and outputs.

    results/<experiment>/config.yaml          the resolved experiment config
                         runs/<hash>/         one run per arm and seed (see runs/store.py); runs of other settings
                                              from earlier invocations stay there as a cache, never read or drawn
                         summary.csv          one row per run of this invocation
                         experiment.json      per-arm statistics, paired comparisons with the no-BN arm, and the
                                              list of this invocation's runs (what `bncli plot` draws)
                         learning_curves.png  mean over seeds with a 95% band, one colour per placement
                         .bncli.json          the kind of command and the files bncli wrote here (runs/owner.py)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic, stats
from .config import ExperimentConfig, Source, to_yaml
from .runs import RunSpec, check_with_data, dict_csv, dispatch, dumps, plan, read_metrics, run_rows, versions
from .runs.owner import claim, publishing
from .training import DIVERGED_RULE as DIVERGED
from .training import TARGET_COLUMN

SUMMARY_COLUMNS = ["experiment", "arm", "seed", "status", "final_test_acc", "best_test_acc", "best_step",
                   "steps_to_target", "total_steps", "target_split", "target_accuracy", "final_train_loss",
                   "final_test_loss", "mean_train_loss", "steps_done", "diverged_at_step", "time_s", "hash", "error"]
METRICS = ("final_test_acc", "best_test_acc", "final_train_loss", "mean_train_loss", "time_s")  # means over ok runs


@dataclass
class ExperimentResult:
    out_dir: Path
    runs: list[dict]  # one row per planned run (see runs.run_rows)
    arms: dict
    comparisons: list[dict]
    figure: Path | None = None
    reused: int = 0
    failures: list[dict] = field(default_factory=list)


def plan_experiment(cfg: ExperimentConfig, src: Source, out_dir) -> list[RunSpec]:
    """The runs of ``bncli train``: every arm x seed, under ``out_dir/runs``, the finished ones marked done."""
    check_with_data(cfg, src)
    return plan(cfg, src, Path(out_dir) / "runs")


def run_experiment(cfg: ExperimentConfig, src: Source, out_dir, *, workers=1, executor=None, specs=None,
                   on_progress=None, on_done=None, force=False) -> ExperimentResult:
    """Train what is missing (a run finished by this code is reused: train resumes), then write the tables and the
    figure of exactly this invocation's runs. ``out_dir`` is held for the whole call (runs/owner.py; ``force``: write
    there even if it holds files bncli did not write or results of another command)."""
    out_dir = Path(out_dir)
    specs = plan_experiment(cfg, src, out_dir) if specs is None else specs
    with claim(out_dir, "train", force=force):
        reused = sum(s.done for s in specs)
        failures = dispatch(specs, out_dir, workers=workers, executor=executor, on_progress=on_progress,
                            on_done=on_done)
        return finish(cfg, out_dir, specs, failures, reused)


def finish(cfg, out_dir: Path, specs: list[RunSpec], failures: list[dict], reused=0) -> ExperimentResult:
    runs = run_rows(specs, failures)
    # The config with the tables, after the runs: an interrupted call never leaves a config the tables disagree
    # with; experiment.json (what `bncli plot` and bncli.load recognise the folder by) last, the old one withdrawn.
    with publishing(out_dir, replacing=("experiment.json", "learning_curves.png")):
        atomic.write_text(out_dir / "config.yaml", to_yaml(cfg))
        # the per-run table next: it holds every run's numbers whatever the statistics over them make of them
        atomic.write_text(out_dir / "summary.csv", dict_csv([{"experiment": cfg.name, **r} for r in runs],
                                                            SUMMARY_COLUMNS))
        arms, comparisons, info = _info(cfg, runs)
        atomic.write_text(out_dir / "experiment.json", dumps(info))
    result = ExperimentResult(out_dir, runs, arms, comparisons, reused=reused, failures=failures)
    path = out_dir / "learning_curves.png"
    curves, diverged = listed_curves(info, out_dir)
    if curves:
        draw_learning_curves(info, curves, diverged, path)
        result.figure = path
    return result


def _info(cfg, runs: list[dict]) -> tuple[dict, list, dict]:
    """Per-arm statistics, comparisons, and what experiment.json holds."""
    arms, comparisons = aggregate(cfg, runs)
    title = f"{cfg.name}: {describe_setup(cfg)}"
    info = {
        "name": cfg.name, "config_hash": cfg.hash(), "arms": arms, "comparisons": comparisons,
        "target": {"split": cfg.train.target_split, "accuracy": cfg.train.target_accuracy}, "title": title,
        "ci": "95% Student-t interval of the mean over seeds, over the runs that did not diverge (counted in "
              "status); comparisons are paired by seed", "diverged": DIVERGED,
        "steps_to_target": "runs that never reached the target, or diverged first, are censored at the budget: "
                           "Kaplan-Meier medians with order-statistic intervals; comparisons: " + CENSORED_METHOD,
        "runs": [{"arm": r["arm"], "seed": r["seed"], "hash": r["hash"], "status": r["status"]} for r in runs],
        "versions": versions()}
    return arms, comparisons, info


def listed_curves(info: dict, out_dir: Path, read=read_metrics) -> tuple[dict, dict]:
    """The metrics of the finished runs an experiment.json lists, per arm, and whether each diverged. ``read`` reads
    one metrics.csv (`bncli plot` passes a reader that checks the file)."""
    curves, diverged = {}, {}
    for r in info["runs"]:
        metrics = Path(out_dir) / "runs" / r["hash"] / "metrics.csv"
        if r["status"] in ("ok", "diverged") and metrics.exists():
            curves.setdefault(r["arm"], []).append(read(metrics))
            diverged.setdefault(r["arm"], []).append(r["status"] == "diverged")
    return curves, diverged


def draw_learning_curves(info: dict, curves: dict, diverged: dict, path: Path | None = None):
    """The learning-curve figure of an experiment: the one drawing path of `bncli train` and `bncli plot`. Returns
    the Figure (also written to ``path`` if given)."""
    from .plotting import learning_curves

    target = info.get("target") or {}
    return learning_curves(curves, path, title=info.get("title", info["name"]), target=target.get("accuracy"),
                           diverged=diverged, target_column=TARGET_COLUMN.get(target.get("split"), "test_acc"))


def describe_setup(cfg: ExperimentConfig, swept=()) -> str:
    """The setup in a few words, for figure subtitles; a swept key is named as swept, not given a value."""
    m, o, t = cfg.model, cfg.optimizer, cfg.train
    net = "depth swept" if "model.hidden" in swept else f"{'-'.join(map(str, m.hidden))}"
    if m.conv:  # e.g. "conv 6-16 + 120-84": a convnet's channels, then its dense widths
        net = f"conv {'-'.join(str(c.channels) for c in m.conv)}" + (f" + {net}" if m.hidden else "")
    lr = "lr swept" if "optimizer.lr" in swept else f"lr={o.lr:g}"
    opt = "optimizer swept" if "optimizer.name" in swept else o.name
    batch = "batch swept" if "train.batch_size" in swept else f"batch {t.batch_size}"
    act = "activation swept" if "model.activation" in swept else m.activation
    return f"{cfg.data.name}, {net} {act}, {opt} {lr}, {batch}, {len(t.seeds)} seeds"


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
        done = [r for r in rs if r["status"] in ("ok", "diverged")]
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
