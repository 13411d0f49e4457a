"""Claims about speed and hyperparameter ranges: C1, C2, C3, C6, C10, C11."""

from __future__ import annotations

import math
from pathlib import Path

from .. import stats
from ..plotting import learning_curves, range_figure
from ..runs import read_metrics
from ..sweep import range_table, usable_ranges
from . import figures
from .claims import Claim, by_seed, diff_by_seed, mean, paired_diffs, select, steps_censored
from .verdict import bootstrap_effect, paired_effect


def _best_value(rows, arm, key, metric="final_test_acc", **where):
    """The swept value with the best mean ``metric`` for ``arm``."""
    values = sorted({r[key] for r in rows if r["arm"] == arm and all(r.get(k) == v for k, v in where.items())})
    return max(values, key=lambda v: mean(r.get(metric) for r in select(rows, arm=arm, **{key: v}, **where)))


def _curves(rows, arms, **where):
    out = {}
    for arm in arms:
        for r in select(rows, arm=arm, **where):
            p = Path(r["run_dir"]) / "metrics.csv"
            if p.exists():
                out.setdefault(arm, []).append(read_metrics(p))
    return out


def _steps(rows, arm, **where):
    return {r["seed"]: steps_censored(r) for r in select(rows, arm=arm, **where)}


def c01(ctx) -> Claim:
    """c01_faster_training: steps to the target accuracy, paired by seed."""
    s = ctx.studies["c01_faster_training"]
    rows, t = s.rows, s.cfg.train
    c = Claim("C1", "BN trains faster",
              "Networks with BN reach a given accuracy in fewer training steps (Ioffe & Szegedy 2015 §4.1, Fig. 1a).",
              "all five notes (000-004)",
              f"3 x 100 units, N(0, 0.05²) init, plain SGD, batch {t.batch_size}, {t.steps} steps, "
              f"{len(t.seeds)} seeds, sigmoid and ReLU; learning rates {s.cfg.sweep.parameters['optimizer.lr'].values}."
              f" Steps to {t.target_accuracy:g} test accuracy (a run that never gets there counts as the whole "
              "budget). (a) BN and no BN at the best learning rate of no BN; (b) each arm at its own best.",
              "c01_faster_training")
    c.rule = ("Primary: sigmoid, same learning rate, steps(no BN) - steps(BN before), paired by seed; supported if "
              "its 95% t-interval is above 0.")
    for act in ("sigmoid", "relu"):
        lr0 = _best_value(rows, "none", "optimizer.lr", **{"model.activation": act})
        base = _steps(rows, "none", **{"model.activation": act, "optimizer.lr": lr0})
        for arm in ("before", "after"):
            d = paired_diffs(_steps(rows, arm, **{"model.activation": act, "optimizer.lr": lr0}), base)
            e = paired_effect(f"{act}, lr {lr0:g} (best for no BN): steps(no BN) - steps(BN {arm})", d,
                              direction=+1, unit="steps")
            c.effects.append(e)
            if act == "sigmoid" and arm == "before":
                c.primary.append(len(c.effects) - 1)
        lr_bn = _best_value(rows, "before", "optimizer.lr", **{"model.activation": act})
        d = paired_diffs(_steps(rows, "before", **{"model.activation": act, "optimizer.lr": lr_bn}), base)
        c.effects.append(paired_effect(f"{act}, each at its best lr (no BN {lr0:g}, BN {lr_bn:g}): steps(no BN) - "
                                       "steps(BN before)", d, direction=+1, unit="steps"))
        acc = paired_diffs(by_seed(select(rows, arm="none", **{"model.activation": act, "optimizer.lr": lr0}),
                                   "final_test_acc"),
                           by_seed(select(rows, arm="before", **{"model.activation": act, "optimizer.lr": lr0}),
                                   "final_test_acc"))
        c.effects.append(paired_effect(f"{act}, lr {lr0:g}: final test accuracy, BN before - no BN", acc,
                                       direction=+1, unit="accuracy"))
    lr0 = _best_value(rows, "none", "optimizer.lr", **{"model.activation": "sigmoid"})
    path = ctx.fig("c01_learning_curves")
    learning_curves(_curves(rows, ["none", "before", "after"], **{"model.activation": "sigmoid", "optimizer.lr": lr0}),
                    path, title=f"C1: sigmoid 3 x 100, SGD lr {lr0:g} (best for no BN)", target=t.target_accuracy)
    c.figures.append(str(path))
    return c


