"""bncli.yamlio: YAML 1.2 floats, line numbers, duplicate keys, safe loading."""

from __future__ import annotations

import pytest
import yaml

from bncli import yamlio
from bncli.yamlio import YamlError, load_with_lines, parse_scalar


# -- scalars ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("1e-3", 1e-3),
    ("-2E-4", -2e-4),
    ("1.5e+2", 150.0),
    ("1e3", 1000.0),
    ("+3e1", 30.0),
    (".5e1", 5.0),
    ("0.05", 0.05),
])
def test_exponent_numbers_are_floats(text, expected):
    data, _ = load_with_lines(f"x: {text}\n")
    assert type(data["x"]) is float
    assert data["x"] == pytest.approx(expected, rel=1e-12)


def test_plain_pyyaml_would_read_1e_minus_3_as_a_string():
    # The reason the custom resolver exists; also proves it did not leak into yaml.SafeLoader itself.
    assert yaml.safe_load("x: 1e-3")["x"] == "1e-3"
    assert load_with_lines("x: 1e-3")[0]["x"] == 1e-3


@pytest.mark.parametrize("text, expected", [("3", 3), ("-7", -7), ("0", 0), ("100", 100)])
def test_ints_stay_ints(text, expected):
    data, _ = load_with_lines(f"x: {text}\n")
    assert type(data["x"]) is int and data["x"] == expected


@pytest.mark.parametrize("text", ["sigmoid", "mnist-5k", "e5", "1e", "1e-", "abc1e-3", "1.2.3"])
def test_plain_strings_stay_strings(text):
    data, _ = load_with_lines(f"x: {text}\n")
    assert data["x"] == text and isinstance(data["x"], str)


def test_quoted_number_stays_a_string():
    data, _ = load_with_lines('x: "1e-3"\ny: \'2\'\n')
    assert data == {"x": "1e-3", "y": "2"}


def test_bools_and_null():
    data, _ = load_with_lines("a: true\nb: false\nc: null\nd: ~\n")
    assert data == {"a": True, "b": False, "c": None, "d": None}


def test_empty_document_is_an_empty_mapping():
    assert load_with_lines("") == ({}, {})
    assert load_with_lines("# just a comment\n") == ({}, {})


# -- line map -----------------------------------------------------------------------------------------------------
def test_line_map_of_nested_keys_and_list_items():
    text = (
        "# comment line 1\n"       # 1
        "name: demo\n"             # 2
        "model:\n"                 # 3
        "  hidden:\n"              # 4
        "    - 10\n"               # 5
        "    - 20\n"               # 6
        "\n"                       # 7
        "  bn: [none, before]\n"   # 8
        "train:\n"                 # 9
        "  seeds: 3\n"             # 10
    )
    data, lines = load_with_lines(text)
    assert data == {"name": "demo", "model": {"hidden": [10, 20], "bn": ["none", "before"]}, "train": {"seeds": 3}}
    assert lines[("name",)] == 2
    assert lines[("model",)] == 3
    assert lines[("model", "hidden")] == 4
    assert lines[("model", "hidden", 0)] == 5
    assert lines[("model", "hidden", 1)] == 6
    assert lines[("model", "bn")] == 8
    assert lines[("model", "bn", 0)] == 8
    assert lines[("model", "bn", 1)] == 8
    assert lines[("train",)] == 9
    assert lines[("train", "seeds")] == 10
    assert ("model", "hidden", 2) not in lines


def test_line_map_of_mappings_inside_lists():
    text = "runs:\n  - lr: 0.1\n    bn: none\n  - lr: 0.2\n"
    data, lines = load_with_lines(text)
    assert data == {"runs": [{"lr": 0.1, "bn": "none"}, {"lr": 0.2}]}
    assert lines[("runs", 0, "bn")] == 3
    assert lines[("runs", 1)] == 4
    assert lines[("runs", 1, "lr")] == 4


