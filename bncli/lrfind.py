"""Learning-rate range test (Smith 2015, "Cyclical learning rates"; fastai's ``lr_find``).

Per arm, one short run from the experiment's first seed: the learning rate grows geometrically from ``start`` to
``end`` over ``iters`` iterations; the minibatch loss is smoothed by a debiased exponential average (beta 0.98)
and the run stops when the smoothed loss exceeds ``stop_factor`` x its best or is not finite. Suggestions: the
"steepest" learning rate (most negative slope of the smoothed loss against log lr) and "minimum/10" (a tenth of the
lr at the smoothed minimum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import atomic
from .config import ExperimentConfig, Source
from .errors import BncliError
from .executor import one_blas_thread
from .experiment import check_with_data
from .runs import csv_text, dumps, versions
from .runs.owner import claim, publishing
from .training import batches, build_model, build_optimizer, seed_streams, train_step


@dataclass
class LrFindResult:
    out_dir: Path
    curves: dict  # arm -> list of (iteration, lr, loss, smoothed)
    suggestions: dict


def lr_range_test(cfg: ExperimentConfig, data, start=1e-7, end=10.0, iters=100, beta=0.98, stop_factor=4.0):
    """One arm (``cfg.model.bn[0]``), one seed, through the training loop's own batch iterator and step. Returns
    [(iteration, lr, loss, smoothed loss)]; the loss is that of the minibatch before the step at that lr."""
    init_rng, order_rng = seed_streams(cfg.train.seeds[0])
    model = build_model(cfg, data, init_rng)
    opt = build_optimizer(cfg, model)
    span = end / start
    if math.isfinite(span):
        ratio = span ** (1.0 / (iters - 1))
        lr_at = lambda i: start * ratio ** i  # noqa: E731
    else:  # a range wider than float64 (1e-300 to 1e300): the same ramp, in log space, without overflow
        lo, hi = math.log(start), math.log(end)
        lr_at = lambda i: min(end, math.exp(lo + i * (hi - lo) / (iters - 1)))  # noqa: E731
    out, avg, best = [], 0.0, math.inf
    minibatches = batches(data.X_train, data.y_train, order_rng, cfg.train.batch_size)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for i, (xb, yb) in zip(range(iters), minibatches):
            lr = lr_at(i)
            loss, _ = train_step(model, opt, xb, yb, lr)
            if not math.isfinite(loss):
                out.append((i, lr, loss, math.nan))
                break
            avg = beta * avg + (1 - beta) * loss
            smoothed = avg / (1 - beta ** (i + 1))
            out.append((i, lr, loss, smoothed))
            best = min(best, smoothed)
            if smoothed > stop_factor * best:
                break
    return out


NO_FINITE_LOSS = "no finite loss at any learning rate"
MIN_DESCENT = 0.05  # a smoothed loss that fell less than this (relative to its start): no learning rate helped


def clear_descent(s: dict) -> bool:
    """Whether the suggestions ``s`` of `suggest` mean anything: its smoothed loss fell by at least MIN_DESCENT.
    A flat curve's 'steepest' point is noise: it is not to be used, and the figure does not mark it."""
    d = s.get("descent")
    return isinstance(d, (int, float)) and not isinstance(d, bool) and d >= MIN_DESCENT


