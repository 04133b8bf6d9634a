"""Export a planned workflow for yadage (REANA's engine): the fully expanded stage spec plus ``reana.yaml``.

yadage is an optional extra and is never imported here: the export is plain JSON/YAML that yadage's own
engine (in its own virtualenv) loads. See ``docs/recast.md``.
"""

from nsbiflow.backends.yadage.export import export_workflow
from nsbiflow.backends.yadage.stages import stage_name, workflow_spec

__all__ = ["export_workflow", "stage_name", "workflow_spec"]
