"""The 5-D toy as a registered simulator (``truth: {simulator: toy}``): its exact densities at any ``alpha``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nsbiflow.physics import truth
from nsbiflow.physics.toy_model import OBSERVABLES, ToyModel

FloatArray = np.typing.NDArray[np.float64]


class ToyTruth:
    """Densities of the toy's signal, background (detector scale ``alpha``) and reference.

    Fast at many ``alpha`` on the same events: every latent component's covariance ``C = U diag(l) U^T`` is
    diagonalised once, so the detector-level covariance ``s^2 C + n^2 I = U diag(s^2 l + n^2) U^T`` at any scale
    ``s`` needs only the events' projections ``x U`` (cached for the last event array) -- no solve per call.
    The result equals ``ToyModel.log_prob`` (tested).
    """

    name = "toy"

    def __init__(self, model: ToyModel) -> None:
        self.model = model
        self._eig = {
            kind: [(c.weight, c.mean, *np.linalg.eigh(c.cov)) for c in model.latent_components(kind)]
            for kind in ("signal", "background")
        }
        self._cache: dict[str, tuple[FloatArray, list[FloatArray]]] = {}

    def _projections(self, kind: str, x: FloatArray) -> list[FloatArray]:
        cached = self._cache.get(kind)
        if cached is None or cached[0] is not x:  # identity, with a reference held: an id is never reused
            cached = (x, [x @ vectors for _, _, _, vectors in self._eig[kind]])
            self._cache[kind] = cached
        return cached[1]

    def _log_density(self, kind: str, x: FloatArray, scale: float) -> FloatArray:
        noise2 = self.model.noise**2
        terms = []
        for (weight, mean, values, vectors), y in zip(self._eig[kind], self._projections(kind, x), strict=True):
            var = scale**2 * values + noise2
            centre = scale * (mean @ vectors)
            maha = np.sum((y - centre) ** 2 / var, axis=1)
            terms.append(np.log(weight) - 0.5 * (maha + np.sum(np.log(var)) + len(var) * np.log(2 * np.pi)))
        return np.asarray(np.logaddexp.reduce(np.stack(terms), axis=0))

    def observables(self) -> Sequence[str]:
        """x0..x4."""
        return OBSERVABLES

    def processes(self) -> Sequence[str]:
        """The toy's processes (varied backgrounds included)."""
        return ("signal", "background", "background_up", "background_down", "reference")

    def nuisances(self) -> Sequence[str]:
        """The detector-scale nuisance ``alpha``."""
        return ("alpha",)

    def density(self, process: str, x: FloatArray, nuisances: Mapping[str, float] | None = None) -> FloatArray:
        """``p(x | process, alpha)``."""
        alpha = float((nuisances or {}).get("alpha", 0.0))
        shift = {"background_up": 1.0, "background_down": -1.0}.get(process, 0.0)
        if process.startswith("background"):
            return np.exp(self._log_density("background", x, 1.0 + self.model.scale_per_alpha * (alpha + shift)))
        if process == "signal":
            return np.exp(self._log_density("signal", x, 1.0))
        return np.exp(self.model.log_prob(process, x))


def _factory(config: Mapping[str, Any]) -> ToyTruth:
    return ToyTruth(ToyModel(**dict(config)))


truth.register("toy", _factory)