def c06(ctx) -> Claim:
    """c06_placement: BN before vs after the activation, on the C1 runs."""
    s = ctx.studies["c06_placement"]
    rows = s.rows
    c = Claim("C6", "BN works before or after the activation",
              "BN can be placed before or after the nonlinearity; before is done more frequently.",
              "001, 002, 004", "The C1 runs (same seeds): steps to the target accuracy and final test accuracy of "
              "BN before vs after, at the best learning rate of no BN and at each placement's best.",
              "c06_placement")
    c.rule = ("Primary: both placements train faster than no BN (steps(no BN) - steps(BN), sigmoid, same lr, "
              "intervals above 0). Before vs after is reported two-sided; 'no significant difference' is a result.")
    for act in ("sigmoid", "relu"):
        w = {"model.activation": act}
        lr0 = _best_value(rows, "none", "optimizer.lr", **w)
        base = _steps(rows, "none", **w, **{"optimizer.lr": lr0})
        for arm in ("before", "after"):
            d = paired_diffs(_steps(rows, arm, **w, **{"optimizer.lr": lr0}), base)
            c.effects.append(paired_effect(f"{act}, lr {lr0:g}: steps(no BN) - steps(BN {arm})", d, direction=+1,
                                           unit="steps"))
            if act == "sigmoid":
                c.primary.append(len(c.effects) - 1)
        d = paired_diffs(_steps(rows, "before", **w, **{"optimizer.lr": lr0}),
                         _steps(rows, "after", **w, **{"optimizer.lr": lr0}))
        c.effects.append(paired_effect(f"{act}, lr {lr0:g}: steps(BN after) - steps(BN before)", d, unit="steps"))
        best = {arm: _best_value(rows, arm, "optimizer.lr", **w) for arm in ("before", "after")}
        acc = paired_diffs(by_seed(select(rows, arm="before", **w, **{"optimizer.lr": best["before"]}), "final_test_acc"),
                           by_seed(select(rows, arm="after", **w, **{"optimizer.lr": best["after"]}), "final_test_acc"))
        c.effects.append(paired_effect(f"{act}, each at its best lr: final accuracy, BN after - BN before", acc,
                                       unit="accuracy"))
    panels = []
    for act in ("sigmoid", "relu"):
        w = {"model.activation": act}
        lr0 = _best_value(rows, "none", "optimizer.lr", **w)
        series = {}
        for arm in ("none", "before", "after"):
            sm = stats.describe(v for v in _steps(rows, arm, **w, **{"optimizer.lr": lr0}).values())
            series[arm] = [(sm.mean, sm.ci_low, sm.ci_high)]
        panels.append((f"{act}, lr {lr0:g}", ["steps to target"], series))
    path = ctx.fig("c06_placement")
    figures.bars(path, "C6: steps to the target accuracy by BN placement (fewer is faster)", panels, "steps")
    c.figures.append(str(path))
    return c


def _width_effect(rows, cfg, key, group: dict, tol=0.02, label=""):
    """Bootstrap over seeds of usable-range width (decades) of BN before minus no BN."""
    keys = [key]
    pts = f"{tol * 100:g}"

    def width(seeds, arm):
        rs = [r for r in rows if r["arm"] == arm and r["seed"] in seeds and all(r.get(k) == v for k, v in group.items())]
        flat = []
        for s_i, seed in enumerate(seeds):  # resampled seeds may repeat: each copy counts
            flat += [dict(r, seed=(seed, s_i)) for r in rs if r["seed"] == seed]
        table = range_table(cfg, keys, flat)
        u = usable_ranges(cfg, keys, table)
        return u[0][f"decades_{pts}pt"] if u else math.nan

    seeds = sorted({r["seed"] for r in rows})
    return bootstrap_effect(label, seeds, lambda ss: width(ss, "before") - width(ss, "none"), direction=+1,
                            unit="decades")


def _range_claim(ctx, study, cid, title, statement, sources, key, group_key=None):
    s = ctx.studies[study]
    cfg, rows = s.cfg, s.rows
    c = Claim(cid, title, statement, sources, "", study)
    groups = sorted({r[group_key] for r in rows}, key=lambda v: [r[group_key] for r in rows].index(v)) \
        if group_key else [None]
    for g in groups:
        where = {group_key: g} if group_key else {}
        label = f"{g}: " if g is not None else ""
        c.effects.append(_width_effect(rows, cfg, key, where, 0.02,
                                       f"{label}usable {key} range (within 2 points of best), BN - no BN"))
    c.primary = list(range(len(c.effects)))
    path = ctx.fig(f"c{int(cid[1:]):02d}_range")
    table = range_table(cfg, list(cfg.sweep.parameters), rows)
    range_figure(table, usable_ranges(cfg, list(cfg.sweep.parameters), table), list(cfg.sweep.parameters), key,
                 path, title=f"{cid}: {title}")
    c.figures.append(str(path))
    return c


def c02(ctx) -> Claim:
    """c02_lr_range: usable learning-rate range per optimizer."""
    s = ctx.studies["c02_lr_range"]
    t = s.cfg
    c = _range_claim(ctx, "c02_lr_range", "C2", "BN widens the usable learning-rate range",
                     "With BN, a wider range of learning rates trains well (higher learning rates are usable), with "
                     "SGD, momentum, RMSprop and Adam.", "000, 001, 002, 004", "optimizer.lr", "optimizer.name")
    c.protocol = (f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU, He init, batch {t.train.batch_size}, "
                  f"{t.train.epochs} epochs, learning rates 1e-4 ... 10 at 3 per decade, {len(t.train.seeds)} seeds. "
                  "Usable range: the contiguous learning rates around the best whose mean final test accuracy is "
                  "within 2 points of the arm's best; width in decades.")
    c.rule = ("Primary: for every optimizer, width(BN) - width(no BN), percentile-bootstrap interval over seeds "
              "(paired resamples) above 0.")
    return c


