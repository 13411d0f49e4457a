"""Claims about how BN works and what it costs: C4, C5, C7, C8, C9, C12."""

from __future__ import annotations

import csv
import json
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import atomic, stats
from ..core import bn_train_forward, softmax_cross_entropy
from ..executor import one_blas_thread
from ..runs import dataset_for, dumps, read_metrics
from ..train import build_model, evaluate, seed_streams, train_run
from . import figures
from ..plotting import ARM_LABELS
from .claims import Claim, by_seed, paired_diffs, select, study_seeds
from .verdict import Effect, check_effect, paired_effect

@lru_cache(maxsize=4096)
def _last_row(path: str) -> dict:
    cols, mrows = read_metrics(path)
    return dict(zip(cols, mrows[-1]))


def _ci(values):
    s = stats.describe(values)
    return (s.mean, s.ci_low, s.ci_high)


def c04(ctx) -> Claim:
    """c04_regularization: generalization once the training split is fitted."""
    s = ctx.studies["c04_regularization"]
    rows, t = s.rows, s.cfg
    sizes = sorted({r["train.batch_size"] for r in rows})
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
    c.rule = ("Primary: final test loss, no BN - BN, averaged over the batch sizes within each seed, paired "
              "t-interval over seeds above 0 (BN generalizes better at the same fit). Test accuracy, the gaps and "
              "each batch size are secondary.")
    end = {}
    for r in rows:
        p = Path(r["run_dir"]) / "metrics.csv"
        if r.get("status") != "ok" or not p.exists():
            continue
        last = _last_row(str(p))
        end[(r["arm"], r["train.batch_size"], r["seed"])] = {
            "test_loss": last["test_loss"], "test_acc": last["test_acc"], "train_acc": last["train_eval_acc"],
            "loss_gap": last["test_loss"] - last["train_eval_loss"]}

    def get(arm, b, k):
        return {sd: v[k] for (a, bb, sd), v in end.items() if a == arm and bb == b}

    def seed_mean(arm, k):  # per seed, the mean over batch sizes (only seeds with every batch size)
        per = {}
        for (a, b, sd), v in end.items():
            if a == arm:
                per.setdefault(sd, []).append(v[k])
        return {sd: sum(v) / len(v) for sd, v in per.items() if len(v) == len(sizes)}

    c.effects.append(paired_effect("final test loss, no BN - BN (mean over batch sizes per seed)",
                                   paired_diffs(seed_mean("before", "test_loss"), seed_mean("none", "test_loss")),
                                   direction=+1, unit="nats"))
    c.effects.append(paired_effect("final test accuracy, BN - no BN (mean over batch sizes per seed)",
                                   paired_diffs(seed_mean("none", "test_acc"), seed_mean("before", "test_acc")),
                                   direction=+1, unit="accuracy"))
    c.primary = [0]
    for b in sizes:
        c.effects.append(paired_effect(f"batch {b}: final test loss, no BN - BN",
                                       paired_diffs(get("before", b, "test_loss"), get("none", b, "test_loss")),
                                       direction=+1, unit="nats"))
        c.effects.append(paired_effect(f"batch {b}: final test accuracy, BN - no BN",
                                       paired_diffs(get("none", b, "test_acc"), get("before", b, "test_acc")),
                                       direction=+1, unit="accuracy"))
        c.effects.append(paired_effect(f"batch {b}: loss gap (test - train), no BN - BN",
                                       paired_diffs(get("before", b, "loss_gap"), get("none", b, "loss_gap")),
                                       direction=+1, unit="nats"))
    fitted = {arm: sum(v["train_acc"] >= 1.0 for (a, _, _), v in end.items() if a == arm) for arm in ("none", "before")}
    total = {arm: sum(a == arm for (a, _, _) in end) for arm in ("none", "before")}
    worst = {arm: min((v["train_acc"] for (a, _, _), v in end.items() if a == arm), default=math.nan)
             for arm in ("none", "before")}
    c.notes.append("Fit: " + "; ".join(f"{ARM_LABELS[a]}: {fitted[a]} of {total[a]} runs at 100% training accuracy "
                                       f"(lowest {worst[a]:.2%})" for a in ("none", "before") if total[a]) + ".")
    if ctx.draw:
        panels = []
        for key, title in (("test_loss", "final test loss (nats)"), ("test_acc", "final test accuracy"),
                           ("loss_gap", "loss gap: test - train (nats)")):
            series = {arm: [_ci(get(arm, b, key).values()) for b in sizes] for arm in ("none", "before")}
            panels.append((title, [f"batch {b}" for b in sizes], series))
        path = ctx.fig("c04_regularization")
        figures.bars(path, "C4: generalization once the training split is fitted, with and without BN", panels,
                     "value at the end of training")
        c.figures.append(str(path))
    return c


