"""Claims about how BN works and what it costs: C4, C5, C7, C8, C9, C12."""

from __future__ import annotations

import csv
import json
import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import atomic, stats
from ..core import bn_train_forward, softmax_cross_entropy
from ..executor import one_blas_thread
from ..plotting import ARM_LABELS
from ..runs import dataset_for, dumps, read_metrics
from ..training import build_model, seed_streams
from . import figures
from .claim import Claim, by_seed, paired_diffs, select, study_seeds
from .cost import measure_cost
from .verdict import Effect, check_effect, paired_effect


@lru_cache(maxsize=4096)
def _last_row(path: str) -> dict:
    cols, mrows = read_metrics(path)
    return dict(zip(cols, mrows[-1]))


def _ci(values):
    s = stats.describe(values)
    return (s.mean, s.ci_low, s.ci_high)


# -- C4 -----------------------------------------------------------------------------------------------------------
def _final_values(rows) -> dict:
    """{(arm, batch size, seed): final test loss and accuracy, training accuracy, loss gap} of the finished runs
    (eval mode on both splits, the last row of metrics.csv)."""
    end = {}
    for r in rows:
        p = Path(r["run_dir"]) / "metrics.csv"
        if r.get("status") != "ok" or not p.exists():
            continue
        last = _last_row(str(p))
        end[(r["arm"], r["train.batch_size"], r["seed"])] = {
            "test_loss": last["test_loss"], "test_acc": last["test_acc"], "train_acc": last["train_eval_acc"],
            "loss_gap": last["test_loss"] - last["train_eval_loss"]}
    return end


def _at_batch(end, arm, b, k) -> dict:
    """{seed: value ``k``} of ``arm`` at batch size ``b``."""
    return {sd: v[k] for (a, bb, sd), v in end.items() if a == arm and bb == b}


def _mean_over_batches(end, arm, k, n_sizes) -> dict:
    """{seed: mean of ``k`` over the batch sizes} of ``arm`` (only seeds with every batch size)."""
    per = {}
    for (a, b, sd), v in end.items():
        if a == arm:
            per.setdefault(sd, []).append(v[k])
    return {sd: sum(v) / len(v) for sd, v in per.items() if len(v) == n_sizes}


def _fit_note(end) -> str:
    arms = ("none", "before")
    fitted = {arm: sum(v["train_acc"] >= 1.0 for (a, _, _), v in end.items() if a == arm) for arm in arms}
    total = {arm: sum(a == arm for (a, _, _) in end) for arm in arms}
    worst = {arm: min((v["train_acc"] for (a, _, _), v in end.items() if a == arm), default=math.nan) for arm in arms}
    return "Fit: " + "; ".join(f"{ARM_LABELS[a]}: {fitted[a]} of {total[a]} runs at 100% training accuracy "
                               f"(lowest {worst[a]:.2%})" for a in arms if total[a]) + "."


def _c04_claim(s, sizes) -> Claim:
    t = s.cfg
    oc = t.optimizer
    c = Claim("C4", "BN has a (slight) regularization effect",
              "The noise of minibatch statistics regularizes: BN networks generalize better at the same fit.",
              "000, 001, 002, 004",
              f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU on the {t.data.name} training split, SGD with "
              f"momentum {oc.momentum:g}, lr {oc.lr:g} at batch {oc.lr_reference_batch} scaled linearly with the batch "
              f"size, batch sizes {sizes}, {t.train.epochs} epochs, {len(study_seeds(s))} seeds; train and test splits "
              "both evaluated in eval mode at the end. Every run gives a value: its final test loss and accuracy once "
              "the training split is fitted (the share of runs at 100% training accuracy is reported).",
              "c04_regularization")
    c.rule = ("Primary: final test loss, BN - no BN, averaged over the batch sizes within each seed, paired "
              "t-interval over seeds below 0 (BN generalizes better at the same fit). Test accuracy, the gaps and "
              "each batch size are secondary. Every difference is BN - no BN; the loss gap is test - train.")
    return c


