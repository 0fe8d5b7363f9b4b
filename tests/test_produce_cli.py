"""Job configs and the ``produce`` CLI end to end on a small generated data set."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from predictions.errors import InputError
from producers.cli import main
from producers.config import config_from_dict, load_config

C = 40


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = """
[model]
name = "moe"
[data]
train = "data/video/train-*.tfrecord"
num_classes = 40
"""


def test_config_defaults_and_round_trip(tmp_path):
    cfg = load_config(_write(tmp_path / "job.toml", MINIMAL + '[model.hparams]\nnum_experts = 3\n'))
    assert cfg.data.train == [str(tmp_path / "data/video/train-*.tfrecord")]
    assert cfg.level == "video" and cfg.train.batch_size == 1024 and cfg.output.name == "moe"
    assert cfg.output.run_dir == str(tmp_path / "runs") and cfg.split.heldout == 20000
    assert cfg.predict.splits == ["heldout", "eval", "test"] and cfg.predict.top_k == 100
    assert cfg.model.hparams == {"num_experts": 3}
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and "test" not in d["data"]  # None dropped, JSON-able
    again = config_from_dict(d, path="elsewhere.toml", base_dir="/nowhere")
    assert again == cfg and again.to_dict() == d


def test_config_float_option_accepts_int_and_frame_batch_default(tmp_path):
    text = MINIMAL.replace('"moe"', '"dbof"') + "[train]\nlr = 1\n"
    cfg = load_config(_write(tmp_path / "f.toml", text))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float) and cfg.train.batch_size == 128


@pytest.mark.parametrize("extra, message", [
    ("[model.hparams]\nnum_expert = 3\n", "no option.*num_expert"),
    ("[model.hparams]\nnum_experts = 'many'\n", "num_experts = 'many': expected int"),
    ("[model.hparams]\nnum_experts = 0\n", "bad value"),
    ("[train]\nepochs = 'ten'\n", r"\[train\] epochs = 'ten': expected int"),
    ("[train]\nepoch = 3\n", r"\[train\] has unknown option\(s\) epoch"),
    ("[bogus]\nx = 1\n", r"unknown section\(s\) \[bogus\]"),
    ("[output]\nname = '../escape'\n", "must match"),
    ("[predict]\ncrops = 3\n", "frame-level models only"),
    ("[predict]\nsplits = ['heldout', 'dev']\n", "splits must be"),
    ("[predict]\ntrain_folds = 1\n", "train_folds must be"),
    ("[distill]\nalpha = 0.5\n", "missing the required option 'teacher'"),
    ("[distill]\nteacher = 't.h5'\nalpha = 2\n", "alpha must be in"),
    ("[split]\ndev_fraction = 1.5\n", "dev_fraction"),
])
def test_config_validation_errors(tmp_path, extra, message):
    path = _write(tmp_path / "bad.toml", MINIMAL + extra)
    with pytest.raises(InputError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_config_unknown_model_and_level_mismatch(tmp_path):
    with pytest.raises(InputError, match="unknown model 'nope'"):
        load_config(_write(tmp_path / "a.toml", MINIMAL.replace('"moe"', '"nope"')))
    with pytest.raises(InputError, match="frame-level model"):
        load_config(_write(tmp_path / "b.toml", MINIMAL.replace('"moe"', '"dbof"') + 'level = "video"\n'))
    with pytest.raises(InputError, match="not valid TOML"):
        load_config(_write(tmp_path / "c.toml", "[model\n"))
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_cli_usage_errors_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    for cmd in ("generate", "train", "predict", "models"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0 and "example:" in capsys.readouterr().out


def test_cli_models_lists_registry(capsys):
    assert main(["models", "--level", "video"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in out] == ["chain", "hmoe", "lr", "lstm_translator", "mlp", "moe", "residualcnn"]
    assert all(l.split()[1] == "video" for l in out)


def test_cli_bad_config_is_one_line_error(tmp_path, capsys):
    path = _write(tmp_path / "bad.toml", MINIMAL + "[model.hparams]\nwidth = 3\n")
    assert main(["train", str(path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("produce: error: ") and err.count("\n") == 1 and "width" in err
    assert not (tmp_path / "runs").exists()  # nothing started


JOB = """
[model]
name = "moe"
[data]
train = "data/video/train-*.tfrecord"
test = "data/video/test-*.tfrecord"
test_truth = "data/test_truth.csv"
num_classes = 40
[split]
heldout = 60
eval = 40
dev_fraction = 0.1
[train]
epochs = 3
batch_size = 64
lr = 0.01
[predict]
top_k = 10
[output]
run_dir = "runs"
name = "moe-small"
"""


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    assert main(["generate", str(root / "data"), "--videos", "400", "--test-videos", "50", "--classes", str(C),
                 "--shards", "2", "--seed", "3", "--quiet"]) == 0
    _write(root / "job.toml", JOB)
    return root


def test_cli_train_and_predict(job_dir, capsys):
    from predictions.labels import read_labels
    from predictions.metrics import gap
    from predictions.split import assign_splits
    from predictions.store import open_store
    from producers.data.readers import scan_ids

    cfg = str(job_dir / "job.toml")
    assert main(["train", cfg, "--quiet"]) == 0
    run = job_dir / "runs"
    hist = json.loads((run / "moe-small" / "history.json").read_text())
    assert hist["epochs"] == [1, 2, 3] and hist["n_train"] + hist["n_dev"] == 300
    assert (run / "moe-small" / "train.log").read_text().count("epoch ") >= 3
    assert (run / "moe-small" / "checkpoints" / "best.pt").exists()

    assert main(["train", cfg, "--quiet"]) == 0  # resumes: nothing left to do, same result
    assert json.loads((run / "moe-small" / "history.json").read_text())["loss"] == hist["loss"]

    capsys.readouterr()
    assert main(["predict", cfg, "--quiet"]) == 0
    assert capsys.readouterr().out == ""  # --quiet prints nothing but errors
    assert main(["predict", cfg, "--json"]) == 0  # predicts again (same stores), paths as JSON
    printed = json.loads(capsys.readouterr().out)["stores"]
    names = sorted(Path(p).name for p in printed if p.endswith(".h5"))
    assert names == ["moe-small.eval.full.h5", "moe-small.heldout.full.h5", "moe-small.test.full.h5"]
    ids = scan_ids(str(job_dir / "data/video/train-*.tfrecord"))
    split = assign_splits(ids, heldout=60, eval=40)
    for name, n in (("heldout", 60), ("eval", 40), ("test", 50)):
        with open_store(run / "predictions" / f"moe-small.{name}.full.h5") as s:
            s.verify()
            assert len(s) == n and s.k == 10 and s.meta.crop == "full" and s.meta.split == name
            assert s.meta.config["model"]["name"] == "moe" and s.meta.config["split"]["heldout"] == 60
            pred = s.read()
        truth = read_labels(run / "labels" / f"labels.{name}.h5")
        assert list(truth.ids) == list(pred.ids)
        if name != "test":
            assert set(pred.ids) == set(ids[split == name])
        assert gap(pred, truth) > 0.2  # measured ~0.5; chance is ~0.05
    # a second predict run (e.g. another job sharing the run dir) leaves identical labels alone
    before = (run / "labels" / "labels.heldout.h5").stat().st_mtime_ns
    assert main(["predict", cfg, "--quiet"]) == 0
    assert (run / "labels" / "labels.heldout.h5").stat().st_mtime_ns == before


def test_cli_predict_without_training_fails(job_dir, capsys):
    cfg = _write(job_dir / "other.toml", JOB.replace('name = "moe-small"', 'name = "untrained"'))
    assert main(["predict", str(cfg), "--quiet"]) == 1
    assert "train the model first" in capsys.readouterr().err


def test_cli_frame_level_crops(tmp_path, capsys):
    pytest.importorskip("producers.models.frame")
    from predictions.labels import read_labels
    from predictions.store import open_store

    assert main(["generate", str(tmp_path / "data"), "--videos", "40", "--test-videos", "0", "--classes", "20",
                 "--level", "frame", "--shards", "2", "--quiet"]) == 0
    cfg = _write(tmp_path / "f.toml", """
