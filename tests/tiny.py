"""The tiny synthetic experiment the CLI, experiment, plot and sweep tests train (a few milliseconds per run)."""


def tiny_config(name: str, *, n_train=300, n_test=100, steps=40, extra_train="") -> str:
    """YAML text of a 2-arm x 2-seed experiment on a small synthetic set; ``extra_train`` adds lines to train:."""
    return f"""\
name: {name}
data:
  name: synthetic
  synthetic: {{n_train: {n_train}, n_test: {n_test}, n_features: 8, n_classes: 3}}
model:
  hidden: [16, 16]
  bn: [none, before]
optimizer:
  name: sgd
  lr: 0.1
train:
  batch_size: 30
  steps: {steps}
  seeds: 2
  eval_every: 10
{extra_train}"""


def run_dir(out, arm: str, seed: int):
    """The directory of one run of a `bncli train` output folder, as its experiment.json lists it."""
    import json
    from pathlib import Path

    runs = json.loads((Path(out) / "experiment.json").read_text())["runs"]
    hashes = [r["hash"] for r in runs if r["arm"] == arm and r["seed"] == seed]
    assert len(hashes) == 1, (arm, seed, runs)
    return Path(out) / "runs" / hashes[0]
