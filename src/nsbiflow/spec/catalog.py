"""Find step definitions (``steps/<name>/step.yaml``) for the ``uses:`` of a workflow."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nsbiflow.spec.loader import load_step_definition
from nsbiflow.spec.models import StepDefinition
from nsbiflow.spec.yaml_source import SourceDocument

STEPS_PATH_ENV = "NSBIFLOW_STEPS_PATH"


@dataclass
class CatalogEntry:
    """A loaded step definition and where it came from."""

    definition: StepDefinition
    path: Path
    document: SourceDocument


@dataclass
class StepCatalog:
    """Step definitions looked up by name along a search path (first match wins)."""

    search_path: list[Path]
    _cache: dict[str, CatalogEntry | None] = field(default_factory=dict)

    @classmethod
    def for_workflow(cls, workflow_file: str | Path, extra: list[Path] | None = None) -> StepCatalog:
        """The search path for a workflow: extra dirs, ``$NSBIFLOW_STEPS_PATH``, ``steps/`` beside or
        one or two levels above the workflow file, then the catalog shipped inside the package."""
        here = Path(workflow_file).resolve().parent
        dirs: list[Path] = list(extra or [])
        dirs += [Path(p) for p in os.environ.get(STEPS_PATH_ENV, "").split(os.pathsep) if p]
        dirs += [here / "steps", here.parent / "steps", here.parent.parent / "steps"]
        dirs += [Path(__file__).resolve().parents[1] / "_catalog" / "steps"]
        return cls(search_path=[d for d in dirs if d.is_dir()])

    def find(self, name: str) -> CatalogEntry | None:
        """The step definition called ``name`` or ``None``; invalid definitions raise ``SpecError``."""
        if name not in self._cache:
            self._cache[name] = None
            for folder in self.search_path:
                candidate = folder / name / "step.yaml"
                if candidate.is_file():
                    definition, doc = load_step_definition(candidate)
                    self._cache[name] = CatalogEntry(definition, candidate.resolve(), doc)
                    break
        return self._cache[name]

    def names(self) -> list[str]:
        """Every step name available on the search path."""
        found = {p.parent.name for d in self.search_path for p in d.glob("*/step.yaml")}
        return sorted(found)
