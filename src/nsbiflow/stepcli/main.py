"""``nsbiflow-step NAME --param K=V --in NAME=PATH --out NAME=PATH``: the stage programs."""

from __future__ import annotations

import click

from nsbiflow.stepcli.active import choose_points, scan_point, scan_report, update_surrogate
from nsbiflow.stepcli.evaluation import calibrate, infer, limits
from nsbiflow.stepcli.generate import generate, generate_data, load_events
from nsbiflow.stepcli.training import gather_ensemble, support, train_ratio


@click.group(name="nsbiflow-step", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nsbiflow")
def main() -> None:
    """Stage programs of the NSBI chain; each reads its inputs and writes its outputs at the given paths."""


for command in (generate, generate_data, load_events, support, train_ratio, gather_ensemble, calibrate, infer, limits):
    main.add_command(command)
for command in (choose_points, scan_point, update_surrogate, scan_report):  # the active-learning scan
    main.add_command(command)


if __name__ == "__main__":  # pragma: no cover
    main()
