"""The loop workflow the engine tests run (inline steps over ``loopdata/loopstep.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

STEP = Path(__file__).parent / "loopdata" / "loopstep.py"


def _inline(role: str, inputs: dict[str, Any], outputs: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    return {
        "image": "python:3.12-slim",
        "command": [sys.executable, str(STEP), role],
        "parameters": parameters,
        "inputs": inputs,
        "outputs": outputs,
    }


def loop_workflow(folder: Path, *, target: int = 3, max_iterations: int = 6, sleep: float = 0.0) -> Path:
    """A loop whose iteration ``k`` fans out over ``k + 1`` points chosen from the previous iteration's state."""
    data = {
        "apiVersion": "nsbiflow/v1",
        "kind": "Workflow",
        "metadata": {"name": "loop-test"},
        "parameters": {"target": {"type": "int", "default": target}},
        "outputs": {"state": "counter.state", "iterations": "counter.iterations"},
        "steps": {
            "counter": {
                "loop": {
                    "max_iterations": max_iterations,
                    "until": "${{ loop.current.update.state.count >= params.target }}",
                    "outputs": {"state": "update.state"},
                    "steps": {
                        "choose": {
                            "run": _inline("choose", {"state": {"optional": True}}, {"points": {"filename": "p.json"}}),
                            "inputs": {"state": "loop.previous.update.state"},
                        },
                        "work": {
                            "run": _inline(
                                "work",
                                {},
                                {"value": {"filename": "v.json"}},
                                x={"type": "int"},
                                sleep={"type": "float", "default": 0.0},
                            ),
                            "foreach": "${{ loop.current.choose.points.points }}",
                            "with": {"x": "${{ item }}", "sleep": sleep},
                        },
                        "update": {
                            "run": _inline(
                                "update",
                                {"values": {"multiple": True}, "state": {"optional": True}},
                                {"state": {"filename": "state.json"}},
                            ),
                            "inputs": {"values": "work.value", "state": "loop.previous.update.state"},
                        },
                    },
                }
            }
        },
    }
    path = folder / "loop.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