def c04(ctx) -> Claim:
    """C4 (c04_regularization): generalization once the training split is fitted."""
    s = ctx.studies["c04_regularization"]
    sizes = sorted({r["train.batch_size"] for r in s.rows})
    c = _c04_claim(s, sizes)
    end = _final_values(s.rows)

    def avg(arm, k):
        return _mean_over_batches(end, arm, k, len(sizes))

    c.effects.append(paired_effect("final test loss, BN - no BN (mean over batch sizes per seed)",
                                   paired_diffs(avg("none", "test_loss"), avg("before", "test_loss")),
                                   direction=-1, unit="nats"))
    c.effects.append(paired_effect("final test accuracy, BN - no BN (mean over batch sizes per seed)",
                                   paired_diffs(avg("none", "test_acc"), avg("before", "test_acc")),
                                   direction=+1, unit="accuracy"))
    c.primary = [0]
    for b in sizes:
        # one sign convention for every row, BN - no BN: BN's advantage is a lower loss (-1), a higher accuracy (+1)
        for k, text, unit, direction in (
                ("test_loss", "final test loss, BN - no BN", "nats", -1),
                ("test_acc", "final test accuracy, BN - no BN", "accuracy", +1),
                ("loss_gap", "loss gap (test - train), BN - no BN", "nats", -1)):
            c.effects.append(paired_effect(f"batch {b}: {text}", paired_diffs(_at_batch(end, "none", b, k),
                                                                              _at_batch(end, "before", b, k)),
                                           direction=direction, unit=unit))
    c.notes.append(_fit_note(end))
    if ctx.draw:
        panels = [(title, [f"batch {b}" for b in sizes],
                   {arm: [_ci(_at_batch(end, arm, b, key).values()) for b in sizes] for arm in ("none", "before")})
                  for key, title in (("test_loss", "final test loss (nats)"), ("test_acc", "final test accuracy"),
                                     ("loss_gap", "loss gap: test - train (nats)"))]
        # points, not bars from 0: the differences are a few thousandths of values near 0.2 and 0.95
        ctx.figure(c, "c04_regularization", figures.bars,
                   title="C4: test loss, test accuracy and loss gap at the end of training, per training batch size, "
                         "with and without BN (training split fitted)", panels=panels,
                   ylabel="value at the end of training", zero=False)
    return c


# -- C5 -----------------------------------------------------------------------------------------------------------
VARIANTS = [("running_acc", "running averages"), ("population_acc", "population (Alg. 2)"),
            ("test_batch_acc", "test-batch stats"), ("single_eval_acc", "single example, eval"),
            ("single_batchstats_acc", "single example, batch stats")]


def _variant(r, k):
    """A run's test-time measurement ``k`` (summary ``eval_variants``), NaN if absent."""
    return (r.get("eval_variants") or {}).get(k, math.nan)


def _c05_claim(s, decays, ref) -> Claim:
    t = s.cfg
    c = Claim("C5", "At test time BN uses running (exponentially weighted) averages",
              "Inference uses fixed statistics estimated during training by exponential averages; batch statistics "
              "are unusable for a single test example.", "000, 001, 003, 004",
              f"3 x 100 sigmoid, BN before and after, SGD lr {t.optimizer.lr:g}, {t.train.steps} steps, decays "
              f"{decays}, {len(study_seeds(s))} seeds; after training, test accuracy with running averages, population "
              "statistics (Alg. 2, unbiased), statistics of test batches of 60, single examples in eval mode, and "
              "batch statistics of single examples.", "c05_test_time")
    c.rule = (f"Primary (decay {ref}, BN before): single-example accuracy with running averages minus with "
              "single-example batch statistics, interval above 0; and single-example eval equal to batched eval "
              "(every prediction, a deterministic check).")
    return c


def _single_example_effects(c, rows, ref):
    """Running averages against single-example batch statistics (per arm), single-example eval against batched
    eval, and the collapse of single-example batch statistics to one class; the primary effects among them."""
    ev = _variant
    for arm in ("before", "after"):
        rs = select(rows, arm=arm, **{"model.bn_decay": ref})
        d = [ev(r, "single_eval_acc") - ev(r, "single_batchstats_acc") for r in rs]
        c.effects.append(paired_effect(f"BN {arm}, decay {ref}: single example, running averages - batch statistics",
                                       d, direction=+1, unit="accuracy"))
        if arm == "before":
            c.primary.append(len(c.effects) - 1)
    same = [ev(r, "single_eval_same_prediction") for r in rows if r.get("eval_variants")]
    diff = max((ev(r, "single_eval_max_abs_logit_diff") for r in rows if r.get("eval_variants")), default=math.nan)
    c.effects.append(check_effect("single-example eval = batched eval: fraction of identical predictions (min over "
                                  "runs)", min(same) if same else math.nan, bool(same) and min(same) == 1.0,
                                  detail=f"max |logit difference| {diff:.2g} (float32 rounding)"))
    c.primary.append(len(c.effects) - 1)
    collapse = [ev(r, "single_batchstats_majority_fraction") for r in rows if r.get("eval_variants")]
    c.effects.append(Effect("single-example batch statistics: share of the most common prediction (1 = every "
                            "prediction the same class)", len(collapse), *(_ci(collapse)[:1]), math.nan,
                            min(collapse, default=math.nan), max(collapse, default=math.nan), method="min-max over runs"))


