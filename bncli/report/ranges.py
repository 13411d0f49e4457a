"""Claims about speed and hyperparameter ranges: C1, C2, C3, C6, C10, C11."""

from __future__ import annotations

import math
from pathlib import Path

from .. import stats
from ..experiment import budget_of, km_entry
from ..plotting import ARM_LABELS, learning_curves, range_figure
from ..runs import read_metrics
from ..sweeps import range_table, seed_ranges, usable_ranges
from ..training import TAIL_EVALS
from .images import conv_batch_effects
from .claim import Claim, by_seed, diff_by_seed, events, mean, n_diverged, paired_diffs, select, study_seeds
from .verdict import Effect, censored_effect, paired_effect, sign_check


def _best_value(rows, arm, key, metric="final_test_acc", **where):
    """The swept value with the best mean ``metric`` for ``arm``; for this choice alone a diverged run counts as 0
    (the worst outcome), so a value where runs diverge is not picked as 'best' on its surviving seeds."""
    values = sorted({r[key] for r in rows if r["arm"] == arm and all(r.get(k) == v for k, v in where.items())})
    score = lambda v: mean(0.0 if r.get("diverged") else r.get(metric)  # noqa: E731
                           for r in select(rows, arm=arm, **{key: v}, **where) if r.get("status") in ("ok", "diverged"))
    return max(values, key=lambda v: (score(v) if math.isfinite(score(v)) else -1.0))


def _curves(rows, arms, lrs: dict | None = None, **where):
    """{arm: [(columns, rows)]} and {arm: [diverged]} of the runs at ``where`` (and ``lrs[arm]`` if given)."""
    out, div = {}, {}
    for arm in arms:
        extra = {"optimizer.lr": lrs[arm]} if lrs else {}
        for r in select(rows, arm=arm, **where, **extra):
            p = Path(r["run_dir"]) / "metrics.csv"
            if p.exists():
                out.setdefault(arm, []).append(read_metrics(p))
                div.setdefault(arm, []).append(bool(r.get("diverged")))
    return out, div


def _steps_effect(rows, label, a_rows, b_rows, names, direction=+1):
    """steps(a) - steps(b), paired by seed over every seed, censored runs as bounds."""
    o = stats.paired_censored(events(a_rows), events(b_rows), budget_of(rows))
    return censored_effect(label, o, direction=direction, unit="steps", what=names)


def _km_effect(label, rs, budget):
    o = stats.time_to_event(events(rs).values())
    km = km_entry(o, sum(v is not None for v in events(rs).values()), budget)
    return Effect(label, o.n, o.estimate, math.nan, o.ci_low, o.ci_high, "steps",
                  method=f"Kaplan-Meier median (censored at {budget}); order-statistic interval"
                         + (f" ({o.coverage:.1%})" if math.isfinite(o.coverage) else ""),
                  extra={"estimate_text": f"{km['median_text']} steps (reached {km['reached']}/{o.n})",
                         "interval_text": km["ci_text"]})


def _diverged_at(rows, arm, **where):
    rs = [r for r in select(rows, arm=arm, **where) if r.get("status") in ("ok", "diverged")]
    return n_diverged(rs), len(rs)


def _c01_effects(c, rows, act, budget):
    """C1's effects for one activation: steps to the target at the best learning rate of no BN and with each arm at
    its own best, Kaplan-Meier medians per arm, final accuracy."""
    w = {"model.activation": act}
    lr0 = _best_value(rows, "none", "optimizer.lr", **w)
    at = {"optimizer.lr": lr0, **w}
    for arm in ("before", "after"):
        c.effects.append(_steps_effect(rows, f"{act}, lr {lr0:g} (best for no BN): steps(no BN) - steps(BN {arm})",
                                       select(rows, arm="none", **at), select(rows, arm=arm, **at),
                                       ("no BN", f"BN {arm}")))
        if act == "sigmoid" and arm == "before":
            c.primary.append(len(c.effects) - 1)
    lr_bn = _best_value(rows, "before", "optimizer.lr", **w)
    c.effects.append(_steps_effect(rows, f"{act}, each at its best lr (no BN {lr0:g}, BN {lr_bn:g}): steps(no BN) "
                                   "- steps(BN before)", select(rows, arm="none", **at),
                                   select(rows, arm="before", **w, **{"optimizer.lr": lr_bn}),
                                   ("no BN", "BN before")))
    for arm in ("none", "before", "after"):
        k, n = _diverged_at(rows, arm, **at)
        c.effects.append(_km_effect(f"{act}, lr {lr0:g}: steps to target, {ARM_LABELS[arm]}"
                                    + (f" ({k}/{n} diverged)" if k else ""), select(rows, arm=arm, **at), budget))
    acc = paired_diffs(by_seed(select(rows, arm="none", **at), "final_test_acc"),
                       by_seed(select(rows, arm="before", **at), "final_test_acc"))
    c.effects.append(paired_effect(f"{act}, lr {lr0:g}: final test accuracy, BN before - no BN (runs that did not "
                                   "diverge)", acc, direction=+1, unit="accuracy"))


