"""Why does BN work? C14 (internal covariate shift as the cause), C15 (a smoother loss landscape) and C16 (the
learning rate as the mediator), all judged on the runs of one study, ``c14_why_bn`` (CLAIMS.md, "Why does BN work?").

Every run of the study records the C9 percentiles, Santurkar et al.'s gradient change (``ics.csv``) and the loss and
gradient along the gradient direction (``smoothness.csv``) at sampled steps (``training.Prober``). Per run a probe
is summarized as its mean over the sampled steps (and layers); arms are paired by seed."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import stats
from ..core.probes import Smoothness, smoothness_summary
from ..plotting import learning_curves
from . import figures
from .claim import Claim, by_seed, diff_by_seed, paired_diffs, select, study_seeds
from .mechanisms import _drift
from .ranges import _best_value, _curves, _per_seed, _steps_effect
from .verdict import Effect, paired_effect

STUDY = "c14_why_bn"
ARMS = ("none", "before", "noisy")
NAMES = {"none": "no BN", "before": "BN", "noisy": "noisy BN"}


# -- the probes of one run ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _table(path: str, stamp) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """A CSV read once per version of the file (``stamp``: its mtime and size): the leave-one-seed-out checks read
    every table ten times, and a run trained again in the same process writes a new version."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return tuple(rows[0]), tuple(tuple(r) for r in rows[1:])


def _columns(path: Path) -> dict | None:
    """{column: list of floats (or str for 'layer')} of one of a run's probe tables; None if it was not written."""
    if not path.is_file():
        return None
    st = path.stat()
    head, rows = _table(str(path), (st.st_mtime_ns, st.st_size))
    return {c: [r[i] if c == "layer" else float(r[i]) for r in rows] for i, c in enumerate(head)}


def ics_by_step(run_dir) -> dict | None:
    """{step: (mean relative change ||G - G'|| / ||G||, mean cosine) over the layers} of one run."""
    t = _columns(Path(run_dir) / "ics.csv")
    if t is None or not t["step"]:
        return None
    out: dict = {}
    for s, rel, cos in zip(t["step"], t["rel_change"], t["cosine"]):
        out.setdefault(s, []).append((rel, cos))
    return {s: (float(np.mean([v[0] for v in vs])), float(np.mean([v[1] for v in vs]))) for s, vs in out.items()}


def smoothness_by_step(run_dir) -> dict | None:
    """{step: (loss variation, gradient predictiveness, effective beta, loss range low, high, gradient change at
    eta = lr, lowest and highest over eta)} of one run; the first three as `core.probes.smoothness_summary` computes
    them (CLAIMS.md C15: the base point eta = 0 is in the loss range)."""
    t = _columns(Path(run_dir) / "smoothness.csv")
    if t is None or not t["step"]:
        return None
    per: dict = {}
    for i, s in enumerate(t["step"]):
        per.setdefault(s, []).append(i)
    out = {}
    for s, idx in per.items():
        sm = Smoothness(t["base_loss"][idx[0]], t["grad_norm"][idx[0]],
                        [(t["eta"][i], t["loss"][i], t["grad_diff"][i]) for i in idx])
        losses = [sm.base_loss] + [t["loss"][i] for i in idx]
        diffs = [t["grad_diff"][i] for i in idx]
        at_lr = next((t["grad_diff"][i] for i in idx if t["multiple"][i] == 1.0), math.nan)
        out[s] = (*smoothness_summary(sm), min(losses), max(losses), at_lr, min(diffs), max(diffs))
    return out


def _run_mean(series: dict | None, k: int) -> float:
    if not series:
        return math.nan
    vals = [v[k] for v in series.values() if math.isfinite(v[k])]
    return float(np.mean(vals)) if vals else math.nan


def _per_seed_probe(rows, fn, k) -> dict:
    """{seed: the run's mean of field ``k`` of ``fn(run_dir)``} over the runs that finished without diverging."""
    return {r["seed"]: _run_mean(fn(r["run_dir"]), k) for r in rows if r.get("status") == "ok"}