[model]
name = "dbof"
[model.hparams]
cluster_size = 16
hidden_size = 16
[data]
train = "data/frame/train-*.tfrecord"
num_classes = 20
[split]
heldout = 10
dev_fraction = 0.2
[train]
epochs = 1
batch_size = 8
frames = "crop"   # dbof's paper samples frames; this test is about crops
[predict]
top_k = 0
""")
    assert main(["train", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["predict", str(cfg), "--crops", "2", "--json"]) == 0
    out = sorted(Path(p).name for p in json.loads(capsys.readouterr().out)["stores"])
    assert out == ["dbof.heldout.crop0.h5", "dbof.heldout.crop1.h5", "dbof.heldout.mean.h5"]
    truth = read_labels(tmp_path / "runs" / "labels" / "labels.heldout.h5")
    assert len(truth) == 10 and truth.counts().min() >= 1
    dense = {}
    for crop in ("crop0", "crop1", "mean"):
        with open_store(tmp_path / "runs" / "predictions" / f"dbof.heldout.{crop}.h5") as s:
            assert s.meta.crop == crop.replace("crop", "") and s.layout == "full"
            pred = s.read()
        assert list(pred.ids) == list(truth.ids)
        dense[crop] = pred.dense()
    assert not np.array_equal(dense["crop0"], dense["crop1"])  # different frames seen
    np.testing.assert_allclose(dense["mean"], (dense["crop0"] + dense["crop1"]) / 2, rtol=1e-6, atol=1e-7)


def test_models_json_lists_every_registered_model(capsys):
    import json as _json
    from producers.cli import main
    from producers.models.registry import list_models
    assert main(["models", "--json"]) == 0
    rows = _json.loads(capsys.readouterr().out)
    assert sorted(r["name"] for r in rows) == list_models()
    assert {r["level"] for r in rows} == {"video", "frame"}
