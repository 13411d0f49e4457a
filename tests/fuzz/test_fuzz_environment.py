"""Hostile environments and numbers through the real command line (issue 24): an output encoding without the tables'
characters, closed standard streams, an eps that the run's dtype turns into 0, seeds that are the same integer
written twice, a config file whose name is not a valid experiment name. Each works or ends in one line with its exit
code: 2 for the config, never "a bug in bncli"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sweep_helpers import read_csv, write_config

from .harness import MEM_BYTES, _limits, check, env_for, fuzz, wait


def run(args, cwd: Path, *, env=None, close=(), encoding="utf-8"):
    """``bncli ARGS`` as harness.bncli runs it (limits, timeout, its own process group), with extra environment
    variables and the standard descriptors in ``close`` closed in the child, its output decoded strictly with
    ``encoding`` (an undecodable byte fails the test)."""
    limits = _limits(MEM_BYTES, None)

    def start():
        limits()
        for fd in close:
            os.close(fd)

    args = [str(a) for a in args]
    proc = subprocess.Popen([sys.executable, "-m", "bncli", *args], cwd=cwd, env={**env_for(Path(cwd)), **(env or {})},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=start)
    o = wait(proc, args, time.monotonic())
    o.stdout, o.stderr = o.stdout.decode(encoding), o.stderr.decode(encoding)
    return o


def table_rows(text: str) -> list[list[str]]:
    """The tables of ``text`` drawn in ASCII: each a list of its lines from border to border."""
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith(("|", "+")):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


# -- environment: the output encoding and closed streams --------------------------------------------------------------
@pytest.mark.parametrize("encoding, plus_minus", [("ascii", "+-"), ("latin-1", "±"), ("cp437", "±")])
def test_tables_in_an_encoding_without_their_characters(case_dir, encoding, plus_minus):
    """The results table holds "±" and (for an arm whose runs all diverge) "—": written in the stream's encoding,
    with the columns still lined up. Before: UnicodeEncodeError, reported as a bug, after the training."""
    cwd = case_dir()
    out = cwd / "résultats"  # a path printed in the status lines is user text too
    o = run(["train", write_config(cwd), "model.bn=[none,before]", "optimizer.lr=1e300", "--out", out, "-j", "1"],
            cwd, env={"PYTHONIOENCODING": encoding}, encoding=encoding)
    check(o, "environment (corpus)", codes=(0,))
    assert f"mean {plus_minus} sd over seeds" in o.stdout and "0/2 (2 diverged)" in o.stdout
    assert ("r\\xe9sultats" if encoding == "ascii" else "résultats") in o.stdout
    tables = table_rows(o.stdout)
    assert tables, o.stdout
    for lines in tables:
        assert len({len(ln) for ln in lines}) == 1, "\n".join(lines)  # every row as wide as the border
    assert (out / "summary.csv").is_file()


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_listing_with_an_ellipsis_in_an_encoding_without_it(case_dir, encoding):
    o = run(["examples"], case_dir(), env={"PYTHONIOENCODING": encoding}, encoding=encoding)
    check(o, "environment (corpus)", codes=(0,))
    assert "quickstart" in o.stdout and "..." in o.stdout and "…" not in o.stdout
    for lines in table_rows(o.stdout):
        assert len({len(ln) for ln in lines}) == 1, "\n".join(lines)


def test_a_path_that_is_not_utf8_in_a_strict_utf8_stream(case_dir):
    """A folder name with a byte that is not UTF-8 (Python holds it as a surrogate escape) is printed escaped, \\xfe.
    Before: UnicodeEncodeError in the status line, then again in the crash report: two tracebacks."""
    cwd = case_dir()
    out = cwd / "o\udcfe"
    o = run(["train", write_config(cwd), "--out", out, "-j", "1"], cwd, env={"PYTHONIOENCODING": "utf-8"})
    check(o, "environment (corpus)", codes=(0,))
    assert "wrote " in o.stdout and "o\\xfe/" in o.stdout
    assert (out / "summary.csv").is_file()


@pytest.mark.parametrize("close", [(1,), (1, 2), (0, 1, 2)], ids=["stdout", "stdout+stderr", "all"])
def test_a_closed_stdout_still_trains_and_writes_every_file(case_dir, close):
    """Decision: a closed standard stream is opened on /dev/null and the command runs (exit 0, its results in files,
    a rerun prints the tables). Before: AttributeError on sys.stdout (None) before anything ran."""
    cwd = case_dir()
    o = run(["train", write_config(cwd), "--out", cwd / "out", "-j", "1"], cwd, close=close)
    check(o, "environment (corpus)", codes=(0,))
    assert not o.stdout and not o.stderr
    summary = (cwd / "out" / "summary.csv").read_text()
    assert summary.startswith("experiment,arm,seed,") and len(summary.splitlines()) == 5  # 2 arms x 2 seeds
    assert len(json.loads((cwd / "out" / "experiment.json").read_text())["runs"]) == 4
    again = run(["train", write_config(cwd), "--out", cwd / "out", "-j", "1"], cwd)
    assert again.code == 0 and "4 already done" in again.stdout and "mean ± sd" in again.stdout


def test_a_closed_stdout_keeps_the_error_line_and_its_code(case_dir):
    cwd = case_dir()
    o = run(["train", cwd / "missing.yaml"], cwd, close=(1,))
    check(o, "environment (corpus)", codes=(2,), says="missing.yaml: config file not found")
    assert len(o.stderr.splitlines()) == 1


# -- numerics and seeds: refused at validation, with the key -------------------------------------------------------
@pytest.mark.parametrize("overrides, says", [
    (["model.bn_eps=1e-300"], "model.bn_eps: 1e-300 is 0 in float32"),  # was: BN's arm reported "diverged"
    (["model.bn_eps=1e300"], "model.bn_eps: 1e+300 is more than 1000"),  # was: a raw NumPy overflow warning
    (["model.bn_eps=1e-40"], "model.bn_eps: 1e-40 is subnormal in float32"),
    (["optimizer.name=rmsprop", "optimizer.eps=1e-300"], "optimizer.eps: 1e-300 is 0 in float32"),
    (["optimizer.name=adam", "optimizer.eps=1e-45"], "optimizer.eps: adam adds eps x sqrt(1 - beta2)"),
    (["train.seeds=[1, 1.0]"], "train.seeds: seeds must not repeat: 1 and 1.0 are both seed 1"),
    (["train.seeds=[1, '01']"], "train.seeds: seeds must not repeat: 1 and '01' are both seed 1"),
    (["train.seeds=['-1']"], "train.seeds: seeds must be >= 0"),
])
def test_values_a_run_would_silently_change_are_refused(case_dir, overrides, says):
    cwd = case_dir()
    o = run(["train", write_config(cwd), *overrides, "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "numerics (corpus)", codes=(2,), says=says)
    assert not (cwd / "out").exists()  # refused before anything ran


def test_an_eps_too_small_for_float32_trains_in_float64(case_dir):
    cwd = case_dir()
    refused = run(["train", write_config(cwd), "model.bn_eps=1e-300", "--out", cwd / "out", "-j", "1"], cwd)
    check(refused, "numerics (corpus)", codes=(2,), says="(or train.dtype: float64)")
    o = run(["train", write_config(cwd), "model.bn_eps=1e-300", "train.dtype=float64", "--out", cwd / "out",
             "-j", "1"], cwd)
    check(o, "numerics (corpus)", codes=(0,))
    assert "Warning" not in o.stderr, o.stderr
    assert {r["status"] for r in read_csv(cwd / "out" / "summary.csv")} == {"ok"}  # no false "diverged"


def test_a_swept_eps_is_refused_at_its_point(case_dir):
    cwd = case_dir()
    o = run(["sweep", write_config(cwd), "model.bn_eps=1e-5,1e-300", "--dry-run", "--out", cwd / "out"], cwd)
    check(o, "numerics (corpus)", codes=(2,), says="model.bn_eps")
    assert "model.bn_eps: 1e-300 is 0 in float32" in o.stderr


@given(mantissa=st.integers(1, 9), exponent=st.integers(-330, 330), dtype=st.sampled_from(["float32", "float64"]),
       bn=st.sampled_from(["[none,before]", "[after]", "[none]"]))
@fuzz(6)
def test_bn_eps_of_any_magnitude(case_dir, mantissa, exponent, dtype, bn):
    """Validated and planned (a dry run trains nothing): accepted exactly when a BN arm can use it as given, a
    positive normal number of the dtype up to 1000; otherwise one line naming model.bn_eps."""
    cwd = case_dir()
    text = f"{mantissa}e{exponent}"
    o = run(["sweep", write_config(cwd), f"model.bn_eps={text}", f"train.dtype={dtype}", f"model.bn={bn}",
             "optimizer.lr=0.1,0.2", "--dry-run", "--out", cwd / "out"], cwd)
    value = float(text)
    with np.errstate(all="ignore"):
        usable = value > 0 and np.finfo(dtype).tiny <= np.asarray(value, dtype) and value <= 1e3
    fine = usable or (bn == "[none]" and value > 0)
    check(o, "numerics (generated)", codes=(0,) if fine else (2,), says=None if fine else "model.bn_eps")


# -- the name a config gets from its file --------------------------------------------------------------------------
def test_a_file_name_with_a_space_is_named_as_the_cause(case_dir):
    cwd = case_dir()
    cfg = cwd / "my run.yaml"
    cfg.write_text("\n".join(ln for ln in write_config(cwd).read_text().splitlines() if not ln.startswith("name:")))
    o = run(["train", cfg, "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "config names (corpus)", codes=(2,), says="the experiment name defaults to the file name 'my run'")
    assert "add `name: my_run` to the file or rename it" in o.stderr
    o = run(["train", cfg, "name=my_run", "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "config names (corpus)", codes=(0,))
