"""Extended likelihoods: unbinned (per-event density ratios) inside the support, binned Poisson outside.

With expected yields ``nu_s`` (signal, scaled by the signal strength ``mu``) and ``nu_b`` (background) and a
reference density ``p_ref``, the event density is ``lambda(x) = mu nu_s p_s(x) + nu_b p_b(x | alpha)``.
Dividing every event's term by ``p_ref(x)`` (a constant of the fit) gives, up to a constant::

    -2 ln L(mu, alpha) = 2 N_S(mu, alpha) - 2 sum_{i in S} w_i ln[mu nu_s r_s(x_i) + nu_b r_b(x_i) g(x_i, alpha)]
                         + sum_k 2 [nu_k(mu, alpha) - n_k ln nu_k(mu, alpha)] + alpha^2

with ``r = p / p_ref``, ``g(x, alpha) = p_b(x | alpha) / p_b(x | 0)`` interpolated from the +-1 sigma ratios
(HistFactory code 4: a 6th-order polynomial for |alpha| < 1 matching value, slope and curvature of the
exponential ``g_up^alpha`` / ``g_down^-alpha`` used beyond), ``N_S`` the expected yield inside the support
S and ``nu_k`` the expected counts of the binned region outside it. ``w_i`` are event weights (1 for data;
an Asimov dataset uses weighted simulated events).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_A = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [-1, 1, -1, 1, -1, 1],
        [1, 2, 3, 4, 5, 6],
        [1, -2, 3, -4, 5, -6],
        [0, 2, 6, 12, 20, 30],
        [0, 2, -6, 12, -20, 30],
    ],
    dtype=np.float64,
)
_A_INV = np.linalg.inv(_A)
_FLOOR = 1e-12


class Code4:
    """Multiplicative interpolation ``g(alpha)`` between ``g(-1) = down``, ``g(0) = 1``, ``g(+1) = up`` (vectorised)."""

    def __init__(self, up: FloatArray, down: FloatArray) -> None:
        self.up = np.maximum(np.asarray(up, dtype=np.float64), _FLOOR)
        self.down = np.maximum(np.asarray(down, dtype=np.float64), _FLOOR)
        lu, ld = np.log(self.up), np.log(self.down)
        b = np.stack([self.up - 1, self.down - 1, lu * self.up, -ld * self.down, lu**2 * self.up, ld**2 * self.down])
        self.coefficients = _A_INV @ b.reshape(6, -1)

    def __call__(self, alpha: float) -> FloatArray:
        if alpha >= 1:
            out = self.up**alpha
        elif alpha <= -1:
            out = self.down ** (-alpha)
        else:
            powers = np.array([alpha**i for i in range(1, 7)])
            out = 1.0 + (powers @ self.coefficients).reshape(self.up.shape)
        return np.asarray(np.maximum(out, _FLOOR))


@dataclass
class BinnedRegion:
    """Poisson counts outside the support: observed ``counts`` and per-bin yield fractions per process."""

    counts: FloatArray
    signal: FloatArray
    background: FloatArray
    background_up: FloatArray
    background_down: FloatArray
    _interp: Code4 | None = field(default=None, repr=False)

    def expected(self, mu: float, alpha: float, nu_s: float, nu_b: float) -> FloatArray:
        """Expected counts per bin."""
        if self._interp is None:
            nominal = np.maximum(self.background, _FLOOR)
            self._interp = Code4(self.background_up / nominal, self.background_down / nominal)
        return np.asarray(mu * nu_s * self.signal + nu_b * self.background * self._interp(alpha))


@dataclass
class UnbinnedLikelihood:
    """``-2 ln L(mu, alpha)`` of one dataset (see the module docstring).

    ``log_r_signal``, ``log_r_background``: per-event log-ratios over the reference (events in the support);
    ``log_g_up``, ``log_g_down``: per-event ``log p_b(x|+-1)/p_b(x|0)``; ``eff_*``: fraction of each
    process's yield inside the support (1 when everything is in the support).
    """

    log_r_signal: FloatArray
    log_r_background: FloatArray
    log_g_up: FloatArray
    log_g_down: FloatArray
    nu_s: float
    nu_b: float
    weights: FloatArray | None = None
    eff_signal: float = 1.0
    eff_background: tuple[float, float, float] = (1.0, 1.0, 1.0)  # nominal, up, down
    binned: BinnedRegion | None = None
    constraint_width: float = 1.0

    def __post_init__(self) -> None:
        self._rs = np.exp(self.log_r_signal) * self.nu_s
        self._rb = np.exp(self.log_r_background) * self.nu_b
        self._g = Code4(np.exp(self.log_g_up), np.exp(self.log_g_down))
        nominal, up, down = self.eff_background
        self._eff_b = Code4(np.array([up / max(nominal, _FLOOR)]), np.array([down / max(nominal, _FLOOR)]))
        self._w = np.ones_like(self._rs) if self.weights is None else np.asarray(self.weights, dtype=np.float64)

    def mu_lower_bound(self) -> float:
        """Smallest ``mu`` keeping every event density positive at alpha = 0 (with margin)."""
        if len(self._rs) == 0:
            return -np.inf
        return float(-np.min(self._rb / self._rs)) * 0.999

    def twice_nll(self, mu: float, alpha: float) -> float:
        """``-2 ln L`` up to a constant."""
        dens = mu * self._rs + self._rb * self._g(alpha)
        if np.any(dens <= 0):
            return 1e12 + 1e6 * float(np.sum(np.maximum(-dens, 0)))
        n_in = mu * self.nu_s * self.eff_signal + self.nu_b * self.eff_background[0] * float(self._eff_b(alpha)[0])
        value = 2.0 * n_in - 2.0 * float(np.dot(self._w, np.log(dens)))
        if self.binned is not None:
            expected = np.maximum(self.binned.expected(mu, alpha, self.nu_s, self.nu_b), _FLOOR)
            value += float(np.sum(2.0 * (expected - self.binned.counts * np.log(expected))))
        return value + (alpha / self.constraint_width) ** 2
