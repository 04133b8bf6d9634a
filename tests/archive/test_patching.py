"""Interface patches on a document: inputs that read one file move together, or the patch is refused."""

from __future__ import annotations

import pytest

from nsbiflow.archive.errors import PatchError
from nsbiflow.archive.patching import apply_interface_patch

READERS = ("fit", "bias-gate", "toys")
DOCUMENT = {"steps": {name: {"inputs": {"model": {"path": "models/toy.yaml"}}} for name in READERS}}
INTERFACE = {"inputs": [f"{name}.model" for name in READERS]}


def _move(*steps: str, to: str = "toy-2mu.yaml") -> list[dict[str, str]]:
    return [{"op": "replace", "path": f"/steps/{step}/inputs/model/path", "value": to} for step in steps]


def test_every_reader_of_a_file_moves_to_the_new_file() -> None:
    patched = apply_interface_patch(DOCUMENT, _move(*READERS), INTERFACE)
    assert {patched["steps"][name]["inputs"]["model"]["path"] for name in READERS} == {"toy-2mu.yaml"}
    assert DOCUMENT["steps"]["fit"]["inputs"]["model"]["path"] == "models/toy.yaml"  # the original is untouched


@pytest.mark.parametrize(
    "operations",
    [_move("fit"), _move("fit", "toys"), _move("fit", "bias-gate") + _move("toys", to="other.yaml")],
    ids=["one-of-three", "two-of-three", "two-new-files"],
)
def test_moving_only_some_readers_is_refused_naming_all_of_them(operations: list[dict[str, str]]) -> None:
    with pytest.raises(PatchError) as info:
        apply_interface_patch(DOCUMENT, operations, INTERFACE)
    message = str(info.value)
    assert "\n" not in message and "fit.model, bias-gate.model, toys.model all read 'models/toy.yaml'" in message
    assert "/steps/toys/inputs/model/path" in message
