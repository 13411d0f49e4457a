"""`bncli report` end to end on a shrunken copy of the claim experiments (experiments/c*.yaml): every claim measured,
judged by the pre-registered rule, pictured and written to REPORT.md / report.html / report.json; runs shared between
studies and reused when the report is made again; `--only`; `bncli plot` on a report directory; the command line."""

from __future__ import annotations

import base64
import copy
import json
import math
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from bncli.cli import app
from bncli.errors import UsageError
from bncli.report import IN_PROCESS, STUDIES, load_study, plan_report, plot_report, run_report
from bncli.report.verdict import combine, Effect

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
VERDICTS = {"supported", "contradicted", "inconclusive"}
DATA = {"name": "synthetic", "synthetic": {"n_train": 240, "n_test": 120, "n_features": 8, "n_classes": 3}}


# -- the tiny experiments folder --------------------------------------------------------------------------------------
def shrink(name: str, doc: dict) -> dict:
    """A claim experiment with the same structure (arms, swept keys, measures) on a few seconds' budget."""
    d = copy.deepcopy(doc)
    d["data"] = copy.deepcopy(DATA)
    d["full"] = []
    m, t = d["model"], d["train"]
    if m.get("conv"):  # images: 240/120 bundled digits, one small convolution block
        d["data"] = {"name": "mnist-5k", "limit_train": 240, "limit_test": 120}
        m["conv"] = [{"channels": 2, "kernel": 5, "pool": 4, "pool_type": "avg"}]
    if "hidden" in m:
        m["hidden"] = [16, 16]
    else:
        assert "width" in m and "depth" in m, name
        m["width"] = 8
    t["seeds"] = 3
    if "steps" in t:
        t["steps"] = 60
        t["eval_every"] = 20
    else:
        t["epochs"] = 1
    if "percentile_images" in t:
        t["percentile_images"] = 100  # <= n_test
    params = (d.get("sweep") or {}).get("parameters", {})
    for p in params.values():
        if "values" in p:
            p["values"] = p["values"][:2]
    special = {
        "c02_lr_range": {"optimizer.lr": {"min": 1e-3, "max": 1e-1, "scale": "log", "per_decade": 1}},
        "c03_init_scale": {"model.init_std": {"min": 1e-2, "max": 1.0, "scale": "log", "per_decade": 1}},
        "c04_regularization": {"train.batch_size": {"values": [16, 64]}},
        "c05_test_time": {"model.bn_decay": {"values": [0.9, 0.99]}},
        "c10_depth": {"model.depth": {"values": [2, 3]}},
        "c11_batch_size": {"train.batch_size": {"values": [4, 64]}},  # 64: the reference batch of the analysis
    }
    for key, p in special.get(name, {}).items():
        assert key in params, f"{name}: {key} is no longer swept"
        params[key] = p
    if name == "c04_regularization":
        t["epochs"] = 3
    return d


