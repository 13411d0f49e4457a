"""Hostile results folders through the real command line (bncli/runs/owner.py): a folder holding whatever a user,
another program or another bncli left there — files, folders, links, FIFOs, a damaged manifest or lock file — and a
folder another bncli is writing. Whatever is there, a command writes only where it owns: it exits 0 or says in one
line why not (exit 2; exit 1 for a folder in use), it never changes or removes a file bncli did not write, never
anything outside the folder, and what it leaves is the config and the tables of one invocation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from sweep_helpers import REPO, run_proc, write_config

from bncli.examples import SHIPPED

from .harness import bncli, check, fuzz, spawn, wait

NAMES = ["config.yaml", "summary.csv", "experiment.json", "sweep.json", "lr_find.json", "report.json",
         "learning_curves.png", "range.png", "notes.txt", "link", "figures", ".bncli.json", ".bncli.lock"]
KINDS = ["file", "file", "dir", "symlink", "dirlink", "dangling", "loop", "fifo"]
NEVER_WRITTEN = ("notes.txt", "link")  # names no command writes or removes: whatever is there stays as it is
COMMANDS = {"train": ["train", "{cfg}", "-j", "1"], "sweep": ["sweep", "{cfg}", "optimizer.lr=0.03,0.3", "-j", "1"],
            "lrfind": ["lrfind", "{cfg}", "--iters", "10"], "plot": ["plot", "{made}"]}


def make_entry(d: Path, name: str, kind: str, data: bytes, victim: Path):
    p = d / name
    if kind == "file":
        p.write_bytes(data)
    elif kind == "dir":
        p.mkdir()
        (p / "inside.txt").write_bytes(data)
    elif kind == "symlink":
        p.symlink_to(victim)
    elif kind == "dirlink":  # a folder outside: nothing may be removed through it
        p.symlink_to(victim.parent)
    elif kind == "dangling":
        p.symlink_to(d / "nowhere")
    elif kind == "loop":
        p.symlink_to(p)
    else:
        os.mkfifo(p)


def snapshot(d: Path) -> dict:
    """What is at each visible path of the folder (not the run cache): its bytes, or the kind of thing it is."""
    out = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = Path(root) / name
            rel = str(p.relative_to(d))
            if rel.split("/")[0] in ("runs", "failed") or any(part.startswith(".") for part in rel.split("/")):
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = p.read_bytes()
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = "other"
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A finished train folder (for `bncli plot`): copied into each case."""
    tmp = tmp_path_factory.mktemp("made")
    p = run_proc(["train", write_config(tmp), "train.seeds=1", "--out", tmp / "train", "-j", "1"], cwd=tmp)
    assert p.returncode == 0, p.stderr
    return tmp / "train"


MANIFESTS = st.one_of(
    st.binary(max_size=60),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
                 lambda c: st.one_of(st.lists(c, max_size=3), st.dictionaries(st.text(max_size=8), c, max_size=3)),
                 max_leaves=8).map(lambda v: json.dumps(v).encode()),
    st.builds(lambda kind, rel, sha: json.dumps({"kind": kind, "files": {rel: [sha]}}).encode(),
              st.sampled_from(["train", "sweep", "report", "plot", "nope"]),
              st.sampled_from(["../victim.txt", "/tmp/victim.txt", "link/victim.txt", "config.yaml", "runs/x",
                               "a//b", ".hidden"]),
              st.sampled_from(["0" * 64, "x", "A" * 64])))


@given(st.sampled_from(sorted(COMMANDS)), st.booleans(),
       st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(KINDS), st.binary(max_size=40)), max_size=4,
                unique_by=lambda t: t[0]),
       st.none() | MANIFESTS)
@fuzz(10)
def test_a_folder_of_anything_is_written_only_where_bncli_owns(case_dir, made, command, force, entries, manifest):
    cwd = case_dir()
    d = cwd / "out"
    if command == "plot":
        shutil.copytree(made, d, symlinks=True)
    else:
        d.mkdir()
    victim = cwd / "victim.txt"
    victim.write_text("outside the folder")
    (cwd / "exists").write_text("a file beside the folder")
    for name, kind, data in entries:
        if not (d / name).exists() and not (d / name).is_symlink():
            make_entry(d, name, kind, data, victim)
    if manifest is not None and not (d / ".bncli.json").is_symlink() and not (d / ".bncli.json").is_dir():
        (d / ".bncli.json").unlink(missing_ok=True)
        (d / ".bncli.json").write_bytes(manifest)
    before = snapshot(d)
    args = [a.format(cfg=write_config(cwd), made=d) for a in COMMANDS[command]]
    o = bncli([*args, *([] if command == "plot" else ["--out", d]), *(["--force"] if force else [])], cwd)
    check(o, "ownership (generated)", codes=(0, 2))
    assert victim.read_text() == "outside the folder" and (cwd / "exists").exists()
    after = snapshot(d)
    changed = [rel for rel, v in before.items() if after.get(rel) != v]
    assert not [rel for rel in changed if rel.split("/")[0] in NEVER_WRITTEN], (o.stderr, changed)
    if not force:
        # without --force only bncli's own files may change: here only a plotted folder's figure, which its
        # manifest (when the case left it in place) lists
        own = {"learning_curves.png"} if command == "plot" and manifest is None else set()
        assert set(changed) <= own, (o.stderr, changed)


