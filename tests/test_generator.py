"""The YouTube-8M-shaped data generator: layout, determinism, label statistics, frame files."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from predictions.errors import InputError
from producers.data import generate, iter_frame, iter_video, load_video_level, scan_ids


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    return generate(out, n_train=2000, n_test=200, shards=4, seed=3)


def test_layout_and_counts(video_data):
    out = video_data["out_dir"]
    train, test = video_data["shards"]["video"]["train"], video_data["shards"]["video"]["test"]
    assert [p.name for p in train] == [f"train-{k:04d}-of-0004.tfrecord" for k in range(4)]
    assert [p.name for p in test] == [f"test-{k:04d}-of-0004.tfrecord" for k in range(4)]
    assert all(p.parent == out / "video" for p in train + test)
    assert "frame" not in video_data["shards"]
    ids, X, labels = load_video_level(train)
    assert X.shape == (2000, 1152) and len(np.unique(ids)) == 2000
    assert labels.counts().min() >= 1 and labels.indices.max() < 3862
    assert -2.0 < X.min() and X.max() < 2.01  # within the dequantisation range
    # test records carry no labels; test_truth.csv holds them
    test_ids, _, test_labels = load_video_level(test)
    assert len(test_ids) == 200 and test_labels.counts().sum() == 0
    assert not set(test_ids.tolist()) & set(ids.tolist())
    with open(video_data["test_truth"]) as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["VideoId", "Labels"] and len(rows) == 201
    assert [r[0] for r in rows[1:]] == test_ids.tolist()
    assert all(len(r[1].split()) >= 1 and all(0 <= int(x) < 3862 for x in r[1].split()) for r in rows[1:])


def test_vocabulary(video_data):
    with open(video_data["vocabulary"]) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3862 and list(rows[0]) == ["Index", "Name", "Vertical1"]
    assert rows[42]["Index"] == "42" and rows[42]["Name"] == "class-0042"
    verticals = {r["Vertical1"] for r in rows}
    assert len(verticals) <= 25 and all(v.startswith("Vertical-") and len(v) == 11 for v in verticals)


def test_label_statistics(video_data):
    _, _, labels = load_video_level(video_data["shards"]["video"]["train"])
    counts = labels.counts()
    assert 2.5 <= counts.mean() <= 3.5
    assert (counts == 1).mean() > 0.15 and counts.max() >= 8  # long-tailed like the real data
    freq = np.bincount(labels.indices, minlength=3862)
    assert freq.argmax() == 0 and freq[0] > freq[100] > 0 or freq[0] > 5 * max(freq[100], 1)
    assert freq[:10].sum() > freq[1000:1010].sum() * 10
    # verticals: a video's labels mostly share one vertical
    with open(video_data["vocabulary"]) as fh:
        vert = np.array([int(r["Vertical1"].split("-")[1]) for r in csv.DictReader(fh)])
    multi = [vert[l] for l in labels.lists() if len(l) >= 3]
    share = np.mean([np.bincount(v).max() / len(v) for v in multi])
    assert share > 0.6


def test_features_carry_signal(video_data):
    """Videos sharing a label are closer than videos sharing none (a learnable signal)."""
    _, X, labels = load_video_level(video_data["shards"]["video"]["train"])
    dense = labels.dense()
    with0 = np.flatnonzero(dense[:, 0])
    without = np.flatnonzero(~dense[:, 0])[: len(with0)]
    centre = X[with0[: len(with0) // 2]].mean(0)
    sim_with = X[with0[len(with0) // 2:]] @ centre
    sim_without = X[without] @ centre
    assert sim_with.mean() > sim_without.mean() + 2 * sim_without.std() / np.sqrt(len(without))


def test_determinism(tmp_path):
    a = generate(tmp_path / "a", n_train=300, n_test=50, shards=2, seed=11, level="both", max_frames=80)
    b = generate(tmp_path / "b", n_train=300, n_test=50, shards=2, seed=11, level="both", max_frames=80)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * 4 + 2
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    c = generate(tmp_path / "c", n_train=300, n_test=50, shards=2, seed=12)
    assert not np.array_equal(scan_ids(c["shards"]["video"]["train"]), scan_ids(a["shards"]["video"]["train"]))
    assert a["mean_labels"] == b["mean_labels"]


def test_frame_level_and_both(tmp_path):
    res = generate(tmp_path, n_train=40, n_test=10, shards=3, seed=5, level="both", num_classes=50,
                   num_verticals=5)
    frames = list(iter_frame(res["shards"]["frame"]["train"]))
    videos = list(iter_video(res["shards"]["video"]["train"]))
    assert len(frames) == len(videos) == 40
    for f, v in zip(frames, videos):
        assert f.id == v.id and np.array_equal(f.labels, v.labels)
        assert 60 <= f.num_frames <= 300 and f.rgb.shape == (f.num_frames, 1024)
        assert f.audio.shape == (f.num_frames, 128)
        # video level = mean of the dequantised frames
        np.testing.assert_allclose(v.mean_rgb, f.rgb.mean(0), atol=1e-5)
        np.testing.assert_allclose(v.mean_audio, f.audio.mean(0), atol=1e-5)
    lengths = [f.num_frames for f in frames]
    assert max(lengths) - min(lengths) > 50
    test_frames = list(iter_frame(res["shards"]["frame"]["test"]))
    assert len(test_frames) == 10 and all(f.labels.size == 0 for f in test_frames)
    # frames vary within a video (segments + noise) and some frames are informative
    f = frames[0]
    assert f.rgb.std(0).mean() > 0.1


def test_frame_only_and_small_splits(tmp_path):
    res = generate(tmp_path, n_train=3, n_test=0, shards=8, level="frame", min_frames=5, max_frames=7,
                   num_classes=20, num_verticals=3)
    assert "video" not in res["shards"] and list(res["shards"]["frame"]) == ["train"]
    assert [p.name for p in res["shards"]["frame"]["train"]] == [f"train-{k:04d}-of-0003.tfrecord"
                                                                 for k in range(3)]
    assert all(5 <= f.num_frames <= 7 for f in iter_frame(tmp_path / "frame"))
    assert (tmp_path / "test_truth.csv").read_text() == "VideoId,Labels\n"


def test_parameter_validation(tmp_path):
    with pytest.raises(InputError, match="level"):
        generate(tmp_path, level="clip")
    with pytest.raises(InputError, match="min_frames"):
        generate(tmp_path, min_frames=10, max_frames=5)
    with pytest.raises(InputError):
        generate(tmp_path, n_train=0, n_test=0)
    assert not any(tmp_path.iterdir())


def test_noise_controls_difficulty(tmp_path):
    """More noise -> a ridge classifier of the 20 head classes does worse on held-out videos."""
    def held_out_auc(noise):
        res = generate(tmp_path / str(noise), n_train=2000, n_test=0, shards=1, seed=1, noise=noise)
        _, X, labels = load_video_level(res["shards"]["video"]["train"])
        Y = labels.dense()[:, :20].astype(np.float64)
        A = X[:1500].astype(np.float64)
        W = np.linalg.solve(A.T @ A + 10.0 * np.eye(A.shape[1]), A.T @ (Y[:1500] - Y[:1500].mean(0)))
        S, T = X[1500:] @ W, Y[1500:].astype(bool)
        aucs = [(S[T[:, c], c][:, None] > S[~T[:, c], c][None, :]).mean() for c in range(20) if T[:, c].any()]
        return float(np.mean(aucs))
    easy, hard = held_out_auc(0.1), held_out_auc(2.0)
    assert easy > hard + 0.02 and easy > 0.8


# Measured on the real data by `python scripts/calibrate_generator.py --out DIR` (2026-12-08): the first 21
# official 2018 validate shards, validate0000-0020 (6,231 videos) in ../shared/data/yt8m2018-video-validate.
# Kept here so that the generator is checked without the real data.
REAL_LABELS_PER_VIDEO = 2.99
REAL_LABEL_COUNT_SHARE = [0.2605, 0.2179, 0.1765, 0.1584, 0.0905, 0.044, 0.026, 0.0262]  # 1, 2, ..., 7, 8+ labels
REAL_CLASS_SHARE = {10: 0.0393, 100: 0.0040, 1000: 0.00032}  # share of videos holding the class of that rank
REAL_RGB_STD_MEAN, REAL_AUDIO_STD_MEAN = 0.457, 0.682        # per-dimension std of mean_rgb / mean_audio, averaged
# members trained the same way on both (scripts/calibrate_generator.py MEMBERS: LR, MLP 1x512, audio-only MLP;
# heldout 1500, eval 1500, 20 epochs): eval GAP@20 lr 0.5526, mlp 0.5758, mlp_audio 0.3381, mlp_rgb 0.5513
REAL_MLP_MINUS_LR, REAL_AUDIO_MINUS_LR = 0.0232, -0.2144


def test_calibrated_against_the_real_shards(tmp_path):
    """Label counts, class-frequency curve and feature scales land near the real ones (docs/generator.md)."""
    res = generate(tmp_path, n_train=6000, n_test=0, shards=2, seed=0)
    _, X, labels = load_video_level(res["shards"]["video"]["train"])
    counts = labels.counts()
    assert abs(counts.mean() - REAL_LABELS_PER_VIDEO) < 0.2
    share = np.bincount(np.minimum(counts, 8), minlength=9)[1:] / len(counts)
    assert np.abs(share - REAL_LABEL_COUNT_SHARE).max() < 0.06
    freq = np.sort(np.bincount(labels.indices, minlength=3862))[::-1] / len(counts)
    for rank, real in REAL_CLASS_SHARE.items():
        assert real / 2 < freq[rank - 1] < real * 2, (rank, freq[rank - 1], real)
    rgb_std, audio_std = X[:, :1024].std(0).mean(), X[:, 1024:].std(0).mean()
    assert abs(rgb_std / REAL_RGB_STD_MEAN - 1) < 0.3 and abs(audio_std / REAL_AUDIO_STD_MEAN - 1) < 0.3
    assert np.abs(X.mean(0)).mean() < 0.1  # centred like the PCA'd real features
