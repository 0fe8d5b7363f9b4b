"""Out-of-fold producers over the pool (`[train] folds`): fold assignment, resume per fold, merged stores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from predictions.labels import read_labels
from predictions.split import assign_splits, fold_of
from predictions.store import open_store
from producers.cli import main as produce
from producers.config import load_config

C = 30
K = 3

JOB = """
[model]
name = "mlp"
[model.hparams]
hidden_dim = 32
[data]
train = "data/video/train-*.tfrecord"
num_classes = 30
[split]
heldout = 80
eval = 80
dev_fraction = 0.1
[train]
epochs = {epochs}
batch_size = 32
lr = 0.01
patience = 20
folds = {folds}
{train}
[predict]
top_k = 0
splits = ["heldout", "eval"]
{predict}
[output]
name = "{name}"
"""


def _job(root: Path, name: str, *, epochs=2, folds=K, train="", predict="", file=None) -> Path:
    path = root / f"{file or name}.toml"
    path.write_text(JOB.format(epochs=epochs, folds=folds, train=train, predict=predict, name=name),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("folds")
    assert produce(["generate", str(root / "data"), "--videos", "500", "--test-videos", "0", "--classes", str(C),
                    "--shards", "2", "--seed", "3", "--quiet"]) == 0
    return root


def _all_ids(root: Path) -> np.ndarray:
    from producers.data.readers import scan_ids

    return scan_ids(str(root / "data/video/train-*.tfrecord"))


@pytest.fixture(scope="module")
def trained(root):
    """A 3-fold job over train + heldout, trained and predicted."""
    job = _job(root, "mlp-k3")
    assert produce(["train", str(job), "--quiet"]) == 0
    assert produce(["predict", str(job), "--quiet"]) == 0
    return job


def test_folds_reproducible_from_ids():
    ids = np.array([f"vid{i:05d}" for i in range(3000)])
    f = fold_of(ids, 5)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(ids))
    assert np.array_equal(fold_of(ids[perm], 5), f[perm])  # order does not matter
    sub = rng.choice(len(ids), 700, replace=False)
    assert np.array_equal(fold_of(ids[sub], 5), f[sub])  # nor which other ids are there
    counts = np.bincount(f, minlength=5)
    assert counts.min() > 500 and counts.max() < 700  # balanced: 600 +- a few binomial s.d.
    assert not np.array_equal(fold_of(ids, 5, salt="other"), f)  # the salt decides


def test_fold_jobs_partition_the_pool(root):
    from producers.jobs import _fold_config, _splits

    cfg = load_config(_job(root, "mlp-k3"))
    ids = _all_ids(root)
    base = assign_splits(ids, heldout=80, eval=80)
    pool = ids[np.isin(base, ["train", "heldout"])]
    folds = fold_of(pool, K)
    assert np.bincount(folds).min() > 80
    seen_out = []
    for k in range(K):
        split = _splits(_fold_config(cfg, k), ids)
        assert set(ids[split == "fold-out"]) == set(pool[folds == k])
        assert set(ids[split == "train"]) == set(pool[folds != k])  # train + heldout, minus fold k
        assert set(ids[split == "eval"]) == set(ids[base == "eval"])  # eval never enters the pool
        seen_out += list(ids[split == "fold-out"])
    assert sorted(seen_out) == sorted(pool)  # each pool video left out exactly once
    refit = _splits(_fold_config(cfg, None), ids)
    assert set(ids[refit == "train"]) == set(pool)


def test_oof_store_each_video_from_the_model_that_did_not_see_it(root, trained):
    import torch

    from producers.config import build_model
    from producers.jobs import _fold_config, _splits
    from producers.train import load_best

    cfg = load_config(trained)
    run = root / "runs"
    ids = _all_ids(root)
    base = assign_splits(ids, heldout=80, eval=80)
    pool = ids[np.isin(base, ["train", "heldout"])]
    with open_store(run / "predictions" / "mlp-k3.oof.full.h5") as s:
        assert s.meta.split == "oof" and sorted(s.ids) == sorted(pool)
        extra = s.meta.extra
        pred = s.read()
        store_ids = np.asarray(s.ids)
    assert extra["fold_predictions"] == "out-of-fold" and extra["n_folds"] == K
    assert extra["fold_pool"] == ["train", "heldout"]
    labels = read_labels(run / "labels" / "labels.oof.h5")
    assert sorted(labels.ids) == sorted(pool)
    from producers.data.readers import load_video_level

    rows = extra["fold_rows"]
    assert [r[2] for r in rows] == list(range(K)) and rows[0][0] == 0 and rows[-1][1] == len(pool)
    for start, stop, k in rows:
        part = store_ids[start:stop]
        assert np.all(fold_of(part, K) == k)
        trained_on = ids[_splits(_fold_config(cfg, k), ids) == "train"]
        assert not set(part) & set(trained_on)  # fold model k never trained on the rows it predicted
        # and the rows really are fold model k's predictions (not another fold's)
        model = load_best(build_model(cfg), run / "mlp-k3" / "folds" / f"fold-{k}" / "checkpoints")
        _, X, _ = load_video_level(cfg.data.train, ids=part[:5], num_classes=C)
        with torch.no_grad():
            want = torch.sigmoid(model(torch.as_tensor(X))).numpy()
        np.testing.assert_allclose(pred.scores[start:start + 5], want, atol=1e-5)
        other = load_best(build_model(cfg), run / "mlp-k3" / "folds" / f"fold-{(k + 1) % K}" / "checkpoints")
        with torch.no_grad():
            assert np.abs(torch.sigmoid(other(torch.as_tensor(X))).numpy() - want).max() > 1e-3
    # the heldout store is the heldout part of the same out-of-fold predictions
    with open_store(run / "predictions" / "mlp-k3.heldout.full.h5") as s:
        assert set(s.ids) == set(ids[base == "heldout"]) and s.meta.extra["fold_predictions"] == "out-of-fold"
        held = s.read()
    np.testing.assert_allclose(held.reindex(held.ids).scores, pred.reindex(held.ids).scores, atol=1e-6)


def test_eval_store_is_the_mean_of_the_fold_models(root, trained):
    import torch

    from producers.config import build_model
    from producers.data.readers import load_video_level
    from producers.train import load_best

    cfg = load_config(trained)
    run = root / "runs"
    with open_store(run / "predictions" / "mlp-k3.eval.full.h5") as s:
        assert s.meta.extra["fold_predictions"] == "mean" and len(s.meta.extra["fold_checkpoints"]) == K
        ev = s.read()
    _, X, _ = load_video_level(cfg.data.train, ids=ev.ids[:8], num_classes=C)
    probs = []
    for k in range(K):
        model = load_best(build_model(cfg), run / "mlp-k3" / "folds" / f"fold-{k}" / "checkpoints")
        with torch.no_grad():
            probs.append(torch.sigmoid(model(torch.as_tensor(X))).numpy())
    np.testing.assert_allclose(ev.scores[:8], np.mean(probs, axis=0), atol=1e-6)


def test_resume_per_fold_and_missing_fold_error(root, capsys):
    job = _job(root, "mlp-res")
    short = _job(root, "mlp-res", epochs=1, file="mlp-res-short")
    assert produce(["train", str(short), "--fold", "1", "--quiet"]) == 0  # fold 1 only, 1 epoch
    capsys.readouterr()
    assert produce(["predict", str(job), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fold model(s) 0, 2 of 3 not trained" in err and "--fold N" in err
    assert not (root / "runs" / "predictions" / "mlp-res.oof.full.h5").exists()  # nothing written
    assert produce(["train", str(job), "--quiet"]) == 0  # every fold, fold 1 resumed from its epoch 1
    hist = {k: json.loads((root / "runs" / "mlp-res" / "folds" / f"fold-{k}" / "history.json").read_text())
            for k in range(K)}
    assert hist[1]["resumed_from"] == 1 and hist[1]["epochs"] == [1, 2]
    assert hist[0]["resumed_from"] == 0 and hist[2]["resumed_from"] == 0
    before = (root / "runs" / "mlp-res" / "folds" / "fold-2" / "checkpoints" / "best.pt").stat().st_mtime_ns
    assert produce(["train", str(job), "--fold", "2", "--quiet"]) == 0  # done: nothing retrained
    after = (root / "runs" / "mlp-res" / "folds" / "fold-2" / "checkpoints" / "best.pt").stat().st_mtime_ns
    assert before == after
    assert produce(["predict", str(job), "--quiet"]) == 0


@pytest.mark.parametrize("fold, message", [("3", "--fold must be 0..2"), ("-1", "--fold must be 0..2"),
                                           ("x", "--fold must be 0..2")])
def test_bad_fold_argument(root, capsys, fold, message):
    assert produce(["train", str(_job(root, "mlp-bad")), "--fold", fold, "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err


def test_fold_argument_needs_folds(root, capsys):
    assert produce(["train", str(_job(root, "mlp-one", folds=0)), "--fold", "0", "--quiet"]) == 1
    assert "--fold needs [train] folds" in capsys.readouterr().err


@pytest.mark.parametrize("train, predict, message", [
    ("", "", None),
    ('pool = ["train", "eval"]', "", "[train] pool must be"),
    ('pool = ["heldout"]', "", "[train] pool must be"),
    ("", 'fold_eval = "median"', "[predict] fold_eval must be"),
    ("", "train_folds = 3", "leave [predict] train_folds at 0"),
])
def test_fold_config_validation(root, train, predict, message):
    from predictions.errors import InputError

    path = _job(root, "mlp-cfg", train=train, predict=predict)
    if message is None:
        assert load_config(path).train.folds == K
        return
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_folds_one_is_refused(root):
    from predictions.errors import InputError

    with pytest.raises(InputError, match="folds must be 0"):
        load_config(_job(root, "mlp-cfg", folds=1))


def test_refit_scores_eval_with_one_model_on_the_whole_pool(root):
    job = _job(root, "mlp-refit", predict='fold_eval = "refit"')
    assert produce(["train", str(job), "--fold", "refit", "--quiet"]) == 0
    refit_hist = json.loads((root / "runs" / "mlp-refit" / "history.json").read_text())
    ids = _all_ids(root)
    base = assign_splits(ids, heldout=80, eval=80)
    n_pool = int(np.isin(base, ["train", "heldout"]).sum())
    assert refit_hist["n_train"] + refit_hist["n_dev"] == n_pool  # the whole pool
    assert produce(["train", str(job), "--quiet"]) == 0
    assert produce(["predict", str(job), "--quiet"]) == 0
    with open_store(root / "runs" / "predictions" / "mlp-refit.eval.full.h5") as s:
        assert s.meta.extra["fold_predictions"] == "refit"
