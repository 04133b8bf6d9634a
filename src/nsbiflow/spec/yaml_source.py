"""Read YAML while remembering where every value came from, so errors can say ``FILE:LINE:COL``.

PyYAML's composer already keeps a mark on every node; this module walks the node tree once, building
plain Python data and a map from each value's path (a tuple of keys and indices) to its position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nsbiflow.errors import Problem, SpecError

PathKey = tuple[str | int, ...]

KEY_MARK = "<key>"
"""Suffix of a path that addresses a mapping key instead of its value (for unknown-field errors)."""


@dataclass
class SourceDocument:
    """Parsed YAML data plus the position of every value in the file."""

    path: str
    data: Any
    positions: dict[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: PathKey, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of ``loc``, or of its nearest enclosing value that exists."""
        loc = tuple(loc)
        if key and (*loc, KEY_MARK) in self.positions:
            return self.positions[(*loc, KEY_MARK)]
        while loc:
            if loc in self.positions:
                return self.positions[loc]
            loc = loc[:-1]
        return self.positions.get((), (1, 1))

    def problem(self, loc: PathKey, message: str, *, key: bool = False) -> Problem:
        """A ``Problem`` located at ``loc``."""
        line, column = self.where(loc, key=key)
        return Problem(self.path, line, column, message)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.positions: dict[PathKey, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: PathKey) -> Any:
        self.positions[loc] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            self._constructor.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str | int | float | bool) or key is None:
                    line, col = _mark(key_node)
                    self.problems.append(Problem(self.path, line, col, "mapping keys must be plain scalars"))
                    continue
                key = key if isinstance(key, str) else str(key)
                if key in result:
                    line, col = _mark(key_node)
                    self.problems.append(Problem(self.path, line, col, f"duplicate key {key!r}"))
                    continue
                self.positions[(*loc, key, KEY_MARK)] = _mark(key_node)
                result[key] = self.build(value_node, (*loc, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, index)) for index, item in enumerate(node.value)]
        return self._constructor.construct_object(node, deep=True)


def parse_yaml_text(text: str, path: str) -> SourceDocument:
    """Parse YAML text into a ``SourceDocument``; syntax errors become a ``SpecError`` with the position."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise SpecError([Problem(path, line, col, f"invalid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(path, 1, 1, f"invalid YAML: {exc}")]) from None
    if node is None:
        raise SpecError([Problem(path, 1, 1, "the file is empty: expected a YAML mapping")])
    builder = _Builder(path)
    try:
        data = builder.build(node, ())
    except yaml.YAMLError as exc:
        raise SpecError([Problem(path, 1, 1, f"invalid YAML: {exc}")]) from None
    if builder.problems:
        raise SpecError(builder.problems)
    if not isinstance(data, dict):
        line, col = _mark(node)
        raise SpecError([Problem(path, line, col, f"expected a YAML mapping at the top, got {type(data).__name__}")])
    return SourceDocument(path=path, data=data, positions=builder.positions)


def read_yaml_file(path: str | Path) -> SourceDocument:
    """Read and parse a YAML file; a missing or unreadable file is a one-line ``SpecError``."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(shown, 0, 0, "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(shown, 0, 0, "is a directory, expected a YAML file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Problem(shown, 0, 0, f"cannot read: {exc}")]) from None
    return parse_yaml_text(text, shown)
