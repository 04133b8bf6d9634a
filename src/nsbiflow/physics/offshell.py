"""A truth-known toy shaped like the ATLAS off-shell H*->ZZ->4l NSBI measurement.

Three observables stand in for the analysis' ``m4l`` (GeV), a production/decay ``angle`` and the
four-lepton ``pt4l`` (GeV); they are Gaussian-friendly (unbounded) versions of the real ones.

**Amplitudes.** In the latent (truth-level) space ``z`` the gg->H*->ZZ signal amplitude and the gg->ZZ
continuum amplitude are sums of square roots of Gaussians::

    A_S(z) = -a_S g_S(z)                        g_k(z) = sqrt(N(z; m_k, C_k))
    A_B(z) = a_1 g_1(z) - a_2 g_2(z)            (the minus sign makes the interference change sign)

A product of two square-root Gaussians is an (unnormalised) Gaussian with a closed-form integral
(``sqrt_gaussian_product``), so every density built from the amplitudes is an exact *signed Gaussian
mixture*: ``|A_S|^2`` (``ggH``), ``|A_B|^2`` (``ggZZ``), the interference ``I = 2 A_S A_B``
(destructive overall, ``nu_I < 0``, and positive where the opposite-sign continuum term dominates), and
``|A_S + A_B|^2`` (``SBI``, the mu = 1 total).
The gg total at signal strength mu is ``|sqrt(mu) A_S + A_B|^2 = mu S + sqrt(mu) I + B``, which the model
writes as ``(mu - sqrt mu) S + sqrt(mu) SBI + (1 - sqrt mu) B`` (all three shapes positive, so each has a
classifier-trainable ratio to the reference). qq->ZZ (``qqZZ``) and its control-region sample (``qqZZ_cr``)
are positive mixtures; ``reference`` is one broad Gaussian covering everything.

**Detector.** ``x = S(theta) (T(theta) z + t(theta)) + eps`` with ``eps ~ N(0, Sigma(theta))``: the ``m4l``
scale ``S = diag(1 + s theta, 1, 1)``, an ``angle`` tilt (shear ``angle += k theta (m4l - m0) / w0``) and the
``m4l`` resolution ``sigma_m = sigma_0 exp(r theta)``. Affine maps plus Gaussian noise keep every
component Gaussian: ``N(m, C) -> N(S (T m + t), S T C T' S + Sigma)``, so every density is exact at every
value of every nuisance parameter. Each systematic acts on the processes named in ``OffshellConfig``.

**Normalisation.** ``density`` integrates to 1 for every process; the interference is ``I / nu_I`` with its
signed yield ``nu_I = int I`` (``yields()``), so ``nu_I * density`` is ``I`` whatever the sign of ``nu_I``.
Samples carry per-event MC weights that sum to the expected yield (in expectation): exact draws with equal
weights for positive single-sign mixtures, importance sampling from the positive-part mixture for the gg
continuum, SBI and interference (negative weights where ``I < 0``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from nsbiflow.physics.truth import register

FloatArray = NDArray[np.float64]

OBSERVABLES: tuple[str, ...] = ("m4l", "angle", "pt4l")
NUISANCES: tuple[str, ...] = ("m4l_scale", "m4l_resolution", "angle_tilt")
BASE_PROCESSES: tuple[str, ...] = ("ggH", "ggZZ", "interference", "SBI", "qqZZ", "qqZZ_cr", "reference")
GG_PROCESSES: tuple[str, ...] = ("ggH", "ggZZ", "interference", "SBI")
TREE = "events"


@dataclass(frozen=True)
class Component:
    """One Gaussian of a signed mixture: ``weight * N(x; mean, cov)`` (the weight may be negative)."""

    weight: float
    mean: FloatArray
    cov: FloatArray


@dataclass(frozen=True)
class AmplitudeTerm:
    """One term ``coef * sqrt(N(z; mean, cov))`` of an amplitude."""

    coef: float
    mean: FloatArray
    cov: FloatArray


def sqrt_gaussian_product(m1: FloatArray, c1: FloatArray, m2: FloatArray, c2: FloatArray) -> Component:
    """``sqrt(N(z; m1, c1)) * sqrt(N(z; m2, c2)) = K * N(z; m, C)`` exactly: returns ``(K, m, C)``.

    With precisions ``P_i = C_i^-1``: ``P = (P1 + P2) / 2``, ``m = P^-1 (P1 m1 + P2 m2) / 2`` and
    ``K = |P^-1|^(1/2) / (|C1| |C2|)^(1/4) * exp(m'Pm / 2 - (m1'P1m1 + m2'P2m2) / 4)`` (K = 1 for equal
    Gaussians, and K <= 1 always: the Bhattacharyya coefficient).
    """
    p1, p2 = np.linalg.inv(c1), np.linalg.inv(c2)
    p = 0.5 * (p1 + p2)
    cov = np.linalg.inv(p)
    mean = cov @ (0.5 * (p1 @ m1 + p2 @ m2))
    log_k = (
        0.5 * np.linalg.slogdet(cov)[1]
        - 0.25 * (np.linalg.slogdet(c1)[1] + np.linalg.slogdet(c2)[1])
        + 0.5 * mean @ p @ mean
        - 0.25 * (m1 @ p1 @ m1 + m2 @ p2 @ m2)
    )
    return Component(float(np.exp(log_k)), mean, 0.5 * (cov + cov.T))


def amplitude_product(a: Sequence[AmplitudeTerm], b: Sequence[AmplitudeTerm]) -> list[Component]:
    """The signed mixture ``A(z) B(z)`` of two amplitudes (every cross term a Gaussian)."""
    out = []
    for s in a:
        for t in b:
            c = sqrt_gaussian_product(s.mean, s.cov, t.mean, t.cov)
            out.append(Component(s.coef * t.coef * c.weight, c.mean, c.cov))
    return out


def amplitude_square(a: Sequence[AmplitudeTerm]) -> list[Component]:
    """The signed mixture ``|A(z)|^2``, each cross term once (``2 c_j c_k g_j g_k``): n(n+1)/2 Gaussians."""
    out = []
    for j, s in enumerate(a):
        for k in range(j, len(a)):
            t = a[k]
            c = sqrt_gaussian_product(s.mean, s.cov, t.mean, t.cov)
            out.append(Component((1.0 if j == k else 2.0) * s.coef * t.coef * c.weight, c.mean, c.cov))
    return out


def mixture_integral(mixture: Sequence[Component]) -> float:
    """The integral of a signed mixture (the sum of its weights)."""
    return float(sum(c.weight for c in mixture))


def scaled(mixture: Sequence[Component], factor: float) -> list[Component]:
    """Every weight times ``factor``."""
    return [Component(c.weight * factor, c.mean, c.cov) for c in mixture]


def gauss_pdf(x: FloatArray, mean: FloatArray, cov: FloatArray) -> FloatArray:
    """The multivariate normal density at the rows of ``x``."""
    chol = np.linalg.cholesky(cov)
    z = (x - mean) @ np.linalg.inv(chol).T  # whitened: a (d x d) inverse, then one matrix product
    maha = np.einsum("ij,ij->i", z, z)
    logdet = 2.0 * np.sum(np.log(np.diag(chol)))
    return np.asarray(np.exp(-0.5 * (maha + logdet + x.shape[1] * np.log(2 * np.pi))))


def mixture_pdf(mixture: Sequence[Component], x: FloatArray) -> FloatArray:
    """The signed mixture's value at the rows of ``x``."""
    x = np.asarray(x, dtype=np.float64)
    total = np.zeros(len(x))
    for c in mixture:
        total += c.weight * gauss_pdf(x, c.mean, c.cov)
    return total


