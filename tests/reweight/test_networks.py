"""The Deep-Sets network is permutation and padding invariant; the exported BDT trees reproduce scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nsbiflow.physics.objects import pad
from nsbiflow.physics.reweight.bdt import BDTConfig, Trees, train_bdt
from nsbiflow.physics.reweight.deepsets import DeepSets, DeepSetsConfig, inputs
from tests.reweight.conftest import Samples


def _model(n_fields: int, n_high: int) -> DeepSets:
    torch.manual_seed(3)
    model = DeepSets(n_fields, n_high, DeepSetsConfig(phi=[16, 16], latent=8, head=[16]))
    with torch.no_grad():  # non-trivial scaling, so a bug in masking the scaled padding would show
        model.object_mean.copy_(torch.linspace(1, 2, n_fields))
        model.pool_scale.fill_(4.0)
    return model.eval()


def _logits(model: DeepSets, objects: np.ndarray, mask: np.ndarray, high: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(objects), torch.from_numpy(mask), torch.from_numpy(high)).numpy()


def test_shuffled_objects_give_the_same_weight(samples: Samples) -> None:
    ev = samples.a.select(np.arange(500))
    objects, mask, _ = inputs(ev, ["pt", "eta", "phi", "e"], [])
    high = ev.events.x[:, :2].astype(np.float32)
    model = _model(4, 2)
    reference = _logits(model, objects, mask, high)
    rng = np.random.default_rng(0)
    shuffled = ev.select(np.arange(len(ev)))
    offsets = ev.offsets
    order = np.concatenate([offsets[i] + rng.permutation(c) for i, c in enumerate(ev.counts)]).astype(np.int64)
    shuffled.fields = {k: v[order] for k, v in ev.fields.items()}
    assert not np.array_equal(shuffled.fields["pt"], ev.fields["pt"])
    objects2, mask2, _ = inputs(shuffled, ["pt", "eta", "phi", "e"], [])
    np.testing.assert_allclose(_logits(model, objects2, mask2, high), reference, rtol=1e-5, atol=1e-5)
    # the padded slots may sit anywhere: scatter the real objects over 20 slots in a random order
    slots = 20
    scattered = np.full((len(ev), slots, 4), 7.0, np.float32)
    mask3 = np.zeros((len(ev), slots), bool)
    for i, c in enumerate(ev.counts):
        where = rng.choice(slots, c, replace=False)
        scattered[i, where] = objects[i, :c]
        mask3[i, where] = True
    np.testing.assert_allclose(_logits(model, scattered, mask3, high), reference, rtol=1e-5, atol=1e-5)
    # and the network does depend on the objects (the test can fail)
    changed = objects.copy()
    changed[mask] *= 1.5
    assert np.abs(_logits(model, changed, mask, high) - reference).max() > 1e-3


@pytest.mark.parametrize("fill", [0.0, 1e6, float("nan"), float("inf")])
def test_extra_padded_slots_give_the_same_weight(samples: Samples, fill: float) -> None:
    ev = samples.b.select(np.arange(400))
    matrix = ev.object_matrix(["pt", "eta", "e"])
    objects, mask = pad(ev.counts, matrix)
    wide, wide_mask = pad(ev.counts, matrix, slots=objects.shape[1] + 9, fill=fill)
    model = _model(3, 0)
    empty = np.zeros((len(ev), 0), np.float32)
    reference = _logits(model, objects, mask, empty)
    np.testing.assert_allclose(_logits(model, wide, wide_mask, empty), reference, rtol=1e-6, atol=1e-6)
    # events with no objects at all are defined too
    assert np.isfinite(reference[ev.counts == 0]).all() and (ev.counts == 0).any()


def test_exported_trees_reproduce_scikit_learn(samples: Samples) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    x = samples.a.events.x[:2000].copy()
    y = (x[:, 1] + np.random.default_rng(1).normal(0, 30, len(x)) > np.median(x[:, 1])).astype(int)
    x[::7, 3] = np.nan  # missing values take the learned side
    clf = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(x, y)
    trees = Trees.from_estimator(clf)
    probe = samples.b.events.x[:3000].copy()
    probe[::5, 3] = np.nan
    np.testing.assert_allclose(trees(probe), clf.decision_function(probe), rtol=1e-12, atol=1e-12)
    assert np.std(trees(probe)) > 0.1


def test_bdt_members_follow_the_fold_convention(samples: Samples) -> None:
    cfg = BDTConfig(members=2, folds=4, max_iter=20, seed=5)
    members = train_bdt(samples.a.events.x, samples.a.weights, samples.b.events.x, samples.b.weights, cfg)
    assert [info["holdout_fold"] for _, _, info in members] == [0, 1]
    again = train_bdt(samples.a.events.x, samples.a.weights, samples.b.events.x, samples.b.weights, cfg)
    for (_, t1, _), (_, t2, _) in zip(members, again, strict=True):  # deterministic
        assert all(np.array_equal(t1.arrays[k], t2.arrays[k]) for k in t1.arrays)
