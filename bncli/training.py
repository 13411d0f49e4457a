"""One training run: a single BN placement and a single seed. No file I/O here (see ``runs.py``).

Randomness: ``SeedSequence(seed)`` spawns one stream for the initial weights and one for the batch order, so two
arms with the same seed start from the same weights and see the same batches (paired comparisons).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .config import ExperimentConfig, resolved_budget
from .core import MLP, Optimizer, cross_entropy_eval, lr_at, softmax_cross_entropy
from .core.convnet import ConvNet, ConvSpec
from .core.model import chunks
from .core.probes import probe_step
from .data import Dataset

# A run has diverged when its loss became non-finite, or when the mean minibatch training loss of its last evaluation
# window exceeds BLOWUP x the loss of its first minibatch (both training-mode losses on minibatches: like with like).
BLOWUP = 4.0
DIVERGED_RULE = (f"the training loss became non-finite, or the mean minibatch training loss of the last evaluation "
                 f"window exceeds {BLOWUP:g}x the loss of the first minibatch (both training-mode minibatch losses)")
TARGET_COLUMN = {"test": "test_acc", "val": "val_acc", "train": "train_eval_acc"}  # train.target_split -> column
TAIL_EVALS = 3  # "tail accuracy": mean test accuracy of the last evaluations, less noisy than the final one alone


@dataclass
class RunResult:
    status: str  # "ok" or "diverged"
    columns: list[str]
    rows: list[list]
    summary: dict
    model: MLP | None = field(default=None, repr=False)
    tables: dict = field(default_factory=dict)  # what else the run measured: name -> (columns, rows)


def evaluate(model: MLP, X, y, mode="eval"):
    """(mean loss, accuracy) over a whole split, in chunks; float64 accumulation."""
    loss_sum, correct = 0.0, 0
    for a, b in chunks(len(X), model.eval_chunk):
        ls, c = cross_entropy_eval(model.forward(X[a:b], mode), y[a:b])
        loss_sum += ls
        correct += c
    return loss_sum / len(X), correct / len(X)


def build_model(cfg: ExperimentConfig, data: Dataset, rng: np.random.Generator) -> MLP | ConvNet:
    m = cfg.model
    if m.conv:
        return ConvNet(data.image_shape, [ConvSpec(**c.model_dump()) for c in m.conv], m.hidden, data.n_classes,
                       rng=rng, activation=m.activation, bn=m.bn[0], init=m.init, init_std=m.init_std,
                       bn_decay=m.bn_decay, bn_eps=m.bn_eps, bias_with_bn=m.bias_with_bn, dtype=cfg.train.dtype,
                       bn_per=m.bn_per)
    return MLP(data.n_features, m.hidden, data.n_classes, rng=rng, activation=m.activation, bn=m.bn[0],
               init=m.init, init_std=m.init_std, bn_decay=m.bn_decay, bn_eps=m.bn_eps,
               bias_with_bn=m.bias_with_bn, dtype=cfg.train.dtype, noise_mean=m.noise_mean,
               noise_scale=(m.noise_scale_low, m.noise_scale_high))


def build_optimizer(cfg: ExperimentConfig, model: MLP) -> Optimizer:
    oc = cfg.optimizer
    return Optimizer(model.params, model.grads, oc.name, momentum=oc.momentum, rho=oc.rho, beta1=oc.beta1,
                     beta2=oc.beta2, eps=oc.eps, weight_decay=oc.weight_decay, flat=model.flat)


def train_step(model: MLP, opt: Optimizer, xb, yb, lr):
    """One SGD-family step on a minibatch: forward (batch statistics), loss, backward, update. Returns
    (loss, correct); a non-finite loss leaves the parameters untouched (the run has diverged).
    This is the whole per-step path; ``benchmarks/bench_step.py`` times exactly this function."""
    loss, dlogits, correct = softmax_cross_entropy(model.forward(xb, "train"), yb)
    if math.isfinite(loss):
        model.backward(dlogits)
        opt.step(lr)
    return loss, correct


def seed_streams(seed: int):
    init_ss, order_ss = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(init_ss), np.random.default_rng(order_ss)


def noise_stream(seed: int) -> np.random.Generator:
    """The noisy arm's per-step draws: a third child of the seed (the first two are `seed_streams`' and do not
    change), so a noisy run starts from the weights and batches of the other arms with the same seed."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])