def suggest(curve, skip_start=10) -> dict:
    """Suggestions from the smoothed curve. The first ``skip_start`` points are left out of the slope (as fastai's
    plot does): the debiased average of a handful of losses is too noisy to differentiate. ``descent`` is the
    relative drop of the smoothed loss from its start to its minimum; near 0 means no learning rate helped. A curve
    without a finite smoothed loss (the very first loss was not finite) gets NaN suggestions and a ``note``."""
    pts = [(lr, s) for _, lr, _, s in curve if math.isfinite(s)]
    if not pts:  # the loss was not finite at the first learning rate already: nothing to suggest
        return {"iterations": len(curve), "stop_lr": curve[-1][1] if curve else math.nan, "min_lr": math.nan,
                "min_loss": math.nan, "steep_lr": math.nan, "descent": math.nan, "note": NO_FINITE_LOSS}
    lrs = np.array([p[0] for p in pts])
    sm = np.array([p[1] for p in pts])
    i_min = int(np.argmin(sm))
    lo = min(skip_start, max(i_min - 2, 0))
    seg = slice(lo, i_min + 1)
    if i_min - lo >= 2:
        i_steep = lo + int(np.argmin(np.gradient(sm[seg], np.log10(lrs[seg]))))
    else:
        i_steep = i_min
    start = float(np.mean(sm[:max(1, min(skip_start, len(sm)))]))
    return {"iterations": len(curve), "stop_lr": curve[-1][1], "min_lr": float(lrs[i_min]),
            "min_loss": float(sm[i_min]), "steep_lr": float(lrs[i_steep]),
            "descent": (start - float(sm[i_min])) / start if start > 0 else math.nan}


def flat_arms(suggestions: dict) -> list[str]:
    """The arms whose suggestions mean nothing (see `clear_descent`): the figure marks none for them."""
    return [arm for arm, s in suggestions.items() if not clear_descent(s)]


def lrfind_title(name: str, seed=None) -> str:
    """The figure's title, the same drawn by `bncli lrfind` and redrawn by `bncli plot` (``seed`` from lr_find.json,
    left out if it is not a whole number)."""
    known = isinstance(seed, int) and not isinstance(seed, bool)
    return f"{name}: learning-rate range test" + (f" (seed {seed})" if known else "")


def run_lrfind(cfg: ExperimentConfig, src: Source, out_dir, *, force=False, **kw) -> LrFindResult:
    """The range test of every arm into ``out_dir``, held for the whole call (runs/owner.py; ``force``: write there
    even if it holds files bncli did not write or results of another command); ``kw`` go to `lr_range_test`."""
    out_dir = Path(out_dir)
    data = check_with_data(cfg, src)
    with claim(out_dir, "lrfind", force=force):
        return _lrfind(cfg, data, out_dir, kw)


def _lrfind(cfg: ExperimentConfig, data, out_dir: Path, kw: dict) -> LrFindResult:
    curves, suggestions = {}, {}
    with one_blas_thread():
        for arm in cfg.model.bn:
            curves[arm] = lr_range_test(cfg.run_config(arm, cfg.train.seeds[0]), data, **kw)
            suggestions[arm] = suggest(curves[arm])
    rows = [[arm, *point] for arm, curve in curves.items() for point in curve]
    with publishing(out_dir, replacing=("lr_find.json", "lr_find.png")):  # lr_find.json, the folder's kind, last
        atomic.write_text(out_dir / "lr_find.csv", csv_text(["arm", "iteration", "lr", "loss", "smoothed_loss"],
                                                            rows))
        atomic.write_text(out_dir / "lr_find.json", dumps({"name": cfg.name, "seed": cfg.train.seeds[0],
                                                           "settings": kw, "suggestions": suggestions,
                                                           "versions": versions()}))
    drawable = {arm: c for arm, c in curves.items() if "note" not in suggestions[arm]}
    if drawable:
        from .plotting import lrfind_plot

        lrfind_plot(drawable, suggestions, out_dir / "lr_find.png", title=lrfind_title(cfg.name, cfg.train.seeds[0]),
                    flat=flat_arms(suggestions))
    failed = [arm for arm in curves if arm not in drawable]
    if failed:
        # A range test that never saw a finite loss has no learning rate to suggest: a failure of the run (exit 1),
        # not a table row of NaNs that a script could read as a suggestion. The other arms' results are written.
        first = curves[failed[0]][0]
        wrote = "lr_find.csv, lr_find.json" + (", lr_find.png" if drawable else "")
        raise BncliError(f"lrfind: {NO_FINITE_LOSS} for {', '.join(failed)} (the loss at the first learning rate, "
                         f"{first[1]:.3g}, was already {first[2]}: the model's outputs overflow before any step, e.g. "
                         f"model.init_std too large); wrote {out_dir}/ ({wrote})")
    return LrFindResult(out_dir, curves, suggestions)
