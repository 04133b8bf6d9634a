"""What the physics package contributes to ``nsbiflow validate`` and ``nsbiflow schema`` (entry points).

``check_plan`` finds every file a workflow binds to a step input that is a statistical model (``kind: Model``),
validates it (its own ``FILE:LINE:COL`` errors), and checks that every ratio label the model uses is trained by
some step of the workflow (a step with a ``label`` parameter and an ``ensemble`` output, e.g. ``train-ratio``):
a model naming a ratio nobody trains fails at validate time, before any training, listing what is missing.
The plan is used through its attributes only (no engine import: the engine calls this, not the reverse).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nsbiflow.errors import Problem, SpecError

_SUFFIXES = (".yaml", ".yml", ".json")


def _is_model_file(path: Path) -> bool:
    if path.suffix.lower() not in _SUFFIXES or not path.is_file():
        return False
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
    except OSError:
        return False
    return any(
        line.replace('"', "").replace("'", "").strip().startswith("kind: Model") or '"kind": "Model"' in line
        for line in head.splitlines()
    )


def trained_labels(plan: Any) -> set[str]:
    """Labels of every ensemble the workflow trains, or binds ready-trained (a collection folder given by path)."""
    from nsbiflow.physics.collection import labels_in

    labels = set()
    for step in plan.steps.values():
        if "ensemble" in step.definition.outputs and isinstance(step.parameters.get("label"), str):
            labels.add(step.parameters["label"])
        for sources in step.inputs.values():
            for source in sources:
                path = getattr(source, "path", None)
                if path is not None and Path(path).is_dir():
                    labels.update(labels_in(Path(path)))
    return labels


def check_plan(plan: Any) -> list[Problem]:
    """Problems of the models a plan binds (see the module docstring)."""
    problems: list[Problem] = []
    trained = trained_labels(plan)
    seen: set[Path] = set()
    for step in plan.steps.values():
        for input_name, sources in step.inputs.items():
            for source in sources:
                path = getattr(source, "path", None)
                if path is None or path in seen or not _is_model_file(Path(path)):
                    continue
                seen.add(path)
                from nsbiflow.physics.model.loader import load_model  # here: it imports torch (seconds)

                try:
                    model = load_model(path)
                except SpecError as error:
                    problems.extend(error.problems)
                    continue
                missing = [label for label in model.used_ratios() if label not in trained]
                if missing:
                    loc = ("steps", step.template, "inputs", input_name)
                    problems.append(
                        plan.document.problem(
                            loc,
                            f"model {Path(path).name} uses ratio(s) {', '.join(missing)} that no step of the "
                            f"workflow trains (trained: {', '.join(sorted(trained)) or 'none'}); add a train-ratio "
                            "step with that label or fix the model",
                        )
                    )
    return problems


def model_schema() -> str:
    """``nsbiflow schema --kind model``."""
    from nsbiflow.physics.model.schema import schema_json

    return schema_json("model")


def results_schema() -> str:
    """``nsbiflow schema --kind results``."""
    from nsbiflow.physics.model.schema import schema_json

    return schema_json("results")
