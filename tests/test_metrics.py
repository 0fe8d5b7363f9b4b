"""Tests of predictions.metrics: hand-computed cases and a cross-check against a
straightforward per-video reference written the way the official YouTube-8M
eval code does it."""
from __future__ import annotations

import heapq
import time

import numpy as np
import pytest

from predictions import metrics as M
from predictions.errors import AlignmentError, InputError
from predictions.types import Labels, Predictions

C = 5


# --------------------------------------------------------------------------- fixtures
def three_videos(layout: str = "topk"):
    """Videos A, B, C over 5 classes.

    A: truth {0, 2}; scores 0: 0.9, 1: 0.8, 2: 0.3
    B: truth {1};    scores 1: 0.7, 3: 0.6
    C: truth {};     scores 4: 0.85
    """
    dense = np.zeros((3, C), np.float32)
    dense[0, [0, 1, 2]] = [0.9, 0.8, 0.3]
    dense[1, [1, 3]] = [0.7, 0.6]
    dense[2, 4] = 0.85
    ids = ["A", "B", "C"]
    truth = Labels.from_lists(ids, [[0, 2], [1], []], C)
    if layout == "full":
        return Predictions.from_dense(ids, dense), truth
    idx = np.array([[0, 1, 2], [1, 3, 0], [4, 0, 1]], np.int32)
    sc = np.array([[0.9, 0.8, 0.3], [0.7, 0.6, 0.0], [0.85, 0.0, 0.0]], np.float32)
    return Predictions(np.array(ids), sc, idx, C), truth


# --------------------------------------------------------------------------- GAP by hand
@pytest.mark.parametrize("layout", ["topk", "full"])
def test_gap_three_videos_by_hand(layout):
    pred, truth = three_videos(layout)
    # pooled, descending: 0.9 A0 +, 0.85 C4 -, 0.8 A1 -, 0.7 B1 +, 0.6 B3 -, 0.3 A2 +,
    # then zero-scored negatives (they come after every positive: no effect).
    # M = 3 positives. AP = (1/1 + 2/4 + 3/6) / 3 = 2/3
    assert M.gap(pred, truth, k=20) == pytest.approx(2 / 3, abs=1e-12)


@pytest.mark.parametrize("layout", ["topk", "full"])
def test_gap_positive_outside_top_k(layout):
    pred, truth = three_videos(layout)
    # k=2: A keeps 0 (0.9) and 1 (0.8); its positive 2 (0.3) is cut but still in M = 3.
    # list: 0.9 +, 0.85 -, 0.8 -, 0.7 +, 0.6 -  -> AP = (1/1 + 2/4) / 3 = 0.5
    assert M.gap(pred, truth, k=2) == pytest.approx(0.5, abs=1e-12)
    # k=1: 0.9 A0 +, 0.85 C4 -, 0.7 B1 +  -> (1/1 + 2/3) / 3 = 5/9
    assert M.gap(pred, truth, k=1) == pytest.approx(5 / 9, abs=1e-12)


def test_gap_video_without_positives_only_adds_negatives():
    pred, truth = three_videos()
    # dropping video C removes the 0.85 negative: 0.9 +, 0.8 -, 0.7 +, 0.6 -, 0.3 +
    # AP = (1/1 + 2/3 + 3/5) / 3 = 34/45
    assert M.gap(pred.take([0, 1]), truth.take([0, 1])) == pytest.approx(34 / 45, abs=1e-12)
    # no positives at all: AP is 0 (like the official code)
    assert M.gap(pred.take([2]), truth.take([2])) == 0.0


def test_gap_k_larger_than_store_uses_what_is_there():
    pred, truth = three_videos()
    assert M.gap(pred, truth, k=1000) == pytest.approx(2 / 3, abs=1e-12)