def _log_ratio(label, a: dict, b: dict, direction, unit="log ratio") -> Effect:
    """log(b / a) paired by seed (positive, finite values only)."""
    d = [math.log(b[s] / a[s]) for s in a if s in b and a[s] > 0 and b[s] > 0 and math.isfinite(a[s] / b[s])]
    return paired_effect(label, d, direction=direction, unit=unit)


def _drifts(rows) -> dict:
    out = {}
    for r in rows:
        p = Path(r["run_dir"]) / "percentiles.csv"
        if p.exists():
            out[r["seed"]] = _drift(str(p))[0]
    return out


def _setting(s) -> str:
    t = s.cfg
    m = t.model
    return (f"3 x 100 sigmoid, N(0, 0.05²) init, plain SGD, batch {t.train.batch_size}, {t.train.steps} steps, "
            f"{len(study_seeds(s))} seeds (fresh: {min(study_seeds(s))}-{max(study_seeds(s))}), learning rates "
            f"{s.cfg.sweep.parameters['optimizer.lr'].values}; arms no BN, BN before the activation, and noisy BN "
            f"(BN before, then y = s·x + m per unit, log s uniform on [log {m.noise_scale_low:g}, "
            f"log {m.noise_scale_high:g}], m uniform on [-{m.noise_mean:g}, {m.noise_mean:g}], redrawn every step). "
            f"Every {t.train.probe_every} steps: the C9 percentiles, the gradient change of each dense layer's weights "
            f"when the layers below it take their update (same minibatch), and the loss and gradient at θ - ηg for "
            f"η = lr × {', '.join(f'{x:g}' for x in t.train.probe_lr_multiples)}.")


def _at_lr0(ctx):
    """(study, its rows, lr0 = the best learning rate of no BN by C1's rule, {arm: its rows at lr0})."""
    s = ctx.studies[STUDY]
    lr0 = _best_value(s.rows, "none", "optimizer.lr")
    return s, s.rows, lr0, {a: select(s.rows, arm=a, **{"optimizer.lr": lr0}) for a in ARMS}


# -- C14 ------------------------------------------------------------------------------------------------------------
def c14(ctx) -> Claim:
    """C14: BN helps because it reduces internal covariate shift."""
    s, rows, lr0, at = _at_lr0(ctx)
    c = Claim("C14", "BN helps because it reduces internal covariate shift",
              "BN works because it keeps the distribution of each layer's inputs stable, so that a layer does not have "
              "to keep adapting to the changing outputs of the layers below it.", "000, 001, 002, 004",
              _setting(s) + f" Compared at lr₀ = {lr0:g}, the best learning rate of no BN.", STUDY)
    c.rule = ("Manipulation check (required): drift of the last hidden layer's sigmoid inputs, noisy BN - BN, above "
              "0. Primary 1: log(relative gradient change ||G - G'||/||G|| of BN / of no BN) below 0 (BN reduces "
              "ICS). Primary 2: steps to target, steps(no BN) - steps(noisy BN), median paired difference with its "
              "sign-test interval, below 0 (with unstable inputs, BN's speed-up should be gone). Unless the "
              "manipulation check is supported, the verdict is inconclusive.")
    drift = {a: _drifts(at[a]) for a in ARMS}
    c.effects.append(paired_effect("manipulation check: drift of the last hidden sigmoid inputs, noisy BN - BN",
                                   paired_diffs(drift["before"], drift["noisy"]), direction=+1, unit="spreads"))
    c.requires = [0]
    ics = {a: _per_seed_probe(at[a], ics_by_step, 0) for a in ARMS}
    c.effects.append(_log_ratio("relative gradient change ||G - G'||/||G|| (Santurkar's ICS), log(BN / no BN)",
                                ics["none"], ics["before"], direction=-1))
    c.effects.append(_steps_effect(rows, "steps to target: steps(no BN) - steps(noisy BN)", at["none"], at["noisy"],
                                   ("no BN", "noisy BN"), direction=-1))
    c.primary = [1, 2]
    cos = {a: _per_seed_probe(at[a], ics_by_step, 1) for a in ARMS}
    c.effects.append(paired_effect("cos(G, G'), BN - no BN", paired_diffs(cos["none"], cos["before"]), unit="cosine"))
    c.effects.append(paired_effect("cos(G, G'), noisy BN - no BN", paired_diffs(cos["none"], cos["noisy"]),
                                   unit="cosine"))
    c.effects.append(_log_ratio("relative gradient change, log(noisy BN / no BN)", ics["none"], ics["noisy"], 0))
    c.effects.append(_steps_effect(rows, "steps to target: steps(noisy BN) - steps(BN)", at["noisy"], at["before"],
                                   ("noisy BN", "BN"), direction=0))
    c.effects.append(_steps_effect(rows, "steps to target: steps(no BN) - steps(BN)", at["none"], at["before"],
                                   ("no BN", "BN"), direction=0))
    for a in ARMS:
        sm = stats.describe(drift[a].values())
        c.effects.append(Effect(f"drift, {NAMES[a]}", sm.n, sm.mean, sm.sd, sm.ci_low, sm.ci_high, "spreads",
                                method="t-interval over seeds"))
    _usable_rows(c, s)
    c.notes.append("C9 shows that BN's layer inputs drift less; this claim asks whether that is why BN helps. A "
                   "stable distribution (C9) and a causal explanation (C14) are different claims.")
    if ctx.draw:
        _draw_c14(ctx, c, rows, at, lr0, s)
    return c


