"""The build's fast path for weighted-mean schemes: ``weighted_top_k`` gives what the candidates path
gives (same labels in the same order, same padding; sums equal up to float32 rounding), and
``Combiner.linear_weights()`` is declared by exactly the schemes whose score is a weighted mean."""
from __future__ import annotations

import numpy as np
import pytest

from ensembler import create_combiner
from ensembler.build import build
from ensembler.candidates import Candidates, weighted_top_k
from ensembler.crossfit import FoldBag
from ensembler.schemes.averaging import UniformAverage
from predictions.errors import InputError
from predictions.store import read_store
from predictions.types import Labels, Predictions

from .ensemble_fixtures import write_members


def _members(rng, n, C, widths, *, levels=None, full=()):
    """Top-k members of the same ids; ``levels``: scores on a grid of that many steps (ties), else continuous."""
    ids = np.array([f"v{i}" for i in range(n)])
    out = []
    for j, k in enumerate(widths):
        if j in full:
            s = rng.random((n, C), dtype=np.float32)
            out.append(Predictions(ids, s, None, C))
            continue
        lab = np.argsort(rng.random((n, C)), axis=1)[:, :k].astype(np.int32)
        s = rng.random((n, k)) if levels is None else rng.integers(0, levels + 1, (n, k)) / levels
        s = -np.sort(-s.astype(np.float32), axis=1)
        out.append(Predictions(ids, s, lab, C))
    return out


def _reference(members, w, k):
    cands = Candidates.from_members(members)
    return cands.to_predictions(cands.scores @ np.asarray(w, np.float32), k=k)


@pytest.mark.parametrize("seed", range(6))
def test_equal_to_the_candidates_path_on_exact_sums(seed):
    """Scores on a 1/8 grid and weights 1/4, 1/2, 1/4: every sum is exact, so even the ties must match."""
    rng = np.random.default_rng(seed)
    C = int(rng.choice([7, 30, 3862]))
    n = int(rng.choice([1, 5, 600, 1200]))  # 1200 rows of C=3862: more than one block
    members = _members(rng, n, C, [min(C, 5), min(C, 3), min(C, 6)], levels=8)
    w = [0.25, 0.5, 0.25]
    for k in (1, 4, 20):
        k = min(k, C)
        got, want = weighted_top_k(members, w, k=k), _reference(members, w, k)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.indices, want.indices)  # ties by ascending label, padding too
        np.testing.assert_array_equal(got.scores, want.scores)


def test_continuous_scores_full_members_and_zero_weights():
    rng = np.random.default_rng(9)
    members = _members(rng, 400, 50, [20, 10, 50, 20], full={2})
    w = np.array([0.4, 0.0, 0.35, 0.25])
    got, want = weighted_top_k(members, w, k=20), _reference(members, w, 20)
    np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=2e-7)
    same = (got.indices == want.indices).all(axis=1)
    # a row may differ only where two sums lie within float32 rounding of each other
    for r in np.flatnonzero(~same):
        d = np.abs(np.subtract.outer(want.scores[r], want.scores[r]))
        assert (d[np.triu_indices(20, 1)] < 1e-6).any()
    assert same.mean() > 0.99


def test_checks_and_empty():
    rng = np.random.default_rng(1)
    a, b = _members(rng, 10, 8, [3, 3])
    with pytest.raises(InputError, match="2 weights for 1 members"):
        weighted_top_k([a], [0.5, 0.5])
    other = Predictions(np.array([f"x{i}" for i in range(10)]), b.scores, b.indices, 8)
    with pytest.raises(InputError, match="differ|aligned|ids"):
        weighted_top_k([a, other], [0.5, 0.5])
    bad = Predictions(b.ids, b.scores, np.full_like(b.indices, 8), 8)
    with pytest.raises(InputError, match="outside"):
        weighted_top_k([a, bad], [0.5, 0.5])
    empty = Predictions(np.zeros(0, "U1"), np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), 8)
    out = weighted_top_k([empty, empty], [0.5, 0.5], k=4)
    assert len(out) == 0 and out.indices.shape == (0, 4)


def _fitted(scheme, cands, labels, **params):
    return create_combiner(scheme, **params).fit(cands, labels)


def test_linear_weights_trusts_only_weighted_means():
    rng = np.random.default_rng(3)
    members = _members(rng, 300, 12, [5, 5, 5])
    cands = Candidates.from_members(members)
    labels = Labels.from_lists(members[0].ids, [rng.choice(12, 2, replace=False) for _ in range(300)], 12)
    for scheme in ("uniform", "gap", "caruana", "optimized"):
        comb = _fitted(scheme, cands, labels)
        np.testing.assert_array_equal(comb.linear_weights(), comb.member_weights_)
    for scheme in ("power", "rank", "geometric", "per-class", "lr"):
        assert _fitted(scheme, cands, labels).linear_weights() is None, scheme
    bag = FoldBag(create_combiner("gap"), n_folds=3).fit(cands, labels)
    np.testing.assert_allclose(bag.linear_weights(), np.mean([m.member_weights_ for m in bag.models_], axis=0))
    # the bag's own scores are its weighted mean with those weights
    np.testing.assert_allclose(bag.predict_scores(cands), cands.scores @ bag.linear_weights(), atol=1e-6)

    class Squared(UniformAverage):  # a subclass changing the score is not trusted
        def _predict(self, c):
            return super()._predict(c) ** 2

    assert Squared().fit(cands).linear_weights() is None


