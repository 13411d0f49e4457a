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


# -- hostile documents: refused with a line, before they exhaust the stack, the time or the memory ----------------
def laughs(levels=9, width=9):
    """'Billion laughs': each level is a list of ``width`` aliases of the level below (9**9 values expanded)."""
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def yaml_error(text) -> YamlError:
    with pytest.raises(YamlError) as e:
        load_with_lines(text)
    return e.value


def test_an_alias_inside_its_own_anchor_is_refused_not_a_recursion_error():
    e = yaml_error("name: x\na: &a [*a]\n")
    assert e.line == 2
    assert e.message == ("YAML nested more than 100 levels deep (with aliases expanded; an alias inside its own anchor "
                         "nests forever)")


def test_a_mapping_that_merges_itself_is_refused():
    assert yaml_error("a: &a {b: 1, c: *a}\n").line == 1


def test_billion_laughs_is_refused_at_the_level_that_expands_past_the_cap():
    e = yaml_error(laughs())
    # a4 expands to 13,942 nodes, a5 to 125,479: the cap (100,000) is passed at a5, on line 6
    assert e.line == 6
    assert e.message == "YAML too large: more than 100,000 values (an alias counts as often as it is used)"


def test_aliases_within_the_limits_are_fine():
    data, _ = load_with_lines(laughs(levels=3, width=3) + "s: &s 0.1\nt: *s\n")
    assert data["a3"] == [[[["x"]] * 3] * 3] * 3 and data["t"] == 0.1
    merged, _ = load_with_lines("base: &b {lr: 0.1, name: sgd}\nopt: {<<: *b, lr: 0.2}\n")
    assert merged["opt"] == {"lr": 0.2, "name": "sgd"}  # merge keys still work


def test_alias_chains_count_nesting_with_aliases_expanded():
    # 150 levels, each one line deep in the text: the composer sees 3 levels, the expanded document 152.
    text = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 150))
    e = yaml_error(text)
    # a98 (line 99) would reach level 101 through *a97: the line is the anchor's (an alias is its anchor's node)
    assert e.line == 98 and "nested more than 100 levels" in e.message


@pytest.mark.parametrize("text", [
    "name: x\nmodel: {hidden: " + "[" * 5000 + "1" + "]" * 5000 + "}\n",
    "name: x\nmodel: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
    "name: x\nmodel: " + "[" * 5000 + "\n",  # never closed
    "name: x\nmodel:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 5000)),  # block style
])
def test_deep_nesting_is_refused_not_a_recursion_error(text):
    e = yaml_error(text)
    assert e.line >= 2 and e.message.startswith("YAML nested more than 100 levels deep")


def test_nesting_up_to_the_limit_is_fine():
    data, _ = load_with_lines("a: " + "[" * 98 + "1" + "]" * 98 + "\n")  # the mapping, a and 98 lists, then 1
    assert data["a"] == eval("[" * 98 + "1" + "]" * 98)


def test_a_5000_digit_number_is_refused_with_its_line():
    e = yaml_error("name: x\ntrain: {seeds: " + "9" * 5000 + "}\n")
    assert (e.line, e.message) == (2, "YAML number too long: 5000 digits (at most 100)")


def test_long_floats_are_read_and_huge_ones_become_inf_for_the_config_to_refuse():
    data, _ = load_with_lines("a: 0." + "1" * 5000 + "e-3\nb: 1e999\n")
    assert data["a"] == pytest.approx(1.1111e-4, rel=1e-4) and data["b"] == float("inf")


def test_a_value_pyyaml_cannot_build_is_refused_with_its_line():
    e = yaml_error("name: x\ndescription: 2024-13-01\n")  # looks like a date, is not one
    assert (e.line, e.message) == (2, "YAML value '2024-13-01' cannot be read (month must be in 1..12)")


@pytest.mark.parametrize("tag, value", [("set", "{none, before}"), ("binary", "aGVsbG8="), ("omap", "[a: 1]"),
                                        ("pairs", "[a: 1]")])
def test_tags_for_sets_bytes_and_pairs_are_refused(tag, value):
    # A set would make the order of model.bn's arms (and so of the runs) depend on Python's hash seed.
    e = yaml_error(f"name: x\nmodel: {{bn: !!{tag} {value}}}\n")
    assert e.line == 2 and e.message == (f"YAML not allowed: tag !!{tag} (a config holds plain values, lists and "
                                         "mappings)")


@pytest.mark.parametrize("text, expected", [
    ("&a [*a]", "cannot read '&a [*a]' as a YAML value (YAML nested more than 100 levels deep"),
    ("[" * 5000, "as a YAML value (YAML nested more than 100 levels deep)"),
    ("9" * 200, "as a YAML value (YAML number too long: 200 digits (at most 100))"),
    ("!!set {a}", "as a YAML value (YAML not allowed: tag !!set"),
])
def test_command_line_values_have_the_same_limits(text, expected):
    with pytest.raises(YamlError) as e:
        parse_scalar(text)
    assert expected in e.value.message
    assert len(e.value.message) < 300  # the value is echoed clipped


def test_long_problem_text_is_clipped():
    e = yaml_error("a: *" + "x" * 5000 + "\n")
    assert e.message.startswith("YAML syntax error: found undefined alias 'xxx") and "..." in e.message
    assert len(e.message) < 300


@pytest.mark.parametrize("text, limit, expected", [
    ("short", 80, "short"),
    ("x" * 80, 80, "x" * 80),
    ("a" * 50 + "b" * 50, 20, "a" * 8 + "..." + "b" * 8),
])
def test_clip_keeps_start_and_end(text, limit, expected):
    assert yamlio.clip(text, limit) == expected
    assert len(yamlio.clip("z" * 200_000)) <= 80