def _usable_rows(c, s):
    """Usable learning-rate range of each arm on this study's grid (C2's rule), noisy BN against the others."""
    ps = _per_seed(s.cfg, s.rows, {})
    for a, b in (("none", "noisy"), ("noisy", "before"), ("none", "before")):
        pa, pb = ps.get(a, {}), ps.get(b, {})
        both = [sd for sd in pa if sd in pb and pa[sd]["learns"] and pb[sd]["learns"]]
        c.effects.append(paired_effect(f"usable lr range width (C2's rule on this grid), {NAMES[b]} - {NAMES[a]}",
                                       [pb[sd]["decades"] - pa[sd]["decades"] for sd in both], unit="decades",
                                       method=f"paired t-interval over the {len(both)} seeds where both arms learn"))


def _over_steps(rows, fn, k):
    """(steps, mean, low, high) over the seeds of field ``k`` of ``fn(run_dir)`` at each sampled step."""
    per: dict = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        for step, v in (fn(r["run_dir"]) or {}).items():
            per.setdefault(step, []).append(v[k])
    steps = sorted(per)
    summ = [stats.describe(per[st]) for st in steps]
    return steps, [x.mean for x in summ], [x.ci_low for x in summ], [x.ci_high for x in summ]


def _draw_c14(ctx, c, rows, at, lr0, s):
    curves, div = _curves(rows, list(ARMS), **{"optimizer.lr": lr0})
    ctx.figure(c, "c14_learning_curves", learning_curves, curves_by_arm=curves,
               title=f"C14: no BN, BN and noisy BN, sigmoid 3 x 100, SGD lr {lr0:g} (best for no BN)",
               target=s.cfg.train.target_accuracy, diverged=div)
    first = min((r["seed"] for r in rows), default=0)
    pct = {}
    for a in ARMS:
        for r in at[a]:
            p = Path(r["run_dir"]) / "percentiles.csv"
            if r["seed"] == first and p.exists():
                pct[a] = _drift(str(p))[1]
    if pct:
        ctx.figure(c, "c14_percentiles", figures.percentiles, curves=pct, unit=0, seed=first,
                   title="C14: the inputs to one sigmoid of the last hidden layer (noisy BN: with the step's noise)")
    panels = [("relative gradient change ||G - G'|| / ||G||", {a: _over_steps(at[a], ics_by_step, 0) for a in ARMS}),
              ("cos(G, G')", {a: _over_steps(at[a], ics_by_step, 1) for a in ARMS})]
    ctx.figure(c, "c14_ics", figures.lines, panels=panels, xlabel="training step", ylabel="mean over dense layers",
               title=f"C14: internal covariate shift as Santurkar et al. measure it, lr {lr0:g}: the change of a "
                     "layer's weight gradient when the layers below it take their update (same minibatch)")


