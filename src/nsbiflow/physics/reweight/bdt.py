"""The boosted-decision-tree reweighter (the baseline): scikit-learn's HistGradientBoostingClassifier on
event-level (high-level) observables, with the members, folds and outputs of the Deep-Sets reweighter.

Each member trains on the folds other than its own and stops early on its holdout fold (``X_val``). The
trees are exported to safetensors (node arrays) and evaluated
with numpy: scikit-learn has no safe on-disk format (its estimators persist with pickle, which runs code on
load and breaks across versions), so the export is checked against scikit-learn's own
``decision_function`` right after training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file, save_file

from nsbiflow.physics.errors import StageError
from nsbiflow.physics.reweight.config import BDTConfig
from nsbiflow.physics.reweight.folds import split

ProgressFn = Callable[[int, int, str], None]
FloatArray = NDArray[np.float64]
_NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")
EVAL_TILE = 8192


class Trees:
    """Exported trees of one member, evaluated with numpy: raw score = baseline + sum of leaf values."""

    def __init__(self, arrays: dict[str, NDArray[Any]]) -> None:
        self.arrays = arrays
        self.roots = arrays["roots"].astype(np.int64)
        self.baseline = float(arrays["baseline"][0])

    @classmethod
    def from_estimator(cls, estimator: Any, n_trees: int | None = None) -> Trees:
        """Export the first ``n_trees`` (default: all) trees of a fitted binary ``HistGradientBoostingClassifier``
        (numeric features only)."""
        nodes = [predictors[0].nodes for predictors in estimator._predictors[:n_trees]]
        if any(n["is_categorical"].any() for n in nodes):
            raise StageError("bdt: categorical splits cannot be exported; give numeric observables only")
        sizes = np.array([len(n) for n in nodes], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        arrays: dict[str, NDArray[Any]] = {}
        for name in _NODE_FIELDS:
            column = np.concatenate([n[name] for n in nodes]) if nodes else np.empty(0)
            if name in ("left", "right"):  # child indices are per tree: make them global
                column = column.astype(np.int64) + np.repeat(starts, sizes)
            arrays[name] = np.ascontiguousarray(
                column.astype(np.float64 if name in ("value", "num_threshold") else np.int64)
            )
        arrays["roots"] = starts
        arrays["baseline"] = np.asarray(estimator._baseline_prediction, np.float64).reshape(1)
        return cls(arrays)

    def __call__(self, x: FloatArray) -> FloatArray:
        """Raw scores (logits) of events ``x`` (n, features)."""
        a = self.arrays
        out = np.full(len(x), self.baseline)
        if not len(self.roots):
            return out
        for lo in range(0, len(x), EVAL_TILE):
            tile = x[lo : lo + EVAL_TILE]
            rows = np.arange(len(tile))[:, None]
            node = np.broadcast_to(self.roots, (len(tile), len(self.roots))).copy()
            while True:
                leaf = a["is_leaf"][node].astype(bool)
                if leaf.all():
                    break
                value = tile[rows, a["feature_idx"][node]]
                left = np.where(np.isnan(value), a["missing_go_to_left"][node] == 1, value <= a["num_threshold"][node])
                node = np.where(leaf, node, np.where(left, a["left"][node], a["right"][node]))
            out[lo : lo + EVAL_TILE] += a["value"][node].sum(axis=1)
        return out


def train_bdt(
    x_source: FloatArray,
    w_source: FloatArray,
    x_target: FloatArray,
    w_target: FloatArray,
    config: BDTConfig,
    progress: ProgressFn | None = None,
) -> list[tuple[str, Trees, dict[str, Any]]]:
    """Train ``config.members`` BDT classifiers of target (1) against source (0): (name, trees, info) each."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    sp = split(w_source, w_target, config.members, config.folds, config.seed, config.bootstrap, "bdt")
    x = np.concatenate([x_source, x_target])
    y = sp.labels.astype(np.int64)
    out = []
    for k in range(config.members):
        start = time.perf_counter()
        rows, hold = np.flatnonzero(sp.train[k] > 0), np.flatnonzero(sp.holdout[k] > 0)
        clf = HistGradientBoostingClassifier(
            max_iter=config.max_iter,
            learning_rate=config.learning_rate,
            max_leaf_nodes=config.max_leaf_nodes,
            min_samples_leaf=config.min_samples_leaf,
            l2_regularization=config.l2_regularization,
            early_stopping=True,
            n_iter_no_change=config.n_iter_no_change,
            random_state=sp.init_seed(config.seed, k),
        )
        clf.fit(
            x[rows],
            y[rows],
            sample_weight=sp.train[k, rows],
            X_val=x[hold],
            y_val=y[hold],
            sample_weight_val=sp.holdout[k, hold],
        )
        # every fitted tree is kept, the n_iter_no_change after the best holdout loss included: on the toy the
        # loss is flat around its minimum and truncating to it leaves the weights' amplitude short (closure in
        # n_obj chi2/ndf 12 instead of 2 at 20000 events), while the extra trees cost little in log w error
        trees = Trees.from_estimator(clf)
        check = rows[: min(len(rows), 4096)]
        if not np.allclose(trees(x[check]), clf.decision_function(x[check]), rtol=1e-9, atol=1e-9):
            raise StageError("bdt: the exported trees disagree with scikit-learn's predictions; report this version")
        logits = trees(x[hold])
        loss = _bce(logits, y[hold], sp.holdout[k, hold])
        train_loss = _bce(trees(x[rows]), y[rows], sp.train[k, rows])
        info = {
            "member_id": k,
            "seed": config.seed,
            "holdout_fold": k % config.folds,
            "folds": config.folds,
            "bootstrap": config.bootstrap,
            "trees": len(trees.roots),
            "trees_fitted": int(clf.n_iter_),
            "holdout_loss": loss,
            "train_loss": train_loss,
            "seconds": time.perf_counter() - start,
        }
        out.append((f"member_{k:04d}", trees, info))
        if progress is not None:
            progress(k + 1, config.members, f"member {k}: {len(trees.roots)} trees, holdout loss {loss:.5f}")
    return out


def _bce(logits: FloatArray, y: NDArray[np.int64], w: FloatArray) -> float:
    """Weighted mean binary cross-entropy of logits."""
    per = np.logaddexp(0.0, logits) - y * logits
    return float(np.sum(per * w) / np.sum(w))


def save(directory: Path, members: Sequence[tuple[str, Trees, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Write each member's trees as ``<name>.safetensors``; returns the manifest entries."""
    entries = []
    for name, trees, info in members:
        save_file(trees.arrays, str(directory / f"{name}.safetensors"))
        entries.append({"name": name, "file": f"{name}.safetensors", **info})
    return entries


class BDTEnsemble:
    """Loaded BDT members (numpy evaluation: no scikit-learn needed to apply them)."""

    def __init__(self, directory: Path, manifest: dict[str, Any]) -> None:
        self.observables: list[str] = list(manifest["observables"])
        self.members = []
        for entry in manifest["members"]:
            try:
                self.members.append(Trees(load_file(str(directory / entry["file"]))))
            except (OSError, ValueError, KeyError) as exc:
                raise StageError(f"{directory / entry['file']}: cannot read member ({exc}); retrain") from None

    def member_log_weights(self, x: FloatArray) -> FloatArray:
        """Uncalibrated log w of every member ``(members, n)`` on event-level observables ``x``."""
        return np.stack([trees(x) for trees in self.members])
