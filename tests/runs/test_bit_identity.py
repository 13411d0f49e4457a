"""The run layer changed how runs are planned, stored and dispatched, never what they compute: the quickstart (two
seeds) and one sweep give metrics.csv files bit-identical to those recorded before the redesign
(tests/fixtures/golden_metrics.json, made by commit 5f49fba with the commands it lists).

Bit-identity holds for the same numpy and BLAS kernel (see README, Reproducibility); on another platform the exact
comparison is skipped with the reason, and the structure and the untrained evaluation (step 0) are still checked."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from bncli.config import load_config
from bncli.experiment import run_experiment
from bncli.runs import platform_info
from bncli.sweeps import run_sweep

REPO = Path(__file__).resolve().parents[2]
GOLDEN = json.loads((REPO / "tests" / "fixtures" / "golden_metrics.json").read_text())


def key(kind, cfg: dict):
    return kind, cfg["model"]["bn"][0], cfg["train"]["seeds"][0], cfg["optimizer"]["name"], cfg["optimizer"]["lr"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    cfg, src = load_config(REPO / "experiments" / "quickstart.yaml", ["train.seeds=[0,1]"])
    run_experiment(cfg, src, tmp / "qs", workers=2)
    cfg, src = load_config(REPO / "experiments" / "lr_range.yaml",
                           ["optimizer.name=adam,sgd", "optimizer.lr=1e-3,1e-2,1e-1,1", "train.seeds=[0]"],
                           sweep_overrides=True)
    run_sweep(cfg, src, tmp / "sw", workers=2)
    out = {}
    for kind, folder in (("train", tmp / "qs" / "runs"), ("sweep", tmp / "sw" / "runs")):
        for d in folder.iterdir():
            out[key(kind, yaml.safe_load((d / "config.yaml").read_text()))] = (d / "metrics.csv").read_bytes()
    return out


def same_platform() -> tuple[bool, str]:
    p = platform_info()
    here = {"blas": [{k: lib.get(k) for k in ("internal_api", "version", "architecture")} for lib in p["blas"] or []],
            "simd_found": (p["numpy_build"] or {}).get("simd_found"), "numpy": np.__version__}
    there = {k: GOLDEN["platform"][k] for k in here}
    return here == there, f"golden runs made on {there}, this machine is {here}"


def test_every_golden_run_is_planned_again(runs):
    assert set(runs) == {(r["kind"], r["arm"], r["seed"], r["optimizer"], r["lr"]) for r in GOLDEN["runs"]}
    assert len(runs) == 22


def test_metrics_are_bit_identical_to_the_runs_before_the_redesign(runs):
    same, why = same_platform()
    if not same:
        pytest.skip("another BLAS kernel or numpy: " + why)
    for r in GOLDEN["runs"]:
        got = runs[(r["kind"], r["arm"], r["seed"], r["optimizer"], r["lr"])]
        assert hashlib.sha256(got).hexdigest() == r["sha256"], (r, got.decode().splitlines()[-1], r["last"])


def test_metrics_have_the_golden_columns_rows_and_untrained_evaluation(runs):
    for r in GOLDEN["runs"]:
        lines = runs[(r["kind"], r["arm"], r["seed"], r["optimizer"], r["lr"])].decode().splitlines()
        assert lines[0] == r["header"] and len(lines) - 1 == r["rows"]
        # step 0 is the evaluation before any update: the initial weights and the data, rounding aside
        got = [float(v) if v else np.nan for v in lines[1].split(",")]
        want = [float(v) if v else np.nan for v in r["first"].split(",")]
        np.testing.assert_allclose(got, want, rtol=1e-5, equal_nan=True)
