"""Weighting schemes: averaging, gap, rank, power, geometric, optimized, per-class, caruana."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ensembler.base import NotFittedError, create_combiner
from ensembler.candidates import Candidates
from ensembler.schemes.caruana import EnsembleSelection
from ensembler.schemes.common import check_member_weights
from ensembler.schemes.optimized import member_class_ap
from predictions import metrics
from predictions.errors import InputError
from predictions.types import Labels, Predictions

ALL = ["uniform", "gap", "rank", "power", "geometric", "optimized", "per-class", "caruana"]
SEEDED = {"optimized", "per-class", "caruana"}


def _labels(rng, n, C):
    ids = np.array([f"v{i:04d}" for i in range(n)])
    lists = [rng.choice(C, size=c, replace=False) for c in rng.integers(1, 6, size=n)]
    return ids, Labels.from_lists(ids, lists, C)


def _member(rng, ids, truth, sigma, k=20, quantize=None):
    logit = np.where(truth, 1.5, -1.5) - 1.0 + rng.normal(0, 1, truth.shape) * sigma
    p = 1 / (1 + np.exp(-logit))
    if quantize:
        p = np.round(p * quantize) / quantize
    return Predictions.from_dense(ids, p.astype(np.float32), k=k)


def make_problem(n=600, C=50, sigmas=(1.5, 2.5, 3.5), seed=0, quantize=None):
    """Members = truth + noise of growing sigma, plus one pure-noise member (last)."""
    rng = np.random.default_rng(seed)
    ids, labels = _labels(rng, n, C)
    truth = labels.dense()
    members = [_member(rng, ids, truth, s, quantize=quantize) for s in sigmas]
    members.append(Predictions.from_dense(ids, rng.random((n, C)).astype(np.float32), k=20))
    names = [f"sigma{s}" for s in sigmas] + ["noise"]
    return Candidates.from_members(members, names), labels, members


def make_specialised(n=600, C=50, seed=1):
    """Member A is good on classes < C/2 and poor on the rest, member B the reverse."""
    rng = np.random.default_rng(seed)
    ids, labels = _labels(rng, n, C)
    truth = labels.dense()
    half = np.arange(C) < C // 2
    members = [_member(rng, ids, truth, np.where(good, 0.8, 3.0)) for good in (half, ~half)]
    return Candidates.from_members(members, ["A", "B"]), labels


@pytest.fixture(scope="module")
def problem():
    return make_problem()


@pytest.fixture(scope="module")
def member_gaps(problem):
    cands, labels, _ = problem
    return np.array([cands.gap(cands.scores[:, m], labels) for m in range(cands.n_members)])


@pytest.fixture(scope="module")
def fitted(problem):
    cands, labels, _ = problem
    out = {}
    for name in ALL:
        params = {"random_state": 0} if name in SEEDED else {}
        out[name] = create_combiner(name, **params).fit(cands, labels)
    return out


def split(cands, labels, n_fit):
    a, b = np.arange(n_fit), np.arange(n_fit, cands.n_videos)
    return cands.take_videos(a), labels.take(a), cands.take_videos(b), labels.take(b)


# --------------------------------------------------------------------------- GAP scorer
@pytest.mark.parametrize("quantize", [None, 4, 10])
def test_gap_scorer_equals_candidates_gap(quantize):
    cands, labels, members = make_problem(n=200, quantize=quantize, seed=3)
    scorer = cands.scorer(labels)
    assert isinstance(scorer, metrics.GapScorer)  # the one GAP kernel, in predictions.metrics
    rng = np.random.default_rng(0)
    for m in range(cands.n_members):
        s = cands.scores[:, m]
        assert scorer(s) == cands.gap(s, labels)
        if quantize is None:  # else a member's 0 scores tie with other members' labels (absent = 0)
            assert scorer(s) == pytest.approx(metrics.gap(members[m], labels), abs=1e-12)
    for _ in range(5):  # heavy ties, in float64
        s = np.round(rng.random(len(cands)) * (quantize or 1000)) / (quantize or 1000)
        assert scorer(s) == cands.gap(s, labels)
    assert cands.scorer(labels, k=3)(cands.scores[:, 0]) == cands.gap(cands.scores[:, 0], labels, k=3)


def test_gap_scorer_hand_case():
    # one video, 3 candidates (labels 0,1,2), positive label 1 and one missed positive (label 4)
    ids = np.array(["a"])
    m = Predictions(ids, np.array([[0.9, 0.5, 0.1]], np.float32), np.array([[0, 1, 2]], np.int32), 5)
    cands = Candidates.from_members([m])
    labels = Labels.from_lists(ids, [[1, 4]], 5)
    scorer = cands.scorer(labels)
    assert scorer(np.array([0.9, 0.5, 0.1])) == pytest.approx(0.5 * (1 / 2))
    assert scorer(np.array([0.1, 0.9, 0.5])) == pytest.approx(0.5 * 1.0)
    assert scorer(np.array([0.5, 0.5, 0.5])) == pytest.approx(0.5 * (1 / 3))  # negatives first on ties
    assert cands.scorer(labels, k=1)(np.array([0.9, 0.5, 0.1])) == 0.0


# --------------------------------------------------------------------------- averaging
def test_uniform_is_manual_mean(problem, fitted):
    cands, labels, _ = problem
    np.testing.assert_allclose(fitted["uniform"].predict_scores(cands), cands.scores.mean(axis=1), rtol=1e-6)
    w = [1, 0, 3, 0]
    comb = create_combiner("uniform", member_weights=w).fit(cands)
    np.testing.assert_allclose(comb.predict_scores(cands), cands.scores @ (np.array(w) / 4), rtol=1e-6)
    assert comb.describe()["weights"] == {"sigma1.5": 0.25, "sigma2.5": 0.0, "sigma3.5": 0.75, "noise": 0.0}


def test_gap_weights_are_the_formula(problem, fitted, member_gaps):
    comb = fitted["gap"]
    np.testing.assert_array_equal(comb.member_gap_, member_gaps)
    np.testing.assert_array_equal(comb.member_weights_, member_gaps / member_gaps.sum())
    d = comb.describe()
    assert d["member_gap"]["sigma1.5"] == member_gaps[0]
    assert d["weights"]["noise"] == member_gaps[3] / member_gaps.sum()


def _tiny():
    """One video, C=6; member 0 ranks labels 0,1,2 (scores .9,.6,.3); member 1 ranks 1,3 (.8,.4)."""
    ids = np.array(["a"])
    m0 = Predictions(ids, np.array([[0.9, 0.6, 0.3]], np.float32), np.array([[0, 1, 2]], np.int32), 6)
    m1 = Predictions(ids, np.array([[0.8, 0.4]], np.float32), np.array([[1, 3]], np.int32), 6)
    return Candidates.from_members([m0, m1])  # candidates: labels 0, 1, 2, 3


def test_rank_average_hand_computed():
    cands = _tiny()
    comb = create_combiner("rank").fit(cands)
    assert comb.depth_ == 3  # the longest list
    # normalised ranks (K - r)/K, K=3: m0 -> 1, 2/3, 1/3, 0 ; m1 -> 0, 1, 0, 2/3
    expected = np.array([0.5, 5 / 6, 1 / 6, 1 / 3])
    tie = np.array([0.45, 0.7, 0.15, 0.2])  # score mean, tie breaker
    np.testing.assert_allclose(comb.predict_scores(cands), (1 - 1e-6) * expected + 1e-6 * tie, rtol=1e-6)
    comb = create_combiner("rank", depth=2, member_weights=[3, 1]).fit(cands)
    expected = 0.75 * np.array([1, 0.5, 0, 0]) + 0.25 * np.array([0, 1, 0, 0.5])
    np.testing.assert_allclose(comb.predict_scores(cands), expected, atol=1e-6)


def test_power_and_geometric_hand_computed():
    cands = _tiny()
    s0, s1 = np.array([0.9, 0.6, 0.3, 0.0]), np.array([0.0, 0.8, 0.0, 0.4])
    got = create_combiner("power", p=3).fit(cands).predict_scores(cands)
    np.testing.assert_allclose(got, ((s0 ** 3 + s1 ** 3) / 2) ** (1 / 3), rtol=1e-5)
    got = create_combiner("power", p=1).fit(cands).predict_scores(cands)
    np.testing.assert_allclose(got, (s0 + s1) / 2, rtol=1e-6)
    eps = 0.01
    got = create_combiner("geometric", eps=eps, member_weights=[1, 3]).fit(cands).predict_scores(cands)
    f0, f1 = np.maximum(s0, eps), np.maximum(s1, eps)
    np.testing.assert_allclose(got, f0 ** 0.25 * f1 ** 0.75, rtol=1e-5)
    # a label proposed by one member only is penalised against one both propose
    assert got[0] < got[1]


# --------------------------------------------------------------------------- all schemes
@pytest.mark.parametrize("name", ALL)
def test_every_scheme_beats_worst_member_and_stays_in_range(name, problem, fitted, member_gaps):
    cands, labels, _ = problem
    comb = fitted[name]
    s = comb.predict_scores(cands)
    assert s.shape == (len(cands),) and s.dtype == np.float32
    assert s.min() >= 0.0 and s.max() <= 1.0
    assert cands.gap(s, labels) >= member_gaps.min()
    d = comb.describe()
    json.dumps(d)
    assert set(d["weights"]) == set(cands.member_names)
    if comb.learned:
        with pytest.raises(InputError, match="needs labels"):
            create_combiner(name).fit(cands)


def test_learned_schemes_beat_uniform_with_a_noise_member(problem, fitted):
    cands, labels, _ = problem
    g = {n: cands.gap(c.predict_scores(cands), labels) for n, c in fitted.items()}
    for name in ("gap", "optimized", "per-class", "caruana"):
        assert g[name] > g["uniform"] + 0.1, (name, g)


# --------------------------------------------------------------------------- caruana
def test_ensemble_selection_toy_objective():
    # score = -squared distance of the running mean to a target; members are unit vectors
    S = np.eye(3)
    target = np.array([0.5, 0.25, 0.25])
    sel = EnsembleSelection(n_iterations=8, random_state=0).fit(S, lambda z: -np.sum((z - target) ** 2))
    np.testing.assert_allclose(sel.weights_, target)
    assert sel.best_size_ == 4
    assert sel.trajectory_[0][0] == 0
    assert len(sel.trajectory_) == 8
    assert sel.best_score_ == pytest.approx(0.0)


def test_ensemble_selection_ties_follow_the_seed():
    S = np.ones((5, 4))  # every member identical: every step is a 4-way tie
    picks = lambda seed: [m for m, _ in EnsembleSelection(10, random_state=seed).fit(S, np.sum).trajectory_]
    assert picks(1) == picks(1)
    assert len({tuple(picks(s)) for s in range(6)}) > 1


def test_caruana_reproducible_good_first_and_best_prefix(problem, fitted, member_gaps):
    cands, labels, _ = problem
    comb = fitted["caruana"]
    again = create_combiner("caruana", random_state=0).fit(cands, labels)
    np.testing.assert_array_equal(comb.member_weights_, again.member_weights_)
    assert comb.selection_.trajectory_ == again.selection_.trajectory_
    traj = comb.selection_.trajectory_
    assert traj[0] == (0, member_gaps[0])  # the best member first, at its own GAP
    assert comb.selection_.best_score_ >= member_gaps.max()
    assert comb.selection_.best_score_ == max(s for _, s in traj)
    assert comb.member_weights_[3] == 0  # the noise member is never picked
    np.testing.assert_allclose(comb.member_weights_.sum(), 1.0)
    d = comb.describe()
    assert d["trajectory"][0]["member"] == "sigma1.5"
    assert d["best_size"] == comb.selection_.best_size_
    assert np.allclose(comb.member_weights_ * d["best_size"], np.round(comb.member_weights_ * d["best_size"]))


def test_caruana_bagging(problem):
    cands, labels, _ = problem
    comb = create_combiner("caruana", n_iterations=10, bagging_rounds=3, bag_fraction=0.75,
                           random_state=0).fit(cands, labels)
    bags = comb.selection_.bags_
    assert len(bags) == 3 and all(len(b["members"]) == 3 for b in bags)
    np.testing.assert_allclose(comb.member_weights_, np.mean([b["weights"] for b in bags], axis=0))
    assert len(comb.describe()["bags"]) == 3


# --------------------------------------------------------------------------- optimized / per-class
@pytest.mark.parametrize("method", ["hybrid", "coordinate", "surrogate"])
def test_optimized_drops_noise_and_beats_uniform(method, problem, fitted):
    cands, labels, _ = problem
    comb = (fitted["optimized"] if method == "hybrid"
            else create_combiner("optimized", method=method, random_state=0).fit(cands, labels))
    assert comb.member_weights_[3] < 0.01
    assert (comb.member_weights_ >= 0).all() and comb.member_weights_.sum() == pytest.approx(1.0)
    g = cands.gap(comb.predict_scores(cands), labels)
    assert g >= cands.gap(fitted["uniform"].predict_scores(cands), labels)
    assert g >= cands.gap(fitted["gap"].predict_scores(cands), labels) - 0.002
    assert comb.fit_gap_ == pytest.approx(g, abs=1e-6)


def test_optimized_reproducible(problem, fitted):
    cands, labels, _ = problem
    again = create_combiner("optimized", random_state=0).fit(cands, labels)
    np.testing.assert_array_equal(again.member_weights_, fitted["optimized"].member_weights_)


def test_per_class_infinite_lambda_is_global(problem, fitted):
    cands, labels, _ = problem
    comb = create_combiner("per-class", lam=float("inf"), random_state=0).fit(cands, labels)
    glob = fitted["optimized"]
    np.testing.assert_allclose(comb.member_weights_, glob.member_weights_)
    np.testing.assert_allclose(comb.class_weights_, np.broadcast_to(glob.member_weights_, comb.class_weights_.shape),
                               rtol=1e-6)
    np.testing.assert_allclose(comb.predict_scores(cands), glob.predict_scores(cands), rtol=1e-5, atol=1e-7)


def test_per_class_shrinkage_formula(problem, fitted):
    cands, labels, _ = problem
    comb = fitted["per-class"]
    n_c = np.bincount(labels.indices, minlength=cands.num_classes)
    np.testing.assert_array_equal(comb.class_positives_, n_c)
    np.testing.assert_allclose(comb.class_weights_.sum(axis=1), 1.0, rtol=1e-6)
    # W_c = (n_c fit_c + lam w) / (n_c + lam)  =>  fit_c recovered must be a distribution
    lam, w = 20.0, comb.member_weights_
    fit_c = ((n_c + lam)[:, None] * comb.class_weights_ - lam * w) / np.maximum(n_c, 1)[:, None]
    assert (fit_c[n_c > 0] > -1e-5).all()
    np.testing.assert_allclose(fit_c[n_c > 0].sum(axis=1), 1.0, rtol=1e-5)
    assert comb.class_weights_[:, 3].max() < 0.01  # the noise member stays out in every class


def test_member_class_ap_matches_metrics(problem):
    cands, labels, members = problem
    npos = np.bincount(labels.indices, minlength=cands.num_classes)
    ap = member_class_ap(cands, cands.targets(labels), npos, k=20)
    for m in range(cands.n_members):
        ref = metrics.per_class_ap(members[m], labels, k=20)
        np.testing.assert_allclose(ap[npos > 0, m], ref[npos > 0], rtol=1e-12)


def test_per_class_wins_with_class_specialised_members():
    cands, labels = make_specialised()
    fit_c, fit_l, test_c, test_l = split(cands, labels, 300)
    glob = create_combiner("optimized", random_state=0).fit(fit_c, fit_l)
    per = create_combiner("per-class", random_state=0).fit(fit_c, fit_l)
    g_glob = test_c.gap(glob.predict_scores(test_c), test_l)
    g_per = test_c.gap(per.predict_scores(test_c), test_l)
    assert g_per > g_glob + 0.1, (g_per, g_glob)
    W = per.class_weights_
    assert W[:25, 0].mean() > 0.6 and W[25:, 1].mean() > 0.6


def test_predict_checks_members(problem, fitted):
    cands, _, members = problem
    other = Candidates.from_members(members[:2], cands.member_names[:2])
    with pytest.raises(InputError, match="differ"):
        fitted["optimized"].predict_scores(other)


# --------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name, params, match", [
    ("caruana", {"n_iterations": 0}, "n_iterations"),
    ("caruana", {"n_iterations": 2.5}, "n_iterations"),
    ("caruana", {"bagging_rounds": -1}, "bagging_rounds"),
    ("caruana", {"bag_fraction": 0.0}, "bag_fraction"),
    ("caruana", {"k": 0}, "k must"),
    ("uniform", {"member_weights": [1, 2]}, "one value per member"),
    ("uniform", {"member_weights": [1, -1, 0, 0]}, "non-negative"),
    ("uniform", {"member_weights": [0, 0, 0, 0]}, "not all zero"),
    ("uniform", {"member_weights": "abc"}, "member_weights"),
    ("rank", {"depth": 0}, "depth"),
    ("power", {"p": 0}, "p must"),
    ("power", {"p": float("nan")}, "p must"),
    ("geometric", {"eps": 0}, "eps"),
    ("geometric", {"eps": 2}, "eps"),
    ("optimized", {"method": "magic"}, "method"),
    ("optimized", {"max_evals": 0}, "max_evals"),
    ("per-class", {"lam": -1}, "lam"),
    ("per-class", {"lam": "x"}, "lam"),
    ("gap", {"k": -3}, "k must"),
])
def test_parameter_validation_at_fit(name, params, match, problem):
    cands, labels, _ = problem
    comb = create_combiner(name, **params)  # construction never validates (scikit-learn style)
    with pytest.raises(InputError, match=match):
        comb.fit(cands, labels)


def test_unknown_parameter_and_unfitted():
    with pytest.raises(InputError, match="no parameter"):
        create_combiner("caruana", n_iter=3)
    with pytest.raises(NotFittedError, match="not fitted") as err:
        create_combiner("uniform").predict_scores(_tiny())
    assert not isinstance(err.value, InputError)  # a programming error, not bad input


def test_ensemble_selection_validation():
    with pytest.raises(InputError, match="n_iterations"):
        EnsembleSelection(n_iterations=0).fit(np.ones((3, 2)), np.sum)
    with pytest.raises(InputError, match="callable"):
        EnsembleSelection().fit(np.ones((3, 2)), 3)
    with pytest.raises(InputError, match="shape"):
        EnsembleSelection().fit(np.ones(3), np.sum)
    assert check_member_weights(None, 4).tolist() == [0.25] * 4