# -- C15 ------------------------------------------------------------------------------------------------------------
def c15(ctx) -> Claim:
    """C15: BN makes the loss landscape smoother."""
    s, rows, lr0, at = _at_lr0(ctx)
    c = Claim("C15", "BN makes the loss landscape smoother",
              "With BN the loss and its gradient change less along the gradient direction, so larger steps are "
              "safe (Santurkar et al. 2018).", "Santurkar et al. 2018 (not in the notes)",
              _setting(s) + f" Compared at lr₀ = {lr0:g}, the best learning rate of no BN.", STUDY)
    c.rule = "Primary: effective β-smoothness, log(BN / no BN) of the per-run mean over sampled steps, below 0."
    names = ("effective β-smoothness", "gradient predictiveness max ||∇L(θ) - ∇L(θ - ηg)||",
             "loss variation max - min over η")
    for k, name in zip((2, 1, 0), names):
        v = {a: _per_seed_probe(at[a], smoothness_by_step, k) for a in ARMS}
        c.effects.append(_log_ratio(f"{name}, log(BN / no BN)", v["none"], v["before"], -1 if k == 2 else 0))
        c.effects.append(_log_ratio(f"{name}, log(noisy BN / no BN)", v["none"], v["noisy"], 0))
    c.primary = [0]
    if ctx.draw:
        loss = {a: _band(at[a], 3, 4) for a in ARMS}
        grad = {a: _band(at[a], 6, 7) for a in ARMS}
        beta = {a: _over_steps(at[a], smoothness_by_step, 2) for a in ARMS}
        ctx.figure(c, "c15_smoothness", figures.lines, xlabel="training step", ylabel="", logy=True,
                   band="shaded: lowest to highest over the step sizes η (mean over seeds); effective β: 95% "
                        "t-interval over seeds",
                   panels=[("loss at θ - ηg (range over η)", loss),
                           ("||∇L(θ) - ∇L(θ - ηg)|| (range over η)", grad),
                           ("effective β-smoothness", beta)],
                   title=f"C15: the loss landscape along the gradient, lr {lr0:g} (Santurkar et al. Fig. 4)")
    return c


def _band(rows, lo_k, hi_k):
    """(steps, middle, low, high): the mean over seeds of the lowest and highest value over η at each step."""
    steps, lo, _, _ = _over_steps(rows, smoothness_by_step, lo_k)
    _, hi, _, _ = _over_steps(rows, smoothness_by_step, hi_k)
    mid = [math.sqrt(a * b) if a > 0 and b > 0 else (a + b) / 2 for a, b in zip(lo, hi)]
    return steps, mid, lo, hi


