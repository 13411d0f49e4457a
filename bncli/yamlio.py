"""Safe YAML reading with line numbers, and the one float fix PyYAML needs.

PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a *string*. ``Loader`` is ``yaml.SafeLoader`` plus a YAML 1.2
float resolver, so ``1e-3`` is a float; it constructs only plain scalars, lists and mappings (no Python objects, no
sets, binary or ordered pairs), like ``yaml.safe_load``.

Hostile documents are refused with a line number before they can exhaust the stack, the time or the memory: nesting
deeper than ``MAX_DEPTH`` (counted with aliases expanded, so an alias that contains itself is caught too), more than
``MAX_NODES`` values once aliases are expanded ("billion laughs"), and integers longer than ``MAX_INT_DIGITS``.
"""

from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError

MAX_DEPTH = 100  # levels of nesting; configs use about 5, and PyYAML recurses per level
MAX_NODES = 100_000  # values with aliases expanded: 9 levels of 9 aliases would be 9**9
MAX_INT_DIGITS = 100  # Python refuses int("9" * 5000) with a ValueError; no config number is near 100 digits


class YamlError(ValueError):
    def __init__(self, line, message):
        super().__init__(message)
        self.line, self.message = line, message


def clip(text: str, limit: int = 80) -> str:
    """``text`` shortened for an error message: a 200 KB value is shown as its start and end around "..."."""
    if len(text) <= limit:
        return text
    half = (limit - 3) // 2
    return f"{text[:half]}...{text[-half:]}"


def _line(node_or_mark) -> int:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return mark.line + 1


class Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        # The composer recurses once per level: stop before 5,000 nested "[" reach Python's recursion limit.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlError(_line(self.peek_event()), f"YAML nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node, deep=False):
        # Scalars PyYAML cannot build (a date like 2024-13-01) raise ValueError: report them at their own line.
        try:
            return super().construct_object(node, deep)
        except (YamlError, yaml.YAMLError):
            raise
        except (ValueError, OverflowError) as e:
            raise YamlError(_line(node), f"YAML value {clip(repr(node.value))} cannot be read ({e})") from None

    def construct_yaml_int(self, node):
        if len(node.value) > MAX_INT_DIGITS:
            raise YamlError(_line(node), f"YAML number too long: {len(node.value)} digits (at most {MAX_INT_DIGITS})")
        return super().construct_yaml_int(node)

    def refuse_tag(self, node):
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise YamlError(_line(node), f"YAML not allowed: tag {tag} (a config holds plain values, lists and mappings)")


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
for _tag in ("set", "binary", "omap", "pairs"):  # a set would make the order of model.bn's arms random
    Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", Loader.refuse_tag)


def load_with_lines(text: str):
    """Parse one YAML document. Returns (data, lines) where ``lines`` maps key paths (tuples) to 1-based lines.
    Duplicate keys are an error (PyYAML would silently keep the last one)."""
    try:
        data, lines = _load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        kind = "not allowed" if isinstance(e, ConstructorError) else "syntax error"
        raise YamlError(_line(mark) if mark else None, f"YAML {kind}: {clip(problem, 200)}") from None
    return ({}, {}) if data is _EMPTY else (data, lines)


_EMPTY = object()  # a document with no node at all (empty, or only comments)


def _load(text: str):
    loader = Loader(text)  # inside the caller's try: the reader already refuses control characters here
    try:
        node = loader.get_single_node()
        if node is None:
            return _EMPTY, {}
        _measure(node, 1, {})
        lines: dict[tuple, int] = {}
        _walk(node, (), lines)
        # Tags that would build Python objects (!!python/...) are refused here, never executed.
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def _measure(node, depth, memo) -> tuple[int, int]:
    """(values, levels) below ``node`` with aliases expanded. An alias is the same node object as its anchor, so
    ``memo`` (by id) measures a shared subtree once: linear time however many times it is used."""
    if depth > MAX_DEPTH:
        raise YamlError(_line(node), f"YAML nested more than {MAX_DEPTH} levels deep (with aliases expanded; an "
                                     "alias inside its own anchor nests forever)")
    if id(node) in memo:
        size, levels = memo[id(node)]
        if depth + levels - 1 > MAX_DEPTH:
            raise YamlError(_line(node), f"YAML nested more than {MAX_DEPTH} levels deep (with aliases expanded)")
        return size, levels
    children = (node.value if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
    size, levels = 1, 1
    for child in children:
        s, n = _measure(child, depth + 1, memo)
        size, levels = size + s, max(levels, n + 1)
        if size > MAX_NODES:
            raise YamlError(_line(node), f"YAML too large: more than {MAX_NODES:,} values (an alias counts as "
                                         "often as it is used)")
    memo[id(node)] = size, levels
    return size, levels


def _walk(node, path, lines):
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(_line(key_node), "keys must be plain names, not lists or mappings")
            key = key_node.value
            if key in seen:
                raise YamlError(_line(key_node), f"duplicate key {clip('.'.join(map(str, path + (key,))))!r}")
            seen.add(key)
            lines[path + (key,)] = _line(key_node)
            _walk(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = _line(item)
            _walk(item, path + (i,), lines)


def parse_scalar(text: str):
    """A command-line value, read as YAML: ``0.1`` -> float, ``[none, before]`` -> list, ``1e-3`` -> float.
    The same limits as a config file apply."""
    if not text.strip():
        return None
    try:
        data, _ = _load(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or e
        raise YamlError(None, f"cannot read {clip(text)!r} as a YAML value ({clip(str(problem), 200)})") from None
    except YamlError as e:
        raise YamlError(None, f"cannot read {clip(text)!r} as a YAML value ({e.message})") from None
    return None if data is _EMPTY else data


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
