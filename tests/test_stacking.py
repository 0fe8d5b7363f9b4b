"""Stacking combiners (xgboost, lr) and their candidate feature builder."""
from __future__ import annotations

import numpy as np
import pytest

from ensembler.base import create_combiner
from ensembler.candidates import Candidates
from ensembler.schemes.stacking import (LogisticStacker, XGBoostStacker, class_priors, oof_class_priors,
                                        stacking_features)
from predictions.errors import InputError
from predictions.types import Labels, Predictions

FAST_XGB = dict(n_estimators=100, n_jobs=1)


def make_data(n=800, C=60, seed=0, noises=(1.0, 1.5, 2.0, 3.0), k=20, perfect_videos=None):
    """Synthetic members over ``n`` videos: truth + per-class bias + Gaussian noise of each level.

    Each video has 1-5 labels drawn from a skewed class distribution; member
    ``j``'s logit is ``2 * truth + 0.5 * log prior + bias_j[class] + noise_j * N(0, 1) - 2``.
    ``perfect_videos`` (bool (n,)) adds a member ``leaky`` that scores the truth
    exactly on those videos and pure noise on the others.
    """
    rng = np.random.default_rng(seed)
    ids = np.array([f"v{seed}_{i:05d}" for i in range(n)])
    freq = 1.0 / np.arange(1, C + 1) ** 0.8
    freq /= freq.sum()
    nlab = rng.integers(1, 6, size=n)
    # Labels per video: the nlab smallest of Gumbel-perturbed -log(freq) (sampling without replacement).
    key = -np.log(freq)[None, :] - rng.gumbel(size=(n, C))
    order = np.argsort(key, axis=1)
    truth = np.zeros((n, C), bool)
    np.put_along_axis(truth, order, np.arange(C)[None, :] < nlab[:, None], axis=1)
    labels = Labels.from_lists(ids, [np.flatnonzero(t) for t in truth], C)
    members, names = [], []
    for j, s in enumerate(noises):
        bias = rng.normal(0, 1.0, size=C)
        logit = 2.0 * truth + 0.5 * np.log(freq * 3) + bias + s * rng.normal(size=(n, C)) - 2
        members.append(Predictions.from_dense(ids, (1 / (1 + np.exp(-logit))).astype(np.float32), k=k))
        names.append(f"m{j}")
    if perfect_videos is not None:
        leaky = np.where(perfect_videos[:, None], truth * 0.98 + 0.01, rng.random((n, C)))
        members.append(Predictions.from_dense(ids, leaky.astype(np.float32), k=k))
        names.append("leaky")
    return Candidates.from_members(members, names), labels


@pytest.fixture(scope="module")
def halves():
    cands, labels = make_data()
    a, b = np.arange(400), np.arange(400, 800)
    return cands.take_videos(a), labels.take(a), cands.take_videos(b), labels.take(b)


def tiny():
    """2 videos, C=5, two top-2 members; values hand-checked below."""
    ids = ["v0", "v1"]
    a = Predictions(ids, np.array([[0.9, 0.5], [0.8, 0.4]], np.float32), np.array([[1, 3], [0, 2]], np.int32), 5)
    b = Predictions(ids, np.array([[0.7, 0.2], [0.6, 0.3]], np.float32), np.array([[3, 4], [0, 1]], np.int32), 5)
    cands = Candidates.from_members([a, b], ["a", "b"])
    labels = Labels.from_lists(ids, [[3], [0, 2]], 5)
    return cands, labels


