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
