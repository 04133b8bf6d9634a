"""A step program for the pyhf patchset test: writes a one-channel HistFactory workspace (step contract)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    """``make_workspace.py --param signal=[..] --out workspace=PATH``."""
    args = dict(zip(argv[::2], argv[1::2], strict=True))
    signal = json.loads(args["--param"].split("=", 1)[1])
    out = Path(args["--out"].split("=", 1)[1])
    spec = {
        "channels": [
            {
                "name": "sr",
                "samples": [
                    {
                        "name": "signal",
                        "data": signal,
                        "modifiers": [{"name": "mu", "type": "normfactor", "data": None}],
                    },
                    {"name": "background", "data": [50.0, 40.0], "modifiers": []},
                ],
            }
        ],
        "observations": [{"name": "sr", "data": [52.0, 41.0]}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
        "version": "1.0.0",
    }
    out.write_text(json.dumps(spec, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