def c01(ctx) -> Claim:
    """C1 (c01_faster_training): steps to the target accuracy, paired by seed."""
    s = ctx.studies["c01_faster_training"]
    rows, t = s.rows, s.cfg.train
    c = Claim("C1", "BN trains faster",
              "Networks with BN reach a given accuracy in fewer training steps (Ioffe & Szegedy 2015 §4.1, Fig. 1a).",
              "all five notes (000-004)",
              f"3 x 100 units, N(0, 0.05²) init, plain SGD, batch {t.batch_size}, {t.steps} steps, "
              f"{len(study_seeds(s))} seeds, sigmoid and ReLU; learning rates "
              f"{s.cfg.sweep.parameters['optimizer.lr'].values}. Steps to {t.target_accuracy:g} test accuracy: a run "
              "that never gets there within the budget, or diverges first, is censored at the budget (time-to-event "
              "data). (a) BN and no BN at the best learning rate of no BN; (b) each arm at its own best (a diverged "
              "run counts as accuracy 0 when choosing it).",
              "c01_faster_training")
    c.rule = ("Primary: sigmoid, same learning rate, steps(no BN) - steps(BN before), paired by seed over every "
              "seed; the median difference with its distribution-free sign-test interval (censored runs enter as "
              "bounds); supported if the interval lies above 0.")
    budget = budget_of(rows)
    for act in ("sigmoid", "relu"):
        _c01_effects(c, rows, act, budget)
    conv = ctx.studies.get("c13_per_channel")
    if conv is not None and conv.rows:  # the convnet's runs (CLAIMS.md C13: C1 on the convnet, secondary)
        none, bn = (select(conv.rows, arm=a, **{"model.bn_per": "channel"}) for a in ("none", "before"))
        c.effects.append(_steps_effect(conv.rows, "LeNet (c13_per_channel), sigmoid: steps(no BN) - steps(BN per "
                                       "channel)", none, bn, ("no BN", "BN")))
    if ctx.draw:
        lr0 = _best_value(rows, "none", "optimizer.lr", **{"model.activation": "sigmoid"})
        curves, div = _curves(rows, ["none", "before", "after"], **{"model.activation": "sigmoid",
                                                                     "optimizer.lr": lr0})
        ctx.figure(c, "c01_learning_curves", learning_curves, curves_by_arm=curves,
                   title=f"C1: sigmoid 3 x 100, SGD lr {lr0:g} (best for no BN)", target=t.target_accuracy,
                   diverged=div)
    return c


def _placement_notes(act, lr0, best, div) -> list[str]:
    """A placement that diverges in most runs at no BN's best learning rate while the other trains: a finding."""
    notes = []
    for arm, other in (("before", "after"), ("after", "before")):
        (k, n), (k2, n2) = div[arm], div[other]
        if n and k * 2 >= n and k2 * 2 < n2:
            notes.append(f"Finding ({act}): at lr {lr0:g}, the best learning rate of no BN, BN {arm} the "
                         f"activation diverged in {k} of {n} runs while BN {other} it trained ({k2} of {n2} "
                         f"diverged). This is a difference in the largest stable learning rate, not in speed: "
                         f"at its own best learning rate ({best[arm]:g}) BN {arm} is compared above.")
    return notes


