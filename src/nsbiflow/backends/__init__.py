"""Ways of running a plan: ``local`` (the embedded executor), ``argo`` (compiler, submitter, in-pod wrapper) and
``yadage`` (the REANA export). They never import each other; each follows ``nsbiflow.engine.contract``.

The subpackages are imported on demand (``argo`` needs hera, which a local run never loads).
"""

from __future__ import annotations

__all__ = ["argo", "local", "yadage"]
