"""bncli.config and the data-dependent checks for convolution blocks (model.conv, model.bn_per, measure shifted):
every refusal is one line naming the file:line and the key."""

from __future__ import annotations

import textwrap

import pytest

from bncli.config import ExperimentConfig, load_config
from bncli.errors import UsageError
from bncli.runs import check_with_data

LENET = """
name: x
data: {name: mnist-5k}
model:
  conv:
    - {channels: 6, kernel: 5, pool: 2}
    - {channels: 16, kernel: 5, pool: 2}
  hidden: [32]
train: {batch_size: 16, steps: 2}
"""


def write(tmp_path, text):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def refused(path, overrides=(), with_data=False):
    with pytest.raises(UsageError) as e:
        cfg, src = load_config(path, list(overrides))
        if with_data:
            check_with_data(cfg, src)
    assert e.value.exit_code == 2 and "\n" not in str(e.value)
    return str(e.value)


def test_a_lenet_config_loads_and_passes_the_data_checks(tmp_path):
    cfg, src = load_config(write(tmp_path, LENET), [])
    assert [c.channels for c in cfg.model.conv] == [6, 16] and cfg.model.bn_per == "channel"
    assert check_with_data(cfg, src).image_shape == (1, 28, 28)


@pytest.mark.parametrize("bad, key, expect", [
    ("{channels: 0, kernel: 5}", "channels", "greater than or equal to 1"),
    ("{channels: 6, kernel: 99}", "kernel", "less than or equal to 15"),
    ("{channels: 6, kernel: 5, pool_type: median}", "pool_type", "'max' or 'avg'"),
    ("{channels: 6, kernel: 5, stride: 0}", "stride", "greater than or equal to 1"),
    ("{kernel: 5}", "channels", "required key is missing"),
    ("{channels: 6, kernal: 5}", "kernal", "unknown key; expected one of: channels, kernel"),
])
def test_bad_block_names_its_line_and_key(tmp_path, bad, key, expect):
    p = write(tmp_path, LENET.replace("{channels: 16, kernel: 5, pool: 2}", bad))
    msg = refused(p)
    assert msg.startswith(f"{p}:{line_of(p, bad)}: model.conv.1.{key}") and expect in msg, msg


def test_a_kernel_that_does_not_fit_is_refused_with_the_data(tmp_path):
    p = write(tmp_path, LENET.replace("{channels: 16, kernel: 5, pool: 2}", "{channels: 16, kernel: 13}"))
    msg = refused(p, with_data=True)
    assert msg.startswith(f"{p}:{line_of(p, 'kernel: 13')}: model.conv.1.kernel: a 13x13 kernel does not fit the "
                          "12x12 feature map"), msg
    assert "1x28x28" in msg


def test_a_pool_that_does_not_fit_and_non_images_are_refused(tmp_path):
    p = write(tmp_path, LENET.replace("{channels: 16, kernel: 5, pool: 2}", "{channels: 16, kernel: 9, pool: 8}"))
    assert "model.conv.1.pool: a 8x8 pooling window does not fit the 4x4 map" in refused(p, with_data=True)
    msg = refused(write(tmp_path, LENET), ["data.name=synthetic"], with_data=True)
    assert "model.conv: convolutions need image data" in msg and "command line" not in msg.split(":")[0]
    msg = refused(write(tmp_path, "data: {name: synthetic}\ntrain: {measure: [shifted]}\n"), with_data=True)
    assert "train.measure: 'shifted' translates images" in msg


def test_a_batch_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path):
    p = write(tmp_path, LENET.replace("{channels: 6, kernel: 5, pool: 2}", "{channels: 1024, kernel: 5, pool: 2}"))
    msg = refused(p, ["train.batch_size=2000"], with_data=True)
    assert "train.batch_size: 2000 x " in msg and "per step" in msg


def test_mlp_identity_is_unchanged_and_bn_per_is_moot_without_bn(tmp_path):
    mlp = ExperimentConfig()
    cfg, _ = load_config(write(tmp_path, LENET), [])
    a = cfg.model_copy(update={"model": cfg.model.model_copy(update={"bn_per": "activation"})})
    # With BN the granularity is part of the run's identity; without BN it is not.
    assert a.run_config("before", 0).hash() != cfg.run_config("before", 0).hash()
    assert a.run_config("none", 0).hash() == cfg.run_config("none", 0).hash()
    # An MLP's hash has no conv keys, so runs made before convolutions existed stay valid.
    import hashlib
    import json

    d = mlp.to_dict()
    for k in ("name", "description", "sweep", "full"):
        d.pop(k)
    d["data"].pop("path")
    d["model"].pop("conv"), d["model"].pop("bn_per")
    for k in ("noise_mean", "noise_scale_low", "noise_scale_high"):  # likewise the noisy arm's settings (issue 17)
        d["model"].pop(k)
    d["train"].pop("probe_every"), d["train"].pop("probe_lr_multiples")
    assert mlp.hash() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
