"""The results store as a hostile or careless user leaves it: run folders tampered with, swapped, linked, damaged or
made hostile (FIFO, sparse, deep), runs of other data, runs computed with two BLAS threads. Through the real command
line, the same `bncli train` (or `sweep`) is run again: every run that does not verify is trained again with one
line saying which and why, and the table shows the numbers a clean run gives — never the tampered ones."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_helpers import write_config

from .harness import bncli, check, fuzz

ARGS = ["train.seeds=2", "-j", "1"]


def summary_rows(out: Path) -> dict:
    with open(out / "summary.csv", newline="") as f:
        return {(r["arm"], r["seed"]): {k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One `bncli train` folder made by the real command, and its summary table."""
    tmp = tmp_path_factory.mktemp("store")
    cfg = write_config(tmp, name="exp.yaml")
    out = tmp / "out"
    o = check(bncli(["train", cfg, *ARGS, "--out", out], cwd=tmp), "tamper", codes=(0,))
    assert "training again" not in o.stderr + o.stdout
    return cfg, out, summary_rows(out)


def run_of(out: Path, arm="before", seed=0) -> Path:
    runs = json.loads((out / "experiment.json").read_text())["runs"]
    return out / "runs" / next(r["hash"] for r in runs if r["arm"] == arm and r["seed"] == seed)


def edit_json(path: Path, **changes):
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def forge_last_row(d):
    lines = (d / "metrics.csv").read_text().splitlines()
    cells = lines[-1].split(",")
    cells[-1] = "0.999"
    (d / "metrics.csv").write_text("\n".join(lines[:-1] + [",".join(cells)]) + "\n")


def big_sparse(path: Path):
    path.unlink()
    with open(path, "wb") as f:
        f.truncate(2 << 30)


def fifo(path: Path):
    path.unlink()
    os.mkfifo(path)


def other_run_under_this_name(d: Path, link: bool):
    other = run_of(d.parents[1], "none", 1)
    shutil.rmtree(d)
    if link:
        d.symlink_to(other, target_is_directory=True)
    else:
        shutil.copytree(other, d)