def test_full_and_topk_give_same_gap_random():
    rng = np.random.default_rng(1)
    n, c = 200, 40
    dense = rng.random((n, c)).astype(np.float32)
    truth = Labels.from_lists(np.arange(n), [rng.choice(c, rng.integers(0, 4), replace=False)
                                             for _ in range(n)], c)
    full = Predictions.from_dense(np.arange(n), dense)
    for k in (1, 5, 20):
        assert M.gap(full, truth, k) == M.gap(full.topk(k), truth, k)
        assert M.gap(full, truth, k) == M.gap(full.topk(30), truth, k)


# --------------------------------------------------------------------------- ties
def test_pooled_ties_are_pessimistic_and_order_free():
    # one positive and one negative tied at 0.5, M = 1: the negative ranks first,
    # so the positive is at rank 2 -> AP = 1/2, whatever the input order.
    for order in ([0, 1], [1, 0]):
        rows = np.array([0, 1])[order]
        score = np.array([0.5, 0.5])[order]
        pos = np.array([True, False])[order]
        assert M.gap_pooled(rows, score, pos, 1) == 0.5
    # 0.9 +, then {0.5 +, 0.5 -, 0.5 +} tied: order 0.9+, 0.5-, 0.5+, 0.5+
    # M = 4 -> (1/1 + 2/3 + 3/4) / 4 = 29/48
    g = M.gap_pooled([0, 1, 2, 3], [0.5, 0.9, 0.5, 0.5], [True, True, False, True], 4)
    assert g == pytest.approx(29 / 48, abs=1e-12)


def test_gap_pooled_top_k_within_video_keeps_stable_order():
    # video 0 has two entries tied at 0.5; k=1 keeps the first one given.
    assert M.gap_pooled([0, 0], [0.5, 0.5], [True, False], 1, k=1) == 1.0
    assert M.gap_pooled([0, 0], [0.5, 0.5], [False, True], 1, k=1) == 0.0
    # k=None keeps both: pessimistic pooled order -> rank 2 -> 0.5
    assert M.gap_pooled([0, 0], [0.5, 0.5], [False, True], 1, k=None) == 0.5


def test_gap_within_video_ties_keep_store_order():
    dense = np.zeros((1, 4), np.float32)
    dense[0, [1, 3]] = 0.5
    pred = Predictions.from_dense(["v"], dense)
    # full matrix: label 1 (lower id) makes the k=1 cut, label 3 does not
    assert M.gap(pred, Labels.from_lists(["v"], [[1]], 4), k=1) == 1.0
    assert M.gap(pred, Labels.from_lists(["v"], [[3]], 4), k=1) == 0.0
    # top-k layout: the stored column order decides (3 is stored first)
    topk = Predictions(np.array(["v"]), np.array([[0.5, 0.5]], np.float32),
                       np.array([[3, 1]], np.int32), 4)
    assert M.gap(topk, Labels.from_lists(["v"], [[1]], 4), k=1) == 0.0
    assert M.hit_at_1(topk, Labels.from_lists(["v"], [[3]], 4)) == 1.0
    assert M.hit_at_1(topk, Labels.from_lists(["v"], [[1]], 4)) == 0.0
    # an unsorted top-k row is sorted by score first
    unsorted = Predictions(np.array(["v"]), np.array([[0.1, 0.9]], np.float32),
                           np.array([[0, 2]], np.int32), 4)
    assert M.hit_at_1(unsorted, Labels.from_lists(["v"], [[2]], 4)) == 1.0


def test_stable_ties_keep_pooled_order():
    # rows: video 0 = 0.5 (+), video 1 = 0.5 (-); M = 1
    # stable: row order, positive first -> AP 1; pessimistic -> 1/2
    assert M.gap_pooled([0, 1], [0.5, 0.5], [True, False], 1, ties="stable") == 1.0
    assert M.gap_pooled([0, 1], [0.5, 0.5], [False, True], 1, ties="stable") == 0.5
    pred = Predictions.from_dense(["a", "b"], np.array([[0.5, 0.0], [0.5, 0.0]], np.float32))
    truth_a = Labels.from_lists(["a", "b"], [[0], []], 2)
    assert M.gap(pred, truth_a, k=1, ties="stable") == 1.0
    assert M.gap(pred, truth_a, k=1) == 0.5
    p, r = M.precision_recall_curve(pred, truth_a, k=1, ties="stable")
    np.testing.assert_allclose(p, [1, 0.5])
    with pytest.raises(InputError, match="ties"):
        M.gap(pred, truth_a, ties="random")


