"""Ratio ensembles on disk, and their evaluation.

A collection directory holds one sub-directory per label (``signal``, ``background``, ...)::

    <label>/ensemble.json          label, numerator/reference process, observables, architecture, members
    <label>/member_0003.safetensors  weights of one member + its input scaler (``scaler.mean``/``scaler.std``)
    <label>/curves.json            training and holdout loss per epoch, per member
    <label>/calibration.json       optional: the monotone calibration of the mean log r (``calibration.py``,
                                   written by the ``calibrate-ratio`` stage); ``log_ratio`` applies it

A training chunk writes a collection with one label; ``gather`` merges chunks member by member. Members are
evaluated with numpy on a CPU (no torch import: ``forward.py`` says why) and with torch on a CUDA device
(``ensemble_torch.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file, save_file

from nsbiflow.physics.calibration import CALIBRATION, RatioCalibration, load_calibration
from nsbiflow.physics.collection import CURVES, MANIFEST, gather, labels_in
from nsbiflow.physics.errors import StageError
from nsbiflow.physics.forward import NumpyMember, Scaler, cpu_threads, evaluation_device

if TYPE_CHECKING:
    from nsbiflow.physics.ensemble_torch import TorchMembers
    from nsbiflow.physics.mlp import MLPConfig
    from nsbiflow.physics.training import TrainedMember

__all__ = ["CURVES", "MANIFEST", "Ensemble", "bind_point", "gather", "labels_in", "save_members"]

Aggregate = Literal["mean", "median"]
Backend = Literal["numpy", "torch"]


def save_members(
    directory: Path,
    label: str,
    members: Sequence[TrainedMember],
    scaler: Scaler,
    mlp: MLPConfig,
    extra: dict[str, Any],
) -> None:
    """Write a one-label collection (``directory/<label>/...``)."""
    target = directory / label
    target.mkdir(parents=True, exist_ok=True)
    entries = []
    for m in members:
        tensors = {k: np.ascontiguousarray(v.detach().cpu().numpy()) for k, v in m.state.items()}
        tensors["scaler.mean"] = np.ascontiguousarray(scaler.mean, np.float32)
        tensors["scaler.std"] = np.ascontiguousarray(scaler.std, np.float32)
        save_file(tensors, str(target / f"{m.name}.safetensors"), metadata={"label": label})
        entries.append({"name": m.name, "file": f"{m.name}.safetensors", **m.info})
    manifest = {"label": label, "mlp": mlp.model_dump(), **extra, "members": entries}
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    (target / CURVES).write_text(json.dumps({m.name: m.curves for m in members}, sort_keys=True) + "\n")


@dataclass
class Ensemble:
    """A loaded ensemble of one label, ready to evaluate log-ratios."""

    label: str
    manifest: dict[str, Any]
    members: list[NumpyMember]
    torch_members: TorchMembers | None = None
    """The members as torch models (CUDA, or when asked for); ``None``: evaluated with numpy."""
    point: dict[str, float] = field(default_factory=dict)
    """Values of the parameters of a parametrized ensemble (``bind``), appended to every event's inputs."""
    calibration: RatioCalibration | None = None
    """The map of the members' aggregated log r to the calibrated one (``None``: the raw ensemble)."""

    @property
    def parameters(self) -> dict[str, list[float]]:
        """Model parameters of a parametrized ratio r(x | theta) with their trained ranges (empty: none)."""
        return dict(self.manifest.get("parameters") or {})

    def bind(self, values: dict[str, float]) -> None:
        """Evaluate at ``values`` of the parameters (names it lacks are ignored); checks the trained range."""
        point = {}
        for name, (low, high) in self.parameters.items():
            if name not in values:
                raise StageError(
                    f"ensemble '{self.label}' is parametrized in {name} (trained for {low:g} to {high:g}); "
                    f"give its value with the step parameter at: {{{name}: VALUE}}"
                )
            value = float(values[name])
            if not low <= value <= high:
                raise StageError(
                    f"ensemble '{self.label}' was trained for {name} from {low:g} to {high:g}, not at {value:g}; "
                    f"widen the training range of {name} (this retrains the ensemble)"
                )
            point[name] = value
        self.point = point

    @property
    def observables(self) -> list[str]:
        """Observable names the members were trained on."""
        return list(self.manifest.get("observables", []))

    @property
    def size(self) -> int:
        """Number of members."""
        return len(self.members)

    @classmethod
    def load(
        cls,
        directory: Path,
        label: str | None = None,
        *,
        backend: Backend | None = None,
        device: str | None = None,
        stack: bool | None = None,
    ) -> Ensemble:
        """Load ``directory/<label>`` (or ``directory`` itself when it has the manifest).

        ``backend``: ``numpy`` (a CPU without torch) or ``torch``; ``None`` picks torch where
        ``evaluation_device()`` finds CUDA or the stage may use several CPU threads, else numpy (``forward.py``
        says why). ``device`` is the torch device (default: that choice), and ``stack`` evaluates torch members
        stacked in batched models (``None``: on CUDA).
        """
        target = directory / label if label and not (directory / MANIFEST).exists() else directory
        if not (target / MANIFEST).exists():
            have = ", ".join(labels_in(directory)) or "none"
            raise StageError(f"{directory}: no ensemble {label!r} (labels found: {have}); check the ensembles input")
        manifest = json.loads((target / MANIFEST).read_text())
        activation = str(manifest.get("mlp", {}).get("activation", "silu"))
        states: list[dict[str, NDArray[Any]]] = []
        for member in manifest["members"]:
            try:
                states.append(load_file(str(target / member["file"])))
            except (OSError, ValueError) as exc:
                raise StageError(f"{target / member['file']}: cannot read member ({exc}); re-run training") from None
        if not states:
            raise StageError(f"{target}: ensemble has no members; check the training step")
        members = [NumpyMember.from_state(tensors, activation) for tensors in states]
        torch_members = None
        chosen = device or (evaluation_device() if backend != "numpy" else "cpu")
        if backend is None:
            backend = "torch" if chosen == "cuda" or cpu_threads() > 1 else "numpy"
        if backend == "torch":
            from nsbiflow.physics.ensemble_torch import TorchMembers
            from nsbiflow.physics.mlp import MLPConfig

            weights_only = [{k: v for k, v in t.items() if not k.startswith("scaler.")} for t in states]
            mlp = MLPConfig.model_validate(manifest["mlp"])
            torch_members = TorchMembers(mlp, weights_only, [m.scaler for m in members], chosen, stack)
        calibration = load_calibration(target / CALIBRATION) if (target / CALIBRATION).exists() else None
        if calibration is not None and calibration.label != manifest["label"]:
            raise StageError(
                f"{target / CALIBRATION}: calibrates '{calibration.label}', not ensemble '{manifest['label']}'; "
                "re-run calibrate-ratio"
            )
        return cls(
            label=manifest["label"],
            manifest=manifest,
            members=members,
            torch_members=torch_members,
            calibration=calibration,
        )

    def member_log_ratios(self, x: NDArray[np.float64]) -> Iterator[NDArray[np.float64]]:
        """Log-ratio of each member on events ``x``, one member at a time (memory: one array of len(x))."""
        if self.parameters:
            if set(self.point) != set(self.parameters):
                self.bind(self.point)  # raises, naming the missing parameter
            values = [self.point[name] for name in sorted(self.parameters)]  # the training's input order
            x = np.column_stack([x, np.broadcast_to(np.asarray(values, np.float64), (len(x), len(values)))])
        if self.torch_members is not None:
            yield from self.torch_members.member_log_ratios(x)
            return
        for member in self.members:
            yield member(x)

    def log_ratio(self, x: NDArray[np.float64], aggregate: Aggregate = "mean") -> tuple[NDArray[Any], NDArray[Any]]:
        """Aggregated log-ratio and the ensemble spread (standard deviation over members), calibrated if the
        ensemble has a calibration (the spread then scaled by the map's local slope)."""
        value, spread = self._aggregate(x, aggregate)
        if self.calibration is None:
            return value, spread
        return self.calibration.apply(value), spread * self.calibration.slope(value)

    def _aggregate(self, x: NDArray[np.float64], aggregate: Aggregate) -> tuple[NDArray[Any], NDArray[Any]]:
        if aggregate == "median":
            stack = np.stack(list(self.member_log_ratios(x)))
            return np.median(stack, axis=0), stack.std(axis=0)
        # Welford: memory independent of the number of members
        mean = np.zeros(len(x))
        m2 = np.zeros(len(x))
        for k, value in enumerate(self.member_log_ratios(x), start=1):
            delta = value - mean
            mean += delta / k
            m2 += delta * (value - mean)
        return mean, np.sqrt(m2 / max(self.size, 1))


def bind_point(ensembles: Sequence[Ensemble], values: dict[str, float], stage: str) -> None:
    """Evaluate every parametrized ensemble at ``values`` (a stage's ``at``); a name none of them has is an error."""
    unused = sorted(set(values) - {name for e in ensembles for name in e.parameters})
    if unused:
        which = ", ".join(f"'{e.label}'" for e in ensembles)
        plural = "s" if len(ensembles) > 1 else ""
        raise StageError(f"{stage}: at: '{unused[0]}' is not a parameter of ensemble{plural} {which}; remove it")
    for ensemble in ensembles:
        ensemble.bind(values)