class Prober:
    """CLAIMS C14, C15: every ``probe_every`` steps the step is taken by ``core.probes.probe_step`` (the same update,
    measured around it) and its rows are kept: Santurkar et al.'s gradient change per layer (``ics``) and the loss and
    gradient along the gradient direction (``smoothness``)."""

    ICS_COLUMNS = ("step", "layer", "rel_change", "cosine", "grad_norm", "l2_diff")
    SMOOTH_COLUMNS = ("step", "multiple", "eta", "loss", "grad_diff", "base_loss", "grad_norm")

    def __init__(self, tc):
        self.every, self.multiples = tc.probe_every, list(tc.probe_lr_multiples)
        self.ics, self.smooth = "ics" in tc.measure, "smoothness" in tc.measure
        self.ics_rows: list[list] = []
        self.smooth_rows: list[list] = []

    def step(self, model, opt, xb, yb, lr, step):
        loss, correct, ics, sm = probe_step(model, opt, xb, yb, lr, self.multiples, ics=self.ics, smooth=self.smooth)
        for layer, l2, cos, norm in ics:
            self.ics_rows.append([step, layer, l2 / norm if norm > 0 else math.nan, cos, norm, l2])
        if sm is not None:
            for m, eta, ls, gd in sm.rows:
                self.smooth_rows.append([step, m, eta, ls, gd, sm.base_loss, sm.grad_norm])
        return loss, correct

    def tables(self) -> dict:
        out = {}
        if self.ics:
            out["ics"] = (list(self.ICS_COLUMNS), self.ics_rows)
        if self.smooth:
            out["smoothness"] = (list(self.SMOOTH_COLUMNS), self.smooth_rows)
        return out


def batches(X, y, order_rng: np.random.Generator, b: int):
    """Minibatches of ``b`` examples in a fresh random order each epoch, without end. An epoch's last, smaller batch
    is kept unless it would hold a single example (BN cannot normalize one sample). The yielded ``xb`` is a reused
    buffer: use it before asking for the next batch. The one batch iterator of training and the lr range test."""
    xbuf = np.empty((b, X.shape[1]), X.dtype)
    for idx in batch_indices(len(X), order_rng, b):
        yield (np.take(X, idx, axis=0, out=xbuf) if len(idx) == b else X[idx]), y[idx]


def batch_indices(n: int, order_rng: np.random.Generator, b: int):
    """The example indices of each minibatch of `batches` (also what a stacked run draws per model)."""
    if n < 2 or b < 2:
        raise ValueError(f"minibatches need >= 2 examples (batch size {b}, {n} training examples)")
    while True:
        perm = order_rng.permutation(n)
        for start in range(0, n, b):
            idx = perm[start:start + b]
            if len(idx) < 2:
                break
            yield idx


