"""Safe YAML reading with line numbers, and the one float fix PyYAML needs.

PyYAML follows YAML 1.1, where ``1e-3`` (no dot) is a *string*. ``Loader`` is ``yaml.SafeLoader`` plus a YAML 1.2
float resolver, so ``1e-3`` is a float; it constructs only plain scalars, lists and mappings (no Python objects),
exactly like ``yaml.safe_load``.
"""

from __future__ import annotations

import re

import yaml


class Loader(yaml.SafeLoader):
    pass


Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


class YamlError(ValueError):
    def __init__(self, line, message):
        super().__init__(message)
        self.line, self.message = line, message


def load_with_lines(text: str):
    """Parse one YAML document. Returns (data, lines) where ``lines`` maps key paths (tuples) to 1-based lines.
    Duplicate keys are an error (PyYAML would silently keep the last one)."""
    loader = None
    try:
        try:
            loader = Loader(text)  # the reader already refuses control characters here
            node = loader.get_single_node()
            if node is None:
                return {}, {}
            lines: dict[tuple, int] = {}
            _walk(node, (), lines)
            # Tags that would build Python objects (!!python/...) are refused here, never executed.
            return loader.construct_document(node), lines
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
            kind = "not allowed" if isinstance(e, yaml.constructor.ConstructorError) else "syntax error"
            raise YamlError(mark.line + 1 if mark else None, f"YAML {kind}: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _walk(node, path, lines):
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlError(key_node.start_mark.line + 1, "keys must be plain names, not lists or mappings")
            key = key_node.value
            if key in seen:
                raise YamlError(key_node.start_mark.line + 1, f"duplicate key {'.'.join(map(str, path + (key,)))!r}")
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _walk(item, path + (i,), lines)


def parse_scalar(text: str):
    """A command-line value, read as YAML: ``0.1`` -> float, ``[none, before]`` -> list, ``1e-3`` -> float."""
    try:
        return yaml.load(text, Loader=Loader) if text.strip() else None  # noqa: S506 - Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise YamlError(None, f"cannot read {text!r} as a YAML value ({getattr(e, 'problem', e)})") from None


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