TAMPER = {
    "metrics forged last row": forge_last_row,
    "metrics deleted": lambda d: (d / "metrics.csv").unlink(),
    "metrics cut mid-number": lambda d: (d / "metrics.csv").write_text((d / "metrics.csv").read_text()[:-3]),
    "metrics empty": lambda d: (d / "metrics.csv").write_text(""),
    "metrics 2 GB sparse": lambda d: big_sparse(d / "metrics.csv"),
    "accuracy 7.5": lambda d: edit_json(d / "summary.json", final_test_acc=7.5),
    "accuracy -3": lambda d: edit_json(d / "summary.json", final_test_acc=-3),
    "accuracy 1e308": lambda d: edit_json(d / "summary.json", best_test_acc=1e308),
    "accuracy NaN": lambda d: (d / "summary.json").write_text(
        (d / "summary.json").read_text().replace('"final_test_acc": ', '"final_test_acc": NaN, "x": ')),
    "status flipped": lambda d: (edit_json(d / "summary.json", status="diverged"),
                                 edit_json(d / "meta.json", status="diverged")),
    "negative steps to target": lambda d: edit_json(d / "summary.json", steps_to_target=-5),
    "hash points elsewhere": lambda d: edit_json(d / "summary.json", hash="../../other/runs/0123456789abcdef"),
    "config lr 7.0": lambda d: (d / "config.yaml").write_text(
        (d / "config.yaml").read_text().replace("lr: 0.1", "lr: 7.0")),
    "meta names another config": lambda d: edit_json(d / "meta.json", config_hash="0" * 16),
    "meta two BLAS threads": lambda d: edit_json(d / "meta.json", blas_threads=2),
    "meta timing edited": lambda d: edit_json(d / "meta.json", wall_time_s=0.5),
    "meta FIFO": lambda d: fifo(d / "meta.json"),
    "meta 2 GB sparse": lambda d: big_sparse(d / "meta.json"),
    "meta deeply nested": lambda d: (d / "meta.json").write_text("[" * 200_000 + "]" * 200_000),
    "summary FIFO": lambda d: fifo(d / "summary.json"),
    "summary 2 GB sparse": lambda d: big_sparse(d / "summary.json"),
    "stray percentiles.csv": lambda d: (d / "percentiles.csv").write_text("step,unit,p15,p50,p85\n0,0,1,2,3\n"),
    "another run copied in": lambda d: other_run_under_this_name(d, link=False),
    "another run linked in": lambda d: other_run_under_this_name(d, link=True),
    "a file linked": lambda d: ((d / "summary.json").unlink(),
                                (d / "summary.json").symlink_to(run_of(d.parents[1], "none", 1) / "summary.json")),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_a_tampered_run_is_trained_again_and_the_table_is_clean(pristine, tmp_path, case):
    cfg, made, expected = pristine
    out = tmp_path / "out"
    shutil.copytree(made, out, symlinks=True)
    victim = run_of(out)
    TAMPER[case](victim)
    o = check(bncli(["train", cfg, *ARGS, "--out", out], cwd=tmp_path), "tamper", codes=(0,))
    said = [ln for ln in (o.stdout + o.stderr).splitlines() if "training again" in ln]
    assert len(said) == 1 and victim.name in said[0], o.stdout + o.stderr
    assert "3 already done" in o.stdout.replace("\n", " ") or "3 already" in o.stdout, o.stdout
    assert summary_rows(out) == expected  # the clean run's numbers, bit for bit, not the tampered ones
    assert not victim.is_symlink()


def test_a_sweep_run_relabelled_in_its_summary_never_reaches_range_csv(tmp_path):
    cfg = write_config(tmp_path, "  parameters:\n    optimizer.lr:\n      values: [0.03, 0.3]\n", name="sw.yaml")
    out = tmp_path / "sw"
    check(bncli(["sweep", cfg, "train.seeds=2", "--out", out, "-j", "1"], cwd=tmp_path), "tamper", codes=(0,))
    before = (out / "range.csv").read_text()
    victim = next(p for p in (out / "runs").iterdir() if not p.name.startswith("."))
    edit_json(victim / "summary.json", **{"optimizer.lr": 1000})
    o = check(bncli(["sweep", cfg, "train.seeds=2", "--out", out, "-j", "1"], cwd=tmp_path), "tamper", codes=(0,))
    assert victim.name in o.stdout + o.stderr
    assert (out / "range.csv").read_text() == before
    with open(out / "summary.csv", newline="") as f:
        assert {r["optimizer.lr"] for r in csv.DictReader(f)} == {"0.03", "0.3"}


def _mnist(folder: Path, seed: int, black=False):
    from data.helpers import tiny_idx, write_mnist_folder

    arrays = list(tiny_idx(n_train=60, n_test=20, seed=seed))
    if black:
        arrays[0] = arrays[0] * 0
        arrays[2] = arrays[2] * 0
    write_mnist_folder(folder, arrays)
    return folder


def test_runs_of_other_data_are_never_reused_and_the_same_data_elsewhere_is(tmp_path):
    """Issue 24's first case: data.path=A, then the same command with data.path=B (all-black images): B trains its
    own runs; the same files as A's copied to C reuse A's runs."""
    a, b = _mnist(tmp_path / "A", 0), _mnist(tmp_path / "B", 0, black=True)
    c = tmp_path / "C"
    shutil.copytree(a, c)
    cfg = write_config(tmp_path, base="name: dataid\ndata: {name: mnist}\nmodel: {hidden: [8], bn: [none, before]}\n"
                                      "optimizer: {name: sgd, lr: 0.1}\ntrain: {batch_size: 10, steps: 12, seeds: 1, "
                                      "eval_every: 6}\n", name="d.yaml")
    env_out = tmp_path / "out"
    run = lambda p: check(bncli(["train", cfg, f"data.path={p}", "--out", env_out, "-j", "1"], cwd=tmp_path),  # noqa: E731
                          "data identity", codes=(0,))
    run(a)
    rows_a = summary_rows(env_out)
    o = run(b)
    assert "0 already done" in o.stdout, o.stdout
    rows_b = summary_rows(env_out)
    assert {k: r["hash"] for k, r in rows_a.items()} != {k: r["hash"] for k, r in rows_b.items()}
    assert [r["final_test_acc"] for r in rows_a.values()] != [r["final_test_acc"] for r in rows_b.values()]
    o = run(c)
    assert "2 already done" in o.stdout, o.stdout
    assert summary_rows(env_out) == rows_a


@given(data=st.data())
@fuzz(5)
def test_generated_damage_to_a_run_folder_is_never_reused(pristine, case_dir, data):
    """Generated cases: one run file of one run, with one byte changed, bytes cut off its end, or bytes added."""
    cfg, made, expected = pristine
    tmp = case_dir()
    out = tmp / "out"
    shutil.copytree(made, out, symlinks=True)
    victim = run_of(out, data.draw(st.sampled_from(["none", "before"])), data.draw(st.sampled_from([0, 1])))
    path = victim / data.draw(st.sampled_from(sorted(p.name for p in victim.iterdir())))  # meta.json too
    raw = bytearray(path.read_bytes())
    how = data.draw(st.sampled_from(["flip", "cut", "append"]))
    if how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = (raw[i] + data.draw(st.integers(1, 255))) % 256
    elif how == "cut":
        del raw[len(raw) - data.draw(st.integers(1, len(raw))):]
    else:
        raw += data.draw(st.binary(min_size=1, max_size=20))
    path.write_bytes(bytes(raw))
    o = check(bncli(["train", cfg, *ARGS, "--out", out], cwd=tmp), "tamper", codes=(0,))
    assert victim.name in o.stdout + o.stderr, (path.name, how)
    assert summary_rows(out) == expected