def c03(ctx) -> Claim:
    """c03_init_scale: usable range of the initial weight scale."""
    s = ctx.studies["c03_init_scale"]
    t = s.cfg
    c = _range_claim(ctx, "c03_init_scale", "C3", "BN reduces the dependence on initialization",
                     "With BN, training is less sensitive to the scale of the initial weights.",
                     "004; CS231n assignment 2", "model.init_std")
    c.protocol = (f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU, weights N(0, s²) with s from 1e-4 to 1, SGD lr "
                  f"{t.optimizer.lr:g}, batch {t.train.batch_size}, {t.train.epochs} epochs, {len(t.train.seeds)} "
                  "seeds. Usable range of s as in C2.")
    c.rule = "Primary: width(BN) - width(no BN) in decades of s, bootstrap interval above 0."
    return c


def c10(ctx) -> Claim:
    """c10_depth: accuracy against depth."""
    s = ctx.studies["c10_depth"]
    rows, t = s.rows, s.cfg
    depths = sorted({r["model.depth"] for r in rows})
    c = Claim("C10", "BN makes very deep networks trainable",
              "Very deep plain MLPs that do not train without BN do train with it.", "001",
              f"Width {t.model.width or t.model.hidden[0]}, depth {depths[0]} ... {depths[-1]}, sigmoid and ReLU, He "
              f"init, SGD lr {t.optimizer.lr:g}, {t.train.epochs} epochs, {len(t.train.seeds)} seeds.", "c10_depth")
    c.rule = f"Primary: at the largest depth ({depths[-1]}), final accuracy BN - no BN, paired by seed, above 0, " \
             "for each activation."
    for act in ("sigmoid", "relu"):
        for d in dict.fromkeys((depths[-1], depths[(len(depths) - 1) // 2])):
            w = {"model.activation": act, "model.depth": d}
            diff = paired_diffs(by_seed(select(rows, arm="none", **w), "final_test_acc"),
                                by_seed(select(rows, arm="before", **w), "final_test_acc"))
            c.effects.append(paired_effect(f"{act}, depth {d}: final test accuracy, BN - no BN", diff, direction=+1,
                                           unit="accuracy"))
            if d == depths[-1]:
                c.primary.append(len(c.effects) - 1)
    path = ctx.fig("c10_range")
    keys = list(t.sweep.parameters)
    table = range_table(t, keys, rows)
    range_figure(table, usable_ranges(t, keys, table), keys, "model.depth", path, title="C10: accuracy against depth")
    c.figures.append(str(path))
    return c


def c11(ctx) -> Claim:
    """c11_batch_size: BN's dependence on the batch size."""
    s = ctx.studies["c11_batch_size"]
    rows, t = s.rows, s.cfg
    sizes = sorted({r["train.batch_size"] for r in rows})
    small, ref = sizes[0], 64 if 64 in sizes else sizes[-1]
    c = Claim("C11", "BN depends on the batch size",
              "BN's performance degrades when the mini-batch is small (its statistics get noisy): a disadvantage.",
              "004 (disadvantages)",
              f"3 x 100 ReLU, SGD lr {t.optimizer.lr:g} (not rescaled), {t.train.epochs} epochs for every batch size "
              f"({', '.join(map(str, sizes))}), {len(t.train.seeds)} seeds; no BN is the control.", "c11_batch_size")
    c.rule = (f"Primary: the interaction [acc(BN, {small}) - acc(BN, {ref})] - [acc(no BN, {small}) - acc(no BN, "
              f"{ref})], paired by seed, below 0 (BN loses more than the control at the small batch).")

    def acc(arm, b):
        return by_seed(select(rows, arm=arm, **{"train.batch_size": b}), "final_test_acc")

    bn = diff_by_seed(acc("before", ref), acc("before", small))
    ctrl = diff_by_seed(acc("none", ref), acc("none", small))
    c.effects.append(paired_effect(f"interaction: BN's drop minus no BN's drop, batch {small} vs {ref}",
                                   paired_diffs(ctrl, bn), direction=-1, unit="accuracy"))
    c.primary = [0]
    for b in sizes:
        diff = paired_diffs(acc("none", b), acc("before", b))
        c.effects.append(paired_effect(f"batch {b}: final test accuracy, BN - no BN", diff, unit="accuracy"))
    path = ctx.fig("c11_range")
    keys = list(t.sweep.parameters)
    table = range_table(t, keys, rows)
    range_figure(table, usable_ranges(t, keys, table), keys, "train.batch_size", path,
                 title="C11: accuracy against the training batch size")
    c.figures.append(str(path))
    return c