def corpus_case(case: str, cwd: Path, made: Path) -> tuple[list, str]:
    """(arguments, what the error line must say) of a hand-made case."""
    cfg = write_config(cwd)
    d = cwd / "out"
    if case == "user's files":
        d.mkdir()
        (d / "config.yaml").write_text("name: mine\n")
        (d / "summary.csv").write_text("a,b\n")
        return ["train", cfg, "--out", d], "holds files bncli did not write (config.yaml; summary.csv)"
    if case == "another kind":
        shutil.copytree(made, d)
        return ["sweep", cfg, "optimizer.lr=0.03,0.3", "--out", d], "holds the results of bncli train"
    if case == "shipped experiments":
        return ["train", cfg, "--out", SHIPPED, "--force"], "inside the experiments shipped with bncli"
    if case == "lrfind --end inf":
        return ["lrfind", cfg, "--end", "inf", "--out", d], "--end inf: expected a finite number"
    command = case.split()[-1]  # --out '' of each command
    args = {"train": ["train", cfg], "sweep": ["sweep", cfg, "optimizer.lr=0.03,0.3"], "lrfind": ["lrfind", cfg],
            "report": ["report", "--only", "C7", "--experiments", c07_experiments(cwd / "exps")],
            "plot": ["plot", made]}[command]
    return [*args, "--out", ""], "--out '': empty"


@pytest.mark.parametrize("case", ["user's files", "another kind", "shipped experiments", "lrfind --end inf",
                                  "empty --out train", "empty --out sweep", "empty --out lrfind",
                                  "empty --out report", "empty --out plot"])
def test_refused_places_are_one_line_and_untouched(case_dir, made, case):
    cwd = case_dir()
    args, says = corpus_case(case, cwd, made)
    before, shipped = snapshot(cwd), sorted(os.listdir(SHIPPED))
    try:
        check(bncli(args, cwd), "ownership (corpus)", codes=(2,), says=says)
        assert snapshot(cwd) == before and sorted(os.listdir(SHIPPED)) == shipped
    finally:  # whatever a broken bncli wrote into the shipped experiments goes (they are the checkout's own)
        for name in set(os.listdir(SHIPPED)) - set(shipped):
            p = SHIPPED / name
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


# -- a folder in use -----------------------------------------------------------------------------------------------------
HOLDER = """
import sys
from bncli.runs.owner import claim
with claim(sys.argv[1], "train"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def c07_experiments(dest: Path) -> Path:
    doc = yaml.safe_load((REPO / "experiments" / "c07_bias.yaml").read_text())
    doc.update(data={"name": "synthetic", "synthetic": {"n_train": 240, "n_test": 120, "n_features": 8,
                                                        "n_classes": 3}}, full=[])
    doc["train"].update(seeds=2, batch_size=30, steps=30)
    doc["train"].pop("epochs", None)
    dest.mkdir()
    (dest / "c07_bias.yaml").write_text(yaml.safe_dump(doc))
    return dest


@pytest.mark.parametrize("command", ["train", "sweep", "lrfind", "report", "plot", "plot --out"])
def test_every_writer_refuses_a_folder_in_use(case_dir, made, command):
    cwd = case_dir()
    d = cwd / "out"
    shutil.copytree(made, d)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(d)
        cfg = write_config(cwd)
        args = {"train": ["train", cfg, "--out", d], "sweep": ["sweep", cfg, "optimizer.lr=0.03,0.3", "--out", d],
                "lrfind": ["lrfind", cfg, "--out", d, "--force"],
                "report": ["report", "--only", "C7", "--experiments", c07_experiments(cwd / "exps"), "--out", d,
                           "--force"],
                "plot": ["plot", d], "plot --out": ["plot", made, "--out", d, "--force"]}[command]
        o = check(bncli(args, cwd), "concurrency (corpus)", codes=(1,), says=f"is in use by another bncli (pid "
                                                                             f"{holder.pid}, started ")
        assert "wait for it to finish or choose another --out" in o.stderr
        assert snapshot(d) == before
    finally:
        holder.kill()
        holder.wait()


@given(st.floats(0.0, 2.5))
@fuzz(3)
def test_two_trains_at_any_moment_leave_one_invocations_results(case_dir, delay):
    """A second train (another config) started at any moment while a first runs: refused naming the first, or run
    after it; the folder ends with the config and tables of one invocation, never a mix."""
    cwd = case_dir()
    cfg = write_config(cwd)
    out = cwd / "out"
    first = spawn(["train", cfg, "train.steps=8000", "--out", out, "-j", "1"], cwd)
    time.sleep(delay)
    second = bncli(["train", cfg, "train.steps=50", "train.seeds=1", "--out", out, "-j", "1"], cwd)
    first = wait(*first, timeout=120)
    check(first, "concurrency (generated)", codes=(0, 1))
    check(second, "concurrency (generated)", codes=(0, 1))
    assert 0 in (first.code, second.code)
    for o in (first, second):
        if o.code == 1:
            assert "is in use by another bncli (pid " in o.stderr
    from bncli.config import load_config

    cfg_used, _ = load_config(out / "config.yaml")
    exp = json.loads((out / "experiment.json").read_text())
    assert cfg_used.hash() == exp["config_hash"]
