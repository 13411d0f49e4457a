"""Several runs trained as one stacked computation (core/stack.py): the seeds of an arm, or sweep points that
differ only in the learning rate. Each run keeps its own initial weights, batch order, learning rate, recorder and
summary; a run whose loss becomes non-finite leaves the stack at that step (its parameters untouched by the step,
as `train_run` leaves them) and the others go on. Every run's metrics are bit-identical to `train_run`'s
(tests/test_stacking.py)."""

from __future__ import annotations

import math
import time

import numpy as np

from .config import ExperimentConfig, resolved_budget
from .core import Optimizer, lr_at
from .core.stack import NOISY_REFUSED, Stack, softmax_cross_entropy_stacked
from .data import Dataset
from .training import Recorder, RunResult, batch_indices, build_model, finish_run, seed_streams

# What may differ between the runs of one stack: everything else is one computation.
FREE = (("train", "seeds"), ("optimizer", "lr"))


def stack_key(cfg: ExperimentConfig) -> str:
    """Runs with the same key can be trained as one stack: their resolved configs differ at most in the seed and
    the learning rate."""
    d = cfg.to_dict()
    for section, key in FREE:
        d[section].pop(key, None)
    d.pop("name", None)
    d.pop("description", None)
    return repr(sorted(d.items()))


def _lr_schedule(cfg: ExperimentConfig, total: int):
    tc, oc = cfg.train, cfg.optimizer
    base_lr = oc.lr * (tc.batch_size / oc.lr_reference_batch if oc.lr_reference_batch else 1)
    return lambda s: lr_at(s, total, base_lr, oc.schedule, oc.step_size, oc.gamma, oc.min_lr, oc.warmup)  # noqa: E731


def _optimizer(cfg: ExperimentConfig, stack: Stack, state=None, t=0) -> Optimizer:
    oc = cfg.optimizer
    opt = Optimizer({}, {}, oc.name, momentum=oc.momentum, rho=oc.rho, beta1=oc.beta1, beta2=oc.beta2, eps=oc.eps,
                    weight_decay=oc.weight_decay, flat=(stack.params, stack.grads, stack.decay_mask))
    if state is not None:
        for mine, old in zip(opt.state[0], state):
            mine[...] = old
    opt.t = t
    return opt


def train_stack(cfgs: list[ExperimentConfig], data: Dataset, progress=None) -> list[RunResult]:
    """Train the single-arm, single-seed runs ``cfgs`` (one `stack_key`) together. ``progress``: a list with one
    ``progress(step, total, info)`` (or None) per run."""
    if cfgs[0].model.conv:
        raise ValueError("stacked training covers MLPs only (core/stack.py stacks dense layers); train a convnet's "
                         "runs one by one")
    if cfgs[0].model.bn[0] == "noisy":
        raise ValueError(NOISY_REFUSED)
    if any({"ics", "smoothness"} & set(c.train.measure) for c in cfgs):
        raise ValueError("stacked training does not take the ics and smoothness probes (core/probes.py probes one "
                         "model); train those runs one at a time")
    t0 = time.perf_counter()
    tc = cfgs[0].train
    X, y = data.X_train, data.y_train
    total, per_epoch = resolved_budget(tc, len(X))
    eval_every = tc.eval_every or per_epoch
    streams = [seed_streams(c.train.seeds[0]) for c in cfgs]
    models = [build_model(c, data, init_rng) for c, (init_rng, _) in zip(cfgs, streams)]
    lr_of = [_lr_schedule(c, total) for c in cfgs]
    recs = [Recorder(c, data, m, per_epoch, f, (progress or [None] * len(cfgs))[i], total)
            for i, (c, m, f) in enumerate(zip(cfgs, models, lr_of))]
    orders = [batch_indices(len(X), order_rng, tc.batch_size) for _, order_rng in streams]
    steps, diverged_at, first_loss = [0] * len(cfgs), [None] * len(cfgs), [None] * len(cfgs)
    active = list(range(len(cfgs)))
    for r in recs:
        r.record(0)
    stack = Stack([models[i] for i in active])
    opt = _optimizer(cfgs[0], stack)
    step, xbufs = 0, {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        while active and step < total:
            idx = [next(orders[i]) for i in active]
            shape = (len(active), len(idx[0]), X.shape[1])  # a few shapes per run: the stack, an epoch's last batch
            if shape not in xbufs:
                xbufs[shape] = np.empty(shape, X.dtype)
            xb = xbufs[shape]
            for j, ix in enumerate(idx):
                np.take(X, ix, axis=0, out=xb[j])
            yb = np.stack([y[ix] for ix in idx])
            lr = np.array([[lr_of[i](step)] for i in active])
            losses, dlogits, correct = softmax_cross_entropy_stacked(stack.forward_train(xb), yb)
            bad = [j for j, v in enumerate(losses) if not math.isfinite(v)]
            kept = (stack.params[bad].copy(), [s[bad].copy() for s in opt.state[0]]) if bad else None
            stack.backward(dlogits)
            opt.step(lr)
            if kept:  # a run whose loss is not finite takes no step (train_step's rule): undo its update
                stack.params[bad] = kept[0]
                for s, old in zip(opt.state[0], kept[1]):
                    s[bad] = old
            for j, i in enumerate(active):
                first_loss[i] = float(losses[j]) if first_loss[i] is None else first_loss[i]
                recs[i].add(float(losses[j]), int(correct[j]), len(idx[j]))
            for j in bad:
                i = active[j]
                steps[i], diverged_at[i] = step, step + 1
                recs[i].record(step + 1)
            step += 1
            if bad:
                keep = [j for j in range(len(active)) if j not in bad]
                state = [s[keep].copy() for s in opt.state[0]]
                active = [active[j] for j in keep]
                if active:
                    stack = Stack([models[i] for i in active])
                    opt = _optimizer(cfgs[0], stack, state, opt.t)
            for i in active:
                steps[i] = step
                if step % eval_every == 0 or step == total:
                    recs[i].record(step)
    elapsed = time.perf_counter() - t0
    out = []
    for i, (cfg, model, rec) in enumerate(zip(cfgs, models, recs)):
        if diverged_at[i] is None and cfg.model.bn_eval == "population" and model.bn_layers():
            model.set_buffers(model.population_stats(data.X_train, tc.batch_size))
            rec.replace_last(steps[i])
        out.append(finish_run(cfg, data, model, rec, steps[i], diverged_at[i], first_loss[i], elapsed, False))
    return out
