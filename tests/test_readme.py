"""README.md: the two commands, CI running the test command verbatim, and the experiments it names."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from bncli.config import load_config
from bncli.data import datasets as D

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CI = ROOT / ".ci" / "run"


def sections(text):
    """{heading: body} for '## ' headings, ignoring '#' lines inside fenced code blocks."""
    out, current, in_fence = {}, None, False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
        if not in_fence and line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
            continue
        if current is not None:
            out[current].append(line)
    return {k: "\n".join(v) for k, v in out.items()}


def fenced_blocks(text):
    """[(language, body)] of the fenced code blocks in ``text``."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```\s*$", text, re.M | re.S)]


@pytest.fixture(scope="module")
def readme():
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def two_commands(readme):
    secs = sections(readme)
    assert "Two commands" in secs, list(secs)
    blocks = fenced_blocks(secs["Two commands"])
    bash = [body for lang, body in blocks if lang == "bash"]
    assert len(bash) == 2, blocks
    assert len(blocks) == 2  # nothing else fenced in that section
    return [b.strip() for b in bash]


def commands(line):
    return [c.strip() for c in line.split("&&")]


def test_sections_parser_ignores_comments_in_fences():
    secs = sections("## A\n```bash\n## not a heading\n```\n## B\nx\n")
    assert list(secs) == ["A", "B"] and "not a heading" in secs["A"]


def test_exactly_two_bash_blocks_under_two_commands(two_commands):
    assert all(len(b.splitlines()) == 1 for b in two_commands)  # one line each: copy-pasteable


def test_first_command_installs_and_runs_quickstart(two_commands):
    cmds = commands(two_commands[0])
    assert cmds[0].startswith("python3 -m venv ")
    assert any(re.fullmatch(r"(\.|source) \S+/bin/activate", c) for c in cmds)
    assert any(re.fullmatch(r"pip install \.", c) for c in cmds)
    assert cmds[-1] == "bncli train experiments/quickstart.yaml"


def test_second_command_installs_test_extra_and_runs_pytest(two_commands):
    cmds = commands(two_commands[1])
    assert any(c.startswith("pip install") and ".[test]" in c for c in cmds)
    assert cmds[-1] in ("python -m pytest", "pytest") or cmds[-1].startswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim(two_commands):
    ci_lines = [line.strip() for line in CI.read_text().splitlines()]
    assert two_commands[1] in ci_lines
    assert two_commands[0] not in ci_lines


def test_ci_script_is_strict_bash():
    text = CI.read_text()
    first = text.splitlines()[0]
    assert first in ("#!/usr/bin/env bash", "#!/bin/bash", "#!/usr/bin/bash"), first
    assert re.search(r"^set -euo pipefail\s*$", text, re.M)
    # set -euo pipefail comes before any command that could fail
    body = [line for line in text.splitlines()[1:] if line.strip() and not line.lstrip().startswith("#")]
    assert body[0].strip() == "set -euo pipefail"


def test_ci_script_is_executable():
    assert CI.stat().st_mode & 0o111


def named_experiments(readme):
    """experiments/*.yaml files named in the README, except in example error messages ('error: ...')."""
    names = set()
    for line in readme.splitlines():
        if line.lstrip().startswith("error:"):
            continue
        names.update(re.findall(r"experiments/[\w.-]+\.yaml", line))
    return sorted(names)


def test_readme_names_the_shipped_experiments(readme):
    names = named_experiments(readme)
    assert "experiments/quickstart.yaml" in names and "experiments/bn_paper_mnist.yaml" in names


@pytest.mark.parametrize("name", named_experiments(README.read_text(encoding="utf-8")))
def test_named_experiment_exists_and_loads(name):
    path = ROOT / name
    assert path.is_file(), f"{name} is named in the README but does not exist"
    cfg, _ = load_config(path)
    assert cfg.name == path.stem


def test_quickstart_matches_readme_description():
    cfg, _ = load_config(ROOT / "experiments" / "quickstart.yaml")
    # "3 × 100 sigmoid, SGD, no BN vs BN before/after, 15 epochs, 10 seeds"
    assert cfg.model.hidden == [100, 100, 100] and cfg.model.activation == "sigmoid"
    assert cfg.optimizer.name == "sgd"
    assert cfg.model.bn == ["none", "before", "after"]
    assert cfg.train.epochs == 15 and cfg.train.steps is None
    assert cfg.train.seeds == list(range(10))
    assert cfg.data.name == "mnist-5k"


def test_bn_paper_matches_readme_description():
    cfg, _ = load_config(ROOT / "experiments" / "bn_paper_mnist.yaml")
    # "3 × 100 sigmoid, batch 60, SGD, N(0, 0.05²) init, 5,000 steps, 5 seeds"
    assert cfg.model.hidden == [100, 100, 100] and cfg.model.activation == "sigmoid"
    assert cfg.train.batch_size == 60 and cfg.optimizer.name == "sgd"
    assert cfg.model.init == "normal" and cfg.model.init_std == 0.05
    assert cfg.train.steps == 5000 and cfg.train.seeds == [0, 1, 2, 3, 4]
    assert "none" in cfg.model.bn and "before" in cfg.model.bn


def test_readme_override_examples_load(readme):
    """The README's `bncli train ... key=value` lines, split as bash splits them, load to what they say."""
    import shlex

    lines = [line for line in readme.splitlines() if line.startswith("bncli train") and "=" in line]
    configs = []
    for line in lines:
        args = shlex.split(line, comments=True)[2:]
        overrides = [a for a in args[1:] if "=" in a and not a.startswith("--")]
        assert overrides, line
        configs.append(load_config(ROOT / args[0], overrides)[0])
    cfg = next(c for c in configs if c.name == "quickstart")
    assert cfg.optimizer.lr == 0.05 and cfg.train.seeds == [0, 1, 2] and cfg.model.bn == ["none", "before"]
    budget = next(c for c in configs if c.name == "quickstart" and c.train.steps is not None)  # steps replace epochs
    assert (budget.train.steps, budget.train.epochs) == (300, None)


def test_readme_config_tour_keys_exist(readme):
    """Every key in the 'A tour of a config file' YAML block is a real config key (loads without error)."""
    body = sections(readme)["A tour of a config file"]
    yaml_blocks = [b for lang, b in fenced_blocks(body) if lang == "yaml"]
    assert len(yaml_blocks) == 1
    from bncli import yamlio
    from bncli.config import validate, Source
    data, lines = yamlio.load_with_lines(yaml_blocks[0])
    cfg = validate(data, Source("README.md", lines, {}))
    assert cfg.optimizer.lr == 0.5 and cfg.train.seeds == [0, 1, 2, 3, 4]


def test_readme_checksum_prefix_and_suffix(readme):
    m = re.search(r"SHA-256\s*\(`([0-9a-f]+)…([0-9a-f]+)`\)", readme)
    assert m, "README states the data file's SHA-256"
    assert D.MNIST5K_SHA256.startswith(m.group(1)) and D.MNIST5K_SHA256.endswith(m.group(2))
    data = (ROOT / "bncli" / "data" / "mnist5k.npz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == D.MNIST5K_SHA256


def test_readme_data_file_size(readme):
    m = re.search(r"mnist5k\.npz`,\s*([\d,]+)\s*KiB", readme)
    assert m
    size = (ROOT / "bncli" / "data" / "mnist5k.npz").stat().st_size
    assert int(m.group(1).replace(",", "")) == round(size / 1024)
