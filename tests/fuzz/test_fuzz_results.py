"""Damaged results folders through `bncli plot`: a file of a train, sweep, lrfind or report folder truncated, deleted,
replaced by garbage, or with a JSON value or a CSV cell of the wrong type. `bncli plot` either redraws (the damage
missed what it reads: exit 0) or says in one line which file is damaged (exit 2) — never a traceback.

Family "readers": every file `bncli plot` reads replaced by what no bounded reader may read whole (a 2 GB sparse
file, a link to /dev/zero, a FIFO, JSON nested 500 deep), a metrics.csv cut short, a figures.json of 10^4 and 10^6
figures: each is one line naming the file, exit 2, within the harness's time and memory."""

from __future__ import annotations

import json
import os
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


# -- readers: every file `bncli plot` reads, bounded -----------------------------------------------------------------
READS = {  # the files `bncli plot` reads in a folder of each kind (a glob: its first match)
    "train": ["experiment.json", "runs/*/metrics.csv"],
    "sweep": ["sweep.json", "range.csv", "ranges.csv"],
    "lrfind": ["lr_find.json", "lr_find.csv"],
    "report": ["report.json", "figures/figures.json"],
}


def _replaced(make):
    def edit(path: Path):
        path.unlink()
        make(path)
    return edit


def _sparse(path: Path):
    with open(path, "wb") as f:
        f.truncate(2 << 30)  # 2 GB that take no disk: refused from its size, before a byte is read


HOSTILE = {
    "sparse": _replaced(_sparse),
    "dev-zero": _replaced(lambda p: p.symlink_to("/dev/zero")),
    "fifo": _replaced(os.mkfifo),  # no writer: a plain open would wait forever
    "deep": lambda p: p.write_text("[" * 500 + "]" * 500),  # valid JSON, 500 levels
}
READER_CASES = [(kind, name, how) for kind, names in READS.items() for name in names for how in HOSTILE
                if how != "deep" or name.endswith(".json")]


def plot_damaged(folders, cwd: Path, kind: str, name: str, edit):
    """`bncli plot` on a copy of the ``kind`` folder whose file ``name`` was edited; (outcome, path edited)."""
    d = cwd / kind
    shutil.copytree(folders[kind], d)
    path = sorted(d.glob(name))[0]
    edit(path)
    return bncli(["plot", d, "--out", cwd / "figs"], cwd), path


@pytest.mark.parametrize("kind, name, how", READER_CASES,
                         ids=[f"{k}-{n.split('/')[-1]}-{h}" for k, n, h in READER_CASES])
def test_every_file_plot_reads_is_read_bounded(folders, case_dir, kind, name, how):
    o, path = plot_damaged(folders, case_dir(), kind, name, HOSTILE[how])
    check(o, "readers", says=str(path))


def _cut_after_last(chars: str):
    def edit(path: Path):
        text = path.read_text()
        path.write_text(text[:max(text.rstrip("\n").rfind(c) for c in chars) + 1])
    return edit


METRICS_CUTS = {
    "empty": lambda p: p.write_text(""),
    "mid-row": _cut_after_last(","),  # the row's last cell is empty (NaN): was read as data
    "mid-number": lambda p: p.write_text(p.read_text().rstrip("\n")[:-1]),  # 0.9731 read as 0.973
}


@pytest.mark.parametrize("how", list(METRICS_CUTS))
def test_a_metrics_csv_cut_short_is_damaged(folders, case_dir, how):
    o, path = plot_damaged(folders, case_dir(), "train", "runs/*/metrics.csv", METRICS_CUTS[how])
    check(o, "readers", says=str(path))
    assert "damaged" in o.stderr


def _figures(n: int):
    """figures.json holding ``n`` small figures that would each draw (as the paired-difference plot)."""
    def edit(path: Path):
        spec = ('{"name": "f%d", "claim": null, "draw": "bncli.report.figures.differences", "args": {"title": "t", '
                '"ylabel": "y", "rows": [["a", [0.1, 0.2], [0.15, 0.1, 0.2]]]}}')
        head = json.dumps({"format": "bncli-figure-specs", "version": 1})[:-1]
        path.write_text(head + ', "figures": [' + ",\n".join(spec % i for i in range(n)) + "]}\n")
    return edit


@pytest.mark.parametrize("n", [10_000, 1_000_000])
def test_figures_json_with_too_many_figures_is_damaged(folders, case_dir, n):
    o, path = plot_damaged(folders, case_dir(), "report", "figures/figures.json", _figures(n))
    check(o, "readers", says=str(path))