def write_experiments(dest: Path) -> dict:
    dest.mkdir(parents=True, exist_ok=True)
    docs = {n: shrink(n, yaml.safe_load((REPO / "experiments" / f"{n}.yaml").read_text())) for n in STUDIES}
    # c06 re-reads the runs of c01: identical apart from name, description and bn
    c06 = copy.deepcopy(docs["c01_faster_training"])
    for k in ("name", "description"):
        c06[k] = docs["c06_placement"][k]
    c06["model"]["bn"] = docs["c06_placement"]["model"]["bn"]
    docs["c06_placement"] = c06
    for n, d in docs.items():
        (dest / f"{n}.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    return docs


def grid_size(p: dict) -> int:
    if "values" in p:
        return len(p["values"])
    return int(math.floor(math.log10(p["max"] / p["min"]) * p["per_decade"] + 1e-9)) + 1


def n_runs(doc: dict) -> int:
    """Arms x seeds x points; without BN a swept bn_per is moot, so that arm is trained once per other point."""
    params = (doc.get("sweep") or {}).get("parameters", {})
    points = math.prod(grid_size(p) for p in params.values())
    arms = doc["model"]["bn"]
    if "model.bn_per" in params and "none" in arms:
        per = grid_size(params["model.bn_per"])
        return doc["train"]["seeds"] * ((len(arms) - 1) * points + points // per)
    return len(arms) * doc["train"]["seeds"] * points


@pytest.fixture(scope="module")
def exp(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    docs = write_experiments(root / "exp")
    return root / "exp", docs


@pytest.fixture(scope="module")
def report(exp, tmp_path_factory):
    """The report made once; its report.json as it was after the first run."""
    out = tmp_path_factory.mktemp("report") / "rep"
    claims = run_report("quick", out_dir=out, experiments=exp[0], workers=1)
    info = json.loads((out / "report.json").read_text())
    return out, claims, info


@pytest.fixture(scope="module")
def rerun(exp, report):
    """`bncli report` again on the same folder, through the command line."""
    out, _, first = report
    r = CliRunner().invoke(app, ["report", "--quick", "--experiments", str(exp[0]), "--out", str(out), "-j", "1"])
    second = json.loads((out / "report.json").read_text())
    return r, first, second


def _num(v):
    return math.nan if v is None else float(v)


# -- the verdict rule, re-derived from report.json --------------------------------------------------------------------
def rule_directional(lo, hi, direction):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    lo, hi = min(direction * lo, direction * hi), max(direction * lo, direction * hi)
    return "supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"


def rule_equivalence(lo, hi, margin):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if -margin < lo and hi < margin:
        return "supported"
    if lo > margin or hi < -margin:
        return "contradicted"
    return "inconclusive"


# The deterministic checks, with the thresholds the claims pre-register (CLAIMS.md / the claims' rules).
CHECKS = {
    ("C5", "single-example eval = batched eval"): lambda v: v == 1.0,
    ("C7", "max |dL/d bias|"): lambda v: v < 1e-10,
    ("C7", "max relative change of the logits"): lambda v: v < 1e-10,
    ("C8", "float64:"): lambda v: v < 1e-12,
    ("C8", "float32:"): lambda v: v < 1e-5,
    ("C12", "folded outputs"): lambda v: v < 1e-5,
    ("C13", "conv BN gammas per channel, minus C per layer"): lambda v: v == 0,
    ("C13", "conv BN gammas per activation, minus H*W*C per layer"): lambda v: v == 0,
}


def derive(cid, e) -> str | None:
    lo, hi = _num(e["ci_low"]), _num(e["ci_high"])
    if e["margin"] is not None:
        return rule_equivalence(lo, hi, e["margin"])
    if e["direction"]:
        return rule_directional(lo, hi, e["direction"])
    check = [f for (c, prefix), f in CHECKS.items() if c == cid and e["label"].startswith(prefix)]
    if check:
        assert e["n"] == 1 and _num(e["mean"]) == lo == hi, e
        return "supported" if check[0](_num(e["mean"])) else "contradicted"
    return None  # reported, not judged


def rule_combine(verdicts):
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    return "contradicted" if "contradicted" in verdicts else "inconclusive"


def test_report_files_and_every_claim(report):
    out, claims, info = report
    for name in ("REPORT.md", "report.html", "report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert [c["id"] for c in info["claims"]] == [f"C{i}" for i in range(1, 17)]
    assert [c.id for c in claims] == [c["id"] for c in info["claims"]]
    assert info["mode"] == "quick" and info["studies"] == STUDIES and info["failed"] == []
    for c in info["claims"]:
        assert c["verdict"] in VERDICTS, c["id"]
        assert c["primary"] and all(0 <= i < len(c["effects"]) for i in c["primary"]), c["id"]
        assert c["rule"] and c["statement"] and c["protocol"], c["id"]


def test_every_verdict_follows_the_rule_from_the_json_numbers(report):
    _, _, info = report
    for c in info["claims"]:
        for e in c["effects"]:
            expected = derive(c["id"], e)
            if expected is not None:
                assert e["verdict"] == expected, (c["id"], e)
        primary = [c["effects"][i] for i in c["primary"]]
        derived = [derive(c["id"], e) for e in primary]
        assert None not in derived, (c["id"], "a primary effect that is not judged")
        # a manipulation check that is not supported makes the claim inconclusive (CLAIMS.md, verdict rule)
        checked = all(derive(c["id"], c["effects"][i]) == "supported" for i in c["requires"])
        assert c["verdict"] == (rule_combine(derived) if checked else "inconclusive"), c["id"]
        as_effects = [Effect(e["label"], e["n"], _num(e["mean"]), _num(e["sd"]), _num(e["ci_low"]),
                             _num(e["ci_high"]), verdict=v) for e, v in zip(primary, derived)]
        assert c["verdict"] == (combine(as_effects) if checked else "inconclusive"), c["id"]
    assert any(c["requires"] for c in info["claims"])  # C14's check is in the json


def test_the_paired_effects_have_t_intervals(report):
    """The numbers of a paired effect hang together: mean inside its interval, half-width t * sd / sqrt(n)."""
    from bncli.stats import t975

    _, _, info = report
    checked = 0
    for c in info["claims"]:
        for e in c["effects"]:
            if not e["method"].startswith("paired t-interval") or e["n"] < 2 or e["sd"] is None:
                continue
            h = t975(e["n"] - 1) * e["sd"] / math.sqrt(e["n"])
            assert e["ci_low"] == pytest.approx(e["mean"] - h, abs=1e-12) and \
                e["ci_high"] == pytest.approx(e["mean"] + h, abs=1e-12), (c["id"], e)
            checked += 1
    assert checked >= 10


def test_runs_are_shared_between_studies_and_trained_once(report, exp):
    out, _, info = report
    root, docs = exp
    hashes = {n: {r.hash for r in load_study(root, n, False, out / "runs").runs} for n in STUDIES
              if n not in IN_PROCESS}
    union = set().union(*hashes.values())
    assert hashes["c06_placement"] == hashes["c01_faster_training"]  # C6 re-reads the C1 runs
    for n, h in hashes.items():
        assert len(h) == n_runs(docs[n]), n
    expected = sum(n_runs(docs[n]) for n in hashes) - n_runs(docs["c06_placement"])
    assert info["n_trained"] == len(union) == expected
    on_disk = sorted(p.name for p in (out / "runs").iterdir() if not p.name.startswith("."))
    assert on_disk == sorted(union)
    assert all((out / "runs" / h / "summary.json").is_file() for h in union)


def test_figures_are_pngs_and_embedded_in_the_html(report):
    out, _, info = report
    figures = [Path(f) for c in info["claims"] for f in c["figures"]]
    assert len(figures) >= 10
    assert len(set(figures)) == len(figures)
    for f in figures:
        assert f.is_file(), f
        data = f.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, f
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted([f.name for f in figures] + ["figures.json"])
    for c in info["claims"]:
        if c["id"] != "C8":  # C8 is a computation without runs
            assert c["figures"], c["id"]

    page = (out / "report.html").read_text()
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', page)
    assert len(srcs) == len(figures)
    embedded = sorted(base64.b64decode(s.split(",", 1)[1]) for s in srcs if s.startswith("data:image/png;base64,"))
    assert len(embedded) == len(srcs)  # nothing external
    assert embedded == sorted(f.read_bytes() for f in figures)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # embedded, or a link within the page
    assert "<script" not in page and "<link" not in page


def test_report_md_summary_and_errata(report):
    out, _, info = report
    md = (out / "REPORT.md").read_text()
    summary = md.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in summary.splitlines() if re.match(r"\| C\d+: ", ln)]
    assert len(rows) == len(info["claims"]) == 16
    for row, c in zip(rows, info["claims"]):
        cells = [x.strip() for x in row.strip("|").split(" | ")]
        assert cells[0] == f"{c['id']}: {c['title']}"
        assert cells[1].endswith(c["verdict"]), (cells, c["verdict"])
    for c in info["claims"]:
        assert f"## {c['id']}: {c['title']}" in md
        for f in c["figures"]:
            assert f"](figures/{Path(f).name})" in md

    assert "## Errors in the notes that bncli corrects" in md
    errata = md.split("## Errors in the notes that bncli corrects", 1)[1]
    row = next(ln for ln in errata.splitlines() if ln.startswith("| 000 | Backward pass"))
    m = re.search(r"relative error of ([0-9.]+); bncli's ([0-9.e+-]+)\.", row)
    assert m, row
    assert float(m.group(1)) > 0.1  # the note's gradient is wrong
    assert float(m.group(2)) < 1e-5  # bncli's agrees with central differences
    assert info["errata"]["naive_err"] == pytest.approx(float(m.group(1)), abs=0.006)
    assert "| 003 |" in errata and "| 004 |" in errata


def test_c10_effects_are_not_duplicated(report):
    _, _, info = report
    c10 = next(c for c in info["claims"] if c["id"] == "C10")
    labels = [e["label"] for e in c10["effects"]]
    assert len(labels) == len(set(labels)), labels
    assert len(c10["primary"]) == len(set(c10["primary"])) == 2  # one per activation


# -- running the report again, through the command line -----------------------------------------------------------------
def test_cli_report_prints_the_claims_table(rerun):
    r, _, second = rerun
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    text = " ".join(r.stdout.split())
    assert f"report (quick): {len(STUDIES)} studies" in text and "0 to train" in text
    table = r.stdout.split("claims", 1)[1]
    lines = [ln for ln in table.splitlines() if re.search(r"\bC\d+\b", ln)]
    for c in second["claims"]:
        line = next((ln for ln in lines if re.search(rf"\b{c['id']}\b", ln)), None)
        assert line is not None, (c["id"], table)
        assert c["verdict"] in line, (line, c["verdict"])
    assert "wrote" in text and "REPORT.md" in text


def test_second_run_trains_nothing_and_reproduces_the_numbers(rerun):
    r, first, second = rerun
    assert r.exit_code == 0, r.output
    assert first["n_trained"] > 0 and second["n_trained"] == 0
    assert [c["id"] for c in second["claims"]] == [c["id"] for c in first["claims"]]
    keys = ("label", "n", "mean", "sd", "ci_low", "ci_high", "direction", "margin", "verdict")
    for a, b in zip(first["claims"], second["claims"]):
        if a["id"] == "C12":  # timings
            continue
        assert [[e[k] for k in keys] for e in a["effects"]] == [[e[k] for k in keys] for e in b["effects"]], a["id"]
        assert a["verdict"] == b["verdict"] and a["primary"] == b["primary"]
    assert first["errata"]["naive_err"] == second["errata"]["naive_err"]


# -- --only ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def only_c07(exp, tmp_path_factory):
    out = tmp_path_factory.mktemp("only") / "rep"
    claims = run_report("quick", out_dir=out, experiments=exp[0], workers=1, only=["c07"])
    return out, claims, json.loads((out / "report.json").read_text())


def test_only_restricts_the_claims(only_c07, exp):
    out, claims, info = only_c07
    assert [c.id for c in claims] == ["C7"]
    assert [c["id"] for c in info["claims"]] == ["C7"] and info["studies"] == ["c07_bias"]
    assert info["n_trained"] == n_runs(exp[1]["c07_bias"])
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["c07_bias.png", "figures.json"]
    assert not (out / "studies" / "c01_faster_training").exists()
    md = (out / "REPORT.md").read_text()
    assert "## C7: " in md and not re.search(r"^## C(?!7:)\d+: ", md, re.M)


def _selected(exp_dir, out, only):
    """The studies run_report would run for ``only`` (planned by `plan_report`, nothing trained)."""
    return list(plan_report("quick", out_dir=out, experiments=exp_dir, only=only)[1])


def test_only_accepts_the_study_prefixes(exp, tmp_path):
    assert _selected(exp[0], tmp_path / "o", ["c01"]) == ["c01_faster_training"]
    assert _selected(exp[0], tmp_path / "o", ["C12", "c07"]) == ["c07_bias", "c12_cost"]
    with pytest.raises(UsageError, match="no claim matches"):
        run_report("quick", out_dir=tmp_path / "o", experiments=exp[0], only=["c99"])


@pytest.mark.parametrize("only, expected", [
    (["C1"], ["c01_faster_training"]),
    (["c1"], ["c01_faster_training"]),
    (["C7"], ["c07_bias"]),
    (["C10", "c2"], ["c02_lr_range", "c10_depth"]),
    (["c07_bias"], ["c07_bias"]),
])
def test_only_accepts_the_claim_ids_of_the_report(exp, tmp_path, only, expected):
    assert _selected(exp[0], tmp_path / "o", only) == expected


# -- errors ------------------------------------------------------------------------------------------------------------
def test_missing_experiments_folder_is_a_usage_error(tmp_path):
    out = tmp_path / "rep"
    with pytest.raises(UsageError, match="--experiments"):
        run_report("quick", out_dir=out, experiments=tmp_path / "nowhere", workers=1)
    assert not out.exists()
    r = CliRunner().invoke(app, ["report", "--experiments", str(tmp_path / "nowhere"), "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "error:" in r.stderr and "nowhere" in r.stderr and "Traceback" not in r.output
    assert not out.exists()


# -- an edited study that lacks what its analysis reads: refused when loaded, before anything is trained --------------
def _drop_sweep(d):
    d.pop("sweep")


def _add_sweep(d):
    d["sweep"] = {"parameters": {"optimizer.lr": {"values": [0.1, 0.5]}}}


def _set(path, value):
    def edit(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value
    return edit


STUDY_EDITS = [  # (study, edit, claim to select, fragments of the message)
    ("c01_faster_training", _drop_sweep, "C1", ["sweep: the analysis of c01_faster_training needs a sweep section "
                                                "sweeping model.activation, optimizer.lr; this study has none"]),
    ("c01_faster_training", _set(["sweep", "parameters", "model.activation", "values"], ["relu"]), "C1",
     ["sweep.parameters.model.activation:", "compares sigmoid, relu", "missing sigmoid"]),
    ("c06_placement", _set(["model", "bn"], ["none", "before"]), "C6",
     ["model.bn: the analysis of c06_placement compares exactly the arms [none, before, after]"]),
    ("c02_lr_range", _set(["sweep", "parameters", "model.depth"], {"values": [2, 3]}), "C2",
     ["sweep.parameters: the analysis of c02_lr_range sweeps exactly optimizer.name, optimizer.lr"]),
    ("c02_lr_range", _set(["sweep", "range_key"], "optimizer.name"), "C2",
     ["sweep.range_key: the analysis of c02_lr_range reads the usable range of optimizer.lr"]),
    ("c03_init_scale", _drop_sweep, "C3", ["needs a sweep section sweeping model.init_std"]),
    ("c04_regularization", _set(["train", "eval_train"], False), "C4", ["train.eval_train:", "eval_train: true"]),
    ("c05_test_time", _set(["train", "measure"], []), "C5", ["train.measure:", "eval_variants"]),
    ("c07_bias", _set(["sweep", "parameters", "model.bias_with_bn", "values"], [False]), "C7", ["missing true"]),
    ("c07_bias", _set(["model", "bn"], ["none", "before"]), "C7", ["compares exactly the arms [before]"]),
    ("c08_gamma_beta", _add_sweep, "C8", ["sweep: the analysis of c08_gamma_beta takes no sweep"]),
    ("c09_covariate_shift", _add_sweep, "C9", ["takes no sweep"]),
    ("c10_depth", _set(["sweep", "parameters"], {"model.depth": {"values": [2, 3]}}), "C10",
     ["sweeps exactly model.activation, model.depth; this study sweeps model.depth"]),
    ("c11_batch_size", _drop_sweep, "C11", ["needs a sweep section sweeping train.batch_size"]),
    ("c12_cost", _set(["model", "bn"], ["before"]), "C12", ["compares exactly the arms [none, before]"]),
]


@pytest.mark.parametrize("study, edit, cid, fragments", STUDY_EDITS, ids=[f"{s[:3]}-{i}" for i, (s, *_) in
                                                                         enumerate(STUDY_EDITS)])
def test_a_study_lacking_what_its_analysis_reads_is_refused_before_training(exp, tmp_path, monkeypatch, study, edit,
                                                                            cid, fragments):
    folder = tmp_path / "exp"
    shutil.copytree(exp[0], folder)
    doc = yaml.safe_load((folder / f"{study}.yaml").read_text())
    edit(doc)
    (folder / f"{study}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def no_training(*a, **k):
        raise AssertionError("nothing may be trained for a refused study")

    monkeypatch.setattr("bncli.report.dispatch", no_training)
    out = tmp_path / "rep"
    with pytest.raises(UsageError) as e:
        plan_report("quick", out_dir=out, experiments=folder, only=[cid])
    msg = str(e.value)
    assert msg.startswith(str(folder / f"{study}.yaml")), msg
    for f in fragments:
        assert f in msg, (f, msg)
    r = CliRunner().invoke(app, ["report", "--only", cid, "--experiments", str(folder), "--out", str(out), "-j", "1"])
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"{study}.yaml" in r.stderr and "Traceback" not in r.output
    assert not out.exists()


@pytest.mark.parametrize("full", [False, True])
def test_the_shipped_studies_have_what_their_analyses_read(full):
    from bncli.config import load_config
    from bncli.report import STUDY_NEEDS, check_study

    assert list(STUDY_NEEDS) == STUDIES
    for name in STUDIES:
        path = REPO / "experiments" / f"{name}.yaml"
        cfg, src = load_config(path)
        if full and cfg.full:
            cfg, src = load_config(path, cfg.full)
        check_study(name, cfg, src)


# -- bncli plot on a report ---------------------------------------------------------------------------------------------
def test_plot_redraws_the_report_figures(report, tmp_path):
    src, _, info = report
    d = tmp_path / "copy"
    shutil.copytree(src, d)
    names = sorted(Path(f).name for c in info["claims"] for f in c["figures"])
    for p in (d / "figures").glob("*.png"):
        p.unlink()
    r = CliRunner().invoke(app, ["plot", str(d)])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (d / "figures").iterdir()) == sorted(names + ["figures.json"])
    for n in names:
        data = (d / "figures" / n).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 1000, n
    assert r.stdout.count("wrote") == len(names)


def test_plot_report_as_svg_into_out(only_c07, tmp_path):
    src = only_c07[0]
    out = tmp_path / "svg"
    r = CliRunner().invoke(app, ["plot", str(src), "--format", "svg", "--out", str(out)])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in (out / "figures").iterdir())
    assert files == ["c07_bias.svg"]
    head = (out / "figures" / "c07_bias.svg").read_bytes()[:200].lstrip()
    assert head.startswith(b"<svg") or head.startswith(b"<?xml")
    assert not list((src / "figures").glob("*.svg"))


def _snapshot(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in d.rglob("*") if p.is_file()}


def test_plot_report_with_out_leaves_the_report_alone(only_c07, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(only_c07[0], d)
    before = _snapshot(d)
    r = CliRunner().invoke(app, ["plot", str(d), "--out", str(tmp_path / "elsewhere")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "elsewhere" / "figures" / "c07_bias.png").is_file()
    assert _snapshot(d) == before


def test_plot_report_from_another_working_directory(exp, tmp_path, monkeypatch):
    monkeypatch.chdir(exp[0].parent)
    out = tmp_path / "rep"
    run_report("quick", out_dir=out, experiments=exp[0].name, workers=1, only=["c07"])  # relative, as the default
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = CliRunner().invoke(app, ["plot", str(out), "--out", str(tmp_path / "figs")])
    assert r.exit_code == 0, r.output
    assert is_png_file(tmp_path / "figs" / "figures" / "c07_bias.png")


def is_png_file(p: Path) -> bool:
    return p.is_file() and p.read_bytes()[:8] == PNG_MAGIC


# -- figure specs: `bncli plot` redraws a report from its stored numbers alone ------------------------------------------
def test_every_figure_has_its_spec_in_strict_json(report):
    from bncli.report.figspec import DRAWERS

    out, _, info = report

    def no_constant(name):
        raise ValueError(f"non-standard JSON constant {name}")

    doc = json.loads((out / "figures" / "figures.json").read_text(), parse_constant=no_constant)
    claim_of = {Path(f).stem: c["id"] for c in info["claims"] for f in c["figures"]}
    assert [s["name"] for s in doc["figures"]] == list(claim_of)  # one spec per figure, in the report's order
    for s in doc["figures"]:
        assert s["draw"] in DRAWERS and s["claim"] == claim_of[s["name"]] and "path" not in s["args"], s["name"]


@contextmanager
def _moved_away(*paths):
    """Each path renamed to a sibling while the block runs, then put back."""
    moved = []
    try:
        for p in paths:
            away = p.with_name(p.name + ".away")
            p.rename(away)
            moved.append((p, away))
        yield
    finally:
        for p, away in moved:
            away.rename(p)


def test_plot_redraws_the_report_from_its_figure_specs_alone(report, exp, tmp_path, monkeypatch):
    """The published report (no runs/), with the experiments folder and the run folders gone, and training, timing,
    data loading and analysis forbidden: every figure is redrawn, each PNG byte for byte the report's own (both are
    drawn from the same spec by the same code)."""
    src, _, info = report
    d = tmp_path / "published"
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("runs"))

    def forbidden(*a, **k):
        raise AssertionError("bncli plot on a report must not analyse, train, time or load data")

    for target in ("bncli.report.registry.analyse", "bncli.report.cost.measure_cost", "bncli.report.cost.train_run",
                   "bncli.report.mechanisms.dataset_for", "bncli.report.cost.dataset_for"):
        monkeypatch.setattr(target, forbidden)
    empty = tmp_path / "cwd"
    empty.mkdir()
    monkeypatch.chdir(empty)  # no ./experiments to fall back on either
    with _moved_away(exp[0], src / "runs"):
        r = CliRunner().invoke(app, ["plot", str(d), "--out", str(tmp_path / "re")])
    assert r.exit_code == 0, r.output
    names = sorted(Path(f).name for c in info["claims"] for f in c["figures"])
    assert len(names) >= 10
    assert sorted(p.name for p in (tmp_path / "re" / "figures").iterdir()) == names
    for n in names:
        assert (tmp_path / "re" / "figures" / n).read_bytes() == (d / "figures" / n).read_bytes(), n


def test_plot_on_a_report_without_figure_specs_asks_for_bncli_report(only_c07, tmp_path):
    d = tmp_path / "older"
    shutil.copytree(only_c07[0], d)
    (d / "figures" / "figures.json").unlink()
    with pytest.raises(UsageError, match=r"figures\.json.*run `bncli report` again"):
        plot_report(d, d, "png")
    r = CliRunner().invoke(app, ["plot", str(d)])
    assert r.exit_code == 2, r.output
    assert "bncli report" in r.stderr and "Traceback" not in r.output


# -- the C12 measurement ------------------------------------------------------------------------------------------------
def test_c12_times_the_projects_train_step_at_lr_0_and_keeps_the_model(exp, monkeypatch):
    from bncli.config import load_config
    from bncli.report import cost

    cfg, _ = load_config(exp[0] / "c12_cost.yaml")
    models, opts, data = cost.trained_models(cfg)
    X, y = data.X_train[:cfg.train.batch_size], data.y_train[:cfg.train.batch_size]
    weights = {a: {k: v.copy() for k, v in m.params.items()} for a, m in models.items()}
    lrs = []
    real = cost.train_step
    monkeypatch.setattr(cost, "train_step", lambda m, o, xb, yb, lr: lrs.append(lr) or real(m, o, xb, yb, lr))
    jobs = cost.timing_jobs(models, opts, models["before"].folded_layers(), X, y, data.X_test)
    assert list(jobs) == ["step_none", "step_bn", "bn_fwd_bwd", "infer_bn", "infer_folded", "infer_none"]
    times = cost.interleaved_times(jobs, reps=2)
    assert all(len(v) == 2 and min(v) > 0 for v in times.values())
    assert lrs and set(lrs) == {0.0}  # every timed training step is train_step, at learning rate 0
    for a, m in models.items():
        for k, v in m.params.items():
            np.testing.assert_array_equal(v, weights[a][k], err_msg=f"{a} {k}")
    buffers = models["before"].get_buffers()
    acc = cost.note003_accuracy(models["before"], data.X_test, data.y_test)
    assert list(acc) == ["note003_log_acc", "correct_acc"] and all(0 <= v <= 1 for v in acc.values())
    for k, v in models["before"].get_buffers().items():
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)  # the running statistics are restored


def test_every_claim_carries_its_leave_one_seed_out_stability(report):
    out, claims, info = report
    text = (out / "REPORT.md").read_text()
    assert "nan" not in text.lower().replace("nans", "")  # no 'nan' in the prose (units 'nats' aside)
    for c in info["claims"]:
        st = c["stability"]
        if c["id"] == "C12":
            assert st["applicable"] is False
            continue
        assert st["applicable"] and len(st["verdicts"]) == 3, c["id"]  # the shrunken studies have 3 seeds
        changed = {int(k) if isinstance(k, str) else k: v for k, v in st["verdicts"].items() if v != c["verdict"]}
        assert st["fragile"] == bool(changed) == c["fragile"], c["id"]
        if c["fragile"]:
            assert "**fragile**: leaving out seed" in text


def test_stability_marks_a_verdict_that_one_seed_carries_as_fragile():
    """Hand-made: one outlying seed decides the verdict, so the claim is fragile."""
    from types import SimpleNamespace

    from bncli.report.claim import Claim
    from bncli.report.registry import leave_one_seed_out
    from bncli.report.verdict import paired_effect

    rows = [{"seed": s, "d": d} for s, d in ((0, 1.0), (1, 1.1), (2, 50.0), (3, 1.05))]

    def fn(ctx):
        c = Claim("CX", "t", "s", "src", "p", "x")
        c.effects.append(paired_effect("d", [r["d"] for r in ctx.studies["x"].rows], direction=+1))
        c.primary = [0]
        return c

    study = SimpleNamespace(rows=rows, cfg=None)
    base = fn(SimpleNamespace(studies={"x": study})).decide().verdict
    st = leave_one_seed_out(fn, {"x": study}, "x", Path("."), Path("."), "png", "quick", base)
    assert st["applicable"] and set(st["verdicts"]) == {0, 1, 2, 3}
    # all four: the outlier 50 makes the t-interval span 0; without seed 2 the others (1.0, 1.1, 1.05) support it
    assert base == "inconclusive"
    assert st["changed"] == {2: "supported"} and st["fragile"] is True
