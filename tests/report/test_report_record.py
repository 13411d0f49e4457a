"""report.json says which experiment configs a report ran, without the author's file system."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from bncli.examples import SHIPPED
from bncli.report.render import experiments_record


def test_shipped_configs_are_named_as_shipped_and_hashed():
    rec = experiments_record({"c07_bias": SimpleNamespace(path=SHIPPED / "c07_bias.yaml")})
    assert rec["experiments"] == "shipped with bncli"
    assert rec["experiment_sha256"] == {"c07_bias": hashlib.sha256((SHIPPED / "c07_bias.yaml").read_bytes())
                                        .hexdigest()}


def test_other_folders_are_recorded_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "c07_bias.yaml").write_text("name: c07_bias\n")
    rec = experiments_record({"c07_bias": SimpleNamespace(path="mine/c07_bias.yaml")})
    assert rec["experiments"] == "mine" and str(tmp_path) not in str(rec)