class Recorder:
    """The metric rows of one run. Every evaluation appends: step, epoch, learning rate, the mean loss and accuracy
    of the training minibatches since the previous evaluation, then loss and accuracy on each evaluated split (eval
    mode). With ``measure: [percentiles]`` it also keeps the 15/50/85th percentiles of every unit's input to the
    last nonlinearity on a few test images (Ioffe & Szegedy Fig. 1b,c)."""

    def __init__(self, cfg: ExperimentConfig, data: Dataset, model: MLP, per_epoch: int, lr_of, progress=None,
                 total=None):
        tc = cfg.train
        self.model, self.per_epoch, self.lr_of, self.progress, self.total = model, per_epoch, lr_of, progress, total
        self.splits = [("test", data.X_test, data.y_test)]
        if data.X_val is not None:
            self.splits.append(("val", data.X_val, data.y_val))
        if tc.eval_train:
            self.splits.append(("train_eval", data.X_train, data.y_train))
        self.columns = ["step", "epoch", "lr", "train_loss", "train_acc"]
        for name, _, _ in self.splits:
            self.columns += [f"{name}_loss", f"{name}_acc"]
        self.rows: list[list] = []
        self.window = [0.0, 0, 0]  # minibatch loss sum, correct, samples since the last evaluation
        self.eval_time = 0.0
        self.pct_X = data.X_test[:tc.percentile_images] if "percentiles" in tc.measure else None
        self.pct_layer = tc.percentile_layer
        self.percentiles: list[list] = []
        self.prober = Prober(tc) if {"ics", "smoothness"} & set(tc.measure) else None

    def add(self, loss, correct, n):
        self.window[0] += loss * n
        self.window[1] += correct
        self.window[2] += n

    def record(self, step):
        te = time.perf_counter()
        if self.pct_X is not None:
            # The noisy arm's inputs as its training step sees them: with the step's noise (CLAIMS C14).
            with np.errstate(all="ignore"), self.model.noise_always():
                inputs = self.model.activation_inputs(self.pct_X, layer=self.pct_layer).astype(np.float64)
                p = np.percentile(inputs, (15, 50, 85), axis=0)
            self.percentiles.extend([step, u, *q] for u, q in enumerate(p.T.tolist()))
        loss_sum, correct, seen = self.window
        row = [step, step / self.per_epoch, self.lr_of(max(step - 1, 0)),
               loss_sum / seen if seen else math.nan, correct / seen if seen else math.nan]
        for _, Xs, ys in self.splits:
            row += evaluate(self.model, Xs, ys)
        self.rows.append(row)
        self.window[:] = [0.0, 0, 0]
        self.eval_time += time.perf_counter() - te
        if self.progress:
            self.progress(step, self.total, dict(zip(self.columns, row)))

    def replace_last(self, step):
        """Evaluate again at ``step`` (after the model changed) in place of the last row, keeping its training-loss
        window (already consumed by the first evaluation)."""
        last = self.rows.pop()
        self.record(step)
        self.rows[-1][3:5] = last[3:5]


def train_run(cfg: ExperimentConfig, data: Dataset, progress=None, keep_model=False) -> RunResult:
    """Train ``cfg`` (one arm, one seed). ``progress(step, total, info)`` is called at every evaluation."""
    assert len(cfg.model.bn) == 1 and len(cfg.train.seeds) == 1, "train_run takes a single-arm, single-seed config"
    # Overflow is an outcome here (a huge init, a huge learning rate: the run diverges and says so), never a raw
    # NumPy warning on the terminal; from the first weight drawn to the last evaluation.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        return _train_run(cfg, data, progress, keep_model)


