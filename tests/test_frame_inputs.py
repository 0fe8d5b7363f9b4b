"""Frame-level input modes end to end: ``[train] frames`` in the config, FrameShards, train and predict."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from predictions.errors import InputError
from producers.cli import main
from producers.config import load_config
from producers.crops import FrameSelection, even_frames
from producers.datasets import FrameShards

C = 12


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    gen = pytest.importorskip("producers.data.generator")
    out = tmp_path_factory.mktemp("frames")
    gen.generate(out, n_train=30, n_test=0, num_classes=C, num_verticals=3, level="frame", shards=2, seed=0,
                 min_frames=30, max_frames=80)
    return out


def _lengths(frame_data):
    """Full length of every video, by id."""
    return {i: len(f) for i, f, _ in FrameShards(str(frame_data / "frame"), C, crop=None)}


def test_frame_shards_modes(frame_data):
    full = _lengths(frame_data)
    pattern = str(frame_data / "frame")
    every = {i: f for i, f, _ in FrameShards(pattern, C, crop="train", frames=FrameSelection("all"))}
    assert {i: len(f) for i, f in every.items()} == full  # <= 80 frames: all of them
    sample = list(FrameShards(pattern, C, crop="train", frames=FrameSelection("sample", 17), seed=1))
    assert all(f.shape == (17, 1152) for _, f, _ in sample)
    even = {i: f for i, f, _ in FrameShards(pattern, C, crop=0, frames=FrameSelection("sample", 17))}
    for i, f in even.items():  # prediction: evenly spaced frames of the full video
        np.testing.assert_array_equal(f, every[i][even_frames(full[i], 17)])
    crop = {i: f for i, f, _ in FrameShards(pattern, C, crop=2)}
    assert all(len(f) == len(range(2, min(full[i], 225), 5)) for i, f in crop.items())
    with pytest.raises(InputError, match="out of range"):
        FrameShards(pattern, C, crop=1, frames=FrameSelection("all"))


JOB = """
[model]
name = "netrvlad"
[model.hparams]
cluster_size = 4
audio_cluster_size = 2
hidden_size = 16
[data]
train = "{data}/frame/train-*.tfrecord"
num_classes = 12
[split]
heldout = 8
dev_fraction = 0.2
[train]
epochs = 1
batch_size = 8
{train}
[predict]
top_k = 0
splits = ["heldout"]
"""


def _job(tmp_path, frame_data, train, name="job.toml") -> Path:
    path = tmp_path / name
    path.write_text(JOB.format(data=frame_data, train=train), encoding="utf-8")
    return path


@pytest.mark.parametrize("train, message", [
    ('frames = "random"', "frames must be one of"),
    ('frames = "sample"\nnum_frames = 0', "num_frames must be >= 1"),
    ('frames = "all"\n[predict]\ncrops = 2', "crops > 1 needs"),
])
def test_config_rejects_bad_frames(tmp_path, frame_data, train, message):
    text = JOB.format(data=frame_data, train=train)
    if "[predict]\ncrops" in train:  # the second [predict] table would be a TOML error: merge it
        text = text.replace("[predict]\ncrops = 2\n[predict]\n", "[predict]\ncrops = 2\n")
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_config(path)


@pytest.mark.parametrize("model", ["dbof", "attention_bigru", "lstm", "ln_lstm"])
def test_a_job_without_frames_gets_its_papers_input(tmp_path, model):
    """Unset ``[train] frames`` is the input the model's paper used (its registry entry), not Zou's crops."""
    from producers.models import get_entry
    path = tmp_path / "j.toml"
    path.write_text(f'[model]\nname = "{model}"\n[data]\ntrain = "x-*.tfrecord"\nlevel = "frame"\n')
    assert load_config(path).train.frames == (get_entry(model).frames or "crop")


def test_video_level_job_rejects_frames(tmp_path):
    path = tmp_path / "v.toml"
    path.write_text('[model]\nname = "moe"\n[data]\ntrain = "x-*.tfrecord"\n[train]\nframes = "all"\n')
    with pytest.raises(InputError, match="frame-level models only"):
        load_config(path)


@pytest.mark.parametrize("frames", ["all", "sample"])
def test_train_and_predict_with_frames(tmp_path, frame_data, frames, capsys):
    cfg = _job(tmp_path, frame_data, f'frames = "{frames}"\nnum_frames = 20')
    assert load_config(cfg).train.frames == frames
    assert main(["train", str(cfg), "--quiet"]) == 0
    log = (tmp_path / "runs" / "netrvlad" / "train.log").read_text()
    assert f"frames: {frames}" in log
    capsys.readouterr()
    assert main(["predict", str(cfg), "--json"]) == 0
    stores = [Path(p).name for p in json.loads(capsys.readouterr().out)["stores"]]
    assert stores == ["netrvlad.heldout.crop0.h5"]
    assert main(["predict", str(cfg), "--crops", "2", "--quiet"]) == 1
    assert "need [train] frames = 'crop'" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "predictions").iterdir()) == stores  # nothing partial


def test_crop_mean_store_follows_zous_rule(tmp_path, frame_data):
    from predictions.store import open_store
    from producers.crops import crop_mean

    cfg = _job(tmp_path, frame_data, 'frames = "crop"').read_text().replace("top_k = 0",
                                                                           "top_k = 0\ncrops = 3\ncrop_top_k = 2")
    path = tmp_path / "zou.toml"
    path.write_text(cfg, encoding="utf-8")
    assert main(["train", str(path), "--quiet"]) == 0
    assert main(["predict", str(path), "--quiet"]) == 0
    dense = {}
    for crop in ("crop0", "crop1", "crop2", "mean"):
        with open_store(tmp_path / "runs" / "predictions" / f"netrvlad.heldout.{crop}.h5") as s:
            dense[crop] = s.read().dense()
    want = crop_mean([dense["crop0"], dense["crop1"], dense["crop2"]], top_k=2)
    np.testing.assert_allclose(dense["mean"], want, rtol=1e-6, atol=1e-7)
    assert ((dense["mean"] > 0).sum(1) <= 6).all()  # at most 2 classes per crop survive
    assert not np.allclose(dense["mean"], np.mean([dense[c] for c in ("crop0", "crop1", "crop2")], axis=0))


def test_every_frame_model_has_a_cpu_config_that_builds(tmp_path):
    """configs/frame/<model>.toml: one per registered frame model, small widths, loads and builds as
    scripts/frame_level.sh runs it (copied to RUN/configs/, the generated data in RUN/data/)."""
    import shutil

    from producers.models.registry import get_entry, list_models

    repo = Path(__file__).resolve().parents[1] / "configs" / "frame"
    (tmp_path / "configs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "vocabulary.csv").write_text(
        "Index,Name,Vertical1\n" + "".join(f"{i},class-{i},Vertical-{i % 25:02d}\n" for i in range(3862)))
    names = sorted(p.stem for p in repo.glob("*.toml"))
    assert names == list_models("frame")
    for name in names:
        cfg = load_config(shutil.copy(repo / f"{name}.toml", tmp_path / "configs"))
        assert cfg.model.name == name and cfg.data.level == "frame", name
        defaults = get_entry(name).hparams()
        # CPU sizes live in the config only: every width it sets differs from (is smaller than) the paper default
        for key in ("hidden_size", "cluster_size", "audio_cluster_size", "audio_hidden_size"):
            if key in cfg.model.hparams:
                assert cfg.model.hparams[key] < defaults[key], (name, key)


def _frame_table():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "frame_table.py"
    spec = importlib.util.spec_from_file_location("frame_table", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_frame_table_reads_a_previous_table(tmp_path):
    """scripts/frame_table.py --previous: the earlier numbers, from a markdown table or a table.json."""
    ft = _frame_table()
    md = tmp_path / "README.md"
    md.write_text("text\n\n" + ft.HEADER + "\n|---|---|---|---|---|---|\n"
                  "| bigru | 34 / 96 | 0.4053 | **0.4100** | 0.4098 | 0.3717 |\n"
                  "| lstm | 66 / – | 0.3345 | – | – | – |\n\nmore text\n")
    rows = ft.read_previous(md)
    assert rows["bigru"] == dict(model="bigru", train_s=34, train_all_s=96, crop0=0.4053, mean5=0.41, zou5=0.4098,
                                 all=0.3717)
    assert rows["lstm"]["train_all_s"] is None and rows["lstm"]["mean5"] is None
    js = tmp_path / "table.json"
    js.write_text(json.dumps(list(rows.values())))
    assert ft.read_previous(js) == rows
    md.write_text(ft.HEADER + "\n|---|---|---|---|---|---|\n| bigru | 34 / 96 | 0.40x | 0.4 | 0.4 | 0.4 |\n")
    with pytest.raises(InputError, match="not a number"):
        ft.read_previous(md)
    with pytest.raises(InputError, match="has no frame table"):
        ft.read_previous(_write(tmp_path / "x.md", "no table\n"))


def _write(path, text):
    path.write_text(text)
    return path
