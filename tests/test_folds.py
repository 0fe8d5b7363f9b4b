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
name = "{model}"
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
folds = {folds}
{train}
[predict]
top_k = 0
splits = ["heldout", "eval"]
{predict}
[output]
name = "{name}"
"""


def _job(root: Path, name: str, *, epochs=2, folds=K, train="", predict="", file=None, model="mlp",
         hparams="[model.hparams]\nhidden_dim = 32") -> Path:
    path = root / f"{file or name}.toml"
    path.write_text(JOB.format(epochs=epochs, folds=folds, train=train, predict=predict, name=name, model=model,
                               hparams=hparams), encoding="utf-8")
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
    ("", 'fold_eval = "both"', None),
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
        refit = s.read()
    # "both": the mean under the job's name, the same refit under <name>-refit (nothing retrained)
    both = _job(root, "mlp-refit", predict='fold_eval = "both"', file="mlp-refit-both")
    assert produce(["train", str(both), "--quiet"]) == 0
    assert json.loads((root / "runs" / "mlp-refit" / "history.json").read_text())["resumed_from"] == 2  # done
    assert produce(["predict", str(both), "--quiet"]) == 0
    preds = root / "runs" / "predictions"
    with open_store(preds / "mlp-refit-refit.eval.full.h5") as s:
        assert s.meta.extra["fold_predictions"] == "refit" and s.meta.model == "mlp-refit-refit"
        np.testing.assert_array_equal(s.read().reindex(refit.ids).scores, refit.scores)
    with open_store(preds / "mlp-refit.eval.full.h5") as s:
        assert s.meta.extra["fold_predictions"] == "mean"
        assert np.abs(s.read().reindex(refit.ids).scores - refit.scores).max() > 1e-4
    assert not (preds / "mlp-refit-refit.oof.full.h5").exists()  # the pool is out of fold only


# --------------------------------------------------------------------------- stacking on the out-of-fold pool

@pytest.fixture(scope="module")
def lr_trained(root):
    """A second 3-fold member (logistic regression), so that a stacker has something to weigh."""
    job = _job(root, "lr-k3", model="lr", hparams="")
    assert produce(["train", str(job), "--quiet"]) == 0
    assert produce(["predict", str(job), "--quiet"]) == 0
    return job


def _pool_and_eval(root: Path):
    ids = _all_ids(root)
    base = assign_splits(ids, heldout=80, eval=80)
    return ids[np.isin(base, ["train", "heldout"])], ids[base == "eval"]


@pytest.fixture(scope="module")
def pooled(root, trained, lr_trained):
    """lr stacking of the two 3-fold members by `ensemble build`, fitted on the oof pool and on heldout alone."""
    from ensembler.cli import main as ensemble

    run = root / "runs"
    members = [str(run / "predictions" / f"{m}.{s}.full.h5") for m in ("mlp-k3", "lr-k3") for s in ("oof", "eval")]
    out = root / "ens"
    for fit in ("oof", "heldout"):
        these = members if fit == "oof" else [m.replace(".oof.", ".heldout.") for m in members]
        assert ensemble(["build", "--weights=lr", "--members", *these, "--labels", str(run / "labels"),
                         "--fit-split", fit, "--folds", "3", "--out", str(out), "--name", f"ens-{fit}",
                         "--quiet"]) == 0
    return out


def test_pooled_build_fits_on_every_pool_video(root, pooled):
    """`ensemble build --fit-split oof` fits on the out-of-fold stores of all pool videos (train + heldout),
    estimates on them, and applies the fitted stacker to the fold-mean eval stores."""
    pool, ev = _pool_and_eval(root)
    rec = json.loads((pooled / "ens-oof.build.json").read_text())
    held = json.loads((pooled / "ens-heldout.build.json").read_text())
    assert rec["fit_split"] == "oof" and rec["n_fit_videos"] == len(pool)  # every labelled non-eval video
    assert sum(rec["crossfit"]["fold_sizes"]) == len(pool) and rec["crossfit"]["n_folds"] == 3
    assert held["n_fit_videos"] == 80 < len(pool)  # the heldout-only build fits on 80
    assert 0 < rec["crossfit"]["estimate"] < 1 and rec["crossfit"]["std_error"] > 0
    with open_store(pooled / "ens-oof.oof.full.h5") as s:
        assert s.meta.split == "oof" and sorted(s.ids) == sorted(pool)
    with open_store(pooled / "ens-oof.eval.full.h5") as s:
        assert sorted(s.ids) == sorted(ev)


def test_pooled_ensemble_teaches_a_student(root, pooled):
    """The pooled ensemble's oof store (split "oof": every training video, out of fold at the producer
    level) is a `[distill]` teacher for a single model trained on the train split."""
    from producers.config import load_config
    from producers.jobs import _splits
    from producers.teacher import teacher_targets

    job = _job(root, "student", folds=0, epochs=1)
    job.write_text(job.read_text() + f'\n[distill]\nteacher = "{pooled / "ens-oof.oof.full.h5"}"\nalpha = 0.5\n')
    cfg = load_config(job)
    ids = _all_ids(root)
    train = ids[_splits(cfg, ids) == "train"]
    with open_store(pooled / "ens-oof.oof.full.h5") as s:
        want = s.read().reindex(train).dense()
    np.testing.assert_allclose(teacher_targets(cfg.distill, train, C), want, atol=1e-6)
    assert produce(["distill", str(job), "--quiet"]) == 0
    assert "teacher: " in (root / "runs" / "student" / "train.log").read_text()


def test_a_stacker_folds_labels_never_reach_its_scores_on_the_pool(root, trained, lr_trained):
    """Stacker level, on the produced out-of-fold stores: scramble the labels of the stacker's fold 0;
    fold 0's out-of-fold ensemble scores do not move, the other folds' do (so the test can fail)."""
    from ensembler import fit_ensemble
    from ensembler.inputs import as_candidates
    from predictions.types import Labels

    run = root / "runs"
    cands = as_candidates([str(run / "predictions" / f"{m}.oof.full.h5") for m in ("mlp-k3", "lr-k3")])
    labels = read_labels(run / "labels" / "labels.oof.h5").reindex(cands.ids)
    fit = fit_ensemble(cands, labels, "lr", n_folds=3, random_state=1)
    rng = np.random.default_rng(0)
    lists = labels.lists()
    for v in np.flatnonzero(fit.crossfit.folds == 0):
        lists[v] = rng.choice(C, size=rng.integers(1, 4), replace=False)
    again = fit_ensemble(cands, Labels.from_lists(labels.ids, lists, C), "lr", n_folds=3, random_state=1)
    in0 = fit.crossfit.folds[cands.row] == 0
    np.testing.assert_array_equal(fit.crossfit.oof_scores[in0], again.crossfit.oof_scores[in0])
    assert not np.array_equal(fit.crossfit.oof_scores[~in0], again.crossfit.oof_scores[~in0])


def _scrambled_copy(root: Path, dest: Path, fold: int) -> set:
    """Copy the generated data to ``dest`` with new random labels for the pool videos of ``fold``."""
    import shutil

    from producers.data.examples import VideoExample, decode_video, encode_video
    from producers.data.tfrecord_io import iter_payloads, write_tfrecord

    pool, _ = _pool_and_eval(root)
    changed = set(pool[fold_of(pool, K) == fold])
    shutil.copytree(root / "data", dest / "data")
    rng = np.random.default_rng(7)

    def rewrite(path):
        for payload in iter_payloads(path):
            ex = decode_video(payload)
            if ex.id in changed:
                ex = VideoExample(ex.id, np.sort(rng.choice(C, size=rng.integers(1, 4), replace=False)),
                                  ex.mean_rgb, ex.mean_audio)
            yield encode_video(ex)

    for path in sorted((root / "data" / "video").glob("train-*.tfrecord")):
        write_tfrecord(dest / "data" / "video" / path.name, rewrite(path))
    return changed


def test_a_producer_folds_labels_never_reach_its_out_of_fold_rows(root, trained, tmp_path):
    """Producer level: new labels for the pool videos of fold 0, every fold model retrained: the oof
    store's fold-0 rows (fold model 0's predictions) are unchanged, the other folds' rows are not
    (their models trained on the new labels). Fold 0's labels reach neither its model's weights,
    nor its dev videos (early stopping), nor its class prior."""
    changed = _scrambled_copy(root, tmp_path, fold=0)
    job = _job(tmp_path, "mlp-k3")
    assert produce(["train", str(job), "--quiet"]) == 0
    assert produce(["predict", str(job), "--quiet"]) == 0
    labels = read_labels(tmp_path / "runs" / "labels" / "labels.oof.h5")
    first = read_labels(root / "runs" / "labels" / "labels.oof.h5").reindex(labels.ids)
    differs = {i for i, a, b in zip(labels.ids, labels.lists(), first.lists()) if not np.array_equal(a, b)}
    assert differs and differs <= changed  # the copy really has new labels, and only in fold 0
    with open_store(root / "runs" / "predictions" / "mlp-k3.oof.full.h5") as s:
        before = s.read()
    with open_store(tmp_path / "runs" / "predictions" / "mlp-k3.oof.full.h5") as s:
        after = s.read().reindex(before.ids)
    in0 = fold_of(before.ids, K) == 0
    np.testing.assert_array_equal(after.scores[in0], before.scores[in0])
    assert np.abs(after.scores[~in0] - before.scores[~in0]).max() > 1e-4
