"""bncli.config: defaults, loading, overrides, validation messages (file:line: key: what), hash, budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import get_args

import pytest

from bncli import config as C
from bncli.config import (DataConfig, ExperimentConfig, ModelConfig, OptimizerConfig, TrainConfig, load_config,
                          resolved_budget, to_yaml)
from bncli.errors import BncliError, UsageError


def write(tmp_path, text, name="exp.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return p


def line_of(path, needle):
    """1-based line of the first line of ``path`` containing ``needle`` (so tests never hard-code lines)."""
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def usage_error(path, overrides=()):
    with pytest.raises(UsageError) as e:
        load_config(path, list(overrides))
    assert e.value.exit_code == 2
    assert isinstance(e.value, BncliError)
    return str(e.value)


# -- defaults -----------------------------------------------------------------------------------------------------
def test_defaults_validate():
    cfg = ExperimentConfig()
    again = ExperimentConfig.model_validate(cfg.to_dict())
    assert again == cfg
    assert cfg.model.hidden == [100, 100]
    assert cfg.train.seeds == [0, 1, 2, 3, 4]
    assert cfg.model.bn == ["none", "before"]


@pytest.mark.parametrize("model", [ExperimentConfig, DataConfig, ModelConfig, OptimizerConfig, TrainConfig,
                                   C.SyntheticConfig])
def test_every_field_has_a_default(model):
    for name, field in model.model_fields.items():
        assert not field.is_required(), f"{model.__name__}.{name} has no default"
    model()  # constructible with no arguments


def test_defaults_are_not_shared_between_instances():
    a, b = ExperimentConfig(), ExperimentConfig()
    a.train.seeds.append(99)
    a.model.hidden.append(7)
    assert b.train.seeds == [0, 1, 2, 3, 4]
    assert b.model.hidden == [100, 100]
    assert ExperimentConfig().train.seeds == [0, 1, 2, 3, 4]


def test_to_yaml_roundtrip(tmp_path):
    cfg = ExperimentConfig(name="roundtrip")
    p = tmp_path / "rt.yaml"
    p.write_text(to_yaml(cfg))
    back, _ = load_config(p)
    assert back == cfg


# -- loading ------------------------------------------------------------------------------------------------------
def test_load_config_reads_the_file(tmp_path):
    p = write(tmp_path, """
        name: mine
        description: a test
        data:
          name: synthetic
          synthetic:
            n_features: 5
        model:
          hidden: [30, 20]
          activation: tanh
          bn: [none, before, after]
        optimizer:
          name: adam
          lr: 1e-3
        train:
          batch_size: 32
          steps: 200
          seeds: [0, 7, 42]
    """)
    cfg, src = load_config(p)
    assert cfg.name == "mine" and cfg.description == "a test"
    assert cfg.data.name == "synthetic" and cfg.data.synthetic.n_features == 5
    assert cfg.data.synthetic.n_train == 2000  # untouched default in a partially given section
    assert cfg.model.hidden == [30, 20] and cfg.model.activation == "tanh"
    assert cfg.model.bn == ["none", "before", "after"]
    assert cfg.optimizer.name == "adam"
    assert isinstance(cfg.optimizer.lr, float) and cfg.optimizer.lr == pytest.approx(1e-3)
    assert cfg.train.batch_size == 32 and cfg.train.steps == 200 and cfg.train.epochs is None
    assert cfg.train.seeds == [0, 7, 42]
    assert src.file == str(p)


def test_name_defaults_to_file_stem(tmp_path):
    p = write(tmp_path, "optimizer:\n  lr: 0.2\n", name="lr_sweep-2.yaml")
    cfg, _ = load_config(p)
    assert cfg.name == "lr_sweep-2"


def test_name_in_file_wins_over_stem(tmp_path):
    p = write(tmp_path, "name: other\n", name="stem.yaml")
    assert load_config(p)[0].name == "other"


def test_empty_file_gives_defaults_with_stem_name(tmp_path):
    p = write(tmp_path, "", name="empty.yaml")
    cfg, _ = load_config(p)
    assert cfg == ExperimentConfig(name="empty")


# -- overrides ----------------------------------------------------------------------------------------------------
@pytest.fixture
def base(tmp_path):
    return write(tmp_path, """
        name: base
        model:
          hidden: [10]
        optimizer:
          lr: 0.1
    """)


def test_override_float(base):
    cfg, src = load_config(base, ["optimizer.lr=0.05"])
    assert cfg.optimizer.lr == 0.05
    assert src.overrides == {("optimizer", "lr"): "optimizer.lr=0.05"}


def test_override_exponent_float(base):
    assert load_config(base, ["optimizer.lr=1e-3"])[0].optimizer.lr == pytest.approx(1e-3)


def test_override_seed_count(base):
    assert load_config(base, ["train.seeds=3"])[0].train.seeds == [0, 1, 2]


def test_override_seed_list(base):
    assert load_config(base, ["train.seeds=[3,5]"])[0].train.seeds == [3, 5]


def test_override_bn_list(base):
    assert load_config(base, ["model.bn=[none,before]"])[0].model.bn == ["none", "before"]


def test_override_bn_single(base):
    cfg, _ = load_config(base, ["model.bn=before"])
    assert cfg.model.bn == ["before"]


def test_override_key_in_section_absent_from_file(base):
    cfg, _ = load_config(base, ["train.batch_size=32", "data.synthetic.n_features=7"])
    assert cfg.train.batch_size == 32
    assert cfg.data.synthetic.n_features == 7
    assert cfg.model.hidden == [10]  # file values untouched


def test_later_override_wins(base):
    cfg, _ = load_config(base, ["optimizer.lr=0.3", "optimizer.lr=0.4"])
    assert cfg.optimizer.lr == 0.4


def test_override_name_and_whitespace_around_key(base):
    cfg, _ = load_config(base, [" name =renamed"])
    assert cfg.name == "renamed"


def test_readme_override_example(base):
    cfg, _ = load_config(base, ["optimizer.lr=0.05", "train.seeds=3", "model.bn=[none,before]"])
    assert (cfg.optimizer.lr, cfg.train.seeds, cfg.model.bn) == (0.05, [0, 1, 2], ["none", "before"])


def test_override_without_equals_is_a_usage_error(base):
    msg = usage_error(base, ["optimizer.lr"])
    assert "optimizer.lr" in msg and "key=value" in msg


def test_override_with_empty_key_part_is_a_usage_error(base):
    msg = usage_error(base, ["optimizer..lr=3"])
    assert "optimizer..lr=3" in msg


def test_override_with_bad_yaml_value_is_a_usage_error(base):
    msg = usage_error(base, ["model.hidden=[3, 4"])
    assert "model.hidden=[3, 4" in msg


def test_override_unknown_key_names_the_command_line_override(base):
    msg = usage_error(base, ["optimizer.lrr=0.3"])
    assert msg.startswith("command line 'optimizer.lrr=0.3': optimizer.lrr: unknown key")
    assert "lr" in msg.split("expected one of:")[1].replace(" ", "").split(",")


def test_override_out_of_range_names_the_override_not_the_file_line(base):
    msg = usage_error(base, ["optimizer.lr=-1"])
    assert msg.startswith("command line 'optimizer.lr=-1': optimizer.lr: ")
    assert "greater than 0" in msg
    assert f"{base}:" not in msg


# -- error messages: <file>:<line>: <key>: <what> -----------------------------------------------------------------
def assert_located(msg, path, needle, key):
    line = line_of(path, needle)
    assert msg.startswith(f"{path}:{line}: {key}: "), msg
    return msg[len(f"{path}:{line}: {key}: "):]


def test_unknown_key_lists_the_valid_keys(tmp_path):
    p = write(tmp_path, """
        name: x
        # a comment to shift lines
        model:
          activation: relu
          hiden: [3]
    """)
    msg = usage_error(p)
    what = assert_located(msg, p, "hiden", "model.hiden")
    assert "unknown key" in what
    listed = [k.strip() for k in what.split("expected one of:")[1].split(",")]
    assert listed == list(ModelConfig.model_fields)


def test_unknown_top_level_key(tmp_path):
    p = write(tmp_path, "name: x\nepochs: 3\n")
    what = assert_located(usage_error(p), p, "epochs", "epochs")
    assert {"name", "data", "model", "optimizer", "train"} <= {k.strip() for k in what.split(":")[1].split(",")}


def test_unknown_nested_key_in_synthetic(tmp_path):
    p = write(tmp_path, "data:\n  synthetic:\n    n_feature: 3\n")
    what = assert_located(usage_error(p), p, "n_feature", "data.synthetic.n_feature")
    assert "n_features" in what


def test_wrong_type(tmp_path):
    p = write(tmp_path, """
        model:
          activation: relu
          hidden: abc
    """)
    what = assert_located(usage_error(p), p, "hidden", "model.hidden")
    assert "list" in what and "'abc'" in what


def test_wrong_type_in_list_item_points_at_the_item_line(tmp_path):
    p = write(tmp_path, """
        model:
          hidden:
            - 10
            - abc
    """)
    assert_located(usage_error(p), p, "- abc", "model.hidden.1")


def test_non_positive_hidden_width(tmp_path):
    p = write(tmp_path, "model:\n  hidden: [10, 0]\n")
    what = assert_located(usage_error(p), p, "hidden", "model.hidden")
    assert ">= 1" in what


@pytest.mark.parametrize("section, key, value, expect", [
    ("optimizer", "lr", "-0.1", "greater than 0"),
    ("optimizer", "lr", "0", "greater than 0"),
    ("train", "target_accuracy", "90", "less than or equal to 1"),
    ("model", "bn_decay", "1.0", "less than 1"),
    ("model", "bn_decay", "-0.5", "greater than or equal to 0"),
    ("data", "val_fraction", "0.9", "less than 0.9"),
    ("train", "batch_size", "0", ">= 2"),
    ("train", "epochs", "0", "greater than or equal to 1"),
])
def test_out_of_range(tmp_path, section, key, value, expect):
    p = write(tmp_path, f"name: x\n# filler\n{section}:\n  # filler\n  {key}: {value}\n")
    what = assert_located(usage_error(p), p, f"{key}:", f"{section}.{key}")
    assert expect in what
    assert value in what  # the offending value is echoed


def test_readme_error_example_exactly(tmp_path):
    """README: ``error: experiments/mine.yaml:14: optimizer.lr: Input should be greater than 0 (got -0.1)``."""
    lines = ["# line %d" % i for i in range(1, 12)] + ["optimizer:", "  name: sgd", "  lr: -0.1"]
    p = tmp_path / "mine.yaml"
    p.write_text("\n".join(lines) + "\n")
    assert usage_error(p) == f"{p}:14: optimizer.lr: Input should be greater than 0 (got -0.1)"


@pytest.mark.parametrize("section, key, value, choices", [
    ("model", "activation", "gelu", ["relu", "sigmoid", "tanh", "identity"]),
    ("optimizer", "name", "lbfgs", ["sgd", "momentum", "rmsprop", "adam"]),
    ("data", "name", "imagenet", ["mnist-5k", "mnist", "fashion-mnist", "cifar10", "synthetic"]),
    ("model", "bn", "[none, middle]", ["none", "before", "after"]),
])
def test_unknown_names(tmp_path, section, key, value, choices):
    p = write(tmp_path, f"{section}:\n  # x\n  {key}: {value}\n")
    key_path = f"{section}.{key}" + (".1" if key == "bn" else "")
    what = assert_located(usage_error(p), p, f"{key}:", key_path)
    for c in choices:
        assert f"'{c}'" in what


def test_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    msg = usage_error(p)
    assert msg.startswith(str(p)) and "not found" in msg


def test_directory_instead_of_file(tmp_path):
    d = tmp_path / "adir.yaml"
    d.mkdir()
    msg = usage_error(d)
    assert msg.startswith(str(d)) and "cannot read" in msg


def test_yaml_syntax_error(tmp_path):
    p = write(tmp_path, "name: x\nmodel:\n  hidden: [1, 2\ntrain:\n  seeds: 2\n")
    msg = usage_error(p)
    m = re.match(re.escape(str(p)) + r":(\d+): ", msg)
    assert m, msg
    assert 3 <= int(m.group(1)) <= 4
    assert "syntax" in msg.lower()


def test_duplicate_key(tmp_path):
    p = write(tmp_path, """
        optimizer:
          lr: 0.1
          name: sgd
          lr: 0.2
    """)
    msg = usage_error(p)
    assert msg.startswith(f"{p}:4: ")
    assert "duplicate" in msg and "optimizer.lr" in msg


@pytest.mark.parametrize("text", ["- a\n- b\n", "42\n", "just a string\n"])
def test_top_level_not_a_mapping(tmp_path, text):
    p = write(tmp_path, text)
    msg = usage_error(p)
    assert msg.startswith(str(p)) and "mapping" in msg


def test_python_tag_in_config_is_a_usage_error(tmp_path):
    marker = tmp_path / "executed"
    p = write(tmp_path, f'name: x\noptimizer: !!python/object/apply:os.system ["touch {marker}"]\n')
    msg = usage_error(p)
    assert msg.startswith(f"{p}:2: ")
    assert not marker.exists()


def test_python_tag_in_config_is_never_executed(tmp_path):
    marker = tmp_path / "executed"
    p = write(tmp_path, f'name: x\noptimizer: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(Exception):
        load_config(p)
    assert not marker.exists()


# -- cross-field rules --------------------------------------------------------------------------------------------
def test_epochs_and_steps_together(tmp_path):
    p = write(tmp_path, "train:\n  epochs: 2\n  steps: 30\n")
    msg = usage_error(p)
    assert msg.startswith(str(p)) and "epochs" in msg and "steps" in msg


def test_epochs_with_steps_null_is_fine(tmp_path):
    p = write(tmp_path, "train:\n  epochs: 2\n  steps: null\n")
    assert load_config(p)[0].train.epochs == 2


def test_hidden_together_with_depth_or_width(tmp_path):
    for extra in ("depth: 2", "width: 5"):
        p = write(tmp_path, f"model:\n  hidden: [3]\n  {extra}\n")
        msg = usage_error(p)
        assert msg.startswith(str(p)) and "hidden" in msg and "depth" in msg


@pytest.mark.parametrize("spec, hidden", [
    ("depth: 3\n  width: 50", [50, 50, 50]),
    ("depth: 1", [100]),
    ("width: 7", [7, 7]),
    ("depth: 0", []),
])
def test_depth_times_width_becomes_hidden(tmp_path, spec, hidden):
    p = write(tmp_path, f"model:\n  {spec}\n")
    cfg, _ = load_config(p)
    assert cfg.model.hidden == hidden
    assert cfg.model.depth is None and cfg.model.width is None


def test_depth_width_and_equivalent_hidden_hash_alike(tmp_path):
    a, _ = load_config(write(tmp_path, "model:\n  depth: 3\n  width: 50\n", "a.yaml"))
    b, _ = load_config(write(tmp_path, "model:\n  hidden: [50, 50, 50]\n", "b.yaml"))
    assert a.hash() == b.hash()


@pytest.mark.parametrize("value, seeds", [("3", [0, 1, 2]), ("1", [0]), ("[0, 7, 42]", [0, 7, 42]), ("[5]", [5])])
def test_seeds_valid(tmp_path, value, seeds):
    p = write(tmp_path, f"train:\n  seeds: {value}\n")
    assert load_config(p)[0].train.seeds == seeds


@pytest.mark.parametrize("value, expect", [
    ("0", "at least 1"),
    ("-2", "at least 1"),
    ("[]", "at least 1"),
    ("[0, -1]", ">= 0"),
    ("[1, 2, 1]", "repeat"),
    ("true", "number of seeds"),
])
def test_seeds_invalid(tmp_path, value, expect):
    p = write(tmp_path, f"name: x\ntrain:\n  seeds: {value}\n")
    what = assert_located(usage_error(p), p, "seeds", "train.seeds")
    assert expect in what


def test_batch_size_one_with_bn_is_refused(tmp_path):
    p = write(tmp_path, "model:\n  bn: [none, after]\ntrain:\n  batch_size: 1\n")
    msg = usage_error(p)
    assert msg.startswith(str(p)) and "batch_size" in msg


def test_batch_size_one_without_bn_is_refused_too(tmp_path):
    # The training loop skips a batch of one sample, so batch_size 1 would skip every batch and never end.
    p = write(tmp_path, "model:\n  bn: [none]\ntrain:\n  batch_size: 1\n")
    assert usage_error(p) == (f"{p}:4: train.batch_size: must be >= 2 (got 1): BN and the training loop need at "
                              "least 2 samples per batch")


def test_batch_size_one_with_bn_points_at_the_batch_size_line(tmp_path):
    p = write(tmp_path, "model:\n  bn: [before]\ntrain:\n  batch_size: 1\n")
    assert usage_error(p).startswith(f"{p}:4: train.batch_size: ")


def test_target_split_val_needs_val_fraction(tmp_path):
    p = write(tmp_path, "train:\n  target_split: val\n")
    msg = usage_error(p)
    assert msg.startswith(str(p)) and "val_fraction" in msg
    ok = write(tmp_path, "data:\n  val_fraction: 0.2\ntrain:\n  target_split: val\n", "ok.yaml")
    assert load_config(ok)[0].train.target_split == "val"


def test_target_split_train_needs_eval_train(tmp_path):
    msg = usage_error(write(tmp_path, "train:\n  target_split: train\n"))
    assert "eval_train" in msg
    ok = write(tmp_path, "train:\n  target_split: train\n  eval_train: true\n", "ok.yaml")
    assert load_config(ok)[0].train.eval_train is True


def test_bn_repeated_placement_is_refused(tmp_path):
    p = write(tmp_path, "model:\n  bn: [before, before]\n")
    what = assert_located(usage_error(p), p, "bn:", "model.bn")
    assert "repeat" in what


def test_several_errors_are_all_reported(tmp_path):
    p = write(tmp_path, "optimizer:\n  lr: -1\ntrain:\n  batch_size: 0\n")
    msg = usage_error(p)
    assert f"{p}:2: optimizer.lr:" in msg and f"{p}:4: train.batch_size:" in msg
    assert len(msg.splitlines()) == 2


# -- run_config and hash ------------------------------------------------------------------------------------------
def test_run_config_has_one_arm_and_one_seed():
    cfg = ExperimentConfig(model={"bn": ["none", "before", "after"]}, train={"seeds": 4})
    run = cfg.run_config("after", 3)
    assert run.model.bn == ["after"] and run.train.seeds == [3]
    assert cfg.model.bn == ["none", "before", "after"] and cfg.train.seeds == [0, 1, 2, 3]  # original untouched
    assert run.optimizer == cfg.optimizer and run.data == cfg.data
    assert run.model.hidden == cfg.model.hidden
    assert run.hash() != cfg.run_config("after", 2).hash()
    assert run.hash() != cfg.run_config("before", 3).hash()


def test_hash_equal_for_equal_configs():
    a = ExperimentConfig(optimizer={"lr": 0.05})
    b = ExperimentConfig.model_validate({"optimizer": {"lr": 0.05}})
    assert a.hash() == b.hash()
    assert re.fullmatch(r"[0-9a-f]{16}", a.hash())


def test_hash_changes_with_lr_and_other_fields():
    h = ExperimentConfig().hash()
    assert ExperimentConfig(optimizer={"lr": 0.05}).hash() != h
    assert ExperimentConfig(train={"seeds": 3}).hash() != h
    assert ExperimentConfig(data={"split_seed": 1}).hash() != h
    assert ExperimentConfig(model={"bn_eps": 1e-3}).hash() != h


def test_hash_ignores_name_and_description():
    a = ExperimentConfig(name="a", description="first")
    b = ExperimentConfig(name="b", description="something else")
    assert a.hash() == b.hash()


def test_hash_is_stable_across_processes():
    cfg = ExperimentConfig(name="x", optimizer={"lr": 0.05}, model={"bn": ["none", "after"]})
    code = ("from bncli.config import ExperimentConfig\n"
            "print(ExperimentConfig(name='y', optimizer={'lr': 0.05}, model={'bn': ['none', 'after']}).hash())")
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60,
                         check=True).stdout.strip()
    assert out == cfg.hash()


# -- resolved_budget ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, b, per_epoch", [
    (120, 60, 2),
    (121, 60, 2),   # a last batch of 1 sample is dropped
    (122, 60, 3),   # a last batch of 2 samples is kept
    (4000, 60, 67),
    (59, 60, 0 + 1),
    (1, 60, 0),
])
def test_resolved_budget_steps_per_epoch(n, b, per_epoch):
    total, pe = resolved_budget(TrainConfig(batch_size=b, epochs=3), n)
    assert pe == per_epoch and total == 3 * per_epoch


def test_resolved_budget_default_is_ten_epochs():
    total, pe = resolved_budget(TrainConfig(batch_size=60), 122)
    assert (total, pe) == (30, 3)


def test_resolved_budget_steps_win():
    total, pe = resolved_budget(TrainConfig(batch_size=60, steps=17), 122)
    assert (total, pe) == (17, 3)


def test_override_of_a_list_points_at_the_command_line_not_the_file(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("model:\n  bn: [none, before]\n")
    with pytest.raises(UsageError) as e:
        load_config(p, ["model.bn=[none,sideways]"])
    assert str(e.value).startswith("command line 'model.bn=[none,sideways]': model.bn.1:"), str(e.value)


# -- a budget override replaces the file's budget ----------------------------------------------------------------------
EPOCHS = """
name: b
train:
  epochs: 15
  batch_size: 30
