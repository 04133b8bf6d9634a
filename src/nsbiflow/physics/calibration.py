"""Calibration of a learned log-ratio on an independent sample (Cranmer, Pavez, Louppe 2015, "CARL").

A learned ``log r(x)`` is a statistic ``s``; whatever its errors, the ratio of the densities of ``s`` under the
numerator and the denominator, ``r_cal(s) = p_num(s) / p_den(s)``, is a valid ratio that closes in bins of ``s``
by construction. It is estimated here on a *calibration sample* (events of both processes that neither the
training nor the gates nor the bias test use): the pooled ``s`` is cut into equal-population bins; in each,
the calibrated ``log r`` is ``s + d`` with ``d`` the maximum-likelihood offset of a logistic model of the class
(a correct ratio is left unchanged in expectation, whatever the spread of ``s`` in a bin: the log of the bins'
weight fractions would carry a Jensen bias); isotonic regression (scikit-learn's ``IsotonicRegression``, weights
the inverse variance of each bin's value) makes the sequence non-decreasing, and the map is piecewise linear in
``s`` between the bins' weighted median ``s``. Hand-written around scikit-learn because neither its
``IsotonicRegression`` (a step function, no tails) nor ``CalibratedClassifierCV`` (a probability, not a ratio
with a normalisation) gives a smooth, strictly extrapolating map of ``log r``. Outside the outermost knots it is
linear with slope 1 (the raw ratio's shape, offset to join the map), so the calibrated ratio is positive,
monotone in the raw one and finite everywhere. It has unit mean over the calibration denominator, and ``infer``
normalises it afterwards as every ratio (its mean over the held-out denominator), which keeps
``nu_p(theta) = nu_p E_p[g]``.

Samples may carry negative MC weights (an NLO sample, a sample with an interference term) as long as each
process's density is positive: the bins are cut in ``|w|``, a group of
bins must hold a positive net weight of both processes (Kish count ``(sum w)^2 / sum w^2`` of at least
``MIN_PER_BIN``), and the offset is the root of the weighted score equation, found by bisection where a
negative weight makes the log-likelihood non-concave (Newton's method otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nsbiflow.physics.errors import StageError

#: the file of a calibration in an ensemble's label directory
CALIBRATION = "calibration.json"
#: equal-population bins of the pooled calibration sample (both processes with equal total weight)
DEFAULT_BINS = 20
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
    log_normalisation: float = Field(
        0.0, description="log of the mean calibrated r over the calibration denominator before it was divided out"
    )

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
    """The calibration of one ratio from its raw log r on calibration events of the numerator and denominator.

    The calibrated ratio has unit mean over the calibration denominator (``log_normalisation`` records the
    shift); ``infer`` still re-normalises it over the held-out denominator, as it does every ratio (that
    choice, measured: docs/physics.md, "Calibration of the learned ratios").

    Per equal-population bin of the pooled ``s`` (sparse bins merged), the maximum-likelihood offset ``d`` of
    ``P(numerator | s) = sigmoid(s + d)``; the knot is the bin's weighted median ``s``, its value ``s + d``;
    isotonic regression then makes the values non-decreasing.
    """
    from sklearn.isotonic import IsotonicRegression

    s_num, s_den = np.asarray(log_r_num, np.float64), np.asarray(log_r_den, np.float64)
    w_num, w_den = np.asarray(w_num, np.float64), np.asarray(w_den, np.float64)
    for name, s, w in (("numerator", s_num, w_num), ("denominator", s_den, w_den)):
        if len(s) < 2 * MIN_PER_BIN or len(s) != len(w):
            raise StageError(
                f"calibration {label!r}: the {name} calibration sample has {len(s)} events ({len(w)} weights); "
                f"at least {2 * int(MIN_PER_BIN)} are needed"
            )
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(w))):
            raise StageError(f"calibration {label!r}: the {name} calibration sample has non-finite log r or weights")
        if not w.sum() > 0:
            raise StageError(
                f"calibration {label!r}: the {name} calibration sample's weights sum to {w.sum():.4g}; a density "
                "needs a positive total weight (bind the sample of the process, not a pure interference term)"
            )
    # pooled with equal total (net) weight: bins are populated wherever either process is
    s = np.concatenate([s_num, s_den])
    w = np.concatenate([w_num / w_num.sum(), w_den / w_den.sum()])
    order = np.argsort(s, kind="stable")
    cum = np.cumsum(np.abs(w[order]))  # in |w|: a cumulative sum of signed weights is not monotone
    edges_at = np.searchsorted(cum, np.linspace(0, cum[-1], n_bins + 1)[1:-1])
    idx = np.digitize(s, s[order][edges_at], right=True) if len(edges_at) else np.zeros(len(s), int)
    sums = {  # sum of weights and of squared weights per bin, for the merge rule
        "num": _per_bin(idx[: len(s_num)], w_num, n_bins),
        "den": _per_bin(idx[len(s_num) :], w_den, n_bins),
    }
    groups = _merge(sums["num"], sums["den"])
    group_of = np.zeros(n_bins, dtype=int)
    for g, members in enumerate(groups):
        group_of[members] = g
    gidx = group_of[idx]
    y = np.concatenate([np.ones(len(s_num)), np.zeros(len(s_den))])
    signed = bool(np.any(w < 0))
    offset = (_offsets_bisection if signed else _offsets)(s, gidx, y, w, len(groups))
    n_g = len(groups)
    g_num, g_den = gidx[: len(s_num)], gidx[len(s_num) :]
    variances = 1.0 / _per_group(g_num, w_num, n_g) + 1.0 / _per_group(g_den, w_den, n_g)
    # a knot per group at the pooled weighted median of s; its calibrated value is s there plus the offset
    knots = np.array([_weighted_median(s[gidx == g], np.abs(w[gidx == g])) for g in range(n_g)])
    values = knots + offset
    values = IsotonicRegression(increasing=True).fit(knots, values, sample_weight=1.0 / variances).predict(knots)
    keep = np.concatenate([[True], np.diff(knots) > 1e-9])
    if keep.sum() < 2:
        raise StageError(f"calibration {label!r}: the raw log r takes a single value on the calibration sample")
    fields = {"label": label, "n_numerator": len(s_num), "n_denominator": len(s_den)}
    raw = RatioCalibration(knots=[float(x) for x in knots[keep]], values=[float(x) for x in values[keep]], **fields)
    # unit mean over the calibration denominator (the normalisation of r, on the largest sample that has it)
    mean_r = float(np.sum(w_den * np.exp(raw.apply(s_den))) / np.sum(w_den))
    if not (np.isfinite(mean_r) and mean_r > 0):  # only reachable with negative weights in the denominator
        raise StageError(
            f"calibration {label!r}: the calibrated ratio's mean over the denominator sample is {mean_r:.4g}; "
            "its negative weights dominate somewhere: calibrate on more events"
        )
    log_norm = float(np.log(mean_r))
    return RatioCalibration(
        knots=raw.knots, values=[v - log_norm for v in raw.values], log_normalisation=log_norm, **fields
    )


def _offsets(s: np.ndarray, group: np.ndarray, y: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Per group, the maximum-likelihood offset d of a logistic model P(numerator | s) = sigmoid(s + d).

    The classes are balanced (each process's weights sum to 1), so a correct ratio has d = 0 in expectation
    in every group, whatever the spread of s inside it (a ratio of bin fractions would carry a Jensen bias).
    Newton's method, vectorised over the groups (the log-likelihood is concave in d).
    """
    d = np.zeros(n)
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(s + d[group])))
        grad = np.bincount(group, weights=w * (y - p), minlength=n)
        hess = np.bincount(group, weights=w * p * (1 - p), minlength=n)
        step = grad / np.maximum(hess, 1e-300)
        d += np.clip(step, -2.0, 2.0)
        if np.max(np.abs(step)) < 1e-10:
            break
    return d