def _c06_effects(c, rows, act):
    """C6's effects for one activation: each placement against no BN and against the other, each at its own best
    learning rate, then at no BN's best (with the diverged runs)."""
    w = {"model.activation": act}
    best = {arm: _best_value(rows, arm, "optimizer.lr", **w) for arm in ("none", "before", "after")}
    own = {arm: select(rows, arm=arm, **w, **{"optimizer.lr": best[arm]}) for arm in best}
    for arm in ("before", "after"):
        c.effects.append(_steps_effect(rows, f"{act}, each at its own best lr (no BN {best['none']:g}, BN {arm} "
                                       f"{best[arm]:g}): steps(no BN) - steps(BN {arm})", own["none"], own[arm],
                                       ("no BN", f"BN {arm}")))
        if act == "sigmoid":
            c.primary.append(len(c.effects) - 1)
    c.effects.append(_steps_effect(rows, f"{act}, each at its own best lr: steps(BN after) - steps(BN before)",
                                   own["after"], own["before"], ("BN after", "BN before"), direction=0))
    acc = paired_diffs(by_seed(own["before"], "final_test_acc"), by_seed(own["after"], "final_test_acc"))
    c.effects.append(paired_effect(f"{act}, each at its own best lr: final accuracy, BN after - BN before", acc,
                                   unit="accuracy"))
    lr0 = best["none"]
    at = {"optimizer.lr": lr0, **w}
    div = {arm: _diverged_at(rows, arm, **at) for arm in ("none", "before", "after")}
    for arm in ("before", "after"):
        k, n = div[arm]
        c.effects.append(_steps_effect(rows, f"{act}, lr {lr0:g} (best for no BN): steps(no BN) - steps(BN {arm})"
                                       + (f"; BN {arm} diverged in {k}/{n}" if k else ""),
                                       select(rows, arm="none", **at), select(rows, arm=arm, **at),
                                       ("no BN", f"BN {arm}"), direction=0))
    c.notes += _placement_notes(act, lr0, best, div)


def c06(ctx) -> Claim:
    """C6 (c06_placement): BN before vs after the activation, on the C1 runs."""
    s = ctx.studies["c06_placement"]
    rows = s.rows
    c = Claim("C6", "BN works before or after the activation",
              "BN can be placed before or after the nonlinearity; before is done more frequently.",
              "001, 002, 004", "The C1 runs (same seeds): steps to the target accuracy (censored at the budget) and "
              "final test accuracy of BN before vs after, each placement at its own best learning rate and at the "
              "best learning rate of no BN, with the number of diverged runs.", "c06_placement")
    c.rule = ("Primary: sigmoid, each placement at its own best learning rate trains faster than no BN at its own "
              "best: steps(no BN) - steps(BN), median paired difference with its sign-test interval above 0, for both "
              "placements. Before vs after is reported two-sided; 'no significant difference' is a result. A "
              "placement that diverges where the other trains is stated as a finding, not as a number of steps.")
    for act in ("sigmoid", "relu"):
        _c06_effects(c, rows, act)
    if ctx.draw:
        w = {"model.activation": "sigmoid"}
        best = {arm: _best_value(rows, arm, "optimizer.lr", **w) for arm in ("none", "before", "after")}
        curves, div = _curves(rows, ["none", "before", "after"], lrs=best, **w)
        ctx.figure(c, "c06_placement", learning_curves, curves_by_arm=curves,
                   title="C6: sigmoid 3 x 100, each arm at its own best learning rate ("
                         + ", ".join(f"{ARM_LABELS[a]} {v:g}" for a, v in best.items()) + ")",
                   target=s.cfg.train.target_accuracy, diverged=div)
    return c


def _log_gap(a, b):
    """log10(a / b) in decades; +inf / -inf where only one side has a usable range; None if neither."""
    if a is None and b is None:
        return None
    if b is None:
        return math.inf
    if a is None:
        return -math.inf
    return math.log10(a / b)


def _per_seed(cfg, rows, group: dict):
    """{arm: {seed: per-seed range row}} for the runs at ``group`` (the other swept keys fixed)."""
    keys = list(cfg.sweep.parameters)
    out: dict = {}
    for r in seed_ranges(cfg, keys, rows):
        if all(r.get(k) == v for k, v in group.items()):
            out.setdefault(r["arm"], {})[r["seed"]] = r
    return out