def test_gap_pooled_validation():
    with pytest.raises(InputError, match="less than"):
        M.gap_pooled([0, 1], [0.2, 0.3], [True, True], 1)
    with pytest.raises(InputError, match="equal length"):
        M.gap_pooled([0], [0.2, 0.3], [True, True], 2)
    with pytest.raises(InputError, match="NaN"):
        M.gap_pooled([0], [np.nan], [True], 1)
    with pytest.raises(InputError, match="positive integer"):
        M.gap_pooled([0], [0.1], [True], 1, k=0)


def test_gap_scorer_equals_gap_pooled_on_ties_and_sparse_groups():
    """The reusable scorer is gap_pooled to the last bit: ties at the cut, ties in the pool, uneven videos."""
    rng = np.random.default_rng(5)
    counts = rng.integers(1, 40, size=300)
    counts[7] = 400                                # one very wide video (gap_pooled's sparse fallback path)
    rows = np.repeat(np.arange(300), counts)
    pos = rng.random(len(rows)) < 0.2
    n_pos = int(pos.sum()) + 50                    # positives without an entry count as missed
    for k in (1, 5, 20, 500):
        scorer = M.GapScorer(rows, pos, n_pos, k=k)
        for levels in (3, 20, None):               # heavy ties, some ties, none
            s = rng.random(len(rows))
            s = np.round(s * levels) / levels if levels else s
            assert scorer(s) == M.gap_pooled(rows, s, pos, n_pos, k=k), (k, levels)
    # by hand: one video, entries 0.9 (-), 0.5 (+), 0.5 (-); M = 2; k = 2 keeps 0.9 and the first 0.5
    scorer = M.GapScorer([0, 0, 0], [False, True, False], 2, k=2)
    assert scorer([0.9, 0.5, 0.5]) == pytest.approx(0.5 * (1 / 2))
    assert scorer([0.9, 0.5, 0.6]) == 0.0
    assert M.GapScorer([0, 0], [False, False], 0)([0.1, 0.2]) == 0.0


def test_gap_scorer_validation():
    with pytest.raises(InputError, match="non-decreasing"):
        M.GapScorer([1, 0], [True, False], 1)
    with pytest.raises(InputError, match="less than"):
        M.GapScorer([0, 1], [True, True], 1)
    with pytest.raises(InputError, match="equal length"):
        M.GapScorer([0, 1], [True], 1)
    scorer = M.GapScorer([0, 1], [True, False], 1)
    with pytest.raises(InputError, match="shape"):
        scorer([0.5])
    with pytest.raises(InputError, match="NaN"):
        scorer([np.nan, 0.1])


def test_class_ap_pooled_by_hand():
    # class 0: 0.9 (+), 0.5 (-), 0.5 (+): negatives first on ties -> ranks 1, 3 -> (1 + 2/3) / 2
    # class 1: 0.4 (-) and one positive never predicted -> 0; class 2: no positive -> NaN
    ap = M.class_ap_pooled([0, 0, 0, 1], [0.9, 0.5, 0.5, 0.4], [True, False, True, False], [2, 1, 0])
    np.testing.assert_allclose(ap[:2], [(1 + 2 / 3) / 2, 0.0])
    assert np.isnan(ap[2])