VARIANTS = [("running_acc", "running averages"), ("population_acc", "population (Alg. 2)"),
            ("test_batch_acc", "test-batch stats"), ("single_eval_acc", "single example, eval"),
            ("single_batchstats_acc", "single example, batch stats")]


def c05(ctx) -> Claim:
    """c05_test_time: test-time statistics."""
    s = ctx.studies["c05_test_time"]
    rows, t = s.rows, s.cfg
    decays = sorted({r["model.bn_decay"] for r in rows})
    ref = 0.9 if 0.9 in decays else decays[0]
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
    ev = lambda r, k: (r.get("eval_variants") or {}).get(k, math.nan)  # noqa: E731
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
    for arm in ("before", "after"):
        rs = select(rows, arm=arm, **{"model.bn_decay": ref})
        c.effects.append(paired_effect(f"BN {arm}: population - running averages",
                                       [ev(r, "population_acc") - ev(r, "running_acc") for r in rs], unit="accuracy"))
        c.effects.append(paired_effect(f"BN {arm}: test-batch statistics - running averages",
                                       [ev(r, "test_batch_acc") - ev(r, "running_acc") for r in rs], unit="accuracy"))
    for dcy in decays:
        rs = select(rows, arm="before", **{"model.bn_decay": dcy})
        c.effects.append(paired_effect(f"decay {dcy}, BN before: running averages - population statistics",
                                       [ev(r, "running_acc") - ev(r, "population_acc") for r in rs], unit="accuracy"))
    series = {}
    for arm in ("before", "after"):
        rs = select(rows, arm=arm, **{"model.bn_decay": ref})
        series[arm] = [_ci([ev(r, k) for r in rs]) for k, _ in VARIANTS]
    lines = {}
    for k, name in (("running_acc", "running averages"), ("population_acc", "population statistics")):
        vals = [_ci([ev(r, k) for r in select(rows, arm="before", **{"model.bn_decay": d})]) for d in decays]
        lines[name] = ([1 - d for d in decays], *map(list, zip(*vals)))
    if ctx.draw:
        path = ctx.fig("c05_test_time")
        figures.bars(path, f"C5: test accuracy by test-time statistics (decay {ref})",
                     [("test-time statistics", [n for _, n in VARIANTS], series)], "test accuracy")
        path2 = ctx.fig("c05_decay")
        figures.lines(path2, "C5: sensitivity to the running-average decay (BN before)", [("", lines)],
                      "1 - decay (PyTorch momentum), log", "test accuracy", logx=True)
        c.figures += [str(path), str(path2)]
    return c