def _range_effects(c, cfg, rows, key, group, label, primary: str):
    """Per seed: the largest usable value ('largest') or the usable width ('width'), BN - no BN, paired t-interval
    over the seeds where both arms learn, with a sign test over every seed as a check; plus the descriptive
    within-N-points widths. Returns the index of the primary effect."""
    ps = _per_seed(cfg, rows, group)
    bn, nb = ps.get("before", {}), ps.get("none", {})
    seeds = sorted(set(bn) & set(nb))
    learn = {arm: sum(ps.get(arm, {}).get(sd, {}).get("learns", False) for sd in seeds) for arm in ("none", "before")}
    both = [sd for sd in seeds if bn[sd]["learns"] and nb[sd]["learns"]]
    unit = "decades"
    if primary == "largest":
        what = f"largest usable {key} (>= {cfg.sweep.floor:g} tail accuracy, contiguous around the seed's best)"
        d = [math.log10(bn[sd]["hi"] / nb[sd]["hi"]) for sd in both]
        gaps = [_log_gap(bn[sd]["hi"] if bn[sd]["learns"] else None, nb[sd]["hi"] if nb[sd]["learns"] else None)
                for sd in seeds]
    else:
        what = f"usable {key} range width (>= {cfg.sweep.floor:g} tail accuracy, contiguous around the seed's best)"
        d = [bn[sd]["decades"] - nb[sd]["decades"] for sd in both]
        gaps = [None if not (bn[sd]["learns"] or nb[sd]["learns"]) else
                (math.inf if not nb[sd]["learns"] else -math.inf if not bn[sd]["learns"] else
                 bn[sd]["decades"] - nb[sd]["decades"]) for sd in seeds]
    e = paired_effect(f"{label}{what}, log10(BN / no BN)" if primary == "largest" else f"{label}{what}, BN - no BN",
                      d, direction=+1, unit=unit,
                      method=f"paired t-interval over the {len(both)} of {len(seeds)} seeds where both arms learn "
                             f"(seeds that learn: no BN {learn['none']}, BN {learn['before']})")
    c.effects.append(e)
    idx = len(c.effects) - 1
    lo = [-math.inf if g is None else g for g in gaps]
    hi = [math.inf if g is None else g for g in gaps]
    c.effects.append(sign_check(f"{label}check: sign test of the same per-seed difference over all {len(seeds)} seeds "
                                "(an arm that never learns counts as the smaller)", lo, hi, unit))
    if primary == "largest":
        c.effects.append(paired_effect(f"{label}usable range width (>= {cfg.sweep.floor:g}), BN - no BN",
                                       [bn[sd]["decades"] - nb[sd]["decades"] for sd in both], unit=unit))
    else:
        c.effects.append(paired_effect(f"{label}largest usable {key}, log10(BN / no BN)",
                                       [math.log10(bn[sd]["hi"] / nb[sd]["hi"]) for sd in both], unit=unit))
    for tol in cfg.sweep.target_points:
        sfx = f"_{tol * 100:g}pt"
        c.effects.append(paired_effect(f"{label}descriptive: width within {tol * 100:g} points of the seed's own "
                                       "best, BN - no BN", [bn[sd][f"decades{sfx}"] - nb[sd][f"decades{sfx}"]
                                                            for sd in both], unit=unit))
    for arm, name in (("none", "no BN"), ("before", "BN")):
        if learn[arm] < len(seeds):
            c.notes.append(f"{label}{name} learns (tail accuracy >= {cfg.sweep.floor:g}) at no {key} in "
                           f"{len(seeds) - learn[arm]} of {len(seeds)} seeds: no usable range there.")
    return idx


def _range_claim(ctx, study, cid, title, statement, sources, key, primary, group_key=None):
    s = ctx.studies[study]
    cfg, rows = s.cfg, s.rows
    c = Claim(cid, title, statement, sources, "", study)
    groups = list(dict.fromkeys(r[group_key] for r in rows)) if group_key else [None]
    for g in groups:
        where = {group_key: g} if group_key else {}
        label = f"{g}: " if g is not None else ""
        c.primary.append(_range_effects(c, cfg, rows, key, where, label, primary))
    _draw_range(ctx, c, cfg, rows, key, f"c{int(cid[1:]):02d}_range", f"{cid}: {title}")
    return c


def _draw_range(ctx, c, cfg, rows, key, name, title):
    """The sweep's range figure (accuracy and loss against ``key``, usable ranges) for claim ``c``."""
    if ctx.draw:
        keys = list(cfg.sweep.parameters)
        ctx.figure(c, name, range_figure, range_rows=range_table(cfg, keys, rows),
                   usable=usable_ranges(cfg, keys, rows), keys=keys, range_key=key, title=title)


