"""Calibration of a learned log-ratio on an independent sample (Cranmer, Pavez, Louppe 2015, "CARL").

A learned ``log r(x)`` is a statistic ``s``; whatever its errors, the ratio of the densities of ``s`` under the
numerator and the denominator, ``r_cal(s) = p_num(s) / p_den(s)``, is a valid ratio that closes in bins of ``s``
by construction. It is estimated here on a *calibration sample* (events of both processes that neither the
training nor the gates nor the bias test use): the pooled ``s`` is cut into equal-population bins, each bin's
``log(p_num / p_den)`` is the log of its normalised weight fractions, isotonic regression (scikit-learn's
``IsotonicRegression``, weights the inverse variance of each bin's value) makes the sequence non-decreasing, and
the map is piecewise linear in ``s`` between the bins' weighted mean ``s``. Outside the outermost knots it is
linear with slope 1 (the raw ratio's shape, offset to join the map), so the calibrated ratio is positive,
monotone in the raw one and finite everywhere. Whoever evaluates a ratio normalises it afterwards as before (its
mean over the held-out denominator), which keeps ``nu_p(theta) = nu_p E_p[g]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nsbiflow.physics.errors import StageError

#: equal-population bins of the pooled calibration sample (both processes with equal total weight)
DEFAULT_BINS = 40
#: a bin needs at least this much (unit-weight equivalent) of each process, else it is merged with its neighbour
MIN_PER_BIN = 25.0


class RatioCalibration(BaseModel):
    """A monotone map of one ensemble's raw mean log-ratio to a calibrated one (stored with the ensemble)."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(..., description="the ratio's label (numerator over denominator)")
    knots: list[float] = Field(..., min_length=2, description="raw log r at the knots, strictly increasing")
    values: list[float] = Field(..., min_length=2, description="calibrated log r at the knots, non-decreasing")
    n_numerator: int = Field(..., ge=1, description="calibration events of the numerator")
    n_denominator: int = Field(..., ge=1, description="calibration events of the denominator")

    @model_validator(mode="after")
    def _monotone(self) -> RatioCalibration:
        k, v = np.asarray(self.knots), np.asarray(self.values)
        if len(k) != len(v):
            raise ValueError(f"calibration {self.label!r}: {len(k)} knots but {len(v)} values")
        if not (np.all(np.isfinite(k)) and np.all(np.isfinite(v))):
            raise ValueError(f"calibration {self.label!r}: knots and values must be finite")
        if np.any(np.diff(k) <= 0):
            raise ValueError(f"calibration {self.label!r}: knots must be strictly increasing")
        if np.any(np.diff(v) < 0):
            raise ValueError(f"calibration {self.label!r}: values must be non-decreasing (a monotone map)")
        return self

    def apply(self, log_r: np.ndarray) -> np.ndarray:
        """Calibrated log r of raw ``log_r``: piecewise linear between the knots, slope 1 outside them."""
        k, v = np.asarray(self.knots), np.asarray(self.values)
        x = np.asarray(log_r, dtype=np.float64)
        out = np.interp(x, k, v)
        out = np.where(x < k[0], v[0] + (x - k[0]), out)
        return np.where(x > k[-1], v[-1] + (x - k[-1]), out)

    def slope(self, log_r: np.ndarray) -> np.ndarray:
        """d(calibrated log r) / d(raw log r) at ``log_r`` (scales the ensemble's spread)."""
        k, v = np.asarray(self.knots), np.asarray(self.values)
        x = np.asarray(log_r, dtype=np.float64)
        seg = np.diff(v) / np.diff(k)
        i = np.clip(np.searchsorted(k, x, side="right") - 1, 0, len(seg) - 1)
        return np.where((x < k[0]) | (x > k[-1]), 1.0, seg[i])


