"""`bncli report --readme`: the quick and the full report each rewrite their own README block, nothing else."""

from __future__ import annotations

import pytest

from bncli.errors import UsageError
from bncli.report.claim import Claim
from bncli.report.render import MARKERS, update_readme


def _claims():
    c = Claim("C1", "BN trains faster", "s", "000", "p", "c01_faster_training", verdict="supported")
    c.stability = {"text": "stable"}
    return [c]


def test_each_mode_rewrites_its_own_block(tmp_path):
    (q0, q1), (f0, f1) = MARKERS["quick"], MARKERS["full"]
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n{q0}\nold quick\n{q1}\nbetween\n{f0}\nold full\n{f1}\nbottom\n")
    out = tmp_path / "results" / "report-full"
    update_readme(readme, out, _claims(), "full")
    text = readme.read_text()
    assert "old full" not in text and "old quick" in text and text.startswith("# top\n") and "bottom" in text
    assert "The same claims on the complete MNIST (`bncli report --full`" in text and "| C1: BN trains faster |" in text
    assert "results/report-full/REPORT.md" in text
    update_readme(readme, tmp_path / "results" / "report-quick", _claims(), "quick")
    text = readme.read_text()
    assert "old quick" not in text and "What the data say (`bncli report --quick`" in text
    assert text.count("| C1: BN trains faster |") == 2 and "between" in text


def test_a_readme_without_the_block_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"{MARKERS['quick'][0]}\n{MARKERS['quick'][1]}\n")
    with pytest.raises(UsageError, match="REPORT-FULL:start"):
        update_readme(readme, tmp_path, _claims(), "full")