def _train_run(cfg: ExperimentConfig, data: Dataset, progress, keep_model) -> RunResult:
    t0 = time.perf_counter()
    tc, oc = cfg.train, cfg.optimizer
    init_rng, order_rng = seed_streams(tc.seeds[0])
    model = build_model(cfg, data, init_rng)
    opt = build_optimizer(cfg, model)
    total, per_epoch = resolved_budget(tc, len(data.X_train))
    eval_every = tc.eval_every or per_epoch
    base_lr = oc.lr * (tc.batch_size / oc.lr_reference_batch if oc.lr_reference_batch else 1)
    lr_of = lambda s: lr_at(s, total, base_lr, oc.schedule, oc.step_size, oc.gamma, oc.min_lr, oc.warmup)  # noqa: E731
    rec = Recorder(cfg, data, model, per_epoch, lr_of, progress, total)
    noise_rng = noise_stream(tc.seeds[0]) if model.noise_layers() else None
    probe = rec.prober

    step, diverged_at, first_loss = 0, None, None
    rec.record(0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for xb, yb in batches(data.X_train, data.y_train, order_rng, tc.batch_size) if total else ():
            if noise_rng is not None:
                model.draw_noise(noise_rng)
            if probe is not None and step % probe.every == 0:
                loss, correct = probe.step(model, opt, xb, yb, lr_of(step), step)
            else:
                loss, correct = train_step(model, opt, xb, yb, lr_of(step))
            first_loss = loss if first_loss is None else first_loss
            rec.add(loss, correct, len(yb))
            if not math.isfinite(loss):
                diverged_at = step + 1
                break
            step += 1
            if step % eval_every == 0 or step == total:
                rec.record(step)
            if step >= total:
                break
        if diverged_at is not None:
            rec.record(diverged_at)
        elif cfg.model.bn_eval == "population" and model.bn_layers():
            model.set_buffers(model.population_stats(data.X_train, tc.batch_size))
            rec.replace_last(step)
    return finish_run(cfg, data, model, rec, step, diverged_at, first_loss, time.perf_counter() - t0, keep_model)


def finish_run(cfg, data, model, rec: Recorder, step, diverged_at, first_loss, train_time, keep_model):
    """The run's summary (see ``summarize``), its extra tables and measurements."""
    tc = cfg.train
    total, per_epoch = resolved_budget(tc, len(data.X_train))
    status = "diverged" if diverged_at is not None else "ok"
    summary = summarize(rec.columns, rec.rows, status, TARGET_COLUMN[tc.target_split], tc.target_accuracy,
                        first_loss)
    status = summary["status"]
    tables = {}
    if rec.pct_X is not None:
        tables["percentiles"] = (["step", "unit", "p15", "p50", "p85"], rec.percentiles)
    if rec.prober is not None:
        tables.update(rec.prober.tables())
    if "eval_variants" in tc.measure and model.bn_layers() and status == "ok":
        summary["eval_variants"] = eval_variants(model, data, tc.batch_size)
    if "shifted" in tc.measure and status == "ok":
        summary["shifted_acc"] = shifted_accuracy(model, data)
    summary.update(arm=cfg.model.bn[0], seed=tc.seeds[0], total_steps=total, steps_per_epoch=per_epoch,
                   steps_done=step, diverged_at_step=diverged_at, time_s=train_time, eval_time_s=rec.eval_time,
                   steps_per_s=step / max(train_time - rec.eval_time, 1e-9), target_split=tc.target_split,
                   target_accuracy=tc.target_accuracy, bn_eval=cfg.model.bn_eval)
    return RunResult(status, rec.columns, rec.rows, summary, model if keep_model else None, tables)


def eval_variants(model: MLP, data: Dataset, batch_size: int) -> dict:
    """CLAIMS C5: test accuracy with (a) the running averages, (b) population statistics (Alg. 2), (c) the
    statistics of test batches of the training batch size, (d) single examples in eval mode (must equal batched
    eval) and (e) batch statistics of single examples (collapses to one predicted class)."""
    X, y = data.X_test, data.y_test
    running = model.get_buffers()
    out = {"running_acc": evaluate(model, X, y)[1]}
    model.set_buffers(model.population_stats(data.X_train, batch_size))
    out["population_acc"] = evaluate(model, X, y)[1]
    model.set_buffers(running)
    pred = np.concatenate([model.forward(X[i:i + batch_size], "batch").argmax(1) for i in range(0, len(X) - 1,
                                                                                             batch_size)])
    out["test_batch_acc"] = float((pred == y[:len(pred)]).mean())
    batched = model.logits(X, "eval")
    single = np.concatenate([model.forward(X[i:i + 1], "eval") for i in range(len(X))])
    out["single_eval_acc"] = float((single.argmax(1) == y).mean())
    out["single_eval_same_prediction"] = float((single.argmax(1) == batched.argmax(1)).mean())
    out["single_eval_max_abs_logit_diff"] = float(np.abs(single - batched).max())
    collapsed = np.concatenate([model.forward(X[i:i + 1], "batch") for i in range(len(X))]).argmax(1)
    out["single_batchstats_acc"] = float((collapsed == y).mean())
    out["single_batchstats_majority_fraction"] = float(np.bincount(collapsed).max() / len(collapsed))
    return out


SHIFTS = (0, 1, 2, 3)  # pixels, down and right at once


def shift_images(X, image_shape, k):
    """Every image of X (rows in (C, H, W) order) moved k pixels down and k right; the pixels that enter are 0,
    the background of unstandardized images."""
    if k == 0:
        return X
    c, h, w = image_shape
    out = np.zeros((len(X), c, h, w), X.dtype)
    out[:, :, k:, k:] = X.reshape(-1, c, h, w)[:, :, :h - k, :w - k]
    return out.reshape(len(X), -1)


def shifted_accuracy(model, data: Dataset) -> dict:
    """CLAIMS C13: test accuracy (eval mode) on the test images translated by each of SHIFTS pixels. A network
    whose normalization treats every position alike (BN per channel) should lose less to a shift than one with
    statistics per position (BN per activation), whose running averages belong to where things were in training."""
    return {str(k): evaluate(model, shift_images(data.X_test, data.image_shape, k), data.y_test)[1] for k in SHIFTS}


def divergence(status, final_train_loss, initial_train_loss):
    """The one definition of a diverged run (see BLOWUP): (diverged, reason)."""
    if status == "diverged" or (final_train_loss is not None and not math.isfinite(final_train_loss)):
        return True, "the training loss became non-finite"
    if (initial_train_loss is not None and math.isfinite(initial_train_loss) and final_train_loss is not None
            and final_train_loss > BLOWUP * initial_train_loss):
        return True, (f"the final training loss {final_train_loss:.3g} exceeds {BLOWUP:g} x the first minibatch's "
                      f"loss {initial_train_loss:.3g}")
    return False, None


def summarize(columns, rows, status, target_col, target, initial_train_loss=None):
    """Per-run numbers used by tables and statistics (all from the metric rows). A diverged run never counts as
    reaching the target after it diverged: its steps to target are censored, like a run that ran out of budget."""
    col = {c: i for i, c in enumerate(columns)}
    acc = [r[col["test_acc"]] for r in rows]
    best = int(np.nanargmax(acc)) if any(math.isfinite(a) for a in acc) else 0
    reached = next((r[0] for r in rows if math.isfinite(r[col[target_col]]) and r[col[target_col]] >= target), None)
    last = rows[-1]
    train_losses = [r[col["train_loss"]] for r in rows[1:]]
    finite = [v for v in train_losses if math.isfinite(v)]
    diverged, reason = divergence(status, last[col["train_loss"]] if len(rows) > 1 else None, initial_train_loss)
    evals = rows[1:] or rows
    tail = [r[col["test_acc"]] for r in evals[-TAIL_EVALS:]]
    return {
        "status": "diverged" if diverged else "ok",
        "diverged_reason": reason,
        "final_test_acc": last[col["test_acc"]],
        "final_test_loss": last[col["test_loss"]],
        "best_test_acc": acc[best],
        "best_step": rows[best][0],
        "final_train_loss": last[col["train_loss"]],
        "final_train_acc": last[col["train_acc"]],
        "initial_test_loss": rows[0][col["test_loss"]],
        "initial_train_loss": initial_train_loss,
        "tail_test_acc": float(np.mean(tail)) if all(math.isfinite(a) for a in tail) else math.nan,
        "mean_train_loss": float(np.mean(finite)) if finite else math.nan,  # area under the loss curve per step
        "steps_to_target": reached,
    }