# -- C16 ------------------------------------------------------------------------------------------------------------
def c16(ctx) -> Claim:
    """C16: BN's advantage shrinks at small learning rates."""
    s = ctx.studies[STUDY]
    rows = s.rows
    lrs = sorted({r["optimizer.lr"] for r in rows}) or list(s.cfg.sweep.parameters["optimizer.lr"].values)
    small = min(lrs)
    c = Claim("C16", "BN's advantage shrinks at small learning rates",
              "Most of BN's benefit comes from the larger learning rates it makes usable; at a small learning rate "
              "with and without BN train alike (Bjorck et al. 2018).", "Bjorck et al. 2018 (not in the notes)",
              _setting(s) + " BN's advantage at a learning rate: a(lr) = log(mean training loss of no BN / of BN), "
              "the mean over every minibatch of the run (the area under its training-loss curve).", STUDY)
    c.rule = (f"Primary: a(each arm at its own best lr) - a({small:g}, the smallest lr), paired by seed, above 0. "
              "Seeds where either arm diverged at its best lr do not enter (counted).")
    best = {a: _best_value(rows, a, "optimizer.lr") for a in ("none", "before")}
    loss = {(a, lr): by_seed(select(rows, arm=a, **{"optimizer.lr": lr}), "mean_train_loss")
            for a in ("none", "before") for lr in lrs}

    def adv(lr_none, lr_bn) -> dict:
        a, b = loss[("none", lr_none)], loss[("before", lr_bn)]
        return {sd: math.log(a[sd] / b[sd]) for sd in a if sd in b and a[sd] and b[sd] and a[sd] > 0 and b[sd] > 0}

    at_best, at_small = adv(best["none"], best["before"]), adv(small, small)
    d = diff_by_seed(at_small, at_best)
    n_seeds = len(study_seeds(s))
    c.effects.append(paired_effect(f"a(own best lr: no BN {best['none']:g}, BN {best['before']:g}) - a({small:g})",
                                   list(d.values()), direction=+1, unit="log ratio",
                                   method=f"paired t-interval over the {len(d)} of {n_seeds} seeds with both "
                                          "arms finished at every lr compared"))
    c.primary = [0]
    series = []
    for lr in lrs:
        v = adv(lr, lr)
        if len(v) >= 2:
            sm = stats.describe(v.values())
            c.effects.append(Effect(f"a({lr:g}): log(mean training loss, no BN / BN), same lr", sm.n, sm.mean, sm.sd,
                                    sm.ci_low, sm.ci_high, "log ratio", method="t-interval over seeds"))
            series.append((lr, sm))
    sm = stats.describe(at_best.values())
    c.effects.append(Effect("a(each at its own best lr)", sm.n, sm.mean, sm.sd, sm.ci_low, sm.ci_high, "log ratio",
                            method="t-interval over seeds"))
    if ctx.draw:
        panels = [("BN's advantage at the same learning rate",
                   {"a(lr)": ([x for x, _ in series], [v.mean for _, v in series], [v.ci_low for _, v in series],
                              [v.ci_high for _, v in series])})]
        g = init_gradients(s.cfg, study_seeds(s))
        c.notes.append(_init_note(g))
        ctx.figure(c, "c16_lr", figures.lines, panels=panels, xlabel="learning rate", logx=True,
                   ylabel="log(mean training loss, no BN / BN)",
                   title="C16: BN's speed advantage as a function of the learning rate (Bjorck et al. 2018)")
        ctx.figure(c, "c16_init_gradients", figures.lines, xlabel="depth (hidden layers)", ylabel="||∇W₁|| at init",
                   logy=True, band="95% t-interval of log10 ||∇W₁|| over seeds (geometric mean)",
                   panels=[(f"{act}, He init, width 64", g[act]) for act in g],
                   title="C16: the first layer's gradient norm at initialization against depth (one batch of 64)")
    return c


DEPTHS = (2, 4, 8, 12, 16, 20)


def init_gradients(cfg, seeds) -> dict:
    """{activation: {arm: (depths, geometric mean, low, high)}}: ||dL/dW_1|| at initialization on the first 64
    training images (batch statistics), for C10's nets (width 64, He init), over ``seeds``; the interval is the
    t-interval of log10 ||dL/dW_1||."""
    from ..core import MLP, softmax_cross_entropy
    from ..runs import dataset_for

    data = dataset_for(cfg)
    xb, yb = data.X_train[:64], data.y_train[:64]
    out = {}
    for act in ("sigmoid", "relu"):
        out[act] = {}
        for arm in ("none", "before"):
            m, lo, hi = [], [], []
            for depth in DEPTHS:
                norms = []
                for sd in seeds:
                    net = MLP(data.n_features, [64] * depth, data.n_classes, rng=np.random.default_rng(sd),
                              activation=act, bn=arm, init="he")
                    _, dlogits, _ = softmax_cross_entropy(net.forward(xb, "batch"), yb)
                    net.backward(dlogits)
                    norms.append(math.log10(float(np.linalg.norm(net.grads["dense1.W"].astype(np.float64)))))
                sm = stats.describe(norms)  # over seeds on a log scale: the norms span decades
                m.append(10 ** sm.mean), lo.append(10 ** sm.ci_low), hi.append(10 ** sm.ci_high)
            out[act][arm] = (list(DEPTHS), m, lo, hi)
    return out


def _init_note(g) -> str:
    parts = []
    for act, arms in g.items():
        for arm, (depths, m, _, _) in arms.items():
            parts.append(f"{act}, {NAMES[arm]}: {m[0]:.3g} at depth {depths[0]} -> {m[-1]:.3g} at depth {depths[-1]}")
    return "Gradient norm of the first layer's weights at initialization (geometric mean over seeds): " + "; ".join(parts) + "."