def _c05_figures(ctx, c, rows, decays, ref):
    series = {}
    for arm in ("before", "after"):
        rs = select(rows, arm=arm, **{"model.bn_decay": ref})
        series[arm] = [_ci([_variant(r, k) for r in rs]) for k, _ in VARIANTS]
    lines = {}
    for k, name in (("running_acc", "running averages"), ("population_acc", "population statistics")):
        vals = [_ci([_variant(r, k) for r in select(rows, arm="before", **{"model.bn_decay": d})]) for d in decays]
        lines[name] = ([1 - d for d in decays], *map(list, zip(*vals)))
    ctx.figure(c, "c05_test_time", figures.bars, title=f"C5: test accuracy by test-time statistics (decay {ref})",
               panels=[("test-time statistics", [n for _, n in VARIANTS], series)], ylabel="test accuracy")
    ctx.figure(c, "c05_decay", figures.lines, title="C5: sensitivity to the running-average decay (BN before)",
               panels=[("", lines)], xlabel="1 - decay (PyTorch momentum), log", ylabel="test accuracy", logx=True)


def c05(ctx) -> Claim:
    """C5 (c05_test_time): test-time statistics."""
    s = ctx.studies["c05_test_time"]
    rows = s.rows
    decays = sorted({r["model.bn_decay"] for r in rows})
    ref = 0.9 if 0.9 in decays else decays[0]
    c = _c05_claim(s, decays, ref)
    _single_example_effects(c, rows, ref)
    for arm in ("before", "after"):
        rs = select(rows, arm=arm, **{"model.bn_decay": ref})
        c.effects.append(paired_effect(f"BN {arm}: population - running averages",
                                       [_variant(r, "population_acc") - _variant(r, "running_acc") for r in rs],
                                       unit="accuracy"))
        c.effects.append(paired_effect(f"BN {arm}: test-batch statistics - running averages",
                                       [_variant(r, "test_batch_acc") - _variant(r, "running_acc") for r in rs],
                                       unit="accuracy"))
    for dcy in decays:
        rs = select(rows, arm="before", **{"model.bn_decay": dcy})
        c.effects.append(paired_effect(f"decay {dcy}, BN before: running averages - population statistics",
                                       [_variant(r, "running_acc") - _variant(r, "population_acc") for r in rs],
                                       unit="accuracy"))
    if ctx.draw:
        _c05_figures(ctx, c, rows, decays, ref)
    return c


# -- C7 -----------------------------------------------------------------------------------------------------------
def _bias_checks(t) -> tuple[float, float]:
    """In float64 on 60 real training images, the BN-before network of ``t`` with the dense bias kept: (max |dL/d
    bias| / max |dL/dW|, max relative change of the logits when every such bias is shifted by 3)."""
    cfg = t.run_config("before", 0).model_copy(deep=True)
    cfg.model.bias_with_bn = True
    cfg.train.dtype = "float64"
    data = dataset_for(cfg)
    model = build_model(cfg, data, seed_streams(0)[0])
    X, y = data.X_train[:60], data.y_train[:60]
    with one_blas_thread():
        logits = model.forward(X, "train")
        _, dlog, _ = softmax_cross_entropy(logits, y)
        model.backward(dlog)
        gb = max(float(np.abs(g).max()) for k, g in model.grads.items() if k.startswith("dense") and k.endswith(".b"))
        gw = max(float(np.abs(g).max()) for k, g in model.grads.items() if k.endswith(".W"))
        for k, p in model.params.items():
            if k.startswith("dense") and k.endswith(".b"):
                p += 3.0
        shifted = model.forward(X, "batch")
        out_change = float(np.abs(shifted - logits).max() / np.abs(logits).max())
    return gb / gw, out_change


