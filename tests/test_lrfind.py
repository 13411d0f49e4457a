"""bncli.lrfind: the learning-rate range test (geometric ramp, debiased smoothing, early stop), its suggestions,
and the `bncli lrfind` command."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from bncli.cli import app
from bncli.config import load_config
from bncli.lrfind import lr_range_test, suggest
from bncli.runs import dataset_for

from sweep_helpers import write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    path = write_config(tmp_path_factory.mktemp("lrfind"))
    cfg, _ = load_config(path)
    return path, cfg, dataset_for(cfg)


def run(setup, arm="none", **kw):
    _, cfg, data = setup
    return lr_range_test(cfg.run_config(arm, cfg.train.seeds[0]), data, **kw)


def ema(losses, beta):
    avg, out = 0.0, []
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** (i + 1)))
    return out


# -- the ramp ---------------------------------------------------------------------------------------------------------
def test_lr_grows_geometrically_from_start_to_end(setup):
    curve = run(setup, start=1e-4, end=1.0, iters=40, stop_factor=1e9)
    assert len(curve) == 40
    assert [c[0] for c in curve] == list(range(40))
    lrs = [c[1] for c in curve]
    assert lrs[0] == 1e-4
    assert lrs[-1] == pytest.approx(1.0, rel=1e-9)
    ratio = (1.0 / 1e-4) ** (1 / 39)
    for a, b in zip(lrs, lrs[1:]):
        assert b / a == pytest.approx(ratio, rel=1e-9)
    assert all(math.isfinite(c[2]) and math.isfinite(c[3]) for c in curve)


def test_the_loss_falls_at_sensible_learning_rates(setup):
    curve = run(setup, start=1e-4, end=1.0, iters=40, stop_factor=1e9)
    smoothed = [c[3] for c in curve]
    assert min(smoothed) < 0.8 * smoothed[0]  # the model does learn on the way up


@pytest.mark.parametrize("beta", [0.98, 0.9])
def test_smoothed_loss_is_the_debiased_ema(setup, beta):
    curve = run(setup, start=1e-4, end=1.0, iters=30, beta=beta, stop_factor=1e9)
    assert [c[3] for c in curve] == pytest.approx(ema([c[2] for c in curve], beta), rel=1e-12)
    assert curve[0][3] == curve[0][2]  # debiased: the first smoothed value is the first loss itself


def test_stops_when_smoothed_loss_exceeds_four_times_best(setup):
    iters = 60
    curve = run(setup, start=1e-3, end=1e6, iters=iters)
    assert 2 < len(curve) < iters
    smoothed = [c[3] for c in curve]
    assert all(math.isfinite(s) for s in smoothed)
    best = [min(smoothed[:i + 1]) for i in range(len(smoothed))]
    assert all(s <= 4 * b for s, b in zip(smoothed[:-1], best[:-1]))  # not earlier ...
    assert smoothed[-1] > 4 * best[-1]  # ... but here
    # a larger stop factor goes further up the ramp
    assert len(run(setup, start=1e-3, end=1e6, iters=iters, stop_factor=40.0)) > len(curve)


def test_stops_at_a_non_finite_loss(setup):
    iters = 60
    curve = run(setup, start=1e-3, end=1e30, iters=iters, stop_factor=1e300)
    assert len(curve) < iters
    *head, last = curve
    assert not math.isfinite(last[2]) and math.isnan(last[3])
    assert all(math.isfinite(c[2]) and math.isfinite(c[3]) for c in head)


def test_same_seed_same_curve(setup):
    a = run(setup, arm="before", start=1e-4, end=10, iters=30)
    b = run(setup, arm="before", start=1e-4, end=10, iters=30)
    assert a == b


# -- suggestions ------------------------------------------------------------------------------------------------------
def valley(n=141, lo=-6.0, hi=1.0, x0=-1.0, w=1.0):
    """A smooth valley in log10(lr): minimum at x0, steepest descent at x0 - w/sqrt(2)."""
    x = np.linspace(lo, hi, n)
    s = 2.0 - 1.5 * np.exp(-(((x - x0) / w) ** 2))
    return x, [(i, float(10 ** xi), float(si), float(si)) for i, (xi, si) in enumerate(zip(x, s))]


def test_suggest_on_a_smooth_valley():
    x, curve = valley()
    step = x[1] - x[0]
    s = suggest(curve)
    assert s["iterations"] == len(curve)
    assert s["min_lr"] == pytest.approx(0.1, rel=1e-9)
    assert s["min_loss"] == pytest.approx(0.5)
    assert s["stop_lr"] == curve[-1][1]
    steepest = -1.0 - 1.0 / math.sqrt(2)
    assert abs(math.log10(s["steep_lr"]) - steepest) <= step + 1e-9
    assert s["steep_lr"] < s["min_lr"]
    start = float(np.mean([c[3] for c in curve[:10]]))
    assert s["descent"] == pytest.approx((start - 0.5) / start)


def test_suggest_skips_the_noisy_start():
    x, curve = valley()
    # a cliff in the first few points: the steepest slope of all, but inside skip_start
    cliff = [9.0, 6.0, 3.0, 2.0]
    curve = [(i, lr, v, v) for (i, lr, _, _), v in zip(curve, cliff)] + curve[len(cliff):]
    s = suggest(curve, skip_start=10)
    assert abs(math.log10(s["steep_lr"]) - (-1.0 - 1.0 / math.sqrt(2))) <= (x[1] - x[0]) + 1e-9
    s0 = suggest(curve, skip_start=0)
    assert s0["steep_lr"] <= curve[2][1]  # without skipping, the cliff wins
    assert s0["min_lr"] == s["min_lr"]


def test_suggest_ignores_the_non_finite_end():
    x, curve = valley()
    curve = curve + [(len(curve), 100.0, math.inf, math.nan)]
    s = suggest(curve)
    assert s["min_lr"] == pytest.approx(0.1, rel=1e-9)
    assert s["stop_lr"] == 100.0 and s["iterations"] == len(curve)


def test_suggest_on_a_real_curve_is_inside_the_ramp(setup):
    curve = run(setup, start=1e-5, end=10, iters=100)
    s = suggest(curve)
    lrs = [c[1] for c in curve]
    assert lrs[0] <= s["steep_lr"] <= s["min_lr"] <= lrs[-1]
    assert s["descent"] > 0.05


# -- the command ------------------------------------------------------------------------------------------------------
@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_cli_lrfind_writes_csv_json_png(runner, setup, tmp_path):
    path, cfg, data = setup
    out = tmp_path / "lr"
    r = runner.invoke(app, ["lrfind", str(path), "--out", str(out), "--iters", "40", "--start", "1e-5",
                            "--end", "10"])
    assert r.exit_code == 0, r.output
    assert "learning-rate range test" in r.output
    with open(out / "lr_find.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["arm", "iteration", "lr", "loss", "smoothed_loss"]
    assert [a for a in dict.fromkeys(r["arm"] for r in rows)] == ["none", "before"]
    for arm in ("none", "before"):
        mine = [r for r in rows if r["arm"] == arm]
        assert 2 <= len(mine) <= 40
        assert [int(r["iteration"]) for r in mine] == list(range(len(mine)))
        lrs = [float(r["lr"]) for r in mine]
        assert lrs[0] == 1e-5 and all(b > a for a, b in zip(lrs, lrs[1:]))
        # the file holds the library's curve for that arm and the first seed
        lib = lr_range_test(cfg.run_config(arm, cfg.train.seeds[0]), data, start=1e-5, end=10, iters=40)
        assert len(lib) == len(mine)
        assert lrs == pytest.approx([c[1] for c in lib], rel=1e-12)
        for row, c in zip(mine, lib):
            if math.isfinite(c[2]):
                assert float(row["loss"]) == pytest.approx(c[2], rel=1e-9)
            else:
                assert row["loss"] == ""
            if math.isfinite(c[3]):
                assert float(row["smoothed_loss"]) == pytest.approx(c[3], rel=1e-9)
            else:
                assert row["smoothed_loss"] == ""
    info = json.loads((out / "lr_find.json").read_text())
    assert set(info["suggestions"]) == {"none", "before"}
    assert info["settings"]["iters"] == 40 and info["seed"] == cfg.train.seeds[0]
    for s in info["suggestions"].values():
        assert {"min_lr", "steep_lr", "stop_lr", "descent"} <= set(s)
        assert 1e-5 <= s["steep_lr"] <= 10 and 1e-5 <= s["min_lr"] <= 10
    assert (out / "lr_find.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("start, end", [("1", "0.1"), ("0.1", "0.1"), ("0", "1")])
def test_cli_lrfind_start_must_be_below_end(runner, setup, tmp_path, start, end):
    path = setup[0]
    out = tmp_path / "lr"
    r = runner.invoke(app, ["lrfind", str(path), "--out", str(out), "--start", start, "--end", end])
    assert r.exit_code == 2, r.output
    assert "--start" in r.output and "--end" in r.output
    assert isinstance(r.exception, SystemExit)
    assert not out.exists()


def test_cli_lrfind_bad_config_is_exit_2(runner, tmp_path):
    path = write_config(tmp_path, name="bad.yaml", base="name: x\noptimizer:\n  lr: -1\n")
    r = runner.invoke(app, ["lrfind", str(path), "--out", str(tmp_path / "lr")])
    assert r.exit_code == 2 and "optimizer.lr" in r.output


# -- no finite loss at any learning rate -------------------------------------------------------------------------------
def test_suggest_on_a_curve_without_a_finite_point():
    """The first loss is already non-finite (e.g. init_std 1e30): no suggestion, NaNs and a note, not an argmin of an
    empty sequence."""
    s = suggest([(0, 1e-7, math.nan, math.nan)])
    assert s["iterations"] == 1 and s["stop_lr"] == 1e-7 and s["note"] == "no finite loss at any learning rate"
    assert all(math.isnan(s[k]) for k in ("min_lr", "min_loss", "steep_lr", "descent"))
    assert "note" not in suggest([(0, 1e-3, 2.0, 2.0), (1, 1e-2, 1.0, 1.5)])


def test_cli_lrfind_with_no_finite_loss_is_one_line_exit_1(runner, setup, tmp_path):
    """Exit 1 (a runtime failure, not bad input): a range test that never saw a finite loss has nothing to suggest,
    and a script reading the table must not take a NaN for a learning rate. The files are written."""
    out = tmp_path / "lr"
    r = runner.invoke(app, ["lrfind", str(setup[0]), "model.init=normal", "model.init_std=1e30", "model.bn=[none]",
                            "--out", str(out), "--iters", "20"])
    assert r.exit_code == 1, r.output
    assert r.stderr.startswith("error: lrfind: no finite loss at any learning rate for none")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.output
    info = json.loads((out / "lr_find.json").read_text())
    assert info["suggestions"]["none"]["min_lr"] is None
    assert info["suggestions"]["none"]["note"] == "no finite loss at any learning rate"
    assert (out / "lr_find.csv").is_file() and not (out / "lr_find.png").exists()  # nothing to draw
    p = runner.invoke(app, ["plot", str(out)])
    assert p.exit_code == 2 and "no finite loss at any learning rate" in p.stderr


def test_cli_lrfind_names_the_arm_without_a_finite_loss_and_draws_the_others(runner, setup, tmp_path, monkeypatch):
    import bncli.lrfind

    real = bncli.lrfind.lr_range_test

    def none_overflows(cfg, data, **kw):
        if cfg.model.bn == ["none"]:
            return [(0, kw["start"], math.inf, math.nan)]
        return real(cfg, data, **kw)

    monkeypatch.setattr(bncli.lrfind, "lr_range_test", none_overflows)
    out = tmp_path / "lr"
    r = runner.invoke(app, ["lrfind", str(setup[0]), "--out", str(out), "--iters", "20"])
    assert r.exit_code == 1, r.output
    assert "no finite loss at any learning rate for none (" in r.stderr and "before" not in r.stderr.split("(")[0]
    assert (out / "lr_find.png").read_bytes()[:8] == PNG_MAGIC
    info = json.loads((out / "lr_find.json").read_text())
    assert "note" not in info["suggestions"]["before"] and info["suggestions"]["before"]["min_lr"] > 0
    p = runner.invoke(app, ["plot", str(out), "--out", str(tmp_path / "figs")])
    assert p.exit_code == 0, p.output


def test_a_range_wider_than_float64_ramps_in_log_space_and_plots(setup, tmp_path):
    """--start 1e-300 --end 1e300: end / start overflows; the ramp is the same geometric one, every lr finite, and
    `bncli plot` reads back what lrfind wrote (it used to write lr = inf and then call its own folder damaged)."""
    rows = run(setup, start=1e-300, end=1e300, iters=11, stop_factor=1e300)
    lrs = [r[1] for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in lrs)
    assert lrs[0] == pytest.approx(1e-300) and all(b / a == pytest.approx(1e60) for a, b in zip(lrs, lrs[1:]))
    from sweep_helpers import run_proc

    cfg = write_config(tmp_path)
    out = tmp_path / "lf"
    p = run_proc(["lrfind", cfg, "--start", "1e-300", "--end", "1e300", "--iters", "12", "--out", out], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = run_proc(["plot", out], cwd=tmp_path)
    assert p.returncode == 0, p.stderr
