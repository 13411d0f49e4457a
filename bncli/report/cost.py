"""The C12 measurement: with one BLAS thread, the training step with and without BN, BN's own forward + backward,
inference on the test set with BN as a layer, folded into the dense layers and without BN (interleaved timed
repetitions); the folded network's outputs; and the test accuracy note 003's test-time formula would give."""

from __future__ import annotations

import time

import numpy as np

from ..executor import one_blas_thread
from ..runs import dataset_for
from ..training import build_optimizer, evaluate, train_run, train_step

CALLS = 5  # calls per timed repetition (its time is their mean)
WARMUP = 5  # untimed rounds of every job first


def measure_cost(cfg, reps=40) -> dict:
    """{fold_max_rel_diff, times_s: {job: [seconds per call, one per repetition]}, note003_log_acc, correct_acc}
    for the C12 config ``cfg``."""
    with one_blas_thread():
        models, opts, data = trained_models(cfg)
        X, y = data.X_train[:cfg.train.batch_size], data.y_train[:cfg.train.batch_size]
        folded = models["before"].folded_layers()
        ref = models["before"].logits(data.X_test, "eval")  # before the timed training steps move the running averages
        out = {"fold_max_rel_diff": float(np.abs(folded_forward(folded, data.X_test) - ref).max() / np.abs(ref).max())}
        out["times_s"] = interleaved_times(timing_jobs(models, opts, folded, X, y, data.X_test), reps)
        out.update(note003_accuracy(models["before"], data.X_test, data.y_test))
    return out


def trained_models(cfg):
    """The no-BN and the BN-before network of ``cfg`` (its first seed) trained as `bncli train` trains them, each
    with a fresh optimizer of its config for the timed steps; and the dataset."""
    models, opts = {}, {}
    for arm in ("none", "before"):
        rc = cfg.run_config(arm, cfg.train.seeds[0])
        data = dataset_for(rc)
        models[arm] = train_run(rc, data, keep_model=True).model
        opts[arm] = build_optimizer(rc, models[arm])
    return models, opts, data


def folded_forward(folded, X):
    """Inference through ``model.folded_layers()``: dense layers with BN folded in, then their activations."""
    h = X
    for W, b, act in folded:
        h = h @ W + b
        if act == "sigmoid":
            h = 0.5 * (1 + np.tanh(0.5 * h))
        elif act == "relu":
            h = np.maximum(h, 0)
        elif act == "tanh":
            h = np.tanh(h)
    return h


def bn_inputs(model, X) -> list:
    """[(BN layer, its input for the batch X)]: the arrays entering each BN layer in a forward pass with batch
    statistics (running averages untouched), computed once so that timing BN alone times nothing else."""
    bn = {id(layer) for _, layer in model.bn_layers()}
    out, h = [], X
    for _, layer in model.layers:
        if id(layer) in bn:
            out.append((layer, h.copy()))
        h = layer.forward(h, "batch")
    return out


def timing_jobs(models, opts, folded, X, y, Xt) -> dict:
    """The timed calls, by name. A training step is the project's `train_step` at learning rate 0: the whole
    forward, backward and update run, the weights stay as trained (the running averages move, as in training)."""
    bns = bn_inputs(models["before"], X)

    def bn_fwd_bwd():
        # A layer may centre its input in place (as it does a dense output in training): the next call then
        # centres an already centred array, the same work on the same values.
        for layer, z in bns:
            layer.backward(layer.forward(z, "batch"))

    return {"step_none": lambda: train_step(models["none"], opts["none"], X, y, 0.0),
            "step_bn": lambda: train_step(models["before"], opts["before"], X, y, 0.0),
            "bn_fwd_bwd": bn_fwd_bwd,
            "infer_bn": lambda: models["before"].logits(Xt, "eval"),
            "infer_folded": lambda: folded_forward(folded, Xt),
            "infer_none": lambda: models["none"].logits(Xt, "eval")}


def interleaved_times(jobs: dict, reps: int) -> dict:
    """{job: [mean seconds per call of each repetition]}: every job once per round (after `WARMUP` untimed rounds),
    so that drifts of the machine's speed fall on all of them alike."""
    times = {k: [] for k in jobs}
    for _ in range(WARMUP):
        for f in jobs.values():
            f()
    for _ in range(reps):
        for k, f in jobs.items():
            t0 = time.perf_counter()
            for _ in range(CALLS):
                f()
            times[k].append((time.perf_counter() - t0) / CALLS)
    return times


def note003_accuracy(model, X, y) -> dict:
    """Note 003 divides by log(var + eps) at test time: the test accuracy that formula gives, and the correct one.
    The running variances are set so that sqrt(var' + eps) = log(var + eps) (the note's denominator through the
    correct code path), then restored."""
    saved = model.get_buffers()
    correct = evaluate(model, X, y)[1]
    for n, layer in model.bn_layers():
        layer.buffers["running_var"][...] = np.log(saved[f"{n}.running_var"] + layer.eps) ** 2 - layer.eps
    with np.errstate(all="ignore"):
        log_acc = evaluate(model, X, y)[1]
    model.set_buffers(saved)
    return {"note003_log_acc": log_acc, "correct_acc": correct}
