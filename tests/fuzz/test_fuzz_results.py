"""Damaged results folders through `bncli plot`: a file of a train, sweep, lrfind or report folder truncated, deleted,
replaced by garbage, or with a JSON value or a CSV cell of the wrong type. `bncli plot` either redraws (the damage
missed what it reads: exit 0) or says in one line which file is damaged (exit 2) — never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_helpers import run_proc, write_config

from .harness import bncli, check, fuzz

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "results" / "report-quick"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """One small folder of each kind, made by the real commands."""
    tmp = tmp_path_factory.mktemp("results")
    cfg = write_config(tmp)
    made = {"train": tmp / "train", "sweep": tmp / "sweep", "lrfind": tmp / "lrfind"}
    for args in (["train", cfg, "train.seeds=2", "--out", made["train"], "-j", "1"],
                 ["sweep", cfg, "optimizer.lr=0.03,0.3", "train.seeds=2", "--out", made["sweep"], "-j", "1"],
                 ["lrfind", cfg, "--iters", "20", "--out", made["lrfind"]]):
        p = run_proc(args, cwd=tmp)
        assert p.returncode == 0, p.stderr
    # The published report's stored numbers (no run folders), with its figure specs cut to three of its twelve
    # figures: each case redraws every figure, and the three keep every kind of drawing (bars, range, curves).
    report = tmp / "report"
    (report / "figures").mkdir(parents=True)
    shutil.copy(REPORT / "report.json", report / "report.json")
    specs = json.loads((REPORT / "figures" / "figures.json").read_text())
    keep = {"c07_bias", "c10_range", "c01_learning_curves"}
    specs["figures"] = [f for f in specs["figures"] if f["name"] in keep]
    assert len(specs["figures"]) == len(keep)
    (report / "figures" / "figures.json").write_text(json.dumps(specs))
    made["report"] = report
    return made


def files_of(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and p.suffix in (".json", ".csv", ".yaml"))


JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=8),
                        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                             max_size=2))


def mutate_json(doc, draw, depth=0):
    """Replace one value somewhere in ``doc`` (walking down a random path)."""
    if isinstance(doc, dict) and doc and depth < 6:
        key = draw(st.sampled_from(sorted(doc)))
        if draw(st.booleans()):
            doc[key] = mutate_json(doc[key], draw, depth + 1)
        elif draw(st.booleans()):
            del doc[key]
        else:
            doc[key] = draw(JSON_VALUES)
        return doc
    if isinstance(doc, list) and doc and depth < 6:
        i = draw(st.integers(0, len(doc) - 1))
        doc[i] = mutate_json(doc[i], draw, depth + 1) if draw(st.booleans()) else draw(JSON_VALUES)
        return doc
    return draw(JSON_VALUES)


def damage(path: Path, draw):
    op = draw(st.sampled_from(["truncate", "delete", "garbage", "empty", "value", "value", "cell"]))
    text = path.read_bytes()
    if op == "truncate":
        path.write_bytes(text[:draw(st.integers(0, max(0, len(text) - 1)))])
    elif op == "delete":
        path.unlink()
    elif op == "garbage":
        path.write_bytes(draw(st.binary(max_size=200)))
    elif op == "empty":
        path.write_bytes(b"")
    elif op == "value" and path.suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError:
            return op
        path.write_text(json.dumps(mutate_json(doc, draw)))
    else:  # a CSV (or YAML) cell replaced
        lines = text.decode(errors="replace").splitlines()
        if len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 1))
            cells = lines[i].split(",")
            j = draw(st.integers(0, len(cells) - 1))
            cells[j] = draw(st.sampled_from(["", "x", "nan", "inf", "-1e999", "[1, 2]", '"', "None", "1" * 400]))
            lines[i] = ",".join(cells)
            path.write_text("\n".join(lines) + "\n")
    return op


@given(st.sampled_from(["train", "sweep", "lrfind", "report"]), st.data())
@fuzz(60)
def test_plot_on_a_damaged_folder(folders, case_dir, kind, data):
    cwd = case_dir()
    d = cwd / kind
    shutil.copytree(folders[kind], d)
    for _ in range(data.draw(st.integers(1, 2))):
        files = files_of(d)
        if files:
            damage(d / data.draw(st.sampled_from(files)), data.draw)
    o = bncli(["plot", d, "--out", cwd / "figs"], cwd)
    check(o, f"damaged {kind} folder (generated)", codes=(0, 2))


@pytest.mark.parametrize("kind", ["train", "sweep", "lrfind", "report"])
def test_plot_on_an_intact_folder_redraws(folders, case_dir, kind):
    cwd = case_dir()
    o = bncli(["plot", folders[kind], "--out", cwd / "figs", "--format", "svg"], cwd)
    check(o, "intact folder (control)", codes=(0,))
    assert list((cwd / "figs").rglob("*.svg"))