# -- errors -------------------------------------------------------------------------------------------------------
def test_duplicate_top_level_key_is_an_error_with_its_line():
    with pytest.raises(YamlError) as e:
        load_with_lines("a: 1\nb: 2\na: 3\n")
    assert e.value.line == 3
    assert "duplicate" in e.value.message and "'a'" in e.value.message


def test_duplicate_nested_key_names_the_dotted_path_and_line():
    text = "model:\n  hidden: [3]\n  activation: relu\n\n  hidden: [4]\n"
    with pytest.raises(YamlError) as e:
        load_with_lines(text)
    assert e.value.line == 5
    assert "model.hidden" in e.value.message


def test_same_key_in_different_sections_is_not_a_duplicate():
    data, lines = load_with_lines("a:\n  name: x\nb:\n  name: y\n")
    assert data == {"a": {"name": "x"}, "b": {"name": "y"}}
    assert lines[("b", "name")] == 4


@pytest.mark.parametrize("text, line", [
    ("a: 1\nb: [1, 2\nc: 3\n", 3),      # unclosed flow sequence, noticed at the next key
    ("a: 1\n  b: 2\n", 2),              # bad indentation
    ("a: 1\nb: 'open\n", None),         # unclosed quote (reported at end of stream)
])
def test_syntax_error_is_a_yaml_error_with_a_line(text, line):
    with pytest.raises(YamlError) as e:
        load_with_lines(text)
    assert isinstance(e.value.line, int) and e.value.line >= 1
    if line is not None:
        assert e.value.line == line
    assert "syntax" in e.value.message.lower()


def test_two_documents_are_refused():
    with pytest.raises(YamlError):
        load_with_lines("a: 1\n---\nb: 2\n")


# -- parse_scalar -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("0.05", 0.05),
    ("[none, before]", ["none", "before"]),
    ("[none,before]", ["none", "before"]),
    ("null", None),
    ("1e-3", 1e-3),
    ("true", True),
    ("3", 3),
    ("before", "before"),
    ("", None),
])
def test_parse_scalar(text, expected):
    value = parse_scalar(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_scalar_syntax_error_is_a_yaml_error():
    with pytest.raises(YamlError) as e:
        parse_scalar("[a, b")
    assert "[a, b" in e.value.message


# -- safety -------------------------------------------------------------------------------------------------------
PYTHON_TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/apply:subprocess.call [["touch", "{marker}"]]',
    '!!python/object/new:os.system ["touch {marker}"]',
]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_object_tags_are_refused_and_never_executed(tmp_path, tag):
    marker = tmp_path / "executed"
    text = "a: " + tag.format(marker=marker) + "\n"
    with pytest.raises(YamlError):
        load_with_lines(text)
    assert not marker.exists()


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_object_tags_in_overrides_are_refused_and_never_executed(tmp_path, tag):
    marker = tmp_path / "executed"
    with pytest.raises(YamlError):
        parse_scalar(tag.format(marker=marker))
    assert not marker.exists()


def test_python_object_tag_is_reported_as_yaml_error_with_line(tmp_path):
    marker = tmp_path / "executed"
    with pytest.raises(YamlError) as e:
        load_with_lines(f"a: 1\nb: !!python/object/apply:os.system [\"touch {marker}\"]\n")
    assert e.value.line == 2
    assert not marker.exists()


def test_non_scalar_key_is_a_yaml_error():
    with pytest.raises(YamlError) as e:
        load_with_lines("a: 1\n? [x, y]\n: 2\n")
    assert e.value.line == 2


def test_control_character_is_a_yaml_error():
    with pytest.raises(YamlError):
        load_with_lines('a: 1\nb: "\x07"\n')


def test_dump_roundtrip():
    data = {"name": "x", "model": {"hidden": [3, 4], "bn_eps": 1e-5}, "optimizer": {"lr": 0.001}}
    back, _ = load_with_lines(yamlio.dump(data))
    assert back == data
