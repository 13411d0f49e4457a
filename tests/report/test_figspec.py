"""Figure specs (bncli.report.figspec): the JSON form of a figure's arguments and its one rule for NaN and +-inf,
the allow-list of drawing functions, drawing = replaying a spec; and the report package's one-way imports with
its explicit claim registry."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import numpy as np
import pytest

from bncli import plotting
from bncli.errors import UsageError
from bncli.report import STUDIES, figures, figspec

REPORT_PKG = Path(figspec.__file__).parent


def same(a, b) -> bool:
    """Equal, NaN equal to NaN, types included (lists stay lists, ints stay ints)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def through_file(x):
    return figspec.decode(json.loads(json.dumps(figspec.encode(x), allow_nan=False)))


def test_arguments_round_trip_with_nan_and_infinities():
    x = {"curves": {"none": [(["step", "loss"], [[0.0, math.nan], [10.0, math.inf], [20.0, -math.inf]])]},
         "arr": np.array([[1.5, np.nan], [np.inf, -np.inf]], dtype=np.float32), "n": np.int64(3),
         "flag": np.bool_(True), "mean": np.float64(0.25), "none": None, "label": "nan", "k": 7}
    y = through_file(x)
    assert same(y, {"curves": {"none": [[["step", "loss"], [[0.0, math.nan], [10.0, math.inf], [20.0, -math.inf]]]]},
                    "arr": [[1.5, math.nan], [math.inf, -math.inf]], "n": 3, "flag": True, "mean": 0.25, "none": None,
                    "label": "nan", "k": 7})
    text = json.dumps(figspec.encode(x), allow_nan=False)  # strict JSON: no NaN / Infinity tokens
    assert '{"$float": "nan"}' in text and '{"$float": "-inf"}' in text and "NaN" not in text


def test_float_values_survive_exactly():
    xs = [0.1, 1 / 3, 2.0 ** -1074, 1.7976931348623157e308, float(np.float32(0.1)), -0.0]
    assert same(through_file(xs), xs) and math.copysign(1, through_file(xs)[-1]) == -1


@pytest.mark.parametrize("bad", [{1: "int key"}, {"$float": "x"}, {Path("p"): 1}, {"s": {1, 2}}, {"p": Path("x")},
                                 {"f": lambda: 0}])
def test_what_json_cannot_hold_faithfully_is_refused(bad):
    with pytest.raises(TypeError):
        figspec.encode(bad)


def test_only_allow_listed_functions_and_safe_names():
    import importlib

    for name, fn in figspec.DRAWERS.items():  # each stored name is the public import path of its function
        module, _, attr = name.rpartition(".")
        assert getattr(importlib.import_module(module), attr) is fn, name
    assert set(figspec.DRAWERS.values()) == {figures.bars, figures.lines, figures.percentiles, figures.differences,
                                            plotting.learning_curves, plotting.range_figure}
    with pytest.raises(ValueError, match="not an allowed"):
        figspec.make("x", print, {})
    for name in ("../x", "a/b", ".hidden", ""):
        with pytest.raises(ValueError, match="figure name"):
            figspec.make(name, figures.bars, {})
    with pytest.raises(ValueError, match="path"):
        figspec.make("x", figures.bars, {"path": "elsewhere.png"})
    with pytest.raises(UsageError, match="unknown drawing function"):
        figspec.draw({"name": "x", "draw": "os.system", "args": {}}, ".", "png")
    with pytest.raises(UsageError, match="bad name"):
        figspec.draw({"name": "../x", "draw": "bncli.report.figures.bars", "args": {}}, ".", "png")


def _bars_spec():
    panels = [("panel", ["a", "b"], {"none": [(0.5, 0.4, 0.6), (math.nan, math.nan, math.nan)],
                                     "before": [(np.float64(0.7), 0.6, 0.8), (0.2, 0.1, 0.3)]})]
    return figspec.make("tiny", figures.bars, {"title": "T", "panels": panels, "ylabel": "y"}, claim="CX")


def test_a_spec_written_read_and_replayed_draws_the_same_png(tmp_path):
    spec = _bars_spec()
    first = figspec.draw(spec, tmp_path / "a", "png")
    (tmp_path / "rep" / "figures").mkdir(parents=True)
    figspec.write(tmp_path / "rep" / "figures" / figspec.FILE, [spec])
    assert figspec.read(tmp_path / "rep") == [spec]
    again = figspec.replay(tmp_path / "rep", tmp_path / "b", "png")
    assert [p.name for p in again] == ["tiny.png"]
    assert again[0].read_bytes() == first.read_bytes()
    svg = figspec.replay(tmp_path / "rep", tmp_path / "c", "svg")[0].read_bytes()
    assert b"<svg" in svg[:400]