def c07(ctx) -> Claim:
    """C7 (c07_bias): the bias in front of BN."""
    s = ctx.studies["c07_bias"]
    rows, t = s.rows, s.cfg
    c = Claim("C7", "The layer bias is redundant under BN",
              "With BN directly after a dense layer, that layer's bias has no effect (BN's mean subtraction cancels "
              "it; beta takes its role).", "000, 001, 002",
              f"{len(t.model.hidden)} x {t.model.hidden[0]} ReLU, BN before, with and without the bias, SGD lr "
              f"{t.optimizer.lr:g}, {t.train.epochs} epochs, {len(study_seeds(s))} seeds; plus the bias gradient and "
              "the output's change under a shifted bias, in float64 on real data.", "c07_bias")
    c.rule = ("Primary: bias gradient zero and output unchanged (deterministic, to float64 rounding: < 1e-10 "
              "relative), and the paired difference of final accuracy (with - without bias) inside +-0.005 "
              "(pre-registered equivalence margin).")
    grad_ratio, out_change = _bias_checks(t)
    c.effects.append(check_effect("max |dL/d bias| / max |dL/dW|", grad_ratio, grad_ratio < 1e-10))
    c.effects.append(check_effect("max relative change of the logits when every such bias is shifted by 3",
                                  out_change, out_change < 1e-10))
    d = paired_diffs(by_seed(select(rows, **{"model.bias_with_bn": False}), "final_test_acc"),
                     by_seed(select(rows, **{"model.bias_with_bn": True}), "final_test_acc"))
    c.effects.append(e := paired_effect("final test accuracy, with bias - without", d, unit="accuracy", margin=0.005))
    c.primary = [0, 1, 2]
    if ctx.draw:
        _c07_figure(ctx, c, rows, d, e)
    return c


def _c07_figure(ctx, c, rows, d, e):
    """Per-seed differences (with bias - without) of the final (the primary effect, its interval as in the table)
    and the best test accuracy, against the equivalence margin."""
    best = paired_diffs(by_seed(select(rows, **{"model.bias_with_bn": False}), "best_test_acc"),
                        by_seed(select(rows, **{"model.bias_with_bn": True}), "best_test_acc"))
    ctx.figure(c, "c07_bias", figures.differences,
               title="C7: test accuracy with the redundant dense bias minus without it (BN before the activation)",
               rows=[("final test accuracy\n(primary)", d, (e.mean, e.ci_low, e.ci_high)),
                     ("best test accuracy", best, _ci(best))],
               ylabel="accuracy difference, with bias - without", margin=e.margin,
               note="; equivalent if the whole interval lies inside the margin")


# -- C8 -----------------------------------------------------------------------------------------------------------
def c08(ctx) -> Claim:
    """C8 (c08_gamma_beta): gamma and beta undo the normalization."""
    s = ctx.studies["c08_gamma_beta"]
    t = s.cfg
    c = Claim("C8", "gamma and beta can undo the normalization",
              "With gamma = sqrt(var + eps) and beta = mean, BN returns its input.", "001, 002",
              f"For each of {len(study_seeds(s))} seeds: a random batch x = 5 randn + 12 (60 x 100) and the real "
              "pre-activations of the first BN layer of a freshly initialized network on 60 test images; float32 and "
              "float64.", "c08_gamma_beta")
    c.rule = "Primary: max |BN(x) - x| / max |x| below 1e-12 in float64 and 1e-5 in float32."
    for dtype, tol in (("float64", 1e-12), ("float32", 1e-5)):
        worst = 0.0
        for seed in (sd for sd in t.train.seeds if sd != ctx.exclude_seed):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 8]))
            cfg = t.run_config("before", seed).model_copy(deep=True)
            cfg.train.dtype = dtype
            data = dataset_for(cfg)
            model = build_model(cfg, data, seed_streams(seed)[0])
            inputs = [(5 * rng.standard_normal((60, 100)) + 12).astype(dtype),
                      (data.X_test[:60] @ model.params["dense1.W"]).astype(dtype)]
            for x in inputs:
                mean, var = x.mean(0), x.var(0)
                y, *_ = bn_train_forward(x, np.sqrt(var + 1e-5).astype(dtype), mean.astype(dtype), 1e-5)
                worst = max(worst, float(np.abs(y - x).max() / np.abs(x).max()))
        c.effects.append(check_effect(f"{dtype}: max |BN(x) - x| / max |x|", worst, worst < tol))
    c.primary = [0, 1]
    return c


