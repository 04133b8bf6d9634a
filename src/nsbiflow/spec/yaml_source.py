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

MAX_DEPTH = 100
"""Deepest nesting of sequences and mappings accepted (a workflow needs about ten levels)."""
MAX_VALUES = 200_000
"""Most values a document may expand to, aliases and merge keys counted each time they are used."""


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
                if not isinstance(key_node, yaml.ScalarNode):
                    line, col = _mark(key_node)
                    self.problems.append(Problem(self.path, line, col, "mapping keys must be plain scalars"))
                    continue
                key = self.scalar(key_node)
                if isinstance(key, bool) and key_node.style is None:
                    line, col = _mark(key_node)
                    self.problems.append(
                        Problem(
                            self.path,
                            line,
                            col,
                            f"key {key_node.value!r} is read as the boolean {key} (YAML 1.1): "
                            f"quote it (\"{key_node.value}\":) to mean the word",
                        )
                    )
                    continue
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
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4300 digits
            line, col = _mark(node)
            self.problems.append(Problem(self.path, line, col, f"value cannot be read: {str(exc)[:120]}"))
            return None


def _check_depth(text: str, path: str) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` before composing (PyYAML's composer recurses per level).

    The event parser is a state machine, not recursive, so walking its events is safe at any depth.
    """
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                mark = event.start_mark
                line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
                raise SpecError(
                    [
                        Problem(
                            path,
                            line,
                            column,
                            f"values are nested more than {MAX_DEPTH} levels deep: flatten the document",
                        )
                    ]
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expansion(root: yaml.Node, path: str) -> None:
    """Refuse recursive aliases and documents whose aliases expand to more than ``MAX_VALUES`` values.

    PyYAML shares one node per anchor, so a 600-byte file can stand for billions of values (an "alias
    bomb"); the expanded size is computed once per node (memoised), without expanding anything.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        ident = id(node)
        if ident in sizes:
            return sizes[ident]
        if ident in active:
            line, col = _mark(node)
            raise SpecError([Problem(path, line, col, "a YAML alias refers to itself (recursive anchor)")])
        active.add(ident)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(ident)
        sizes[ident] = total
        if total > MAX_VALUES:
            line, col = _mark(node)
            raise SpecError(
                [
                    Problem(
                        path,
                        line,
                        col,
                        f"the document expands to more than {MAX_VALUES} values through YAML aliases: "
                        "refused (an alias bomb?)",
                    )
                ]
            )
        return total

    size(root)


def parse_yaml_text(text: str, path: str) -> SourceDocument:
    """Parse YAML text into a ``SourceDocument``; syntax errors become a ``SpecError`` with the position.

    Bounded: nesting deeper than ``MAX_DEPTH`` and alias expansion beyond ``MAX_VALUES`` are refused with
    one located line, before anything is expanded.
    """
    try:
        _check_depth(text, path)
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
    _check_expansion(node, path)
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