def c02(ctx) -> Claim:
    """C2 (c02_lr_range): usable learning-rate range per optimizer."""
    s = ctx.studies["c02_lr_range"]
    t = s.cfg
    c = _range_claim(ctx, "c02_lr_range", "C2", "BN widens the usable learning-rate range",
                     "With BN, a wider range of learning rates trains well (higher learning rates are usable), with "
                     "SGD, momentum, RMSprop and Adam.", "000, 001, 002, 004", "optimizer.lr", "largest",
                     "optimizer.name")
    c.protocol = (f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU, He init, batch {t.train.batch_size}, "
                  f"{t.train.epochs} epochs, learning rates 1e-4 ... 10 at 3 per decade, {len(study_seeds(s))} seeds. "
                  f"Per seed, a learning rate is usable if its run did not diverge and its tail test accuracy (mean "
                  f"of the last {TAIL_EVALS} evaluations) is >= {t.sweep.floor:g}; the seed's usable range is the "
                  "contiguous block of usable learning rates around its best one.")
    c.rule = ("Primary, for each of sgd, momentum, rmsprop and adam: log10(largest usable lr with BN / without), per "
              "seed, paired t-interval over the seeds where both arms learn, above 0; supported only if all four "
              "are. A sign test over every seed is the check; the within-2/5-point widths are descriptive.")
    return c


def c03(ctx) -> Claim:
    """C3 (c03_init_scale): usable range of the initial weight scale."""
    s = ctx.studies["c03_init_scale"]
    t = s.cfg
    c = _range_claim(ctx, "c03_init_scale", "C3", "BN reduces the dependence on initialization",
                     "With BN, training is less sensitive to the scale of the initial weights.",
                     "004; CS231n assignment 2", "model.init_std", "width")
    c.protocol = (f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU, weights N(0, s²) with s from 1e-4 to 1, SGD lr "
                  f"{t.optimizer.lr:g}, batch {t.train.batch_size}, {t.train.epochs} epochs, {len(study_seeds(s))} "
                  f"seeds. Per seed, s is usable if the run did not diverge and its tail test accuracy is >= "
                  f"{t.sweep.floor:g}; the usable range is the contiguous block around the seed's best s.")
    c.rule = ("Primary: width of the usable range of s in decades, BN - no BN, per seed, paired t-interval over the "
              "seeds where both arms learn, above 0; sign test over every seed as the check.")
    return c


def c10(ctx) -> Claim:
    """C10 (c10_depth): accuracy against depth."""
    s = ctx.studies["c10_depth"]
    rows, t = s.rows, s.cfg
    depths = sorted({r["model.depth"] for r in rows})
    c = Claim("C10", "BN makes very deep networks trainable",
              "Very deep plain MLPs that do not train without BN do train with it.", "001",
              f"Width {t.model.width or t.model.hidden[0]}, depth {depths[0]} ... {depths[-1]}, sigmoid and ReLU, He "
              f"init, SGD lr {t.optimizer.lr:g}, {t.train.epochs} epochs, {len(study_seeds(s))} seeds.", "c10_depth")
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
    _draw_range(ctx, c, t, rows, "model.depth", "c10_range", "C10: accuracy against depth")
    return c


def c11(ctx) -> Claim:
    """C11 (c11_batch_size): BN's dependence on the batch size."""
    s = ctx.studies["c11_batch_size"]
    rows, t = s.rows, s.cfg
    sizes = sorted({r["train.batch_size"] for r in rows})
    small, ref = sizes[0], 64 if 64 in sizes else sizes[-1]
    c = Claim("C11", "BN depends on the batch size",
              "BN's performance degrades when the mini-batch is small (its statistics get noisy): a disadvantage.",
              "004 (disadvantages)",
              f"3 x 100 ReLU, SGD lr {t.optimizer.lr:g} (not rescaled), {t.train.epochs} epochs for every batch size "
              f"({', '.join(map(str, sizes))}), {len(study_seeds(s))} seeds; no BN is the control.", "c11_batch_size")
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
    conv = ctx.studies.get("c11_batch_size_conv")
    if conv is not None and conv.rows:  # CLAIMS.md C13: C11 on the convnet, secondary (the verdict stays C11's)
        c.effects += conv_batch_effects(conv)
    _draw_range(ctx, c, t, rows, "train.batch_size", "c11_range", "C11: accuracy against the training batch size")
    return c
