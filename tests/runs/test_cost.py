"""The matrix-product count of a run (runs/cost.py): by hand for the products, and against what a real run does for
the number of evaluations."""

from __future__ import annotations

import pytest

from bncli.config import load_config
from bncli.runs import dataset_for
from bncli.runs.cost import forward_flops, plan_work, run_work, step_flops
from bncli.training import train_run
from tiny import tiny_config


def test_products_by_hand():
    # 784-100-10 at batch 60: forward 2*60*(784*100 + 100*10); dW the same; dX only for the second layer
    fwd = 2 * 60 * (784 * 100 + 100 * 10)
    assert step_flops([784, 100, 10], 60) == fwd + fwd + 2 * 60 * 100 * 10
    assert forward_flops([784, 100, 10], 1000) == 2 * 1000 * (784 * 100 + 100 * 10)


@pytest.mark.parametrize("steps, every, eval_train", [(40, 10, False), (45, 10, True), (7, None, False)])
def test_evaluations_counted_as_a_run_makes_them(tmp_path, steps, every, eval_train):
    extra = f"  eval_train: {str(eval_train).lower()}\n"
    text = tiny_config("costs", steps=steps, extra_train=extra).replace(
        "  eval_every: 10\n", f"  eval_every: {every}\n" if every else "")
    (tmp_path / "c.yaml").write_text(text)
    cfg, _ = load_config(tmp_path / "c.yaml")
    one = cfg.run_config("before", 0)
    data = dataset_for(one)
    work = run_work(one, data)
    rows = train_run(one, data).rows
    sizes = [data.X_train.shape[1], *one.model.hidden, data.n_classes]
    per_eval = forward_flops(sizes, len(data.X_test) + (len(data.X_train) if eval_train else 0))
    assert work.steps == steps and work.eval_flops == len(rows) * per_eval
    assert work.train_flops == steps * step_flops(sizes, one.train.batch_size)


def test_plan_work_covers_every_run(tmp_path):
    from bncli.experiment import plan_experiment

    (tmp_path / "c.yaml").write_text(tiny_config("costs"))
    cfg, src = load_config(tmp_path / "c.yaml")
    specs = plan_experiment(cfg, src, tmp_path / "out")
    work = plan_work(specs)
    assert set(work) == {s.hash for s in specs} and all(w.flops > 0 for w in work.values())