def c07(ctx) -> Claim:
    """c07_bias: the bias in front of BN."""
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
    c.effects.append(check_effect("max |dL/d bias| / max |dL/dW|", gb / gw, gb / gw < 1e-10))
    c.effects.append(check_effect("max relative change of the logits when every such bias is shifted by 3",
                                  out_change, out_change < 1e-10))
    d = paired_diffs(by_seed(select(rows, **{"model.bias_with_bn": False}), "final_test_acc"),
                     by_seed(select(rows, **{"model.bias_with_bn": True}), "final_test_acc"))
    c.effects.append(paired_effect("final test accuracy, with bias - without", d, unit="accuracy", margin=0.005))
    c.primary = [0, 1, 2]
    series = {}
    for flag, name in ((False, "without bias (bncli's default)"), (True, "with the redundant bias")):
        series[name] = [_ci(by_seed(select(rows, **{"model.bias_with_bn": flag}), k).values())
                        for k in ("final_test_acc", "best_test_acc")]
    if ctx.draw:
        path = ctx.fig("c07_bias")
        figures.bars(path, "C7: BN before the activation, with and without the dense bias",
                     [("", ["final test accuracy", "best test accuracy"], series)], "accuracy")
        c.figures.append(str(path))
    return c


def c08(ctx) -> Claim:
    """c08_gamma_beta: gamma and beta undo the normalization."""
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


def c09(ctx) -> Claim:
    """c09_covariate_shift: percentiles of the last hidden layer's inputs over training."""
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
    c.notes.append("Context: Santurkar et al. (2018) argue that BN's benefit comes from a smoother loss landscape "
                   "rather than from reduced internal covariate shift; a smaller drift does not show causation.")
    drift, curves = {}, {}
    for r in rows:
        p = Path(r["run_dir"]) / "percentiles.csv"
        if not p.exists():
            continue
        data = _percentiles(str(p))
        steps = np.unique(data[:, 0])
        units = int(data[:, 1].max()) + 1
        arr = data[:, 2:].reshape(len(steps), units, 3)
        spread = arr[-1, :, 2] - arr[-1, :, 0]
        move = np.abs(np.diff(arr[:, :, 1], axis=0)).sum(0)
        drift.setdefault(r["arm"], {})[r["seed"]] = float(np.mean(move / np.maximum(spread, 1e-12)))
        if r["seed"] == min(rr["seed"] for rr in rows):
            curves[r["arm"]] = (steps, arr[:, 0, 0], arr[:, 0, 1], arr[:, 0, 2])
    d = paired_diffs(drift.get("before", {}), drift.get("none", {}))
    c.effects.append(paired_effect("drift of the last hidden layer's sigmoid inputs, no BN - BN", d, direction=+1,
                                   unit="spreads"))
    for arm in ("none", "before"):
        sm = stats.describe(drift.get(arm, {}).values())
        c.effects.append(Effect(f"drift, {arm}", sm.n, sm.mean, sm.sd, sm.ci_low, sm.ci_high, "spreads",
                                method="t-interval over seeds"))
    c.primary = [0]
    if curves and ctx.draw:
        path = ctx.fig("c09_percentiles")
        figures.percentiles(path, "C9: Ioffe & Szegedy Fig. 1(b, c), the inputs to one sigmoid of the last hidden layer",
                            curves, unit=0)
        c.figures.append(str(path))
    return c


@lru_cache(maxsize=256)
def _percentiles(path: str):
    with open(path, newline="") as f:
        return np.array([[float(v) for v in row] for row in list(csv.reader(f))[1:]])