# -- C9 -----------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=256)
def _percentiles_of(path: str, stamp):
    with open(path, newline="") as f:
        return np.array([[float(v) for v in row] for row in list(csv.reader(f))[1:]])


def _percentiles(path: str):
    """A run's percentiles.csv, read once per version of the file (its mtime and size): the leave-one-seed-out checks
    read it ten times, and a run trained again in the same process writes a new version."""
    st = Path(path).stat()
    return _percentiles_of(path, (st.st_mtime_ns, st.st_size))


def _drift(path: str):
    """(drift, (steps, p15, p50, p85) of unit 0) of one run's percentiles.csv: the drift of a unit is the total
    movement of its median over training divided by its final 15-85 spread, averaged over the units."""
    data = _percentiles(path)
    steps = np.unique(data[:, 0])
    units = int(data[:, 1].max()) + 1
    arr = data[:, 2:].reshape(len(steps), units, 3)
    spread = arr[-1, :, 2] - arr[-1, :, 0]
    move = np.abs(np.diff(arr[:, :, 1], axis=0)).sum(0)
    return float(np.mean(move / np.maximum(spread, 1e-12))), (steps, arr[:, 0, 0], arr[:, 0, 1], arr[:, 0, 2])


def c09(ctx) -> Claim:
    """C9 (c09_covariate_shift): percentiles of the last hidden layer's inputs over training."""
    s = ctx.studies["c09_covariate_shift"]
    rows, t = s.rows, s.cfg
    c = Claim("C9", "BN stabilizes the distribution of layer inputs (internal covariate shift)",
              "With BN, the distribution of each layer's inputs changes less during training.", "000, 001, 002, 004",
              f"3 x 100 sigmoid, N(0, 0.05²) init, SGD lr {t.optimizer.lr:g}, {t.train.steps} steps, "
              f"{len(study_seeds(s))} seeds; every {t.train.eval_every} steps the 15th/50th/85th percentiles of each "
              "unit's input to the last hidden sigmoid over 1,000 fixed test images. Drift of a unit: the total "
              "movement of its median over training divided by its final 15-85 spread; averaged over the units.",
              "c09_covariate_shift")
    c.rule = "Primary: drift(no BN) - drift(BN), paired by seed, interval above 0."
    c.notes.append("A stable distribution is not a cause: whether BN helps *because* its layer inputs drift less "
                   "is claim C14, tested with noisy BN (BN whose outputs are moved and rescaled at every step) and "
                   "with Santurkar et al.'s (2018) measure of internal covariate shift; C15 tests their alternative, "
                   "a smoother loss landscape.")
    drift, curves = {}, {}
    first = min((r["seed"] for r in rows), default=0)
    for r in rows:
        p = Path(r["run_dir"]) / "percentiles.csv"
        if not p.exists():
            continue
        value, curve = _drift(str(p))
        drift.setdefault(r["arm"], {})[r["seed"]] = value
        if r["seed"] == first:
            curves[r["arm"]] = curve
    d = paired_diffs(drift.get("before", {}), drift.get("none", {}))
    c.effects.append(paired_effect("drift of the last hidden layer's sigmoid inputs, no BN - BN", d, direction=+1,
                                   unit="spreads"))
    for arm in ("none", "before"):
        sm = stats.describe(drift.get(arm, {}).values())
        c.effects.append(Effect(f"drift, {arm}", sm.n, sm.mean, sm.sd, sm.ci_low, sm.ci_high, "spreads",
                                method="t-interval over seeds"))
    c.primary = [0]
    if curves:
        ctx.figure(c, "c09_percentiles", figures.percentiles,
                   title="C9: Ioffe & Szegedy Fig. 1(b, c), the inputs to one sigmoid of the last hidden layer",
                   curves=curves, unit=0, seed=first)
    return c


# -- C12 ----------------------------------------------------------------------------------------------------------
def _cost_key(cfg) -> dict:
    """What a C12 measurement depends on: the study's config, the numeric code and the timing code itself."""
    import hashlib

    from ..runs.provenance import code_hash

    timing = hashlib.sha256(Path(measure_cost.__code__.co_filename).read_bytes()).hexdigest()[:16]
    return {"config": cfg.hash(), "code": code_hash(), "timing_code": timing}


