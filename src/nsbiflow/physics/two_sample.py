"""A classifier two-sample test of weighted samples: can a classifier tell sample A from sample B?

Used wherever a set of weights must make one sample look like another: the reference reweighted by a learned
ratio against the numerator (``calibrate``), reweighted MC against target MC (``reweight-closure``). A
gradient-boosted classifier (scikit-learn's ``HistGradientBoostingClassifier``) separates the two, every event
scored by a model that did not see it (K-fold cross-validation, so the test is on held-out events); if the
weighted distributions agree, the weighted ROC AUC is 0.5 up to its sampling error. The error under that null
is Hanley & McNeil's ``sqrt((n_a + n_b + 1) / (12 n_a n_b))`` with Kish's effective sample sizes, so the
z-score ``(AUC - 0.5) / error`` is what a gate compares with a tolerance (``docs/physics.md``: how the exact
ratio scores on it).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def ess(weights: FloatArray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2."""
    total = float(np.sum(weights))
    return total * total / max(float(np.sum(weights**2)), 1e-300)


def classifier_auc(
    x_a: FloatArray, w_a: FloatArray, x_b: FloatArray, w_b: FloatArray, folds: int = 2, seed: int = 0
) -> dict[str, float]:
    """Held-out weighted ROC AUC of a classifier of B (label 1) against A (label 0), its null error and z-score.

    The two classes are given equal total weight; ``auc > 0.5`` means the classifier finds B where A is short.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.concatenate([x_a, x_b])
    y = np.concatenate([np.zeros(len(x_a)), np.ones(len(x_b))])
    w = np.concatenate([w_a / w_a.sum(), w_b / w_b.sum()]) * len(x) / 2
    clf = HistGradientBoostingClassifier(max_iter=100, max_leaf_nodes=15, min_samples_leaf=50, random_state=seed)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    p = cross_val_predict(clf, x, y, cv=cv, method="predict_proba", params={"sample_weight": w})[:, 1]
    auc = float(roc_auc_score(y, p, sample_weight=w))
    n_a, n_b = ess(w_a), ess(w_b)
    error = math.sqrt((n_a + n_b + 1) / (12 * n_a * n_b))  # Hanley & McNeil at AUC = 0.5
    return {"auc": auc, "auc_error": error, "z": (auc - 0.5) / error, "events": float(len(x)), "ess_a": n_a,
            "ess_b": n_b}
