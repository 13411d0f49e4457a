"""`bncli train` on a real-format dataset (tiny generated files): data.path reaches the loader; exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from bncli.cli import app

from .helpers import write_mnist_folder

CONFIG = """\
name: tinyreal
data:
  name: {name}
  path: {path}
  val_fraction: 0.2
model:
  hidden: [8]
  bn: [none, before]
optimizer:
  name: sgd
  lr: 0.1
train:
  batch_size: 6
  steps: 6
  seeds: 1
  eval_every: 3
"""


def write_config(tmp_path, name, path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(CONFIG.format(name=name, path=path))
    return cfg


def test_train_on_idx_files_from_data_path(tmp_path):
    write_mnist_folder(tmp_path / "mnist-files")
    cfg = write_config(tmp_path, "mnist", tmp_path / "mnist-files")
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "out"), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "summary.csv").is_file()


def test_train_missing_dataset_is_a_config_error(tmp_path):
    cfg = write_config(tmp_path, "fashion-mnist", tmp_path / "nowhere")
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "out"), "-j", "1"])
    assert r.exit_code == 2
    assert "bncli data fetch fashion-mnist" in r.output.replace("\n", "")


def test_train_corrupt_dataset_exits_1(tmp_path):
    write_mnist_folder(tmp_path / "m")
    (tmp_path / "m" / "train-labels-idx1-ubyte.gz").write_bytes(b"broken")
    cfg = write_config(tmp_path, "mnist", tmp_path / "m")
    r = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "out"), "-j", "1"])
    assert r.exit_code == 1
    assert "train-labels-idx1-ubyte.gz" in r.output.replace("\n", "")