def _gauss(
    mean: Sequence[float], sd: Sequence[float], corr: Mapping[tuple[int, int], float] | None = None
) -> tuple[FloatArray, FloatArray]:
    m = np.asarray(mean, dtype=np.float64)
    s = np.asarray(sd, dtype=np.float64)
    c = np.diag(s**2)
    for (i, j), rho in (corr or {}).items():
        c[i, j] = c[j, i] = rho * s[i] * s[j]
    return m, c


class OffshellConfig(BaseModel):
    """Parameters of the off-shell toy (yields in expected events; shapes in observable units)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nu_ggH: float = Field(40.0, gt=0, description="expected gg->H*->ZZ signal events at mu = 1 (|A_S|^2)")
    nu_ggZZ: float = Field(120.0, gt=0, description="expected gg->ZZ continuum events (|A_B|^2)")
    nu_qqZZ: float = Field(500.0, gt=0, description="expected qq->ZZ events in the signal region")
    nu_qqZZ_cr: float = Field(1500.0, gt=0, description="expected qq->ZZ events in the control region")
    signal_m4l: float = Field(520.0, description="m4l centre of the signal amplitude (GeV)")
    signal_m4l_width: float = Field(130.0, gt=0, description="m4l width of the signal amplitude's sqrt-Gaussian")
    continuum_dip: float = Field(
        0.45, ge=0, description="a_2 / a_1: weight of the continuum term with the opposite sign (interference sign)"
    )
    m4l_scale_per_sigma: float = Field(0.03, description="relative m4l scale change per sigma of m4l_scale")
    m4l_resolution: float = Field(25.0, gt=0, description="nominal m4l resolution (GeV)")
    resolution_per_sigma: float = Field(0.5, description="log change of the m4l resolution per sigma")
    tilt_per_sigma: float = Field(0.12, description="angle shift per 100 GeV of m4l - 400 per sigma of angle_tilt")
    angle_resolution: float = Field(0.05, gt=0)
    pt_resolution: float = Field(5.0, gt=0, description="pt4l resolution (GeV)")
    reference_mean: list[float] = Field(default_factory=lambda: [430.0, 0.1, 60.0], min_length=3, max_length=3)
    reference_sd: list[float] = Field(default_factory=lambda: [220.0, 1.3, 55.0], min_length=3, max_length=3)
    systematics: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "m4l_scale": ["qqZZ", "qqZZ_cr"],
            "m4l_resolution": ["qqZZ", "qqZZ_cr"],
            "angle_tilt": ["ggH", "ggZZ", "interference", "SBI"],
        },
        description="shape systematic -> the processes it acts on",
    )


# -- which configuration fields a sample depends on --------------------------------------------------------
# One owner for "which OffshellConfig fields change the events of process P": the generate-offshell step is
# passed only these (its step.yaml's keys_by is generated from ``truth_keys_by``), so a patch of a signal
# field re-runs the signal's chain and reuses every background. tests/physics/test_offshell_fields.py perturbs
# each field and checks that exactly the samples whose events change are passed a different configuration.
OBSERVED: tuple[str, ...] = ("observed", "observed_cr")
_SIGNAL = ("nu_ggH", "signal_m4l", "signal_m4l_width")
_CONTINUUM = ("nu_ggZZ", "continuum_dip")
_DETECTOR = ("m4l_resolution", "angle_resolution", "pt_resolution")  # every sample but the reference
SAMPLE_FIELDS: dict[str, tuple[str, ...]] = {
    "ggH": _SIGNAL + _DETECTOR,
    "ggZZ": _CONTINUUM + _DETECTOR,
    "interference": _SIGNAL + _CONTINUUM + _DETECTOR,
    "SBI": _SIGNAL + _CONTINUUM + _DETECTOR,
    "qqZZ": ("nu_qqZZ", *_DETECTOR),
    "qqZZ_cr": ("nu_qqZZ_cr", *_DETECTOR),
    "reference": ("reference_mean", "reference_sd"),  # no detector response
    "observed": _SIGNAL + _CONTINUUM + ("nu_qqZZ", *_DETECTOR),  # the gg total at mu and qqZZ
    "observed_cr": ("nu_qqZZ_cr", *_DETECTOR),
}
"""Process (or pseudo-data set) -> the fields its nominal events depend on."""
NUISANCE_FIELDS: dict[str, tuple[str, ...]] = {
    "m4l_scale": ("systematics", "m4l_scale_per_sigma"),
    "m4l_resolution": ("systematics", "resolution_per_sigma"),
    "angle_tilt": ("systematics", "tilt_per_sigma"),
}
"""Shape nuisance -> the fields a sample shifted by it depends on as well."""


def sample_names() -> list[str]:
    """Every name ``generate-offshell`` simulates: the processes, their +-1 sigma variations, the pseudo-data."""
    variations = [f"{b}_{n}_{side}" for b in BASE_PROCESSES for n in NUISANCES for side in ("up", "down")]
    return [*BASE_PROCESSES, *variations, *OBSERVED]


def split_variation(process: str) -> tuple[str, str, float]:
    """``<process>_<nuisance>_up|down`` -> ``(process, nuisance, +1 | -1)``; a ValueError for other names."""
    for base in BASE_PROCESSES:
        for nuisance in NUISANCES:
            for side, shift in (("up", 1.0), ("down", -1.0)):
                if process == f"{base}_{nuisance}_{side}":
                    return base, nuisance, shift
    names = ", ".join(BASE_PROCESSES)
    raise ValueError(f"unknown process {process!r} (known: {names}, or <process>_<nuisance>_up|down)")


def config_fields(name: str, nuisances: Sequence[str] = ()) -> list[str]:
    """The OffshellConfig fields the events of sample ``name`` (shifted by ``nuisances``) depend on."""
    base, shifted = name, list(nuisances)
    if name not in SAMPLE_FIELDS:
        base, nuisance, _ = split_variation(name)
        shifted.append(nuisance)
    fields = {*SAMPLE_FIELDS[base], *(f for n in shifted for f in NUISANCE_FIELDS[n])}
    return [f for f in OffshellConfig.model_fields if f in fields]


def truth_keys_by() -> dict[str, dict[str, list[str]]]:
    """``keys_by`` of generate-offshell's ``truth``: by ``process`` and by the keys of ``nuisances``."""
    return {
        "process": {name: config_fields(name) for name in sample_names()},
        "nuisances": {n: list(NUISANCE_FIELDS[n]) for n in NUISANCES},
    }