# --------------------------------------------------------------------------- MAP, Hit@1, PERR
@pytest.mark.parametrize("layout", ["topk", "full"])
def test_map_by_hand(layout):
    pred, truth = three_videos(layout)
    # class 0: A0 0.9 +                        -> AP 1
    # class 1: A1 0.8 -, B1 0.7 +              -> 1/2 at rank 2 -> AP 0.5
    # class 2: A2 0.3 +                        -> AP 1
    # classes 3, 4: no positives               -> NaN, left out
    ap = M.per_class_ap(pred, truth, k=20)
    np.testing.assert_allclose(ap[:3], [1.0, 0.5, 1.0])
    assert np.isnan(ap[3:]).all()
    assert M.mean_average_precision(pred, truth, k=20) == pytest.approx(2.5 / 3)
    # k=2 cuts A2: class 2 has 1 positive, never predicted -> AP 0 -> MAP (1 + .5 + 0)/3
    assert M.mean_average_precision(pred, truth, k=2) == pytest.approx(0.5)
    assert M.mean_average_precision(pred, truth, k=None) == pytest.approx(2.5 / 3)


def test_map_ties_pessimistic():
    # class 0: video a 0.5 (+), video b 0.5 (-): negative first -> AP 1/2
    pred = Predictions.from_dense(["a", "b"], np.array([[0.5, 0.1], [0.5, 0.2]], np.float32))
    truth = Labels.from_lists(["a", "b"], [[0], []], 2)
    for k in (1, 2, None):
        assert M.per_class_ap(pred, truth, k)[0] == 0.5
    assert np.isnan(M.per_class_ap(pred, truth)[1])


@pytest.mark.parametrize("layout", ["topk", "full"])
def test_hit1_and_perr_by_hand(layout):
    pred, truth = three_videos(layout)
    # top labels: A -> 0 (+), B -> 1 (+), C -> 4 (C has no labels: a miss) -> 2/3
    assert M.hit_at_1(pred, truth) == pytest.approx(2 / 3)
    # PERR: A n=2, top-2 {0, 1} -> 1/2; B n=1, top-1 {1} -> 1; C skipped -> 0.75
    assert M.perr(pred, truth) == pytest.approx(0.75)
    ev = M.evaluate(pred, truth, k=2)
    assert ev == pytest.approx({"gap": 0.5, "map": 0.5, "hit1": 2 / 3, "perr": 0.75, "n": 3, "k": 2})


def test_perr_narrow_store_counts_missing_as_misses():
    # A has 2 positives but the store keeps 1 label: top-1 {0} hits -> 1/2
    pred = Predictions(np.array(["A"]), np.array([[0.9]], np.float32), np.array([[0]], np.int32), C)
    truth = Labels.from_lists(["A"], [[0, 2]], C)
    assert M.perr(pred, truth) == 0.5


def test_precision_recall_curve_by_hand():
    pred, truth = three_videos()
    p, r = M.precision_recall_curve(pred, truth, k=3)
    # list (k=3 per video, 9 entries): 0.9+ 0.85- 0.8- 0.7+ 0.6- 0.3+ then 3 zero negatives
    np.testing.assert_allclose(p[:6], [1, 1 / 2, 1 / 3, 2 / 4, 2 / 5, 3 / 6])
    np.testing.assert_allclose(r[:6], [1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1])
    assert len(p) == 9 and r[-1] == 1.0


# --------------------------------------------------------------------------- alignment
def test_alignment_error_when_ids_differ():
    pred, truth = three_videos()
    other = Labels.from_lists(["A", "C", "B"], [[0], [], [1]], C)
    for fn in (M.gap, M.mean_average_precision, M.hit_at_1, M.perr, M.evaluate):
        with pytest.raises(AlignmentError):
            fn(pred, other)
    with pytest.raises(InputError, match="classes"):
        M.gap(pred, Labels.from_lists(["A", "B", "C"], [[0], [], [1]], C + 1))


def test_nan_scores_rejected():
    dense = np.array([[np.nan, 0.2, 0.1]], np.float32)
    with pytest.raises(InputError, match="NaN"):
        M.gap(Predictions.from_dense(["a"], dense), Labels.from_lists(["a"], [[0]], 3), k=2)


