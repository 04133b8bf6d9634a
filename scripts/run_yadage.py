"""Run an exported yadage workflow through yadage's own engine (its Python API), with local processes.

Usage (with the yadage virtualenv's python): ``run_yadage.py EXPORT_DIR WORKDIR [--backend multiproc:2]``.
EXPORT_DIR is what ``nsbiflow compile --target yadage --environment localproc -o EXPORT_DIR`` wrote.
Relative input file paths in ``input.yml`` are made absolute against EXPORT_DIR. Step programs are found
on PATH (put the nsbiflow virtualenv's bin first).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml


def main() -> int:
    """Run the workflow; exit 0 when every stage succeeded."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("export_dir", type=Path)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--backend", default="multiproc:2")
    args = parser.parse_args()

    import yadage.steering_api
    import yadage.utils

    logging.basicConfig(level=logging.WARNING)
    export = args.export_dir.resolve()
    spec = json.loads((export / "workflow" / "workflow.yml").read_text())
    init = yaml.safe_load((export / "input.yml").read_text()) or {}
    for key, value in list(init.items()):
        if key.startswith("input_") and isinstance(value, str) and not os.path.isabs(value):
            init[key] = str(export / value)
    yadage.steering_api.run_workflow(
        dataarg=str(args.workdir.resolve()),
        workflow_json=spec,
        initdata=init,
        backend=yadage.utils.setupbackend_fromstring(args.backend),
        visualize=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