class Offshell:
    """The off-shell toy's exact densities (the ``Truth`` protocol) and its samplers."""

    name = "offshell"

    def __init__(self, config: OffshellConfig | None = None) -> None:
        self.config = config or OffshellConfig()
        cfg = self.config
        unknown = sorted(set(cfg.systematics) - set(NUISANCES))
        if unknown:
            raise ValueError(f"unknown systematic {unknown[0]!r} (known: {', '.join(NUISANCES)})")
        for syst, procs in cfg.systematics.items():
            bad = sorted(set(procs) - set(BASE_PROCESSES) - {"reference"})
            if bad or "reference" in procs:
                raise ValueError(f"systematic {syst!r}: cannot act on {(bad or ['reference'])[0]!r}")
        ms, cs = _gauss([cfg.signal_m4l, 0.35, 85.0], [cfg.signal_m4l_width, 0.6, 45.0], {(0, 2): 0.3})
        m1, c1 = _gauss([340.0, -0.2, 40.0], [110.0, 0.8, 30.0], {(0, 2): 0.2})
        m2, c2 = _gauss([560.0, 0.5, 90.0], [100.0, 0.55, 40.0], {(0, 2): 0.3})
        # the signal amplitude's sign makes the interference destructive overall (nu_I < 0), as in the SM
        self.signal_amplitude = [AmplitudeTerm(-float(np.sqrt(cfg.nu_ggH)), ms, cs)]
        rho = cfg.continuum_dip
        k12 = sqrt_gaussian_product(m1, c1, m2, c2).weight
        a1 = float(np.sqrt(cfg.nu_ggZZ / (1.0 + rho**2 - 2.0 * rho * k12)))
        self.continuum_amplitude = [AmplitudeTerm(a1, m1, c1), AmplitudeTerm(-rho * a1, m2, c2)]
        self._latent: dict[str, list[Component]] = {
            "ggH": amplitude_square(self.signal_amplitude),
            "ggZZ": amplitude_square(self.continuum_amplitude),
            "interference": scaled(amplitude_product(self.signal_amplitude, self.continuum_amplitude), 2.0),
            "SBI": self._gg_unnormalised(1.0),
            "qqZZ": [
                Component(0.7 * cfg.nu_qqZZ, *_gauss([300.0, 0.0, 30.0], [90.0, 0.9, 22.0], {(0, 2): 0.25})),
                Component(0.3 * cfg.nu_qqZZ, *_gauss([430.0, -0.3, 60.0], [130.0, 0.8, 38.0], {(0, 1): -0.2})),
            ],
            "qqZZ_cr": [
                Component(0.6 * cfg.nu_qqZZ_cr, *_gauss([260.0, 0.8, 25.0], [70.0, 0.7, 18.0])),
                Component(0.4 * cfg.nu_qqZZ_cr, *_gauss([360.0, 0.6, 45.0], [120.0, 0.8, 30.0])),
            ],
        }
        self._yields = {p: mixture_integral(m) for p, m in self._latent.items()}
        ref_m, ref_c = _gauss(cfg.reference_mean, cfg.reference_sd)
        self._latent["reference"] = [Component(1.0, ref_m, ref_c)]
        self._yields["reference"] = 1.0

    # -- the Truth protocol --------------------------------------------------------------------------------
    def observables(self) -> Sequence[str]:
        """``m4l``, ``angle``, ``pt4l``."""
        return OBSERVABLES

    def processes(self) -> Sequence[str]:
        """The base processes; ``<process>_<nuisance>_up|down`` names are accepted as well."""
        return BASE_PROCESSES

    def nuisances(self) -> Sequence[str]:
        """The shape nuisance parameters (in units of their +-1 sigma variations)."""
        return NUISANCES

    def density(self, process: str, x: FloatArray, nuisances: Mapping[str, float] | None = None) -> FloatArray:
        """``p(x | process, nuisances)``, normalised to 1 (the interference is ``I / nu_I``)."""
        return mixture_pdf(self.mixture(process, nuisances), np.asarray(x, dtype=np.float64))

    # -- yields and mixtures -------------------------------------------------------------------------------
    def yields(self) -> dict[str, float]:
        """Expected events of each process at mu = 1 (the interference's is signed; the reference's is 1)."""
        return dict(self._yields)

    def gg_yield(self, mu: float) -> float:
        """Expected gg events at signal strength ``mu``: ``mu nu_S + sqrt(mu) nu_I + nu_B``."""
        y = self._yields
        return float(mu * y["ggH"] + np.sqrt(mu) * y["interference"] + y["ggZZ"])

    def _gg_unnormalised(self, mu: float) -> list[Component]:
        amp = [AmplitudeTerm(np.sqrt(mu) * t.coef, t.mean, t.cov) for t in self.signal_amplitude]
        return amplitude_square(amp + self.continuum_amplitude)

    def resolve(self, process: str, nuisances: Mapping[str, float] | None = None) -> tuple[str, dict[str, float]]:
        """Split ``<process>_<nuisance>_up|down`` into the base process and its nuisance values."""
        values = {k: float(v) for k, v in (nuisances or {}).items()}
        unknown = sorted(set(values) - set(NUISANCES))
        if unknown:
            raise ValueError(f"unknown nuisance {unknown[0]!r} (known: {', '.join(NUISANCES)})")
        if process in self._latent:
            return process, values
        base, nuisance, shift = split_variation(process)
        values[nuisance] = values.get(nuisance, 0.0) + shift
        return base, values

    def detector(self, process: str, nuisances: Mapping[str, float]) -> tuple[FloatArray, FloatArray, FloatArray]:
        """The affine response ``x = A z + b + eps``, ``eps ~ N(0, Sigma)``: returns ``(A, b, Sigma)``."""
        cfg = self.config
        acts = {n: process in cfg.systematics.get(n, ()) for n in NUISANCES}
        th = {n: float(nuisances.get(n, 0.0)) if acts[n] else 0.0 for n in NUISANCES}
        scale = 1.0 + cfg.m4l_scale_per_sigma * th["m4l_scale"]
        if scale <= 0:
            raise ValueError(f"m4l scale 1 + {cfg.m4l_scale_per_sigma} * theta must stay positive")
        tilt = cfg.tilt_per_sigma * th["angle_tilt"] / 100.0
        shear = np.eye(3)
        shear[1, 0] = tilt
        offset = np.array([0.0, -tilt * 400.0, 0.0])
        s = np.diag([scale, 1.0, 1.0])
        if process == "reference":
            return np.eye(3), np.zeros(3), np.zeros((3, 3))
        sigma_m = cfg.m4l_resolution * np.exp(cfg.resolution_per_sigma * th["m4l_resolution"])
        noise = np.diag([sigma_m**2, cfg.angle_resolution**2, cfg.pt_resolution**2])
        return s @ shear, s @ offset, noise

    def mixture(self, process: str, nuisances: Mapping[str, float] | None = None) -> list[Component]:
        """The normalised detector-level signed mixture of ``process`` at ``nuisances``."""
        base, values = self.resolve(process, nuisances)
        return self._detector_mixture(base, self._latent[base], values, 1.0 / self._yields[base])

    def gg_mixture(self, mu: float, nuisances: Mapping[str, float] | None = None) -> list[Component]:
        """The normalised detector-level gg total at ``mu`` (``|sqrt(mu) A_S + A_B|^2 / nu_gg(mu)``)."""
        _, values = self.resolve("SBI", nuisances)
        return self._detector_mixture("SBI", self._gg_unnormalised(mu), values, 1.0 / self.gg_yield(mu))

    def _detector_mixture(
        self, process: str, latent: Sequence[Component], nuisances: Mapping[str, float], factor: float
    ) -> list[Component]:
        a, b, noise = self.detector(process, nuisances)
        return [Component(c.weight * factor, a @ c.mean + b, a @ c.cov @ a.T + noise) for c in latent]

    # -- sampling ------------------------------------------------------------------------------------------
    def _proposal(self, process: str, mu: float = 1.0) -> list[Component]:
        """A positive mixture ``q`` with ``|f| <= bound * q`` for the process' latent mixture ``f``."""
        if process == "ggZZ":
            amp = self.continuum_amplitude
        elif process in ("SBI", "interference", "gg"):
            amp = [AmplitudeTerm(np.sqrt(mu) * t.coef, t.mean, t.cov) for t in self.signal_amplitude]
            amp = amp + self.continuum_amplitude
        else:
            return [Component(c.weight, c.mean, c.cov) for c in self._latent[process]]
        total = sum(t.coef**2 for t in amp)
        return [Component(t.coef**2 / total, t.mean, t.cov) for t in amp]

    def _draw(self, mixture: Sequence[Component], n: int, rng: np.random.Generator) -> FloatArray:
        weights = np.array([c.weight for c in mixture])
        which = rng.choice(len(mixture), size=n, p=weights / weights.sum())
        z = np.empty((n, 3))
        for k, c in enumerate(mixture):
            sel = which == k
            z[sel] = rng.multivariate_normal(c.mean, c.cov, size=int(sel.sum()), method="cholesky")
        return z

    def _respond(self, process: str, z: FloatArray, nuisances: Mapping[str, float], rng: np.random.Generator):
        a, b, noise = self.detector(process, nuisances)
        eps = rng.standard_normal(z.shape) * np.sqrt(np.diag(noise))  # the noise covariance is diagonal
        return z @ a.T + b + eps

    def sample(
        self, process: str, n: int, rng: np.random.Generator, nuisances: Mapping[str, float] | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """``n`` detector-level events of ``process`` and their MC weights (summing to the yield on average).

        Positive single-sign processes are drawn exactly (equal weights ``nu / n``); ``ggZZ``, ``SBI`` and the
        interference by importance sampling from their positive-part proposal (weights ``f(z) / (n q(z))``,
        negative for the interference where ``I < 0``).
        """
        base, values = self.resolve(process, nuisances)
        if n <= 0:
            return np.empty((0, 3)), np.empty(0)
        latent = self._latent[base]
        if all(c.weight > 0 for c in latent):
            z = self._draw(latent, n, rng)
            w = np.full(n, self._yields[base] / n)
        else:
            proposal = self._proposal(base)
            z = self._draw(proposal, n, rng)
            w = mixture_pdf(latent, z) / mixture_pdf(proposal, z) / n
        return self._respond(base, z, values, rng), w

    def sample_gg(
        self, mu: float, n: int, rng: np.random.Generator, nuisances: Mapping[str, float] | None = None
    ) -> FloatArray:
        """``n`` unweighted events of the gg total at ``mu`` (rejection sampling of ``|sqrt(mu) A_S + A_B|^2``)."""
        _, values = self.resolve("SBI", nuisances)
        target = self._gg_unnormalised(mu)
        proposal = self._proposal("gg", mu)
        amp_norm = mu * self.config.nu_ggH + sum(t.coef**2 for t in self.continuum_amplitude)
        # |sum_k c_k g_k|^2 <= K sum_k c_k^2 g_k^2 (Cauchy-Schwarz, K terms) = K * amp_norm * q
        bound = len(proposal) * amp_norm
        out: list[FloatArray] = []
        have = 0
        while have < n:
            z = self._draw(proposal, max(2 * (n - have) * len(proposal), 64), rng)
            keep = rng.uniform(size=len(z)) * bound * mixture_pdf(proposal, z) < mixture_pdf(target, z)
            out.append(z[keep])
            have += int(keep.sum())
        z = np.concatenate(out)[:n]
        return self._respond("SBI", z, values, rng)

    def sample_observed(
        self,
        rng: np.random.Generator,
        mu: float = 1.0,
        nuisances: Mapping[str, float] | None = None,
        gg_factor: float = 1.0,
        qq_factor: float = 1.0,
        poisson: bool = True,
    ) -> tuple[FloatArray, dict[str, int]]:
        """A signal-region pseudo-experiment: gg total at ``mu`` and qqZZ, yields times the given factors."""
        expected = {"gg": gg_factor * self.gg_yield(mu), "qqZZ": qq_factor * self._yields["qqZZ"]}
        counts = {k: int(rng.poisson(v)) if poisson else round(v) for k, v in expected.items()}
        x_gg = self.sample_gg(mu, counts["gg"], rng, nuisances)
        base, values = self.resolve("qqZZ", nuisances)
        x_qq = self._respond(base, self._draw(self._latent[base], counts["qqZZ"], rng), values, rng)
        x = np.concatenate([x_gg, x_qq])
        return x[rng.permutation(len(x))], counts

    def sample_observed_cr(
        self,
        rng: np.random.Generator,
        nuisances: Mapping[str, float] | None = None,
        qq_factor: float = 1.0,
        poisson: bool = True,
    ) -> FloatArray:
        """A control-region pseudo-experiment (qqZZ only), yield times ``qq_factor``."""
        expected = qq_factor * self._yields["qqZZ_cr"]
        n = int(rng.poisson(expected)) if poisson else round(expected)
        base, values = self.resolve("qqZZ_cr", nuisances)
        return self._respond(base, self._draw(self._latent[base], n, rng), values, rng)


def simulate(
    toy: Offshell,
    process: str,
    n_events: int,
    seed: int,
    nuisances: Mapping[str, float] | None = None,
    mu: float = 1.0,
    gg_factor: float = 1.0,
    qq_factor: float = 1.0,
    poisson: bool = True,
    stream: int = 0,
) -> tuple[FloatArray, FloatArray]:
    """The events and MC weights of one generate-offshell file: a process, a variation, or pseudo-data
    (``observed``: signal region at ``mu``, ``observed_cr``: control region; unit weights, ``n_events`` unused).

    Every ``(seed, process)`` has its own random stream, so a sample does not depend on which others are made;
    ``stream`` > 0 draws an independent sample of the same process (calibration events).
    """
    key = [seed, zlib.crc32(process.encode()), 3] + ([stream] if stream else [])
    rng = np.random.default_rng(key)
    if process == "observed":
        x, _ = toy.sample_observed(rng, mu, nuisances, gg_factor, qq_factor, poisson)
        return x, np.ones(len(x))
    if process == "observed_cr":
        x = toy.sample_observed_cr(rng, nuisances, qq_factor, poisson)
        return x, np.ones(len(x))
    return toy.sample(process, n_events, rng, nuisances)


def write_root(path: str | Path, x: FloatArray, weights: FloatArray, observables: Sequence[str] = OBSERVABLES) -> None:
    """Write events as a ROOT TTree ``events`` (one branch per observable and ``weight``) with uproot."""
    import uproot

    branches: dict[str, Any] = {name: np.asarray(x[:, j], dtype=np.float64) for j, name in enumerate(observables)}
    branches["weight"] = np.asarray(weights, dtype=np.float64)
    with uproot.recreate(str(path)) as handle:
        handle[TREE] = branches


def _factory(config: Mapping[str, Any]) -> Offshell:
    return Offshell(OffshellConfig(**config))


register("offshell", _factory)