def fit_calibration(
    label: str,
    log_r_num: np.ndarray,
    w_num: np.ndarray,
    log_r_den: np.ndarray,
    w_den: np.ndarray,
    n_bins: int = DEFAULT_BINS,
) -> RatioCalibration:
    """The calibration of one ratio from its raw log r on calibration events of the numerator and denominator."""
    from sklearn.isotonic import IsotonicRegression

    s_num, s_den = np.asarray(log_r_num, np.float64), np.asarray(log_r_den, np.float64)
    w_num, w_den = np.asarray(w_num, np.float64), np.asarray(w_den, np.float64)
    for name, s, w in (("numerator", s_num, w_num), ("denominator", s_den, w_den)):
        if len(s) < 2 * MIN_PER_BIN or len(s) != len(w):
            raise StageError(
                f"calibration {label!r}: the {name} calibration sample has {len(s)} events ({len(w)} weights); "
                f"at least {2 * int(MIN_PER_BIN)} are needed"
            )
        if np.any(w < 0) or not np.all(np.isfinite(s)):
            raise StageError(f"calibration {label!r}: the {name} calibration sample has negative weights or non-finite log r")
    # pooled with equal total weight: bins are populated wherever either process is
    s = np.concatenate([s_num, s_den])
    w = np.concatenate([w_num / w_num.sum(), w_den / w_den.sum()])
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(w[order])
    edges_at = np.searchsorted(cum, np.linspace(0, cum[-1], n_bins + 1)[1:-1])
    idx = np.digitize(s, s[order][edges_at], right=True) if len(edges_at) else np.zeros(len(s), int)
    n_eff = {  # Kish effective counts per bin, for the merge rule and the variances
        "num": _per_bin(idx[: len(s_num)], w_num, n_bins),
        "den": _per_bin(idx[len(s_num) :], w_den, n_bins),
    }
    groups = _merge(n_eff["num"][2], n_eff["den"][2])
    knots, values, variances = [], [], []
    for members in groups:
        sel_num = np.isin(idx[: len(s_num)], members)
        sel_den = np.isin(idx[len(s_num) :], members)
        wn, wd = w_num[sel_num], w_den[sel_den]
        fn, fd = wn.sum() / w_num.sum(), wd.sum() / w_den.sum()
        values.append(float(np.log(fn / fd)))
        # relative variance of each fraction: 1 / n_eff (Poisson)
        variances.append(float(np.sum(wn**2) / wn.sum() ** 2 + np.sum(wd**2) / wd.sum() ** 2))
        sel = np.concatenate([sel_num, sel_den])
        knots.append(float(np.average(s[sel], weights=w[sel])))
    k, v = np.asarray(knots), np.asarray(values)
    iso = IsotonicRegression(increasing=True).fit(k, v, sample_weight=1.0 / np.asarray(variances))
    v = iso.predict(k)
    keep = np.concatenate([[True], np.diff(k) > 1e-9])
    if keep.sum() < 2:
        raise StageError(f"calibration {label!r}: the raw log r takes a single value on the calibration sample")
    return RatioCalibration(
        label=label,
        knots=[float(x) for x in k[keep]],
        values=[float(x) for x in v[keep]],
        n_numerator=len(s_num),
        n_denominator=len(s_den),
    )


def _per_bin(idx: np.ndarray, w: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of weights, of squared weights and the Kish effective count per bin."""
    sw = np.bincount(idx, weights=w, minlength=n_bins)
    sw2 = np.bincount(idx, weights=w**2, minlength=n_bins)
    return sw, sw2, np.divide(sw**2, sw2, out=np.zeros(n_bins), where=sw2 > 0)


def _merge(n_num: np.ndarray, n_den: np.ndarray) -> list[list[int]]:
    """Consecutive bins grouped until each group holds ``MIN_PER_BIN`` of both processes (outer groups absorb)."""
    groups: list[list[int]] = []
    current: list[int] = []
    a = b = 0.0
    for i in range(len(n_num)):
        current.append(i)
        a, b = a + n_num[i], b + n_den[i]
        if a >= MIN_PER_BIN and b >= MIN_PER_BIN:
            groups.append(current)
            current, a, b = [], 0.0, 0.0
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def calibrations_from_json(data: Any, source: str) -> dict[str, RatioCalibration]:
    """``{label: RatioCalibration}`` from a stored document; a malformed one is an error naming ``source``."""
    if not isinstance(data, dict):
        raise StageError(f"{source}: calibrations must be a mapping of label to calibration")
    out = {}
    for label, item in data.items():
        try:
            out[label] = RatioCalibration.model_validate(item)
        except ValueError as error:
            first = str(error).splitlines()
            raise StageError(f"{source}: calibrations.{label}: {first[-1].strip() if first else error}") from None
    return out
