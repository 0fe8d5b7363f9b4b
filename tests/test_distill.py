"""Train-split predictions (in-sample and out-of-fold), ensembles of them, and `produce distill`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from predictions.errors import InputError
from predictions.store import open_store, write_store
from predictions.types import Predictions
from producers.cli import main as produce
from producers.config import load_config

C = 30

JOB = """
[model]
name = "{model}"
input_norm = "l2"
output_prior = true
[model.hparams]
{hparams}
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
[predict]
top_k = 0
splits = ["train", "heldout", "eval"]
train_folds = {folds}
[output]
name = "{name}"
{extra}
"""


def _job(root: Path, name: str, *, model="mlp", hparams="hidden_dim = 32", epochs=3, folds=0, extra="") -> Path:
    path = root / f"{name}.toml"
    path.write_text(JOB.format(model=model, hparams=hparams, epochs=epochs, folds=folds, name=name, extra=extra),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    assert produce(["generate", str(root / "data"), "--videos", "500", "--test-videos", "0", "--classes", str(C),
                    "--shards", "2", "--seed", "5", "--quiet"]) == 0
    return root


def _train_ids(root: Path) -> np.ndarray:
    from predictions.split import assign_splits
    from producers.data.readers import scan_ids

    ids = scan_ids(str(root / "data/video/train-*.tfrecord"))
    return ids[assign_splits(ids, heldout=80, eval=80) == "train"]


def test_in_sample_and_out_of_fold_train_predictions(root):
    ins = _job(root, "mlp-ins")
    assert produce(["train", str(ins), "--quiet"]) == 0 and produce(["predict", str(ins), "--quiet"]) == 0
    oof = _job(root, "mlp-oof", folds=3)
    assert produce(["train", str(oof), "--quiet"]) == 0
    for k in range(3):
        assert (root / "runs" / "mlp-oof" / "folds" / f"fold-{k}" / "checkpoints" / "best.pt").exists()
    assert produce(["predict", str(oof), "--quiet"]) == 0
    preds = root / "runs" / "predictions"
    train_ids = _train_ids(root)
    with open_store(preds / "mlp-ins.train.full.h5") as s:
        assert s.meta.extra["train_predictions"] == "in-sample" and set(s.ids) == set(train_ids)
        ins_pred = s.read().reindex(train_ids)
    with open_store(preds / "mlp-oof.train.full.h5") as s:
        assert s.meta.extra["train_predictions"] == "out-of-fold" and s.meta.extra["train_folds"] == 3
        assert set(s.ids) == set(train_ids) and len(s.ids) == len(train_ids)
        oof_pred = s.read().reindex(train_ids)
    assert not list(preds.glob(".mlp-oof.oof-*"))  # the per-fold parts are cleaned up
    truth = _labels(root, "train").reindex(train_ids)
    from predictions.metrics import gap

    # in-sample predictions have seen their labels; out-of-fold ones have not
    assert gap(ins_pred, truth) > gap(oof_pred, truth) + 0.02


def _labels(root: Path, split: str):
    from predictions.labels import read_labels

    return read_labels(root / "runs" / "labels" / f"labels.{split}.h5")


def test_fold_model_never_saw_its_fold(root):
    from predictions.split import fold_of
    from producers.jobs import _fold_config, _splits

    from producers.data.readers import scan_ids

    cfg = load_config(_job(root, "mlp-oof", folds=3))
    ids = scan_ids(str(root / "data/video/train-*.tfrecord"))
    train_ids = _train_ids(root)
    folds = fold_of(train_ids, 3)
    assert np.bincount(folds).min() > 50  # three real folds
    for k in range(3):
        split = _splits(_fold_config(cfg, k), ids)
        assert set(ids[split == "train"]) == set(train_ids[folds != k])
        assert set(ids[split == "fold-out"]) == set(train_ids[folds == k])


@pytest.fixture(scope="module")
def teacher(root):
    """A uniform ensemble's train-split store over two members (the teacher), built by `ensemble build`."""
    from ensembler.cli import main as ensemble

    for name in ("mlp-ins", "lr-ins"):
        path = _job(root, name, model="mlp" if name.startswith("mlp") else "lr",
                    hparams="hidden_dim = 32" if name.startswith("mlp") else "")
        if not (root / "runs" / "predictions" / f"{name}.train.full.h5").exists():
            assert produce(["train", str(path), "--quiet"]) == 0 and produce(["predict", str(path), "--quiet"]) == 0
    preds = root / "runs" / "predictions"
    assert ensemble(["build", "--weights", "uniform", "--members", str(preds / "mlp-ins.*.h5"),
                     str(preds / "lr-ins.*.h5"), "--labels", str(root / "runs" / "labels"),
                     "--out", str(root / "ens"), "--name", "teach", "--k", "30", "--quiet"]) == 0
    path = root / "ens" / "teach.train.full.h5"
    assert path.exists()  # `ensemble build` writes the train split when every member has it
    return path