"""


@pytest.mark.parametrize("override, steps, epochs", [
    ("train.steps=30", 30, None), ("train.epochs=2", None, 2)])
def test_a_budget_override_replaces_the_files_budget(tmp_path, override, steps, epochs):
    for text in (EPOCHS, EPOCHS.replace("epochs: 15", "steps: 500")):
        cfg, _ = load_config(write(tmp_path, text), [override])
        assert (cfg.train.steps, cfg.train.epochs) == (steps, epochs), (text, override)
        assert resolved_budget(cfg.train, 300)[0] == (steps if steps else epochs * 10)


def test_a_file_that_sets_both_budgets_is_still_refused_with_its_line(tmp_path):
    p = write(tmp_path, EPOCHS.replace("  batch_size: 30", "  steps: 100"))
    msg = usage_error(p)
    assert f"{p}:" in msg and "not both" in msg and "train" in msg
    cfg, _ = load_config(p, ["train.steps=20"])
    assert (cfg.train.steps, cfg.train.epochs) == (20, None)


def test_two_budget_overrides_are_refused_naming_both(tmp_path):
    p = write(tmp_path, EPOCHS)
    msg = usage_error(p, ["train.steps=20", "train.epochs=3"])
    assert "'train.steps=20'" in msg and "'train.epochs=3'" in msg and "not both" in msg
    cfg, _ = load_config(p, ["train.epochs=null", "train.steps=20"])  # clearing one explicitly is fine
    assert (cfg.train.steps, cfg.train.epochs) == (20, None)


def test_a_swept_budget_replaces_the_files_budget_at_every_point(tmp_path):
    from bncli.runs import plan, sweep_points

    p = write(tmp_path, EPOCHS + "sweep:\n  parameters:\n    train.steps: {values: [10, 20]}\n")
    cfg, src = load_config(p)
    specs = plan(cfg, src, tmp_path / "runs", sweep_points(cfg, src))
    assert sorted({(s.config.train.steps, s.config.train.epochs) for s in specs}) == [(10, None), (20, None)]


# -- hostile input: one line naming the file:line (or override) and the key, never a traceback or a hang ----------
SECTIONS = {"data": DataConfig, "data.synthetic": C.SyntheticConfig, "model": ModelConfig,
            "optimizer": OptimizerConfig, "train": TrainConfig, "sweep": C.SweepConfig}
SWEEP_OK = "sweep:\n  parameters:\n    optimizer.lr: {values: [0.1]}\n"


def nested_yaml(dotted: str, value: str) -> str:
    """``a.b.c`` and a value -> block YAML, one key per line (the last key on the last line)."""
    parts = dotted.split(".")
    return "".join("  " * i + f"{p}:\n" for i, p in enumerate(parts[:-1])) + "  " * (len(parts) - 1) + \
        f"{parts[-1]}: {value}\n"


def fields_of(kind):
    """Every config key whose type takes ``kind`` (int or float), as (dotted key, is a list)."""
    for prefix, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            args = get_args(field.annotation)
            inner = [a for a in args if a is not type(None)]
            if field.annotation is kind or kind in inner or any(kind in get_args(a) for a in inner):
                yield f"{prefix}.{name}", "list" in str(field.annotation)


def config_with(tmp_path, key, value):
    text = nested_yaml(key, value)
    if key.startswith("sweep."):
        text = SWEEP_OK + text.split("\n", 1)[1]  # the key's line under the sweep section above
    return write(tmp_path, "name: x\n" + text)


NUMBER_KEYS = sorted(set(fields_of(int)) | set(fields_of(float)))


def test_the_general_rules_cover_every_numeric_key():
    keys = {k for k, _ in NUMBER_KEYS}
    assert {"optimizer.lr", "data.synthetic.noise", "model.init_std", "model.bn_eps", "optimizer.eps",
            "train.target_accuracy", "train.seeds", "model.hidden", "sweep.max_runs", "sweep.target_points"} <= keys
    assert len(keys) > 35


@pytest.mark.parametrize("key, is_list", NUMBER_KEYS)
def test_booleans_are_never_numbers(tmp_path, key, is_list):
    p = config_with(tmp_path, key, "[1, true]" if is_list else "true")
    what = assert_located(usage_error(p), p, key.rsplit(".", 1)[1] + ":", key)
    assert "number" in what and "True" in what


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999"])
@pytest.mark.parametrize("key, is_list", sorted(fields_of(float)))
def test_non_finite_floats_are_refused_everywhere(tmp_path, key, is_list, value):
    p = config_with(tmp_path, key, f"[{value}]" if is_list else value)
    what = assert_located(usage_error(p), p, key.rsplit(".", 1)[1] + ":", key + (".0" if is_list else ""))
    assert "finite number" in what


def test_lr_true_message_exactly(tmp_path):
    p = write(tmp_path, "optimizer:\n  lr: true\n")
    assert usage_error(p) == f"{p}:2: optimizer.lr: expected a number, not true/false (got True)"
    assert usage_error(p, ["optimizer.lr=false"]) == (
        "command line 'optimizer.lr=false': optimizer.lr: expected a number, not true/false (got False)")


def test_booleans_are_still_fine_where_a_boolean_is_meant(tmp_path):
    cfg, _ = load_config(write(tmp_path, "data: {standardize: true}\ntrain: {eval_train: true}\n"
                                         "sweep: {parameters: {data.standardize: {values: [true, false]}}}\n"))
    assert cfg.data.standardize is True and cfg.sweep.parameters["data.standardize"].values == [True, False]


def test_non_finite_noise_names_the_key(tmp_path):
    p = write(tmp_path, "data:\n  name: synthetic\n  synthetic: {noise: .inf}\n")
    assert usage_error(p) == f"{p}:3: data.synthetic.noise: Input should be a finite number (got inf)"


def test_a_list_in_the_arms_is_a_type_error_not_a_crash(tmp_path):
    p = write(tmp_path, "name: x\nmodel:\n  bn: [none, [before]]\n")
    assert usage_error(p) == (f"{p}:3: model.bn.1: Input should be 'none', 'before', 'after' or 'noisy' (got ['before'])")
    msg = usage_error(p, ["model.bn=[none,{before: 1}]"])
    assert msg.startswith("command line 'model.bn=[none,{before: 1}]': model.bn.1: Input should be")


@pytest.mark.parametrize("value, expect", [
    ("1000000000", "at most 10,000 seeds (got 1,000,000,000)"),
    ("10001", "at most 10,000 seeds (got 10,001)"),
    ("[" + ", ".join(map(str, range(10_001))) + "]", "at most 10,000 seeds (got a list of 10,001)"),
    ("[0, 9223372036854775808]", "seeds must be >= 0 and < 2**63"),
])
def test_seed_counts_are_capped_before_a_list_is_built(tmp_path, value, expect):
    p = write(tmp_path, f"name: x\ntrain:\n  seeds: {value}\n")
    what = assert_located(usage_error(p), p, "seeds", "train.seeds")
    assert expect in what and len(what) < 200


def test_ten_thousand_seeds_are_allowed(tmp_path):
    assert len(load_config(write(tmp_path, "train: {seeds: 10000}\n"))[0].train.seeds) == 10_000


def test_seed_count_override_message_exactly(base):
    assert usage_error(base, ["train.seeds=1000000000"]) == (
        "command line 'train.seeds=1000000000': train.seeds: at most 10,000 seeds (got 1,000,000,000)")


# config paths that are not a readable regular file
def test_dev_zero_is_refused_without_reading_it():
    assert usage_error("/dev/zero") == "/dev/zero: cannot read config file: it is not a regular file (a device, " \
                                       "FIFO or socket)"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    p = tmp_path / "pipe.yaml"
    os.mkfifo(p)
    assert usage_error(p) == f"{p}: cannot read config file: it is not a regular file (a device, FIFO or socket)"


def test_a_symlink_loop_is_refused(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    os.symlink(b, a)
    os.symlink(a, b)
    assert usage_error(a) == f"{a}: cannot read config file (Too many levels of symbolic links)"


def test_a_path_through_a_file_is_refused(tmp_path):
    f = write(tmp_path, "name: x\n", "file.yaml")
    assert usage_error(f / "x.yaml") == f"{f / 'x.yaml'}: cannot read config file (Not a directory)"


def test_a_5000_character_name_is_refused_and_not_echoed_whole(tmp_path):
    p = tmp_path / ("n" * 5000 + ".yaml")
    msg = usage_error(p)
    assert msg.endswith("nnn.yaml: cannot read config file (File name too long)") and "..." in msg
    assert len(msg) < 300


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_refused(tmp_path):
    p = write(tmp_path, "name: x\n")
    p.chmod(0)
    assert usage_error(p) == f"{p}: cannot read config file (Permission denied)"


def test_a_file_over_1_mib_is_refused_up_front(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("# " + "z" * (1 << 20) + "\nname: x\n")
    assert usage_error(p) == f"{p}: config file larger than 1 MiB; a config is a short YAML file"


def test_a_file_that_is_not_utf8_is_refused(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(b"name: caf\xe9\n")
    assert usage_error(p) == f"{p}: cannot read config file: not UTF-8 text (byte 9)"


def test_windows_and_old_mac_newlines_keep_their_lines(tmp_path):
    p = tmp_path / "crlf.yaml"
    p.write_bytes(b"name: x\r\noptimizer:\r\n  lr: -1\r\n")
    assert usage_error(p).startswith(f"{p}:3: optimizer.lr: ")
    p.write_bytes(b"name: x\roptimizer:\r  lr: -1\r")
    assert usage_error(p).startswith(f"{p}:3: optimizer.lr: ")


# unknown keys are answered with the keys of their own section
def test_unknown_key_under_sweep_lists_the_sweep_keys(tmp_path):
    p = write(tmp_path, "name: x\nsweep:\n  parameters: {optimizer.lr: {values: [0.1, 0.2]}}\n  bogus: 1\n")
    assert usage_error(p) == (f"{p}:4: sweep.bogus: unknown key; expected one of: method, parameters, count, seed, "
                              "range_key, floor, target_points, max_runs")


def test_unknown_key_under_a_swept_parameter_lists_the_parameter_keys(tmp_path):
    p = write(tmp_path, "name: x\nsweep:\n  parameters:\n    optimizer.lr:\n      values: [0.1]\n      bogus: 1\n")
    assert usage_error(p) == (f"{p}:6: sweep.parameters.optimizer.lr.bogus: unknown key; expected one of: values, "
                              "min, max, scale, per_decade, num, distribution")


# echoed values are clipped
def test_a_200_kb_value_is_not_echoed_whole(tmp_path):
    p = write(tmp_path, "name: x\nmodel:\n  activation: " + "q" * 200_000 + "\n")
    msg = usage_error(p)
    assert msg.startswith(f"{p}:3: model.activation: Input should be 'relu', 'sigmoid', 'tanh' or 'identity' "
                          "(got 'qqq")
    assert "q..." in msg and len(msg) < 250


def test_a_1_mb_override_is_not_echoed_whole(base):
    msg = usage_error(base, ["name=" + "x" * 1_000_000])
    assert msg.startswith("command line 'name=xxx") and "..." in msg and "name: not a valid name" in msg
    assert len(msg) < 400


def test_a_200_kb_unknown_key_is_not_echoed_whole(tmp_path):
    p = write(tmp_path, "name: x\nmodel:\n  " + "k" * 200_000 + ": 1\n")
    assert len(usage_error(p)) < 400  # PyYAML refuses such a long key as a syntax error


def test_many_errors_are_listed_up_to_ten(tmp_path):
    p = write(tmp_path, "model:\n  hidden: [" + ", ".join(["a"] * 500) + "]\n")
    lines = usage_error(p).splitlines()
    assert len(lines) == 11 and lines[-1] == "... and 490 more"
    assert all(ln.startswith(f"{p}:2: model.hidden.") for ln in lines[:10])


# overrides
@pytest.mark.parametrize("item, expect", [
    (".".join(["k"] * 10_000) + "=1", "a key of 10,000 parts; config keys have at most 8"),
    ("a..b=1", "empty key part in 'a..b'"),
    ("=1", "empty key part in ''"),
    (".=1", "empty key part in '.'"),
])
def test_override_keys_are_checked_before_anything_is_built(base, item, expect):
    msg = usage_error(base, [item])
    assert msg.startswith("override '") and msg.endswith(expect) and len(msg) < 300


def test_override_value_nested_5000_deep_is_refused(base):
    msg = usage_error(base, ["model.hidden=" + "[" * 5000 + "1" + "]" * 5000])
    assert msg.startswith("override 'model.hidden=[[[") and "YAML nested more than 100 levels deep" in msg


# synthetic data and model sizes are bounded: a typo must not allocate terabytes
def test_synthetic_n_train_is_capped(tmp_path):
    p = write(tmp_path, "data:\n  name: synthetic\n  synthetic: {n_train: 100000000000}\n")
    assert usage_error(p) == (f"{p}:3: data.synthetic.n_train: Input should be less than or equal to 10000000 "
                              "(got 100000000000)")
    p = write(tmp_path, "data:\n  name: synthetic\n  synthetic: {n_train: 1e11}\n")
    assert "data.synthetic.n_train: Input should be less than or equal to 10000000" in usage_error(p)


def test_synthetic_set_size_is_capped(tmp_path):
    p = write(tmp_path, "data:\n  name: synthetic\n  synthetic: {n_train: 1000000, n_features: 1000}\n")
    assert usage_error(p) == (f"{p}:3: data.synthetic: (n_train + n_test + n_classes x clusters_per_class) x "
                              "n_features = 1,000,508,000 values, more than 20,000,000 (160 MB in float64); use fewer "
                              "samples or features")


@pytest.mark.parametrize("key, value, expect", [
    ("n_features", "1000000", "less than or equal to 100000"),
    ("n_classes", "100000", "less than or equal to 1000"),
    ("clusters_per_class", "100000", "less than or equal to 1000"),
    ("n_test", "100000000", "less than or equal to 10000000"),
])
def test_synthetic_dimensions_are_capped(tmp_path, key, value, expect):
    p = write(tmp_path, f"data:\n  synthetic:\n    {key}: {value}\n")
    assert expect in assert_located(usage_error(p), p, key, f"data.synthetic.{key}")


@pytest.mark.parametrize("spec, key, expect", [
    ("depth: 1000000000", "model.depth", "less than or equal to 200 (got 1000000000)"),
    ("width: 1000000", "model.width", "less than or equal to 10000"),
    ("hidden: [100000]", "model.hidden", "at most 200 hidden layers of at most 10,000 units (got [100000])"),
    ("hidden: [" + ", ".join(["1"] * 201) + "]", "model.hidden", "at most 200 hidden layers"),
    ("{depth: 200, width: 10000}", "model", "19,900,000,000 weights between hidden layers, more than 100,000,000"),
])
def test_network_size_is_capped(tmp_path, spec, key, expect):
    p = write(tmp_path, f"name: x\nmodel:\n  {spec}\n" if key != "model" else f"name: x\nmodel: {spec}\n")
    assert expect in usage_error(p)
    assert usage_error(p).split(": ")[1] == key


def test_the_shipped_sizes_are_far_below_the_caps(tmp_path):
    cfg, _ = load_config(write(tmp_path, "model: {hidden: [10000, 10000]}\ndata: {synthetic: {n_train: 900000}}\n"))
    assert cfg.model.hidden == [10_000, 10_000] and cfg.data.synthetic.n_train == 900_000


# sweep.max_runs: a safety cap, outside the dumped config and every hash
def test_max_runs_is_left_out_of_the_dump_at_its_default(tmp_path):
    cfg, _ = load_config(write(tmp_path, SWEEP_OK))
    assert cfg.sweep.max_runs == 100_000 and "max_runs" not in cfg.to_dict()["sweep"]
    raised, _ = load_config(write(tmp_path, SWEEP_OK + "  max_runs: 200000\n", "raised.yaml"))
    assert raised.to_dict()["sweep"]["max_runs"] == 200_000  # a raised cap is recorded in config.yaml
    assert raised.hash() == cfg.hash()
    assert [raised.run_config(a, s).hash() for a in raised.model.bn for s in raised.train.seeds] == \
           [cfg.run_config(a, s).hash() for a in cfg.model.bn for s in cfg.train.seeds]
    back, _ = load_config(write(tmp_path, to_yaml(raised), "back.yaml"))
    assert back.sweep.max_runs == 200_000


@pytest.mark.parametrize("value, expect", [("0", "greater than or equal to 1"),
                                           ("10000000", "less than or equal to 1000000"),
                                           ("true", "expected a number")])
def test_max_runs_is_validated(tmp_path, value, expect):
    p = write(tmp_path, SWEEP_OK + f"  max_runs: {value}\n")
    assert expect in assert_located(usage_error(p), p, "max_runs", "sweep.max_runs")


# -- the noisy arm and the probes (CLAIMS C14, C15) ----------------------------------------------------------------
def test_noisy_arm_and_probe_keys_load(tmp_path):
    p = write(tmp_path, """
        model: {bn: [none, before, noisy], noise_mean: 0.5, noise_scale_low: 0.8, noise_scale_high: 1.25}
        train: {measure: [ics, smoothness], probe_every: 50, probe_lr_multiples: [0.5, 1, 2]}
        """)
    cfg, _ = load_config(p)
    assert cfg.model.bn == ["none", "before", "noisy"] and cfg.model.noise_scale_high == 1.25
    assert cfg.train.probe_every == 50 and cfg.train.probe_lr_multiples == [0.5, 1.0, 2.0]


@pytest.mark.parametrize("text, expected", [
    ("model: {bn: [noisy], noise_scale_low: 2, noise_scale_high: 0.5}",
     ":1: model: model.noise_scale_low (2) must be <= model.noise_scale_high (0.5)"),
    ("model: {bn: [noisy], noise_mean: -1}", ":1: model.noise_mean: Input should be greater than or equal to 0"),
    ("model: {bn: [noisy], noise_scale_low: 0}", ":1: model.noise_scale_low: Input should be greater than 0"),
    ("train: {probe_lr_multiples: [1, -2]}",
     ":1: train.probe_lr_multiples: each multiple of the learning rate must be > 0 and <= 1000"),
    ("train: {probe_lr_multiples: []}", ":1: train.probe_lr_multiples: List should have at least 1 item"),
    ("train: {probe_every: 0}", ":1: train.probe_every: Input should be greater than or equal to 1"),
    ("train: {measure: [curvature]}", ":1: train.measure.0: Input should be"),
])
def test_bad_noise_and_probe_keys_name_the_key(tmp_path, text, expected):
    p = write(tmp_path, text + "\n")
    msg = usage_error(p)
    assert msg.startswith(f"{p}{expected}"), msg


def test_noisy_arm_refuses_convolutions(tmp_path):
    p = write(tmp_path, """
        data: {name: mnist-5k}
        model: {bn: [noisy], conv: [{channels: 4, kernel: 3}]}
        """)
    assert "the noisy arm is implemented for dense layers only" in usage_error(p)


def test_noise_and_probe_keys_enter_the_hash_only_where_they_act():
    base = ExperimentConfig()
    plain = base.run_config("before", 0)
    tweaked = base.model_copy(update={"model": base.model.model_copy(update={"noise_mean": 3.0}),
                                      "train": base.train.model_copy(update={"probe_every": 7})})
    assert tweaked.run_config("before", 0).hash() == plain.hash()  # no noisy arm, no probes: same identity
    assert tweaked.run_config("noisy", 0).hash() != base.run_config("noisy", 0).hash()
    probed = base.model_copy(update={"train": base.train.model_copy(update={"measure": ["ics"]})})
    probed7 = base.model_copy(update={"train": base.train.model_copy(update={"measure": ["ics"], "probe_every": 7})})
    assert probed.run_config("none", 0).hash() != probed7.run_config("none", 0).hash()


# -- seeds are distinct integers (issue 24) ------------------------------------------------------------------------
@pytest.mark.parametrize("value, expect", [
    ("[1, 1.0]", "seeds must not repeat: 1 and 1.0 are both seed 1"),
    ("[1, '01']", "seeds must not repeat: 1 and '01' are both seed 1"),
    ("[2, '2', 2.0, 3]", "seeds must not repeat: 2, '2' and 2.0 are all seed 2"),
    ("[4, 5, 4]", "seeds must not repeat: seed 4 is given 2 times"),
    ("['-1']", "seeds must be >= 0 and < 2**63"),
    ("[-1.0]", "seeds must be >= 0 and < 2**63"),
    ("['99999999999999999999']", "seeds must be >= 0 and < 2**63"),
])
def test_seeds_are_checked_as_the_integers_they_become(tmp_path, value, expect):
    p = write(tmp_path, f"name: x\ntrain:\n  seeds: {value}\n")
    what = assert_located(usage_error(p), p, "seeds", "train.seeds")
    assert what.startswith(expect), what


def test_seeds_read_like_every_other_integer_key_and_then_must_differ(base):
    # '7' and 7.0 are 7, as for batch_size: one run per distinct integer
    cfg, _ = load_config(base, ["train.seeds=[0, '7', 3.0]", "train.batch_size='30'"])
    assert cfg.train.seeds == [0, 7, 3] and all(type(s) is int for s in cfg.train.seeds)
    assert cfg.train.batch_size == 30
    assert usage_error(base, ["train.seeds=[1, 1.0]"]) == (
        "command line 'train.seeds=[1, 1.0]': train.seeds: seeds must not repeat: 1 and 1.0 are both seed 1 "
        "(got [1, 1.0])")


# -- eps in the run's dtype ----------------------------------------------------------------------------------------
def test_bn_eps_that_is_0_in_float32_is_refused_at_its_line(tmp_path):
    p = write(tmp_path, "name: x\nmodel:\n  bn: [none, after]\n  bn_eps: 1e-300\n")
    assert usage_error(p) == (
        f"{p}:4: model.bn_eps: 1e-300 is 0 in float32 (train.dtype): a unit whose batch variance is 0 would be "
        "normalized by 0/0; expected a value from 1.18e-38 (float32's smallest normal number) to 1000 (or "
        "train.dtype: float64)")
    cfg, _ = load_config(p, ["train.dtype=float64"])  # a normal float64 number: the run uses it as given
    assert cfg.model.bn_eps == 1e-300


@pytest.mark.parametrize("dtype, value, expect", [
    ("float32", "1e-40", "1e-40 is subnormal in float32 (train.dtype): kept as 9.99995e-41, with a few bits"),
    ("float32", "1e-45", "1e-45 is subnormal in float32"),
    ("float64", "1e-320", "is subnormal in float64 (train.dtype)"),
    ("float64", "1e-330", "Input should be greater than 0 (got 0.0)"),  # 0 in Python already
    ("float32", "1e300", "1e+300 is more than 1000: eps is a floor under each unit's batch variance"),
    ("float64", "1001", "1001 is more than 1000"),
])
def test_bn_eps_out_of_the_dtypes_usable_range(tmp_path, dtype, value, expect):
    p = write(tmp_path, f"name: x\nmodel:\n  bn_eps: {value}\ntrain:\n  dtype: {dtype}\n")
    what = assert_located(usage_error(p), p, "bn_eps", "model.bn_eps")
    assert expect in what
    low = {"float32": "1.18e-38", "float64": "2.23e-308"}[dtype]
    assert value == "1e-330" or f"expected a value from {low} ({dtype}'s smallest normal number) to 1000" in what


def test_bn_eps_is_refused_only_where_a_run_adds_it_outside_the_range(tmp_path):
    p = write(tmp_path, "model: {bn: [none, before], bn_eps: 1e-300}\n")
    assert "model.bn_eps: 1e-300 is 0 in float32" in usage_error(p)
    assert load_config(p, ["model.bn=none"])[0].model.bn_eps == 1e-300  # no run adds it anywhere
    for dtype, value in [("float32", 1.2e-38), ("float32", 1e3), ("float64", 1e-300), ("float32", 1e-5)]:
        cfg, _ = load_config(p, [f"model.bn_eps={value!r}", f"train.dtype={dtype}"])
        assert cfg.model.bn_eps == value


@pytest.mark.parametrize("optimizer, eps, expect", [
    ("rmsprop", "1e-300", "1e-300 is 0 in float32 (train.dtype): a weight whose gradient stays 0 would be updated "
                          "by 0/0; expected at least 1.18e-38 (float32's smallest normal number) (or train.dtype: "
                          "float64)"),
    ("adam", "1e-37", "adam adds eps x sqrt(1 - beta2) = 3.16e-39 at its first step, which is subnormal in "
                      "float32"),
    ("adam", "1e-45", "adam adds eps x sqrt(1 - beta2) = 3.16e-47 at its first step, which is 0 in float32"),
])
def test_optimizer_eps_that_the_run_cannot_add_is_refused(tmp_path, optimizer, eps, expect):
    p = write(tmp_path, f"name: x\noptimizer:\n  name: {optimizer}\n  eps: {eps}\n")
    what = assert_located(usage_error(p), p, "eps:", "optimizer.eps")
    assert what.startswith(expect), what
    if optimizer == "adam":
        assert "expected at least 3.72e-37 (float32's smallest normal number, 1.18e-38, / sqrt(1 - beta2))" in what


def test_optimizer_eps_is_checked_only_where_it_is_added(tmp_path):
    p = write(tmp_path, "optimizer: {name: rmsprop, eps: 1e-300}\n")
    assert "optimizer.eps: 1e-300 is 0 in float32" in usage_error(p)
    for overrides in (["optimizer.name=sgd"], ["optimizer.name=momentum"], ["train.dtype=float64"],
                      ["optimizer.name=adam", "optimizer.eps=1e-36"],
                      ["optimizer.name=adam", "train.dtype=float64"]):
        load_config(p, overrides)


def test_a_swept_bn_eps_is_checked_at_each_point(tmp_path):
    from bncli.runs.plan import plan, sweep_points

    cfg, src = load_config(write(tmp_path, "name: x\nmodel: {bn: [before]}\n"), ["model.bn_eps=1e-5,1e-300"],
                           sweep_overrides=True)
    with pytest.raises(UsageError) as e:
        plan(cfg, src, tmp_path / "runs", sweep_points(cfg, src))
    assert "model.bn_eps: 1e-300 is 0 in float32" in str(e.value)


# -- the name a config gets from its file ---------------------------------------------------------------------------
def test_a_file_name_that_is_not_a_valid_name_is_named_as_the_cause(tmp_path):
    p = write(tmp_path, "optimizer:\n  lr: 0.2\n", name="my run.yaml")
    assert usage_error(p) == (
        f"{p}: the experiment name defaults to the file name 'my run', which is not a valid name (letters, digits, "
        "_ . -, starting with a letter or digit, at most 100 characters); add `name: my_run` to the file or rename it")
    assert load_config(p, ["name=my_run"])[0].name == "my_run"  # a name from the command line is enough
    q = write(tmp_path, "name: mine\n", name="my run2.yaml")
    assert load_config(q)[0].name == "mine"


@pytest.mark.parametrize("stem, suggested", [(".hidden", "hidden"), ("été", "ete"), ("a" * 101, "a" * 100),
                                             ("+++", "my_experiment")])
def test_the_suggested_name_is_valid(tmp_path, stem, suggested):
    msg = usage_error(write(tmp_path, "", name=f"{stem}.yaml"))
    assert f"add `name: {suggested}` to the file" in msg
    assert load_config(write(tmp_path, f"name: {suggested}\n", name=f"{stem}.yaml"))[0].name == suggested


def test_an_invalid_name_key_says_what_a_name_is(tmp_path):
    p = write(tmp_path, "name: my run\n")
    assert usage_error(p) == (f"{p}:1: name: not a valid name: letters, digits, _ . -, starting with a letter or "
                              "digit, at most 100 characters (got 'my run')")


@pytest.mark.parametrize("override, meant", [
    ("lr=0.1", "optimizer.lr"), ("optimizer.lrr=0.1", "optimizer.lr"), ("train.seed=3", "train.seeds"),
    ("momentum=0.9", "optimizer.momentum"), ("model.bn_epsilon=0.1", "model.bn_eps"),
])
def test_an_unknown_key_suggests_the_dotted_key_meant(tmp_path, override, meant):
    p = write(tmp_path, "name: x\n")
    msg = usage_error(p, [override])
    assert f"unknown key; did you mean {meant}?" in msg and msg.startswith(f"command line '{override}'"), msg


def test_an_unknown_key_far_from_every_key_gets_no_suggestion(tmp_path):
    p = write(tmp_path, "name: x\nzzzzzz: 1\n")
    msg = usage_error(p)
    assert "did you mean" not in msg and msg.startswith(f"{p}:2: zzzzzz: unknown key; expected one of:"), msg
