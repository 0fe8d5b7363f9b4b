"""The shared training loop: checkpoints, resume equivalence, early stopping; datasets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from predictions.errors import InputError
from predictions.types import Labels
from producers.datasets import (Batch, FrameShards, VideoArrays, arrays_batches, collate_frames, frame_loader,
                                multi_hot, video_loader)
from producers.models.registry import create_model
from producers.train import History, fit, latest_checkpoint, load_best, load_checkpoint, predict

torch.set_num_threads(1)

D, C = 16, 12


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(D, C))
    X = rng.normal(size=(n, D)).astype(np.float32)
    labs = np.argsort(-(X @ W), axis=1)[:, :2]
    return X, Labels.from_lists([f"v{i}" for i in range(n)], labs, C)


def _loader(X, L, bs=32):
    return video_loader(VideoArrays(X, L), bs, shuffle=True)


def _mlp():
    # dropout + batch norm: resume must restore RNG and BN statistics too
    return create_model("mlp", input_dim=D, num_classes=C, hidden_dim=16, dropout=0.3)


def test_multi_hot_and_video_arrays():
    L = Labels.from_lists(["a", "b", "c"], [[0, 2], [], [1]], 3)
    assert multi_hot(L).tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert multi_hot(L, [2, 0]).tolist() == [[0, 1, 0], [1, 0, 1]]
    ds = VideoArrays(np.arange(6, dtype=np.float64).reshape(3, 2), L)
    x, y = ds[1]
    assert x.dtype == torch.float32 and x.tolist() == [2.0, 3.0] and y.tolist() == [0, 0, 0]
    b = ds[[2, 0]]
    assert isinstance(b, Batch) and b.x.tolist() == [[4, 5], [0, 1]] and list(b.ids) == ["c", "a"]
    batches = list(video_loader(ds, 2))
    assert [len(b.ids) for b in batches] == [2, 1] and list(batches[1].ids) == ["c"]
    with pytest.raises(InputError, match="rows matching"):
        VideoArrays(np.zeros((2, 2)), L)


def test_collate_frames_pads():
    items = [("a", np.ones((3, 4), np.float32), np.array([1])), ("b", 2 * np.ones((1, 4), np.float32),
                                                                 np.array([0, 2]))]
    b = collate_frames(items, 3)
    assert b.x.shape == (2, 3, 4) and b.lengths.tolist() == [3, 1]
    assert b.x[1, 0, 0] == 2 and float(b.x[1, 1:].abs().sum()) == 0
    assert b.y.tolist() == [[0, 1, 0], [1, 0, 1]] and list(b.ids) == ["a", "b"]


def test_fit_learns_and_keeps_best(tmp_path):
    X, L = _data()
    torch.manual_seed(0)
    model = create_model("lr", input_dim=D, num_classes=C)
    h = fit(model, _loader(X[:240], L.take(np.arange(240))), (X[240:], L.take(np.arange(240, 300))),
            epochs=4, lr=3e-2, seed=0, device="cpu", checkpoint_dir=tmp_path)
    assert h.epochs == [1, 2, 3, 4] and len(h.loss) == 4 and h.loss[-1] < h.loss[0]
    assert h.best_gap == max(h.dev_gap) and h.dev_gap[h.best_epoch - 1] == h.best_gap
    assert h.best_gap > 0.5  # measured 0.62; chance on 12 classes with 2 labels is about 0.2
    assert latest_checkpoint(tmp_path).name == "epoch-0004.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "epoch-0004.pt"]
    ck = load_checkpoint(tmp_path / "epoch-0004.pt")  # weights_only=True
    assert ck["epoch"] == 4 and set(ck) >= {"model", "optimizer", "examples", "rng", "history"}
    assert ck["examples"] == 4 * 240
    best = load_best(create_model("lr", input_dim=D, num_classes=C), tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(best.state_dict().values(), model.state_dict().values()))
    assert History.from_dict(h.to_dict()) == h


def test_resume_gives_identical_weights(tmp_path):
    X, L = _data()
    dev = (X[240:], L.take(np.arange(240, 300)))
    tr = L.take(np.arange(240))

    torch.manual_seed(123)
    straight = _mlp()
    h_straight = fit(straight, _loader(X[:240], tr), dev, epochs=3, seed=7, device="cpu",
                     checkpoint_dir=tmp_path / "a")

    torch.manual_seed(123)
    crashed = _mlp()
    fit(crashed, _loader(X[:240], tr), dev, epochs=1, seed=7, device="cpu", checkpoint_dir=tmp_path / "b")
    torch.manual_seed(999)  # a new process: different RNG state, fresh model
    np.random.seed(5)
    resumed = _mlp()
    h_resumed = fit(resumed, _loader(X[:240], tr), dev, epochs=3, seed=7, device="cpu",
                    checkpoint_dir=tmp_path / "b")
    assert h_resumed.resumed_from == 1
    assert h_resumed.loss == h_straight.loss and h_resumed.dev_gap == h_straight.dev_gap
    for ca, cb in (("a/epoch-0003.pt", "b/epoch-0003.pt"), ("a/best.pt", "b/best.pt")):
        sa, sb = load_checkpoint(tmp_path / ca)["model"], load_checkpoint(tmp_path / cb)["model"]
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_early_stopping():
    X, L = _data()
    rng = np.random.default_rng(1)
    noise = Labels.from_lists(L.ids[240:], rng.integers(0, C, size=(60, 2)), C)  # dev labels unrelated to X
    h = fit(create_model("lr", input_dim=D, num_classes=C), _loader(X[:240], L.take(np.arange(240))),
            (X[240:], noise), epochs=30, lr=0.1, patience=2, seed=0, device="cpu")
    assert h.stopped_early and len(h.epochs) < 30
    assert len(h.epochs) - h.best_epoch == 2


def test_fit_validates():
    X, L = _data(40)
    model = create_model("lr", input_dim=D, num_classes=C)
    with pytest.raises(InputError, match="epochs"):
        fit(model, _loader(X, L), None, epochs=0)
    with pytest.raises(InputError, match="lr_decay"):
        fit(model, _loader(X, L), None, lr_decay=1.5)


def test_predict_yields_ids_and_probabilities():
    X, L = _data(50)
    model = create_model("moe", input_dim=D, num_classes=C)
    out = list(predict(model, arrays_batches(X, L.ids, 20), "cpu"))
    assert [len(i) for i, _ in out] == [20, 20, 10]
    ids = np.concatenate([i for i, _ in out])
    probs = np.concatenate([p for _, p in out])
    assert list(ids) == list(L.ids) and probs.dtype == np.float32 and probs.shape == (50, C)
    assert 0 <= probs.min() and probs.max() <= 1


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    gen = pytest.importorskip("producers.data.generator")
    out = tmp_path_factory.mktemp("frames")
    gen.generate(out, n_train=24, n_test=0, num_classes=C, num_verticals=3, level="frame", shards=3, seed=0,
                 min_frames=20, max_frames=40)
    return out / "frame"


def test_frame_shards_crops_and_workers(frame_data):
    from producers.data.readers import scan_ids

    ids = scan_ids(str(frame_data / "train-*.tfrecord"), level="frame")
    ds = FrameShards(str(frame_data / "train-*.tfrecord"), C, crop="train", shuffle=True, seed=3)
    items = list(ds)
    assert sorted(i for i, _, _ in items) == sorted(ids)
    assert all(f.shape[1] == 1152 and 1 <= f.shape[0] <= 8 for _, f, _ in items)  # <= 40 frames, stride 5
    assert [i for i, _, _ in ds] == [i for i, _, _ in items]  # same epoch, same seed: same order
    ds.set_epoch(1)
    assert [i for i, _, _ in ds] != [i for i, _, _ in items]
    keep = set(ids[::2])
    sub = FrameShards(str(frame_data / "train-*.tfrecord"), C, crop=0, ids=keep)
    assert [i for i, _, _ in sub] == [i for i in ids if i in keep]
    two = sorted(np.concatenate([b.ids for b in frame_loader(FrameShards(str(frame_data), C, crop=None), 5,
                                                             workers=2)]))
    assert two == sorted(ids)  # each worker reads its own shard files; nothing read twice


def test_fit_frame_model_with_loader_dev(frame_data):
    pytest.importorskip("producers.models.frame")
    from producers.models.registry import list_models

    name = "dbof" if "dbof" in list_models("frame") else list_models("frame")[0]
    model = create_model(name, input_dim=1152, num_classes=C)
    train = frame_loader(FrameShards(str(frame_data), C, crop="train", shuffle=True), 8)
    dev = (frame_loader(FrameShards(str(frame_data), C, crop=0), 8), None)
    h = fit(model, train, dev, epochs=1, seed=0, device="cpu")
    assert h.epochs == [1] and 0 <= h.dev_gap[0] <= 1
