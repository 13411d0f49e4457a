"""The experiments shipped inside the package: listed, found by name from any folder, copied out; and a built wheel
that carries them, installed apart from the checkout and run from an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bncli import examples
from bncli.config import load_config
from bncli.errors import UsageError
from bncli.report import STUDIES

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_folder_is_the_repository_experiments_folder():
    assert sorted(examples.shipped()) == sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))
    assert len(examples.shipped()) >= 20


@pytest.mark.parametrize("name", sorted(examples.shipped()))
def test_every_shipped_experiment_loads_and_says_what_it_tests(name):
    path = examples.shipped()[name]
    assert load_config(path)[0].name == name
    text = examples.describe(path)
    assert 10 < len(text) <= 150 and text[-1] in ".?…", text


def test_describe_stops_at_the_first_sentence(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("# CLAIMS C9: BN stabilizes inputs (Ioffe & Szegedy 2015 Fig. 1b,c).\n# More text.\nname: x\n")
    assert examples.describe(p) == "CLAIMS C9: BN stabilizes inputs (Ioffe & Szegedy 2015 Fig. 1b,c)."


def test_locate_finds_shipped_names_only_where_no_file_is(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = examples.shipped()["quickstart"]
    for arg in ("quickstart", "quickstart.yaml", "experiments/quickstart.yaml"):
        assert examples.locate(arg) == shipped, arg
    for arg in ("nope.yaml", "other/quickstart.yaml", "quickstart.yml", "/abs/quickstart.yaml"):
        assert examples.locate(arg) == Path(arg), arg  # left to the reader to report as not found
    with pytest.raises(UsageError, match="quickstrat: no such file, and no shipped experiment of that name "
                                         r"\(did you mean quickstart\?\)"):
        examples.locate("quickstrat")
    (tmp_path / "quickstart.yaml").write_text("name: mine\n")  # a file of that name here wins
    assert examples.locate("quickstart.yaml") == Path("quickstart.yaml")


def test_copy_out_never_overwrites_an_edited_copy_without_force(tmp_path):
    dest = tmp_path / "mine"
    written, unchanged = examples.copy_out(dest, ["quickstart", "c07_bias.yaml"])
    assert sorted(p.name for p in written) == ["c07_bias.yaml", "quickstart.yaml"] and not unchanged
    written, unchanged = examples.copy_out(dest)
    assert len(written) == len(examples.shipped()) - 2 and len(unchanged) == 2
    edited = dest / "c07_bias.yaml"
    edited.write_text(edited.read_text() + "# my change\n")
    before = {p.name: p.read_bytes() for p in dest.iterdir()}
    with pytest.raises(UsageError, match="c07_bias.yaml: exists and differs"):
        examples.copy_out(dest)
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == before  # nothing copied
    written, _ = examples.copy_out(dest, force=True)
    assert [p.name for p in written] == ["c07_bias.yaml"]
    assert edited.read_bytes() == examples.shipped()["c07_bias"].read_bytes()


def test_copy_out_refuses_unknown_names_and_a_file_as_folder(tmp_path):
    with pytest.raises(UsageError, match="nope: no shipped experiment"):
        examples.copy_out(tmp_path, ["nope"])
    (tmp_path / "f").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        examples.copy_out(tmp_path / "f")


# -- the built wheel, installed apart from the checkout ---------------------------------------------------------------
@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip(f"cannot build a wheel here (pip needs setuptools from the index): {r.stderr.strip()[-300:]}")
    return next(out.glob("bncli-*.whl"))


def test_the_wheel_carries_the_experiments_the_data_and_the_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"bncli/experiments/{n}.yaml" for n in examples.shipped()} <= set(names)
    assert "bncli/data/mnist5k.npz" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "experiments/")) for n in names)


def test_the_installed_wheel_runs_from_an_empty_folder(wheel, tmp_path):
    """Installed into its own folder (the test environment provides numpy & co.), run where no checkout is."""
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}

    def bncli(*args):
        return subprocess.run([sys.executable, "-m", "bncli", *args], cwd=empty, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import bncli; print(bncli.__file__)"], cwd=empty, env=env,
                           capture_output=True, text=True).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout
    r = bncli("examples")
    assert r.returncode == 0 and "c07_bias" in r.stdout and str(site) in r.stdout.replace("\n", ""), r.stderr
    r = bncli("train", "quickstart", "train.steps=20", "train.seeds=[0]", "--out", "q", "-j", "1")
    assert r.returncode == 0, r.stderr
    assert "using the experiment shipped with bncli" in r.stdout and (empty / "q" / "experiment.json").is_file()
    r = bncli("train", "experiments/quickstart.yaml", "train.steps=20", "train.seeds=[0]", "--out", "q", "-q")
    assert r.returncode == 0 and r.stdout.count("wrote") == 0, r.stdout  # the README's path works here too
    r = bncli("examples", "mine")
    assert r.returncode == 0 and len(list((empty / "mine").glob("*.yaml"))) == len(examples.shipped())
    plan = subprocess.run([sys.executable, "-c", "from bncli.report import plan_report; "
                           "out, studies = plan_report(out_dir='rep'); print(len(studies), out)"],
                          cwd=empty, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0 and plan.stdout.split()[0] == str(len(STUDIES)), plan.stderr  # every study, planned
    shutil.rmtree(site)
