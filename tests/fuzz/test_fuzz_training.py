"""Hostile training settings and interruptions through the real command line: settings that used to loop forever,
overflow or crash the statistics, and Ctrl-C at any moment, including while the workers are still starting."""

from __future__ import annotations

import os
import signal
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_helpers import write_config

from .harness import bncli, check, fuzz, spawn, wait


@pytest.mark.parametrize("overrides, codes", [
    (["train.batch_size=1", "model.bn=[none]"], (2,)),          # used to loop forever on one-sample batches
    (["train.dtype=float64", "optimizer.lr=1e6"], (0,)),       # every run diverges: an outcome, not a crash
    (["optimizer.lr=1e300", "model.bn=[none]"], (0,)),
    (["model.init_std=1e30", "model.init=normal"], (0,)),
    (["data.synthetic.noise=.inf"], (2,)),
    (["data.synthetic.n_train=100000000000"], (2,)),
    (["train.steps=3", "train.eval_every=1000000"], (0,)),
    (["train.dtype=float64", "model.init_std=1e100", "model.init=normal", "optimizer.lr=1e-300"], (0,)),  # ~1e301
])
def test_hostile_training_settings(case_dir, overrides, codes):
    cwd = case_dir()
    o = bncli(["train", write_config(cwd), *overrides, "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "training settings (corpus)", codes=codes)
    if o.code == 0:
        assert (cwd / "out" / "summary.csv").exists() and (cwd / "out" / "experiment.json").exists()


@pytest.mark.parametrize("args", [["model.init_std=1e30", "model.init=normal"], ["optimizer.lr=1e300"],
                                  ["--end", "1e300"], ["--start", "1e-300", "--end", "1e-299"]])
def test_lrfind_with_no_finite_loss_or_extreme_ranges(case_dir, args):
    cwd = case_dir()
    o = bncli(["lrfind", write_config(cwd), *args, "--iters", "20", "--out", cwd / "out"], cwd)
    check(o, "lrfind settings (corpus)", codes=(0, 1))


def test_a_sweep_whose_losses_reach_1e301_is_drawn(case_dir):
    cwd = case_dir()
    o = bncli(["sweep", write_config(cwd), "train.dtype=float64", "model.init_std=1e150", "model.init=normal",
               "optimizer.lr=1e-300,1e-299", "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "training settings (corpus)", codes=(0,))
    assert (cwd / "out" / "range.png").exists()


# From 50 ms on: before that the interpreter itself is starting, ahead of any code of ours (and of any human).
@given(st.floats(0.05, 2.0), st.sampled_from(["train", "sweep"]))
@fuzz(8)
def test_ctrl_c_at_any_moment(case_dir, delay, command):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: exit 130 (or 0 if it had finished), one line."""
    cwd = case_dir()
    cfg = write_config(cwd)
    args = [command, cfg, "train.steps=400", "--out", cwd / "out", "-j", "2"]
    if command == "sweep":
        args.insert(2, "optimizer.lr=0.01,0.1,1")
    proc, args, t0 = spawn(args, cwd)
    time.sleep(delay)
    try:
        os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass
    o = wait(proc, args, t0)
    if o.code == -signal.SIGINT:
        # Ctrl-C while the interpreter shuts down, after the command printed its last line: Python then ends by the
        # signal itself (a shell shows 130); the results are all written and nothing more is printed.
        assert "wrote" in o.stdout and not o.stderr.strip(), o.stderr[-2000:]
        o.code = 0
    check(o, "Ctrl-C (generated)", codes=(0, 130))
    if o.code == 130:
        assert "interrupted" in o.stderr