# --------------------------------------------------------------------------- reference
def gap_reference(pred_dense: np.ndarray, truth_dense: np.ndarray, k: int) -> float:
    """Straightforward GAP@k, per video like the official YouTube-8M eval code."""
    pooled = []
    for scores, labels in zip(pred_dense, truth_dense):
        best = heapq.nlargest(k, range(len(scores)), key=lambda j: scores[j])
        pooled.extend((float(scores[j]), bool(labels[j])) for j in best)
    pooled.sort(key=lambda e: -e[0])
    num_pos = int(truth_dense.sum())
    hits, total = 0, 0.0
    for rank, (_, positive) in enumerate(pooled, start=1):
        if positive:
            hits += 1
            total += hits / rank
    return total / num_pos if num_pos else 0.0


def map_reference(pred_dense, truth_dense, k):
    """Per-class AP over each video's top-k, averaged over classes with positives."""
    n, c = pred_dense.shape
    kept = np.zeros_like(truth_dense)
    for i in range(n):
        kept[i, np.argsort(-pred_dense[i], kind="stable")[:k]] = True
    aps = []
    for j in range(c):
        npos = truth_dense[:, j].sum()
        if npos == 0:
            continue
        rows = sorted(np.flatnonzero(kept[:, j]), key=lambda i: -pred_dense[i, j])
        hits, total = 0, 0.0
        for rank, i in enumerate(rows, start=1):
            if truth_dense[i, j]:
                hits += 1
                total += hits / rank
        aps.append(total / npos)
    return float(np.mean(aps))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_cross_check_against_reference(seed):
    rng = np.random.default_rng(seed)
    n, c = 150, 60
    dense = rng.random((n, c))
    truth_lists = [rng.choice(c, rng.integers(0, 6), replace=False) for _ in range(n)]
    truth = Labels.from_lists(np.arange(n), truth_lists, c)
    tdense = truth.dense()
    dense[tdense] += rng.random(tdense.sum()) * 0.5  # make it informative
    # replace by ranks / size: distinct values, exact in float32 (no ties)
    dense = (np.argsort(np.argsort(dense, axis=None)) + 1).reshape(n, c) / (n * c + 1)
    dense = dense.astype(np.float32).astype(np.float64)  # what the store holds
    assert len(np.unique(dense)) == dense.size
    full = Predictions.from_dense(np.arange(n), dense.astype(np.float32))
    for k in (1, 3, 20, 60):
        ref = gap_reference(dense, tdense, k)
        assert abs(M.gap(full, truth, k) - ref) < 1e-12
        assert abs(M.gap(full.topk(20), truth, k) - gap_reference(dense, tdense, min(k, 20))) < 1e-12
        assert abs(M.mean_average_precision(full, truth, k) - map_reference(dense, tdense, k)) < 1e-12
    # Hit@1 and PERR the plain way
    top1 = dense.argmax(axis=1)
    assert M.hit_at_1(full, truth) == pytest.approx(tdense[np.arange(n), top1].mean(), abs=1e-12)
    precs = [tdense[i, np.argsort(-dense[i])[:tdense[i].sum()]].mean()
             for i in range(n) if tdense[i].sum()]
    assert M.perr(full, truth) == pytest.approx(np.mean(precs), abs=1e-12)
    assert M.mean_average_precision(full, truth, None) == pytest.approx(
        map_reference(dense, tdense, c), abs=1e-12)


# --------------------------------------------------------------------------- speed
@pytest.mark.slow
def test_gap_speed_full_20000_by_3862():
    rng = np.random.default_rng(0)
    n, c = 20000, 3862
    dense = rng.random((n, c), dtype=np.float32)
    truth = Labels.from_lists(np.arange(n), [rng.choice(c, 3, replace=False) for _ in range(n)], c)
    pred = Predictions.from_dense(np.arange(n), dense)
    t = time.perf_counter()
    g = M.gap(pred, truth, 20)
    elapsed = time.perf_counter() - t
    print(f"gap() on full {n}x{c} float32: {elapsed:.2f} s")
    assert 0 <= g <= 1
    assert elapsed < 15
