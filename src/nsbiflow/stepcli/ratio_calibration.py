"""The ``calibrate-ratio`` stage: a monotone calibration of each ensemble's log r on an independent sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.errors import StageError
from nsbiflow.stepcli.contract import StageIO, configure_threads, stage
from nsbiflow.stepcli.progress import Progress


class CalibrateRatioConfig(BaseModel):
    """Parameters of ``calibrate-ratio``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="fit the calibrations (false: the collection is passed on raw, without calibration.json)"
    )
    n_bins: int = Field(20, ge=2, le=1000, description="equal-population bins of the pooled calibration sample")
    aggregate: Literal["mean", "median"] = "mean"


def _copy_tree(source: Path, target: Path) -> None:
    """``source`` to ``target``, hard links where the filesystem allows (members are large and never rewritten)."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, dirs_exist_ok=True)


@stage("calibrate-ratio", outputs=("ensemble",), config=CalibrateRatioConfig)
def calibrate_ratio(io: StageIO) -> None:
    """Calibrate every ensemble of a collection on calibration samples of its numerator and denominator."""
    import numpy as np

    from nsbiflow.physics.calibration import CALIBRATION, fit_calibration, save_calibration
    from nsbiflow.physics.ensemble import Ensemble, labels_in
    from nsbiflow.physics.events import read_events, read_metadata

    cfg = io.config(CalibrateRatioConfig)
    directory, out = io.input("ensemble"), io.output("ensemble")
    labels = labels_in(directory)
    if not labels:
        raise StageError(f"calibrate-ratio: {directory}: no ensemble found; bind a gather-ensemble output")
    _copy_tree(directory, out)
    for label in labels:
        (out / label / CALIBRATION).unlink(missing_ok=True)  # recalibrating starts from the raw ensemble
    if not cfg.enabled:
        with Progress("calibrate-ratio") as bar:
            bar.log(f"calibration off: {', '.join(labels)} passed on raw")
        return
    by_process: dict[str, Path] = {}
    for path in io.input_list("samples"):
        process = str(read_metadata(path).get("process", path.stem))
        if process in by_process:
            raise StageError(
                f"calibrate-ratio: two samples are process '{process}' ({by_process[process].name}, {path.name})"
            )
        by_process[process] = path
    configure_threads()
    with Progress("calibrate-ratio") as bar:
        for label in labels:
            ens = Ensemble.load(directory, label)
            ens.calibration = None  # fitted on the raw mean log r
            if ens.parameters:
                raise StageError(
                    f"calibrate-ratio: ensemble '{label}' is parametrized in {', '.join(ens.parameters)}; a "
                    "calibration of a parametrized ratio is not supported: set enabled: false"
                )
            roles = {
                "numerator": ens.manifest.get("numerator", label),
                "denominator": ens.manifest.get("reference", "reference"),
            }
            scores = {}
            for role, process in roles.items():
                if process not in by_process:
                    raise StageError(
                        f"calibrate-ratio: ensemble '{label}' needs a calibration sample of its {role} '{process}' "
                        f"(have: {', '.join(sorted(by_process)) or 'none'}); add it to samples"
                    )
                events = read_events(by_process[process], ens.observables or None)
                scores[role] = (ens.log_ratio(events.x, cfg.aggregate)[0], events.weights)
            (s_num, w_num), (s_den, w_den) = scores["numerator"], scores["denominator"]
            cal = fit_calibration(label, s_num, w_num, s_den, w_den, cfg.n_bins)
            save_calibration(cal, out / label / CALIBRATION)
            shift = np.asarray(cal.values) - np.asarray(cal.knots)
            bar.log(
                f"{label}: {len(cal.knots)} knots on {len(s_num)} {roles['numerator']} + {len(s_den)} "
                f"{roles['denominator']} events; calibrated - raw log r from {shift.min():+.3f} to {shift.max():+.3f}"
            )
