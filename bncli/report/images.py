"""Claims about BN on images: C13, BN of a convolution is per channel (plus the convnet rows that C1 and C11 add
from the same kind of runs, in ``ranges.py``)."""

from __future__ import annotations

import math

from ..core.convnet import ConvSpec, conv_shapes
from ..runs import dataset_for
from . import figures
from .claim import Claim, by_seed, paired_diffs, select, study_seeds
from .verdict import check_effect, paired_effect

SHIFT = 2  # pixels: the primary's shift (CLAIMS.md C13)
VARIANTS = (("none", "channel", "no BN"), ("before", "channel", "BN per channel"),
            ("before", "activation", "BN per activation"))


def _shifted(r, k):
    """A run's test accuracy on images shifted by ``k`` pixels (summary ``shifted_acc``), NaN if absent."""
    return (r.get("shifted_acc") or {}).get(str(k), math.nan)


def _runs(rows, arm, per):
    return select(rows, arm=arm, **{"model.bn_per": per})


def _drop(rows, per, k=SHIFT) -> dict:
    """{seed: acc at 0 pixels - acc at k pixels} of BN before, per ``per``, over runs that did not diverge."""
    return {r["seed"]: _shifted(r, 0) - _shifted(r, k) for r in _runs(rows, "before", per) if r.get("status") == "ok"}


def _parameter_checks(cfg) -> list:
    """The conv BN layers' gamma counts, per channel and per activation, against C and H*W*C (a fresh network)."""
    from ..training import build_model, seed_streams

    data = dataset_for(cfg)
    shapes = conv_shapes(data.image_shape, [ConvSpec(**c.model_dump()) for c in cfg.model.conv])
    out = []
    for per in ("channel", "activation"):
        rc = cfg.run_config("before", 0).model_copy(deep=True)
        rc.model.bn_per = per
        model = build_model(rc, data, seed_streams(0)[0])
        got = [model.params[f"convbn{i}.gamma"].size for i in range(1, len(shapes) + 1)]
        want = [c if per == "channel" else h * w * c for (h, w, c), _ in shapes]
        what = "C" if per == "channel" else "H*W*C"
        miss = float(sum(abs(g - x) for g, x in zip(got, want)))
        out.append(check_effect(f"conv BN gammas per {per}, minus {what} per layer (got {got}, {what} = {want})",
                                miss, miss == 0, unit="parameters"))
    return out


def c13(ctx) -> Claim:
    """C13 (c13_per_channel): per-channel vs per-activation BN of convolution outputs."""
    s = ctx.studies["c13_per_channel"]
    rows, t = s.rows, s.cfg
    convs = ", ".join(f"{c.channels} ch {c.kernel}x{c.kernel}" + (f" + {c.pool_type} pool {c.pool}" if c.pool > 1
                                                                  else "") for c in t.model.conv)
    c = Claim("C13", "For convolutional layers, BN is per channel",
              "On a convolution's output of shape (H, W, C), BN's statistics and gamma, beta are per channel: C of "
              "them, each over the N*H*W values of the batch, not H*W*C (Ioffe & Szegedy 2015 §3.2).", "003",
              f"LeNet (convolutions {convs}; dense {t.model.hidden}; {t.model.activation}; {t.model.init} init), SGD "
              f"lr {t.optimizer.lr:g}, batch {t.train.batch_size}, {t.train.epochs} epochs, {len(study_seeds(s))} "
              "seeds; BN before every activation with the convolutions' BN per channel or per activation, and no BN; "
              "test accuracy on the test images shifted by 0-3 pixels down and right (zero fill).", "c13_per_channel")
    c.rule = (f"Primary: the accuracy lost to a {SHIFT}-pixel shift, per activation minus per channel, paired by seed, "
              "t-interval above 0; and the conv BN layers hold C (per channel) and H*W*C (per activation) gammas.")
    c.effects += _parameter_checks(t)
    drop = paired_diffs(_drop(rows, "channel"), _drop(rows, "activation"))
    c.effects.append(paired_effect(f"accuracy lost to a {SHIFT}-pixel shift, per activation - per channel", drop,
                                   direction=+1, unit="accuracy"))
    c.primary = [0, 1, 2]
    final = {per: by_seed(_runs(rows, "before", per), "final_test_acc") for per in ("channel", "activation")}
    c.effects.append(paired_effect("unshifted final test accuracy, per channel - per activation",
                                   paired_diffs(final["activation"], final["channel"]), unit="accuracy"))
    c.effects.append(paired_effect("final test accuracy, BN per channel - no BN",
                                   paired_diffs(by_seed(_runs(rows, "none", "channel"), "final_test_acc"),
                                                final["channel"]), unit="accuracy"))
    for k in (1, 3):
        d = paired_diffs(_drop(rows, "channel", k), _drop(rows, "activation", k))
        c.effects.append(paired_effect(f"accuracy lost to a {k}-pixel shift, per activation - per channel", d,
                                       unit="accuracy"))
    if ctx.draw:
        _c13_figure(ctx, c, rows)
    return c


def _c13_figure(ctx, c, rows):
    """Test accuracy against the shift, per variant: mean over seeds with a 95% t-band."""
    from .. import stats

    shifts = sorted({int(k) for r in rows for k in (r.get("shifted_acc") or {})})
    series = {}
    for arm, per, label in VARIANTS:
        rs = [r for r in _runs(rows, arm, per) if r.get("status") == "ok"]
        if not rs:
            continue
        ds = [stats.describe([_shifted(r, k) for r in rs]) for k in shifts]
        series[label] = (shifts, [d.mean for d in ds], [d.ci_low for d in ds], [d.ci_high for d in ds])
    ctx.figure(c, "c13_shift", figures.lines, title="C13: test accuracy on shifted test images (LeNet, BN before)",
               panels=[("", series)], xlabel="shift of the test images (pixels down and right)",
               ylabel="test accuracy")


def conv_batch_effects(study) -> list:
    """C11 on the convnet (study c11_batch_size_conv): per activation's drop from batch 64 to 4 minus per channel's,
    and each variant's accuracy at the small batch (CLAIMS.md C11/C13)."""
    rows = study.rows
    sizes = sorted({r["train.batch_size"] for r in rows})
    small, ref = sizes[0], sizes[-1]

    def acc(arm, per, b):
        return by_seed(select(rows, arm=arm, **{"model.bn_per": per, "train.batch_size": b}), "final_test_acc")

    def drop(per):
        big, little = acc("before", per, ref), acc("before", per, small)
        return {sd: big[sd] - v for sd, v in little.items() if sd in big}

    # [acc(act, small) - acc(act, ref)] - [acc(ch, small) - acc(ch, ref)] = drop(ch) - drop(act)
    out = [paired_effect(f"LeNet: interaction, per activation's change minus per channel's, batch {small} vs {ref}",
                         paired_diffs(drop("activation"), drop("channel")), direction=-1, unit="accuracy")]
    for arm, per, label in VARIANTS[1:]:
        out.append(paired_effect(f"LeNet, batch {small}: final test accuracy, {label} - no BN",
                                 paired_diffs(acc("none", "channel", small), acc(arm, per, small)), unit="accuracy"))
    return out