def test_an_empty_spec_file_is_valid_json(tmp_path):
    figspec.write(tmp_path / "figures" / figspec.FILE, [])
    assert figspec.read(tmp_path) == [] and figspec.replay(tmp_path, tmp_path / "out", "png") == []


def test_unreadable_or_foreign_spec_files_are_usage_errors(tmp_path):
    (tmp_path / "figures").mkdir()
    with pytest.raises(UsageError, match="run `bncli report` again"):
        figspec.read(tmp_path)
    (tmp_path / "figures" / figspec.FILE).write_text("{not json")
    with pytest.raises(UsageError, match=r"figures\.json: damaged or not written by bncli \(expected the figure "
                                         r"specs of `bncli report`, strict JSON; Expecting property name"):
        figspec.read(tmp_path)
    (tmp_path / "figures" / figspec.FILE).write_text('{"format": "something else", "figures": []}')
    with pytest.raises(UsageError, match="not a version"):
        figspec.read(tmp_path)


# -- the package's structure --------------------------------------------------------------------------------------------
def _report_imports() -> dict[str, set[str]]:
    """{module: modules of bncli.report it imports (at any level, also inside functions)}."""
    mods = {p.stem for p in REPORT_PKG.glob("*.py")}
    graph = {}
    for p in REPORT_PKG.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1 and node.module:  # from .x import ...
                    deps.add(node.module.split(".")[0])
                elif node.level == 1:  # from . import x, y
                    deps.update(a.name for a in node.names)
                elif node.level == 0 and (node.module or "").startswith("bncli.report."):
                    deps.add(node.module.split(".")[2])
        graph[p.stem] = deps & mods - {p.stem}
    return graph


def test_the_report_modules_import_one_way():
    graph = _report_imports()
    assert "ranges" in graph["registry"] and "mechanisms" in graph["registry"]
    assert {"registry", "claims"}.isdisjoint(graph["ranges"] | graph["mechanisms"] | graph["claim"])
    seen, done = set(), set()

    def visit(m, path):
        assert m not in seen or m in done, f"import cycle: {' -> '.join(path + [m])}"
        if m in done:
            return
        seen.add(m)
        for d in sorted(graph[m]):
            visit(d, path + [m])
        done.add(m)

    for m in sorted(graph):
        visit(m, [])


def test_the_registry_lists_every_study_once_in_report_order():
    from bncli.report.registry import REGISTRY

    from bncli.report import SUPPORTING

    from bncli.report import SHARED_STUDY

    # one study may serve several claims (C14-C16), listed once per claim, consecutively
    assert list(dict.fromkeys(s for s, _, _ in REGISTRY)) == [s for s in STUDIES if s not in SUPPORTING]
    assert set(SUPPORTING.values()) <= set(STUDIES) and set(SUPPORTING) <= set(STUDIES)
    assert [cid for _, cid, _ in REGISTRY] == [f"C{i}" for i in range(1, 17)]
    assert all(s == SHARED_STUDY.get(int(cid[1:]), s) for s, cid, _ in REGISTRY)
    assert all(callable(fn) for _, _, fn in REGISTRY)


# -- a damaged spec file: one UsageError naming the file and the figure, nothing drawn ---------------------------------
def _spec_file(tmp_path, specs, **doc) -> Path:
    path = tmp_path / "figures" / figspec.FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": figspec.FORMAT, "version": figspec.VERSION, "figures": specs, **doc}))
    return path


def _with(spec: dict, **changes) -> dict:
    out = json.loads(json.dumps(spec))
    out.update(changes)
    return out


def _args(spec: dict, **changes) -> dict:
    out = json.loads(json.dumps(spec))
    out["args"].update(changes)
    return out