def _offsets_bisection(s: np.ndarray, group: np.ndarray, y: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """The offsets of ``_offsets`` for signed weights: per group, the root of the score
    ``sum w (y - sigmoid(s + d))``, found by bisection (vectorised over the groups).

    With a negative weight the log-likelihood need not be concave and Newton's method can run away; the score
    still goes from the group's net numerator weight (d -> -inf) to minus its net denominator weight
    (d -> +inf), both positive by the merge rule, so a bracket of the root always exists.
    """
    lo, hi = np.full(n, -40.0), np.full(n, 40.0)
    for _ in range(60):  # 80 / 2^60: far below any resolution of the map
        mid = 0.5 * (lo + hi)
        p = 1.0 / (1.0 + np.exp(-np.clip(s + mid[group], -700, 700)))
        score = np.bincount(group, weights=w * (y - p), minlength=n)
        lo, hi = np.where(score > 0, mid, lo), np.where(score > 0, hi, mid)
    return 0.5 * (lo + hi)


def _per_group(group: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    """Kish effective count of each group (a group with no positive net weight counts as ~0)."""
    sw = np.bincount(group, weights=w, minlength=n)
    sw2 = np.bincount(group, weights=w**2, minlength=n)
    return np.divide(sw**2, sw2, out=np.full(n, 1e-12), where=(sw2 > 0) & (sw > 0))


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    """The weighted median of ``x``."""
    order = np.argsort(x)
    cum = np.cumsum(w[order])
    return float(x[order][np.searchsorted(cum, 0.5 * cum[-1])])


def _per_bin(idx: np.ndarray, w: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum of weights and of squared weights per bin."""
    return np.bincount(idx, weights=w, minlength=n_bins), np.bincount(idx, weights=w**2, minlength=n_bins)


def _kish(sw: float, sw2: float) -> float:
    """Kish effective count of a net weight ``sw`` with squared weights ``sw2`` (0 unless ``sw`` is positive)."""
    return sw * sw / sw2 if sw > 0 and sw2 > 0 else 0.0


def _merge(num: tuple[np.ndarray, np.ndarray], den: tuple[np.ndarray, np.ndarray]) -> list[list[int]]:
    """Consecutive bins grouped until each group holds a positive net weight of both processes worth
    ``MIN_PER_BIN`` Kish events (outer groups absorb the rest)."""
    groups: list[list[int]] = []
    current: list[int] = []
    a = np.zeros(4)  # running sum w, sum w^2 of the numerator, then of the denominator
    for i in range(len(num[0])):
        current.append(i)
        a += (num[0][i], num[1][i], den[0][i], den[1][i])
        if _kish(a[0], a[1]) >= MIN_PER_BIN and _kish(a[2], a[3]) >= MIN_PER_BIN:
            groups.append(current)
            current, a = [], np.zeros(4)
    if current:
        if groups:
            groups[-1].extend(current)
        else:
            groups.append(current)
    return groups


def save_calibration(calibration: RatioCalibration, path: Path) -> None:
    """Write ``calibration`` as JSON (``load_calibration`` reads it back)."""
    path.write_text(calibration.model_dump_json(indent=2) + "\n")


def load_calibration(path: Path) -> RatioCalibration:
    """A stored calibration; a malformed one is a one-line error naming the file and the field."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise StageError(f"{path}: cannot read the calibration ({error}); re-run calibrate-ratio") from None
    try:
        return RatioCalibration.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise StageError(f"{path}: {where + ': ' if where else ''}{first['msg']}") from None