def _cost_measurement(ctx, cfg) -> dict:
    """The C12 timings (``cost.measure_cost``), kept in studies/c12_cost/measure.json with the key they were
    measured under (``_cost_key``): the leave-one-seed-out recomputations and a rerun of the same report reuse
    them; after a change of config or code they are measured again, like a run whose code changed."""
    cache = ctx.out_dir / "studies" / "c12_cost" / "measure.json"
    key = _cost_key(cfg)
    if cache.exists():
        try:
            stored = json.loads(cache.read_text())
        except (OSError, ValueError):
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("measure"), dict):
            return stored["measure"]
    m = measure_cost(cfg)
    atomic.write_text(cache, dumps({"key": key, "measure": m}))
    return m


def c12(ctx) -> Claim:
    """C12 (c12_cost): computation and inference cost."""
    s = ctx.studies["c12_cost"]
    cfg = s.cfg
    m = _cost_measurement(ctx, cfg)
    s.measure = m  # the errata quote its note-003 accuracies
    T = {k: np.array(v) for k, v in m["times_s"].items()}
    c = Claim("C12", "BN costs computation and slows inference",
              "BN adds computation and memory; at inference it is an extra layer unless folded into the dense layer.",
              "004 (disadvantages)",
              f"3 x 100 sigmoid, batch {cfg.train.batch_size}, trained {cfg.train.steps} steps; one BLAS thread; "
              f"{len(T['step_bn'])} interleaved repetitions (each the mean of 5 calls). Inference on the 1,000 test "
              "images: BN as a layer (eval mode), BN folded into the dense layers (W' = W γ/σ, b' = (b - μ) γ/σ + β), "
              "and the no-BN network.", "c12_cost")
    c.rule = ("Primary: log(time with BN / time without) for the training step and log(BN layer / folded) for "
              "inference, intervals above 0; and the folded network's outputs equal to rounding (< 1e-5 relative).")
    lr = lambda a, b: list(np.log(T[a] / T[b]))  # noqa: E731
    rep = "t-interval over interleaved repetitions"
    c.effects.append(paired_effect("training step: log(time BN / time no BN)", lr("step_bn", "step_none"),
                                   direction=+1, unit="log ratio", method=rep))
    c.effects.append(paired_effect("inference: log(time BN layer / time folded)", lr("infer_bn", "infer_folded"),
                                   direction=+1, unit="log ratio", method=rep))
    c.effects.append(check_effect("folded outputs: max |difference| / max |logit|", m["fold_max_rel_diff"],
                                  m["fold_max_rel_diff"] < 1e-5))
    c.primary = [0, 1, 2]
    sm = stats.describe(T["bn_fwd_bwd"] / T["step_bn"])
    c.effects.append(Effect("BN forward + backward share of the BN training step", sm.n, sm.mean, sm.sd, sm.ci_low,
                            sm.ci_high, "fraction", method="t-interval over repetitions"))
    c.effects.append(paired_effect("inference: log(time folded / time no BN)", lr("infer_folded", "infer_none"),
                                   unit="log ratio", method=rep))
    med = {k: float(np.median(v)) * 1e3 for k, v in T.items()}
    c.notes.append("Median times (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + ".")
    if ctx.draw:
        _c12_figure(ctx, c, T, cfg.train.batch_size)
    return c


def _c12_figure(ctx, c, T, batch):
    """One series per panel: the categories name the bars, so no legend."""
    ms = {k: v * 1e3 for k, v in T.items()}
    panels = [(f"training step, batch of {batch}", ["no BN", "BN before activation"],
               {"training step": [_ci(ms["step_none"]), _ci(ms["step_bn"])]}),
              ("inference on 1,000 test images", ["no BN", "BN as a layer", "BN folded"],
               {"inference": [_ci(ms["infer_none"]), _ci(ms["infer_bn"]), _ci(ms["infer_folded"])]})]
    ctx.figure(c, "c12_cost", figures.bars,
               title=f"C12: time per training step (batch of {batch}) and per inference, with and without BN, one "
                     "BLAS thread", panels=panels, ylabel="milliseconds per call", over="interleaved repetitions")