def test_distill_trains_a_student_and_records_its_teacher(root, teacher):
    cfg = _job(root, "student", extra=f'[distill]\nteacher = "{teacher}"\nalpha = 0.7\ntemperature = 2.0\n')
    assert produce(["train", str(cfg), "--quiet"]) == 1  # a [distill] job is trained by `produce distill`
    assert produce(["distill", str(cfg), "--quiet"]) == 0
    hist = json.loads((root / "runs" / "student" / "history.json").read_text())
    assert produce(["distill", str(cfg), "--quiet"]) == 0  # resumes: nothing left to do, same history
    assert json.loads((root / "runs" / "student" / "history.json").read_text())["loss"] == hist["loss"]
    assert "teacher:" in (root / "runs" / "student" / "train.log").read_text()
    assert produce(["predict", str(cfg), "--quiet"]) == 0
    with open_store(root / "runs" / "predictions" / "student.eval.full.h5") as s:
        assert s.meta.config["distill"] == {"teacher": [str(teacher)], "alpha": 0.7, "temperature": 2.0,
                                            "floor": 0.0}


def test_teacher_missing_training_videos_is_a_clear_error(root, teacher, capsys):
    heldout_only = root / "ens" / "teach.heldout.full.h5"
    cfg = _job(root, "student-bad", extra=f'[distill]\nteacher = "{heldout_only}"\n')
    assert produce(["distill", str(cfg), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(heldout_only) in err and "lacks" in err and "training videos" in err


def test_topk_teacher_floor_and_alignment(tmp_path):
    from producers.config import DistillConfig
    from producers.teacher import teacher_targets

    ids = np.array(["a", "b", "c"])
    scores = np.array([[0.9, 0.1, 0.0, 0.3], [0.2, 0.8, 0.4, 0.0], [0.0, 0.0, 0.5, 0.6]], np.float32)
    write_store(tmp_path / "t.h5", Predictions.from_dense(ids, scores, k=2), model="t", split="train")
    got = teacher_targets(DistillConfig([str(tmp_path / "t.h5")], floor=0.01), ["c", "a"], 4)
    np.testing.assert_allclose(got, [[0.01, 0.01, 0.5, 0.6], [0.9, 0.01, 0.01, 0.3]])
    write_store(tmp_path / "u.h5", Predictions.from_dense(ids, scores), model="u", split="train")
    both = teacher_targets(DistillConfig([str(tmp_path / "*.h5")]), ["a"], 4)  # a glob: the mean of the stores
    np.testing.assert_allclose(both, [[0.9, 0.05, 0.0, 0.3]])
    with pytest.raises(InputError, match="has 4 classes, the job 5"):
        teacher_targets(DistillConfig([str(tmp_path / "t.h5")]), ["a"], 5)
    with pytest.raises(InputError, match="matches no store"):
        teacher_targets(DistillConfig([str(tmp_path / "none*.h5")]), ["a"], 4)
