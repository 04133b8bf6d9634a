"""Hostile YAML: alias bombs, deep nesting, YAML 1.1 boolean keys, bad labels: each a fast one-line error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from nsbiflow.errors import SpecError
from nsbiflow.spec.yaml_source import parse_yaml_text
from tests.conftest import run_cli

HEADER = "apiVersion: nsbiflow/v1\nkind: Workflow\nmetadata: {name: bad}\n"
STEP = "steps:\n  a:\n    run: {image: busybox, command: [echo]}\n"


def alias_bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


def one_line_spec_error(text: str) -> str:
    with pytest.raises(SpecError) as info:
        parse_yaml_text(text, "wf.yaml")
    assert len(info.value.problems) == 1
    return str(info.value)


def test_alias_bomb_is_refused_fast() -> None:
    text = alias_bomb()
    assert len(text) < 700
    started = time.monotonic()
    message = one_line_spec_error(text)
    assert time.monotonic() - started < 2
    assert "alias" in message


def test_a_few_aliases_still_work() -> None:
    doc = parse_yaml_text("base: &b {x: 1}\nother: *b\nthird: {<<: *b, y: 2}\n", "wf.yaml")
    assert doc.data == {"base": {"x": 1}, "other": {"x": 1}, "third": {"x": 1, "y": 2}}


@pytest.mark.parametrize("opening,closing", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_one_line(opening: str, closing: str) -> None:
    text = "x: " + opening * 20000 + closing * 20000 + "\n"
    message = one_line_spec_error(text)
    assert "nested" in message


@pytest.mark.parametrize("key", ["yes", "on", "off", "no", "True", "y"])
def test_yaml11_boolean_keys_are_refused(key: str) -> None:
    if key == "y":  # PyYAML resolves only yes/no/on/off/true/false
        parse_yaml_text(f"{key}: 1\n", "wf.yaml")
        return
    message = one_line_spec_error(f"ok: 1\n{key}: 1\n")
    assert "wf.yaml:2:1" in message and "quote" in message


def test_quoted_boolean_key_is_fine() -> None:
    assert parse_yaml_text('"on": 1\n', "wf.yaml").data == {"on": 1}


@pytest.mark.parametrize(
    "labels,needle",
    [
        ('{team: "has spaces"}', "label value"),
        ("{team: " + "x" * 64 + "}", "label value"),
        ('{"bad key!": v}', "label key"),
        ("{team: -starts-with-dash}", "label value"),
    ],
)
def test_invalid_kubernetes_labels_are_refused(tmp_path: Path, labels: str, needle: str) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(HEADER.replace("{name: bad}", f"{{name: bad, labels: {labels}}}") + STEP)
    result = run_cli("validate", path)
    assert result.returncode == 2, result.stdout
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_valid_labels_pass(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(HEADER.replace("{name: bad}", "{name: bad, labels: {example.org/team: a.b-c_1, x: ''}}") + STEP)
    result = run_cli("validate", path)
    assert result.returncode == 0, result.stderr


def test_cli_alias_bomb_and_nesting_exit_2(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(HEADER + alias_bomb() + STEP)
    deep = tmp_path / "deep.yaml"
    deep.write_text(HEADER + "x: " + "[" * 20000 + "]" * 20000 + "\n" + STEP)
    for path in (bomb, deep):
        result = run_cli("validate", path, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr
