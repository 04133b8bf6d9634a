"""Find step definitions (``steps/<name>/step.yaml``) for the ``uses:`` of a workflow."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from nsbiflow.paths import safe_name
from nsbiflow.spec.loader import load_step_definition
from nsbiflow.spec.models import StepDefinition
from nsbiflow.spec.yaml_source import SourceDocument

STEPS_PATH_ENV = "NSBIFLOW_STEPS_PATH"


def shipped_steps() -> Path:
    """The catalog shipped with the package: ``nsbiflow/_catalog/steps`` in a wheel, or -- in an editable
    install, where the wheel's copy does not exist -- the ``steps/`` folder of the source checkout."""
    package = Path(__file__).resolve().parents[1]
    wheel = package / "_catalog" / "steps"
    checkout = package.parents[1]  # <checkout>/src/nsbiflow
    if not wheel.is_dir() and (checkout / "pyproject.toml").is_file() and (checkout / "steps").is_dir():
        return checkout / "steps"
    return wheel


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
        """The search path for a workflow: extra dirs, ``$NSBIFLOW_STEPS_PATH``, ``steps/`` beside, one or two
        levels above the workflow file (so ``workflows/examples/`` finds the repository's), then the catalog
        shipped inside the package."""
        here = Path(workflow_file).resolve().parent
        dirs: list[Path] = list(extra or [])
        dirs += [Path(p) for p in os.environ.get(STEPS_PATH_ENV, "").split(os.pathsep) if p]
        dirs += [here / "steps", here.parent / "steps", here.parent.parent / "steps", shipped_steps()]
        return cls(search_path=[d for d in dirs if d.is_dir()])

    def find(self, name: str) -> CatalogEntry | None:
        """The step definition called ``name`` or ``None``; invalid definitions raise ``SpecError``.

        ``name`` must be one plain path component (``UnsafePathError`` otherwise): ``../x`` never escapes.
        """
        safe_name(name, "step definition name")
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