def _measure_cost(cfg, reps=40):
    """Timings with one BLAS thread: training step with and without BN, BN's own forward + backward, inference on
    the test set with BN as a layer, folded, and without BN. Interleaved repetitions."""
    out = {}
    with one_blas_thread():
        models = {}
        for arm in ("none", "before"):
            rc = cfg.run_config(arm, cfg.train.seeds[0])
            data = dataset_for(rc)
            models[arm] = train_run(rc, data, keep_model=True).model
        X, y = data.X_train[:cfg.train.batch_size], data.y_train[:cfg.train.batch_size]
        Xt = data.X_test
        from ..core import Optimizer

        opts = {a: Optimizer(m.params, m.grads, "sgd", flat=m.flat) for a, m in models.items()}
        folded = models["before"].folded_layers()

        def step(a):
            m = models[a]
            _, d, _ = softmax_cross_entropy(m.forward(X, "train"), y)
            m.backward(d)
            opts[a].step(0.0)

        def bn_only():
            for _, layer in models["before"].bn_layers():
                z = np.asarray(layer.cache[0] if layer.cache else X[:, :100])
                yb = layer.forward(z, "batch")
                layer.backward(yb)

        def fold_forward():
            h = Xt
            for W, b, act in folded:
                h = h @ W + b
                if act == "sigmoid":
                    h = 0.5 * (1 + np.tanh(0.5 * h))
                elif act == "relu":
                    h = np.maximum(h, 0)
                elif act == "tanh":
                    h = np.tanh(h)
            return h

        ref = models["before"].logits(Xt, "eval")  # before the timed training steps move the running averages
        out["fold_max_rel_diff"] = float(np.abs(fold_forward() - ref).max() / np.abs(ref).max())
        jobs = {"step_none": lambda: step("none"), "step_bn": lambda: step("before"), "bn_fwd_bwd": bn_only,
                "infer_bn": lambda: models["before"].logits(Xt, "eval"), "infer_folded": fold_forward,
                "infer_none": lambda: models["none"].logits(Xt, "eval")}
        times = {k: [] for k in jobs}
        for _ in range(5):
            for f in jobs.values():
                f()
        for _ in range(reps):
            for k, f in jobs.items():
                t0 = time.perf_counter()
                for _ in range(5):
                    f()
                times[k].append((time.perf_counter() - t0) / 5)
        out["times_s"] = times
        # Note 003 divides by log(var + eps) at test time: the accuracy that formula would give.
        m = models["before"]
        saved = m.get_buffers()
        acc_ok = evaluate(m, Xt, data.y_test)[1]
        for n, layer in m.bn_layers():
            var = layer.buffers["running_var"]
            # scale so that sqrt(var' + eps) = log(var + eps): the note's denominator through the correct code path
            var[...] = np.log(saved[f"{n}.running_var"] + layer.eps) ** 2 - layer.eps
        with np.errstate(all="ignore"):
            out["note003_log_acc"] = evaluate(m, Xt, data.y_test)[1]
        m.set_buffers(saved)
        out["correct_acc"] = acc_ok
    return out


def c12(ctx) -> Claim:
    """c12_cost: computation and inference cost."""
    s = ctx.studies["c12_cost"]
    cfg = s.cfg
    cache = ctx.out_dir / "studies" / "c12_cost" / "measure.json"
    if cache.exists():
        m = json.loads(cache.read_text())
    else:
        m = _measure_cost(cfg)
        atomic.write_text(cache, dumps(m))
    ctx.studies["c12_cost"].measure = m
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
    share = T["bn_fwd_bwd"] / T["step_bn"]
    sm = stats.describe(share)
    c.effects.append(Effect("BN forward + backward share of the BN training step", sm.n, sm.mean, sm.sd, sm.ci_low,
                            sm.ci_high, "fraction", method="t-interval over repetitions"))
    c.effects.append(paired_effect("inference: log(time folded / time no BN)", lr("infer_folded", "infer_none"),
                                   unit="log ratio", method=rep))
    med = {k: float(np.median(v)) * 1e3 for k, v in T.items()}
    c.notes.append("Median times (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in med.items()) + ".")
    panels = [("training step (batch)", ["step"], {"none": [_ci(T["step_none"] * 1e3)], "before": [_ci(T["step_bn"] * 1e3)]}),
              ("inference on 1,000 test images", ["no BN", "BN layer", "BN folded"],
               {"time": [_ci(T["infer_none"] * 1e3), _ci(T["infer_bn"] * 1e3), _ci(T["infer_folded"] * 1e3)]})]
    if ctx.draw:
        path = ctx.fig("c12_cost")
        figures.bars(path, "C12: what BN costs (one BLAS thread)", panels, "milliseconds", over="repetitions")
        c.figures.append(str(path))
    return c