BARS = _bars_spec()
DAMAGED_SPECS = [  # (specs, fragments of the message)
    (5, ["expected a list of figure specs under 'figures'"]),
    ({"a": 1}, ["expected a list of figure specs"]),
    ([5], ["figure 1: damaged", "an object with 'name', 'draw' and 'args'"]),
    ([BARS, "x"], ["figure 2: damaged"]),
    ([_with(BARS, draw="os.system")], ["figure 'tiny'", "'draw' naming one of"]),
    ([_with(BARS, draw=["bncli.report.figures.bars"])], ["'draw' naming one of"]),
    ([_with(BARS, name="../escape")], ["a 'name' of at most 100"]),
    ([_with(BARS, name="x" * 5000)], ["a 'name' of at most 100"]),
    ([_with(BARS, name=7)], ["figure 1: damaged", "a 'name'"]),
    ([_with(BARS, args=[1, 2])], ["'args', an object"]),
    ([{k: v for k, v in BARS.items() if k != "args"}], ["'args', an object"]),
    ([{**BARS, "args": {"title": "T", "ylabel": "y"}}], ["argument 'panels' in 'args'"]),
    ([_args(BARS, path="/etc/passwd")], ["only the arguments", "found 'path'"]),
    ([_args(BARS, colour="red")], ["found 'colour'"]),
    ([_args(BARS, title=[1, 2])], ["args['title'] to be a string, found an array"]),
    ([_args(BARS, panels="p")], ["args['panels'] to be an array, found a string"]),
    ([_args(BARS, panels=[["panel", ["a"], {"none": [[[1, 2], 0.4, 0.6]]}]])],
     ["args['panels'][0][2]['none'][0][0] to be a number, found an array"]),
    ([_args(BARS, panels=[["panel", ["a"], {"none": [[0.5, 0.4]]}]])], ["to be an array of 3, found 2 values"]),
    ([_args(BARS, panels=[["panel", ["a"], {"none": [[{"$float": "huge"}, 0.4, 0.6]]}]])], ["$float: expected"]),
    ([_args(BARS, panels=[["p", ["a"], {}]] * 101)], ["at most 100 entries in 'panels', found 101"]),
]


@pytest.mark.parametrize("specs, fragments", DAMAGED_SPECS, ids=[str(i) for i in range(len(DAMAGED_SPECS))])
def test_a_damaged_spec_file_is_one_usage_error_naming_it_and_draws_nothing(tmp_path, specs, fragments):
    path = _spec_file(tmp_path, specs)
    with pytest.raises(UsageError) as e:
        figspec.replay(tmp_path, tmp_path / "out", "png")
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "run `bncli report` again" in msg and "\n" not in msg
    for f in fragments:
        assert f in msg, (f, msg)
    assert not (tmp_path / "out").exists()  # every spec is checked before anything is drawn


@pytest.mark.parametrize("name, args, error", [
    ("bars", {"panels": [["panel", ["a", "b"], {"none": [[0.5, 0.4, 0.6]]}]]}, "IndexError"),  # 2 categories, 1 bar
    ("bars", {"panels": []}, "ValueError"),
    ("range", None, "KeyError"),
])
def test_a_spec_whose_values_the_drawing_function_cannot_draw_names_the_figure(tmp_path, name, args, error):
    if name == "bars":
        spec = _args(BARS, **args)
    else:
        spec = figspec.make("tiny_range", plotting.range_figure, {
            "range_rows": [{"arm": "none", "optimizer.lr": 0.1}], "usable": [], "keys": ["optimizer.lr"],
            "range_key": "optimizer.lr", "title": "T"})  # a row without its accuracy columns
    path = _spec_file(tmp_path, [spec])
    with pytest.raises(UsageError) as e:
        figspec.replay(tmp_path, tmp_path / "out", "png")
    msg = str(e.value)
    assert msg.startswith(f"{path}: figure '{spec['name']}': damaged or not written by bncli")
    assert f"it failed with {error}" in msg and "\n" not in msg


def test_a_drawing_failure_outside_replay_is_not_turned_into_a_usage_error(tmp_path):
    """The report's own figures (drawn from `make`): a failure there is a bug and propagates as it is."""
    spec = _args(BARS, panels=[])
    with pytest.raises(ValueError):
        figspec.draw(spec, tmp_path, "png")


def test_the_argument_shapes_cover_every_drawing_function_exactly():
    import inspect

    assert set(figspec.ARG_SHAPES) == set(figspec.DRAWERS)
    for name, fn in figspec.DRAWERS.items():
        params = set(inspect.signature(fn).parameters) - {"path"}
        assert set(figspec.ARG_SHAPES[name]) == params, name


@pytest.mark.parametrize("report", ["report-quick", "report-full"])
def test_the_published_reports_specs_pass_the_checks(tmp_path, report):
    """Every spec of each report in the repository (results/report-quick, results/report-full) has the shapes
    replay checks."""
    src = Path(__file__).resolve().parents[2] / "results" / report
    if not (src / "figures" / figspec.FILE).is_file():
        pytest.skip("no published report")
    specs = figspec.read(src)
    path = src / "figures" / figspec.FILE
    checked = [figspec._check_spec(s, i, path) for i, s in enumerate(specs)]
    assert [name for _, name, _ in checked] == [s["name"] for s in specs]