def test_features_hand_checked():
    cands, labels = tiny()
    np.testing.assert_array_equal(cands.row, [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(cands.label, [1, 3, 4, 0, 1, 2])
    prior = class_priors(labels, alpha=10.0)
    # pos = [1, 0, 1, 1, 0], n = 2, p0 = 3 / (2 * 5) = 0.3 -> (pos + 3) / 12
    np.testing.assert_allclose(prior, [4 / 12, 3 / 12, 4 / 12, 4 / 12, 3 / 12])
    X, names = stacking_features(cands, class_prior=prior, verticals=np.array([0, 1, 1, 2, 0]))
    assert names == ["score_a", "score_b", "rank_a", "rank_b", "present_a", "present_b", "n_present",
                     "score_mean", "score_max", "score_std", "mean_rank", "log_class_prior", "vertical"]
    assert X.shape == (6, 13) and X.dtype == np.float32
    col = {n: X[:, i] for i, n in enumerate(names)}
    np.testing.assert_allclose(col["score_a"], [0.9, 0.5, 0, 0.8, 0, 0.4])
    np.testing.assert_allclose(col["score_b"], [0, 0.7, 0.2, 0.6, 0.3, 0])
    np.testing.assert_array_equal(col["rank_a"], [0, 1, 2, 0, 2, 1])      # absent -> k = 2
    np.testing.assert_array_equal(col["rank_b"], [2, 0, 1, 0, 1, 2])
    np.testing.assert_array_equal(col["present_a"], [1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(col["present_b"], [0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(col["n_present"], [1, 2, 1, 2, 1, 1])
    np.testing.assert_allclose(col["score_mean"], [0.45, 0.6, 0.1, 0.7, 0.15, 0.2], rtol=1e-6)
    np.testing.assert_allclose(col["score_max"], [0.9, 0.7, 0.2, 0.8, 0.3, 0.4])
    np.testing.assert_allclose(col["score_std"], [0.45, 0.1, 0.1, 0.1, 0.15, 0.2], rtol=1e-5)
    np.testing.assert_array_equal(col["mean_rank"], [1, 0, 2, 0, 2, 1])
    np.testing.assert_allclose(col["log_class_prior"], np.log([3 / 12, 4 / 12, 3 / 12, 4 / 12, 3 / 12, 4 / 12]),
                               rtol=1e-6)
    np.testing.assert_array_equal(col["vertical"], [1, 2, 0, 0, 1, 1])
    # Optional features omitted by default; missing_rank overrides the observed list length.
    X2, names2 = stacking_features(cands, missing_rank=np.array([20, 30]))
    assert names2 == names[:11] and X2.shape == (6, 11)
    np.testing.assert_array_equal(X2[:, 2], [0, 1, 20, 0, 20, 1])
    np.testing.assert_array_equal(X2[:, 3], [30, 0, 1, 0, 1, 30])


def test_oof_priors_ignore_own_labels():
    cands, labels = make_data(n=100, C=20, seed=3)
    p1 = oof_class_priors(labels, cands.row, cands.label, 5, 10.0, 0)
    # Give video 7 every class: its own out-of-fold priors must not move, others' may.
    lists = labels.lists()
    lists[7] = np.arange(20)
    p2 = oof_class_priors(Labels.from_lists(labels.ids, lists, 20), cands.row, cands.label, 5, 10.0, 0)
    mine = cands.row == 7
    np.testing.assert_array_equal(p1[mine], p2[mine])
    assert (p1[~mine] != p2[~mine]).sum() > 0.5 * (~mine).sum() * 0.7  # the other folds' videos see it
    # prior_folds < 2 -> plain in-sample priors
    np.testing.assert_allclose(oof_class_priors(labels, cands.row, cands.label, 0, 10.0, 0),
                               class_priors(labels, 10.0)[cands.label])


@pytest.mark.parametrize("name", ["xgboost", "lr"])
def test_stacking_beats_best_member_on_held_out(halves, name):
    fit_c, fit_l, test_c, test_l = halves
    best = max(test_c.gap(test_c.scores[:, m], test_l) for m in range(test_c.n_members))
    mean = test_c.gap(test_c.scores.mean(1), test_l)
    assert best == pytest.approx(0.4953, abs=0.002)      # member m0 (noise 1.0)
    assert mean == pytest.approx(0.4850, abs=0.002)      # plain average: no better than m0 here
    comb = create_combiner(name, **(FAST_XGB if name == "xgboost" else {}))
    score = comb.fit(fit_c, fit_l).predict_scores(test_c)
    gap = test_c.gap(score, test_l)
    assert gap > best + 0.12, (name, gap, best, mean)    # measured: xgboost 0.686, lr 0.666
    assert ((score >= 0) & (score <= 1)).all()


def test_scores_do_not_depend_on_the_predicted_split(halves):
    """Priors are fitted state: a video scores the same alone or among other videos."""
    fit_c, fit_l, test_c, _ = halves
    for comb in (XGBoostStacker(**FAST_XGB), LogisticStacker()):
        comb.fit(fit_c, fit_l)
        full = comb.predict_scores(test_c)
        part = comb.predict_scores(test_c.take_videos(np.arange(10)))
        np.testing.assert_allclose(part, full[test_c.row < 10], rtol=1e-5, atol=1e-7)
        assert comb.class_prior_.shape == (60,)


def test_xgboost_deterministic_and_describe(halves):
    fit_c, fit_l, test_c, _ = halves
    a = XGBoostStacker(n_estimators=30, n_jobs=1, random_state=4).fit(fit_c, fit_l)
    b = XGBoostStacker(n_estimators=30, n_jobs=1, random_state=4).fit(fit_c, fit_l)
    np.testing.assert_array_equal(a.predict_scores(test_c), b.predict_scores(test_c))
    d = a.describe()
    assert d["features"][:2] == ["score_m0", "score_m1"] and d["features"][-1] == "log_class_prior"
    assert set(d["gain"]) == set(d["features"]) and max(d["gain"].values()) > 0
    assert d["device"] == "cpu"
    lr = LogisticStacker().fit(fit_c, fit_l).describe()
    assert set(lr["coef"]) == set(lr["features"]) and isinstance(lr["intercept"], float)


def test_verticals_feature(halves):
    fit_c, fit_l, test_c, test_l = halves
    verticals = np.arange(60) % 4
    x = XGBoostStacker(n_estimators=30, n_jobs=1, verticals=verticals).fit(fit_c, fit_l)
    assert x.describe()["features"][-1] == "vertical"
    assert test_c.gap(x.predict_scores(test_c), test_l) > 0.6
    lr = LogisticStacker(verticals=verticals).fit(fit_c, fit_l)
    assert {f"vertical={v}" for v in range(4)} <= set(lr.describe()["coef"])
    assert test_c.gap(lr.predict_scores(test_c), test_l) > 0.6
    with pytest.raises(InputError, match="verticals"):
        LogisticStacker(verticals=np.arange(59)).fit(fit_c, fit_l)


def test_degenerate_targets_predict_constant():
    cands, labels = tiny()
    none = Labels.from_lists(labels.ids, [[], []], 5)
    for comb in (XGBoostStacker(n_jobs=1), LogisticStacker()):
        np.testing.assert_array_equal(comb.fit(cands, none).predict_scores(cands), np.zeros(6))


def test_parameter_validation():
    cands, labels = tiny()
    for name, params in [("xgboost", dict(max_depth=0)), ("xgboost", dict(subsample=1.5)),
                         ("xgboost", dict(device="tpu")), ("xgboost", dict(prior_folds=1)),
                         ("lr", dict(C=-1.0)), ("lr", dict(prior_alpha=0))]:
        with pytest.raises(InputError):
            create_combiner(name, **params).fit(cands, labels)
    with pytest.raises(InputError, match="no parameter"):
        create_combiner("lr", n_estimators=3)
    with pytest.raises(InputError, match="needs labels"):
        create_combiner("lr").fit(cands)
