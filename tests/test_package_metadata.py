"""One version source (bncli/__init__.py) and the files a distribution carries: LICENSE (MIT), CHANGELOG.md and
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


def test_license_changelog_and_citation_agree_with_the_version():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(bncli.__version__)}\b", changelog, re.M), "the newest CHANGELOG entry"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["version"] == bncli.__version__ and cff["license"] == "MIT" and cff["cff-version"] == "1.2.0"