def test_a_new_linear_scheme_streams_through_the_fast_path(tmp_path, monkeypatch):
    """A scheme registered today that declares linear_weights() is combined by weighted_top_k in a build,
    and its output equals its own predict()."""
    from ensembler import base, streaming
    from ensembler.base import Combiner, register_combiner

    class FirstMemberOnly(Combiner):
        """All the weight on the first member (a weighted mean)."""

        def _fit(self, cands, labels, y):
            self.member_weights_ = np.eye(cands.n_members)[0]

        def _predict(self, cands):
            return cands.scores @ self.member_weights_.astype(np.float32)

        def linear_weights(self):
            return self.member_weights_

    monkeypatch.setitem(base._COMBINERS, "first-only", FirstMemberOnly)
    FirstMemberOnly.name = "first-only"
    calls = []
    real = streaming.weighted_top_k
    monkeypatch.setattr(streaming, "weighted_top_k", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    run = write_members(tmp_path / "m", C=40, noises=(1.0, 2.0))
    rec = build([str(run["predictions"])], scheme="first-only", labels=[str(run["labels"])], out=tmp_path / "o",
                progress=False, log=lambda *a: None)
    assert calls, "the declared weighted mean did not take the fast path"
    first = rec.member_names[0]
    assert rec.weights == {first: 1.0, rec.member_names[1]: 0.0}
    import ensembler
    test = ensembler.load_members(str(run["predictions"]), split="test")
    out = read_store(rec.outputs["test"])
    expected = FirstMemberOnly().fit(test).predict(test, k=out.k)
    np.testing.assert_allclose(np.sort(out.scores, axis=1), np.sort(expected.reindex(out.ids).scores, axis=1),
                               atol=1e-6)


@pytest.mark.parametrize("scheme", ["uniform", "gap", "power"])
def test_build_output_equals_the_fitted_combiner(tmp_path, scheme):
    """The stores a build writes hold what its fitted combiner predicts from the members (the weighted-mean
    schemes through the fast path, the others through the candidates)."""
    run = write_members(tmp_path / "m", C=60, noises=(1.0, 1.6, 2.4, 3.0))
    rec = build([str(run["predictions"])], scheme=scheme, labels=[str(run["labels"])], out=tmp_path / "o",
                progress=False, log=lambda *a: None)
    import ensembler
    heldout = ensembler.load_members(str(run["predictions"]), split="heldout")
    fit = ensembler.fit_ensemble(heldout, run["truth"]["heldout"].reindex(next(iter(heldout.values())).ids),
                                 scheme, n_folds=5, random_state=0)
    for split in ("eval", "test"):
        members = ensembler.load_members(str(run["predictions"]), split=split)
        want = fit.predict(members, k=20)
        got = read_store(rec.outputs[split])
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-6)
        assert (got.indices == want.indices).all(axis=1).mean() > 0.99


def _plain_top(row, label, score, n, k):
    """Each row's best k candidates by descending score, then ascending label (a plain sort per row)."""
    out_s, out_l = np.zeros((n, k), np.float32), np.full((n, k), -1, np.int64)
    for r in range(n):
        sel = np.flatnonzero(row == r)
        order = sorted(sel.tolist(), key=lambda i: (-float(score[i]), int(label[i])))[:k]
        out_s[r, :len(order)] = score[order]
        out_l[r, :len(order)] = label[order]
    return out_s, out_l


def test_top_per_row_ties_padding_and_negative_zero():
    from ensembler.candidates import _top_per_row

    rng = np.random.default_rng(11)
    for trial in range(400):
        n, C, k = int(rng.integers(1, 25)), int(rng.integers(2, 60)), int(rng.integers(1, 25))
        counts = rng.integers(0, C + 1, n)
        counts[rng.integers(0, n)] = max(int(counts.max()), 1)
        row = np.repeat(np.arange(n), counts)
        label = np.concatenate([np.sort(rng.choice(C, c, replace=False)) for c in counts]).astype(np.int32)
        levels = int(rng.choice([2, 5, 1000]))
        score = (rng.integers(0, levels, len(row)) / (levels - 1)).astype(np.float32)
        score[rng.random(len(row)) < 0.1] = np.float32(-0.0)  # a zero with its sign bit set ranks as 0
        got = _top_per_row(row, label, score, n, k)
        want = _plain_top(row, label, score, n, k)
        np.testing.assert_array_equal(got[1], want[1], err_msg=f"trial {trial}")
        np.testing.assert_array_equal(got[0], want[0])


def test_fixed_scheme_build_verifies_on_the_streamed_rows(tmp_path, monkeypatch):
    """A uniform build reads each member once: the checksums are taken on the rows it streams (no verify
    pass), and a store that no longer matches its checksum still fails the build, leaving nothing."""
    import h5py

    from predictions.store import StoreReader

    run = write_members(tmp_path / "m", C=60)
    passes = []
    monkeypatch.setattr(StoreReader, "verify", lambda self, *a, **k: passes.append(self.path))
    rec = build([str(run["predictions"] / "m*.test.full.h5")], out=tmp_path / "o1", progress=False,
                log=lambda *a: None)
    assert passes == [] and len(read_store(rec.outputs["test"])) == 200
    monkeypatch.undo()
    with h5py.File(run["predictions"] / "m1.test.full.h5", "r+") as f:
        s = f["scores"]
        s[-1, -1] = np.nextafter(s[-1, -1], np.float32(-1))
    with pytest.raises(InputError, match="checksum mismatch") as info:
        build([str(run["predictions"] / "m*.test.full.h5")], out=tmp_path / "o2", progress=False,
              log=lambda *a: None)
    assert "m1.test.full.h5" in str(info.value)
    assert not (tmp_path / "o2").exists()
    # with verify=False the same data goes through (the escape hatch)
    build([str(run["predictions"] / "m*.test.full.h5")], out=tmp_path / "o3", verify=False, progress=False,
          log=lambda *a: None)
