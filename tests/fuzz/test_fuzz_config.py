"""Hostile configs through the real command line: YAML files, config paths, mutations of every shipped experiment,
command-line overrides and sweep sections. `bncli sweep CONFIG --dry-run` validates and plans without training, so a
case that happens to be valid ends in 0 (its plan printed) and every other one in 2 with one line naming the file,
line or override — never a traceback, a hang or a memory blow-up."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from .harness import bncli, check, fuzz

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
QUICKSTART = REPO / "experiments" / "quickstart.yaml"


def dry_run(cfg, cwd, *extra):
    return bncli(["sweep", cfg, *extra, "--dry-run", "--out", cwd / "out"], cwd)


# -- hand-made YAML files ---------------------------------------------------------------------------------------------
def laughs(levels=9, width=9):
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


YAML_CORPUS = {
    "self-alias": "a: &a [*a]\n",
    "billion-laughs": laughs(),
    "nested-lists": "name: x\nmodel: {hidden: " + "[" * 5000 + "1" + "]" * 5000 + "}\n",
    "nested-maps": "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
    "unclosed-nesting": "a: " + "[" * 5000 + "\n",
    "5000-digit-int": "name: x\ntrain: {seeds: " + "9" * 5000 + "}\n",
    "5000-digit-float": "name: x\noptimizer: {lr: 0." + "1" * 5000 + "e-3}\n",
    "python-tag": "name: !!python/object/apply:os.system ['echo pwned']\n",
    "binary-tag": "name: !!binary aGVsbG8=\n",
    "set-tag": "model: {bn: !!set {none, before}}\n",
    "merge-key-loop": "a: &a {b: 1}\nc: {<<: *a, <<: *a}\n",
    "duplicate-keys": "name: a\nname: b\n",
    "tab-indent": "model:\n\thidden: [10]\n",
    "control-chars": "name: \x07\x1b[31mred\n",
    "empty": "",
    "comment-only": "# nothing here\n",
    "top-level-list": "- name: x\n",
    "top-level-scalar": "42\n",
    "multi-document": "name: a\n---\nname: b\n",
    "huge-value": "name: x\ndescription: " + "y" * 200_000 + "\nmodel: {bogus: 1}\n",
    "huge-file": "# " + "z" * (3 << 20) + "\nname: x\n",
    "long-key": "k" * 5000 + ": 1\n",
    "bool-as-number": "optimizer: {lr: true}\n",
    "list-in-arms": "model: {bn: [none, [before]]}\n",
    "conv-not-a-list": "model: {conv: 5}\n",
    "conv-item-a-string": "model: {conv: [abc]}\n",
    "conv-5000-blocks": "model: {conv: [" + ", ".join(["{channels: 1}"] * 5000) + "]}\n",
    "conv-memory-bomb": "model: {conv: [{channels: 1024, kernel: 3, padding: 15}, {channels: 1024, kernel: 15}]}\n"
                        "train: {batch_size: 4000}\n",
    "conv-on-synthetic": "data: {name: synthetic}\nmodel: {conv: [{channels: 2}]}\n",
    "conv-kernel-too-big": "model: {conv: [{channels: 2, kernel: 15}, {channels: 2, kernel: 15}]}\n",
    "percentile-layer-path": "train: {percentile_layer: ../../etc/passwd}\n",
    "bn-per-unknown": "model: {bn_per: pixel}\n",
    "dict-in-arms": "model: {bn: [none, {before: 1}]}\n",
    "billion-seeds": "train: {seeds: 1000000000}\n",
    "inf-noise": "data: {name: synthetic, synthetic: {noise: .inf}}\n",
    "huge-synthetic": "data: {name: synthetic, synthetic: {n_train: 100000000000}}\n",
    "unknown-sweep-key": "sweep: {parameters: {optimizer.lr: {values: [0.1, 0.2]}}, bogus: 1}\n",
    "noisy-nan-scale": "model: {bn: [noisy], noise_scale_low: .nan}\n",
    "noisy-inverted-scale": "model: {bn: [noisy], noise_scale_low: 50, noise_scale_high: 0.01}\n",
    "noisy-inf-mean": "model: {bn: [noisy], noise_mean: .inf}\n",
    "noisy-on-conv": "model: {bn: [none, noisy], conv: [{channels: 2}]}\n",
    "noisy-in-a-sweep": "sweep: {parameters: {model.bn: {values: [noisy]}}}\n",
    "probe-10000-multiples": "train: {measure: [smoothness], probe_lr_multiples: [" + ", ".join(["1"] * 10000) + "]}\n",
    "probe-negative-multiple": "train: {measure: [smoothness], probe_lr_multiples: [-1]}\n",
    "probe-every-zero": "train: {measure: [ics], probe_every: 0}\n",
    "probe-every-huge": "train: {measure: [ics], probe_every: 1e400}\n",
}


@pytest.mark.parametrize("name", sorted(YAML_CORPUS))
def test_hostile_yaml_file(case_dir, name):
    cwd = case_dir()
    p = cwd / f"{name}.yaml"
    p.write_text(YAML_CORPUS[name], encoding="utf-8")
    check(dry_run(p, cwd), "yaml file (corpus)", says=str(p))


def test_invalid_utf8_file(case_dir):
    cwd = case_dir()
    p = cwd / "latin1.yaml"
    p.write_bytes(b"name: caf\xe9\n\xff\xfe\x00")
    check(dry_run(p, cwd), "yaml file (corpus)", says=str(p))


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "symlink-loop", "under-a-file", "long-name", "directory",
                                  "missing", "dev-null"])
def test_hostile_config_path(case_dir, kind):
    cwd = case_dir()
    if kind == "dev-zero":
        p = Path("/dev/zero")
    elif kind == "dev-null":
        p = Path("/dev/null")
    elif kind == "fifo":
        p = cwd / "pipe.yaml"
        os.mkfifo(p)  # nobody ever writes: opening it for reading would wait forever
    elif kind == "symlink-loop":
        p = cwd / "loop.yaml"
        os.symlink(cwd / "loop2.yaml", p)
        os.symlink(p, cwd / "loop2.yaml")
    elif kind == "under-a-file":
        (cwd / "file.yaml").write_text("name: x\n")
        p = cwd / "file.yaml" / "x.yaml"
    elif kind == "long-name":
        p = cwd / ("n" * 5000 + ".yaml")
    elif kind == "directory":
        p = cwd / "dir.yaml"
        p.mkdir()
    else:
        p = cwd / "nope.yaml"
    o = check(dry_run(p, cwd), "config path (corpus)")
    assert len(o.stderr) < 2000 or kind == "long-name"


@given(st.text(alphabet=st.sampled_from(list("ab: -[]{}&*!|>'\"#%@`,?\n\t.0123456789e")), max_size=300))
@fuzz(20)
def test_random_yaml_text(case_dir, text):
    cwd = case_dir()
    p = cwd / "random.yaml"
    p.write_text(text, encoding="utf-8")
    check(dry_run(p, cwd), "yaml text (generated)", codes=(0, 2))


# -- mutations of every shipped experiment ------------------------------------------------------------------------------
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.sampled_from([0, -1, 1, 2**63, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("inf"), float("nan"), -0.0, 1e308]),
    st.text(max_size=40), st.sampled_from(["x" * 100_000, "[bold]x[/]", "${HOME}", "../../etc/passwd", "\x00"]),
    st.lists(st.integers(-5, 5) | st.text(max_size=5), max_size=6),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)


def leaf_paths(d, prefix=()):
    if isinstance(d, dict):
        for k, v in d.items():
            yield prefix + (k,)
            yield from leaf_paths(v, prefix + (k,))


@st.composite
def mutated_experiment(draw):
    path = draw(st.sampled_from(EXPERIMENTS))
    doc = yaml.safe_load(path.read_text())
    for _ in range(draw(st.integers(1, 3))):
        paths = list(leaf_paths(doc))
        where = draw(st.sampled_from(paths))
        node = doc
        for k in where[:-1]:
            node = node[k]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            node[where[-1]] = draw(HOSTILE)
        elif op == "delete":
            node.pop(where[-1], None)
        elif isinstance(node.get(where[-1]), dict):
            node[where[-1]][draw(st.text(min_size=1, max_size=10))] = draw(HOSTILE)
    return path.name, doc


@given(mutated_experiment())
@fuzz(40)
def test_mutated_shipped_experiment(case_dir, case):
    name, doc = case
    cwd = case_dir()
    p = cwd / name
    p.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    check(dry_run(p, cwd), "experiment mutation (generated)", codes=(0, 2))


# -- command-line overrides --------------------------------------------------------------------------------------------
KEYS = ["optimizer.lr", "optimizer.name", "optimizer.momentum", "train.seeds", "train.steps", "train.epochs",
        "train.batch_size", "train.dtype", "model.bn", "model.hidden", "model.depth", "model.width",
        "model.init_std", "model.activation", "data.name", "data.synthetic.n_train", "data.synthetic.noise",
        "sweep.method", "sweep.count", "sweep.floor", "bogus", "model.bogus.deeper", "", ".", "a..b",
        ".".join(["k"] * 2000)]
VALUES = st.one_of(
    st.sampled_from(["1", "-1", "0", "1e300", "1e-400", ".inf", "-.inf", ".nan", "nan", "true", "null", "~", "[]",
                     "{}", "[none,[before]]", "none,before", "[", "]", "{a: [", "!!python/name:os.system",
                     "1000000000", "9" * 5000, "x" * 50_000, "logrange(1e-3,.inf,2)", "logrange(1e-3,.nan,2)",
                     "linrange(0,1,100000000)", "logrange(1e-9,1e9,1000000)", "logrange(1,0,3)",
                     "linrange(0,1,-5)", "logrange(a,b,c)", "logrange(1,2)", "1,2,3," * 2000]),
    st.text(max_size=30))


@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
@fuzz(40)
def test_random_overrides(case_dir, pairs):
    cwd = case_dir()
    items = [f"{k}={v}" for k, v in pairs]
    check(dry_run(QUICKSTART, cwd, *items), "override (generated)", codes=(0, 2))


@pytest.mark.parametrize("item", ["=1", "noequals", "model.bn=[none,[before]]", "train.seeds=1000000000",
                                  "train.steps=10", "optimizer.lr=true", "train.batch_size=1"])
def test_override_corpus_with_train(case_dir, item):
    """Through `bncli train` itself (no dry run): a bad override is refused before anything is trained."""
    cwd = case_dir()
    o = bncli(["train", QUICKSTART, "train.steps=5", "train.seeds=1", item, "--out", cwd / "out", "-j", "1"], cwd)
    check(o, "override through train (corpus)", codes=(0, 2) if item == "train.steps=10" else (2,))
    if o.code == 2:
        assert not (cwd / "out").exists()  # a refused input leaves no half-written folder


# -- sweep sections ----------------------------------------------------------------------------------------------------
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12),
                    st.sampled_from([0, 1e-300, 1e300, 10**9, 10**6, -1, 2]))


FIELD = {"scale": st.sampled_from(["log", "linear", "cubic"]),
         "distribution": st.sampled_from(["log_uniform_values", "uniform", "int_uniform", "normal"]),
         "values": st.lists(NUMBERS | st.text(max_size=4), max_size=8) | st.just(list(range(200_000)))}


@st.composite
def sweep_section(draw):
    params = {}
    for key in draw(st.lists(st.sampled_from(["optimizer.lr", "model.init_std", "train.batch_size", "model.depth",
                                              "optimizer.momentum", "model.bn_decay", "optimizer.name"]),
                             min_size=1, max_size=3, unique=True)):
        spec = {}
        for field in draw(st.lists(st.sampled_from(["min", "max", "scale", "per_decade", "num", "values",
                                                    "distribution"]), max_size=5, unique=True)):
            spec[field] = draw(FIELD.get(field, NUMBERS))
        params[key] = spec
    sweep = {"parameters": params}
    if draw(st.booleans()):
        sweep.update(method="random", count=draw(NUMBERS), seed=draw(st.integers(-1, 2**70)))
    return sweep


@given(sweep_section())
@fuzz(40)
def test_random_sweep_section(case_dir, sweep):
    cwd = case_dir()
    doc = copy.deepcopy(yaml.safe_load(QUICKSTART.read_text()))
    doc["sweep"] = sweep
    p = cwd / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    check(dry_run(p, cwd), "sweep section (generated)", codes=(0, 2))


@pytest.mark.parametrize("sweep", [
    {"optimizer.lr": {"min": 1e-3, "max": float("inf"), "scale": "log", "per_decade": 2}},
    {"optimizer.lr": {"min": 1e-3, "max": float("nan"), "scale": "log", "per_decade": 2}},
    {"optimizer.lr": {"min": 0.0, "max": 1.0, "num": 100_000_000}},
    {"optimizer.lr": {"min": 1e-9, "max": 1.0, "scale": "log", "per_decade": 1_000_000}},
    {"optimizer.lr": {"values": list(range(1, 1001))}, "model.init_std": {"values": [i / 1000 for i in range(1, 1001)]}},
])
def test_sweep_corpus(case_dir, sweep):
    cwd = case_dir()
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["sweep"] = {"parameters": sweep}
    p = cwd / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    check(dry_run(p, cwd), "sweep section (corpus)", says=str(p))


def test_random_search_with_a_billion_draws(case_dir):
    cwd = case_dir()
    doc = yaml.safe_load(QUICKSTART.read_text())
    doc["sweep"] = {"method": "random", "count": 1_000_000_000,
                    "parameters": {"optimizer.lr": {"min": 1e-3, "max": float("inf"),
                                                    "distribution": "log_uniform_values"}}}
    p = cwd / "sweep.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    check(dry_run(p, cwd), "sweep section (corpus)", says=str(p))


@pytest.mark.parametrize("kind", ["under-a-file", "long-name", "device", "proc", "a-file", "unknown-only",
                                  "traversal-only", "bare-long-name", "edited-copy"])
def test_hostile_examples_and_experiments_paths(case_dir, kind):
    """`bncli examples DIR`, `--experiments DIR` and a CONFIG that names no file: one line, exit 2, nothing lost."""
    cwd = case_dir()
    (cwd / "file").write_text("x")
    args = {"under-a-file": ["examples", cwd / "file" / "x"], "long-name": ["examples", cwd / ("d" * 5000)],
            "device": ["examples", "/dev/null"], "proc": ["examples", "/proc/self/nope"],
            "a-file": ["report", "--experiments", cwd / "file"],
            "unknown-only": ["examples", cwd / "out", "--only", "nope"],
            "traversal-only": ["examples", cwd / "out", "--only", "../../etc/passwd"],
            "bare-long-name": ["train", "q" * 5000],
            "edited-copy": ["examples", cwd / "mine"]}[kind]
    if kind == "edited-copy":
        (cwd / "mine").mkdir()
        (cwd / "mine" / "quickstart.yaml").write_text("name: edited\n")
    o = check(bncli([str(a) for a in args], cwd), "examples and experiments paths (corpus)")
    assert len(o.stderr) < 1000, o.stderr[:300]
    assert not (cwd / "out").exists()
    if kind == "edited-copy":
        assert (cwd / "mine" / "quickstart.yaml").read_text() == "name: edited\n"
