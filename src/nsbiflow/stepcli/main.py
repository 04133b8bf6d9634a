"""``nsbiflow-step NAME --param K=V --in NAME=PATH --out NAME=PATH``: the stage programs."""

from __future__ import annotations

import click
from pydantic import BaseModel

from nsbiflow.stepcli.active import choose_points, scan_point, scan_report, update_surrogate
from nsbiflow.stepcli.contract import STAGE_CONFIGS
from nsbiflow.stepcli.evaluation import calibrate, fit, infer
from nsbiflow.stepcli.gates import bias_gate
from nsbiflow.stepcli.generate import generate, generate_data, load_events
from nsbiflow.stepcli.offshell import generate_offshell
from nsbiflow.stepcli.ratio_calibration import calibrate_ratio
from nsbiflow.stepcli.reweighting import (
    apply_reweighter,
    generate_objects,
    load_objects,
    reweight_closure,
    train_reweighter,
)
from nsbiflow.stepcli.toys import summarize, toys
from nsbiflow.stepcli.training import gather_ensemble, support, train_ratio


@click.group(name="nsbiflow-step", context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nsbiflow")
def main() -> None:
    """Stage programs of the NSBI chain; each reads its inputs and writes its outputs at the given paths."""


for command in (generate, generate_data, load_events, support, train_ratio, gather_ensemble, calibrate, fit, infer):
    main.add_command(command)
for command in (generate_objects, load_objects, train_reweighter, apply_reweighter, reweight_closure):
    main.add_command(command)
main.add_command(generate_offshell)
for command in (toys, summarize):  # pseudo-experiments and the run's summary of checks
    main.add_command(command)
main.add_command(bias_gate)
main.add_command(calibrate_ratio)  # the ratios' calibration on an independent sample
for command in (choose_points, scan_point, update_surrogate, scan_report):  # the active-learning scan
    main.add_command(command)


def registered_configs() -> dict[str, type[BaseModel] | None]:
    """Every stage of ``nsbiflow-step`` with its config.

    It lives here, beside the imports of every stage module, and not in ``contract.py``: a stage's code
    identity is its import closure (``engine/code.py``), and a stage must not depend on every other stage.
    """
    return dict(STAGE_CONFIGS)


if __name__ == "__main__":  # pragma: no cover
    main()
