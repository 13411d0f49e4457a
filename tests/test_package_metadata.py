"""One version source (bncli/_version.py) and the files a distribution carries: LICENSE (MIT), CHANGELOG.md and
CITATION.cff agree with it."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest
import yaml

import bncli

ROOT = Path(__file__).resolve().parents[1]


def test_the_version_has_one_source():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("bncli") == bncli.__version__  # the installed package reads the same
    assert project is not None and tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "dynamic"]["version"] == {"attr": "bncli._version.__version__"}
    # nowhere else: no other module of the package spells a version number
    spelled = [p for p in (ROOT / "bncli").rglob("*.py")
               if p.name != "_version.py" and re.search(r"__version__\s*=", p.read_text())]
    assert not spelled, spelled


def test_license_changelog_and_citation_agree_with_the_version():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(bncli.__version__)}\b", changelog, re.M), "the newest CHANGELOG entry"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == bncli.__version__ and cff["license"] == "MIT" and cff["cff-version"] == "1.2.0"
