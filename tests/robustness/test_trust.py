"""Nothing untrusted is executed: safe checkpoint loading, no pickle/eval, tomllib configs, safe names."""
from __future__ import annotations

import ast
import pickle  # noqa: S403 - only to craft a malicious checkpoint in a test
from pathlib import Path

import pytest
import torch

from ensembler.cli import main as ensemble
from producers.cli import main as produce

from .conftest import REPO, assert_clear_error, cli, ids_of, job_toml, make_store, snapshot

PACKAGES = ("predictions", "producers", "ensembler", "reports")


def _sources():
    for pkg in PACKAGES:
        yield from sorted((REPO / pkg).rglob("*.py"))


class _Boom:
    """Unpickling this calls ``Path.touch(marker)``: proof that arbitrary code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# --------------------------------------------------------------------------- source scan


def _findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    bad = []
    banned_modules = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle", "joblib", "yaml", "toml",
                      "tomli"}
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            bad += [f"{where} import {a.name}" for a in node.names if a.name.split(".")[0] in banned_modules]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in banned_modules:
            bad.append(f"{where} from {node.module} import")
        elif isinstance(node, ast.ImportFrom) and any(a.name == "literal_eval" for a in node.names):
            bad.append(f"{where} import literal_eval")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if isinstance(f, ast.Name) and name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{where} {name}(")
            if name in ("literal_eval", "loads") and isinstance(f, ast.Attribute) and \
                    isinstance(f.value, ast.Name) and f.value.id in ("pickle", "marshal", "ast"):
                bad.append(f"{where} {f.value.id}.{name}(")
            if name == "literal_eval":
                bad.append(f"{where} literal_eval(")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{where} allow_pickle={ast.unparse(kw.value)}")
            if name == "load" and isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id == "torch":
                wo = [kw for kw in node.keywords if kw.arg == "weights_only"]
                if not wo or not (isinstance(wo[0].value, ast.Constant) and wo[0].value.value is True):
                    bad.append(f"{where} torch.load without weights_only=True")
            if name == "read_pickle":
                bad.append(f"{where} read_pickle(")
    return bad


def test_source_has_no_pickle_eval_exec_and_safe_torch_load():
    files = list(_sources())
    assert len(files) > 20
    found = [f for p in files for f in _findings(p)]
    assert not found, "\n".join(found)
    text = "\n".join(p.read_text(encoding="utf-8") for p in files)
    for needle in ("allow_pickle=True", "literal_eval", "pickle.load", "yaml.load"):
        assert needle not in text
    assert "torch.load(" in text and text.count("torch.load(") == text.count("weights_only=True)")


def test_scanner_catches_what_it_should(tmp_path):
    bad = REPO / "tests" / "robustness" / "_scan_probe.py"
    try:
        bad.write_text("import pickle\nimport torch\nx = eval('1')\nexec('y=1')\ntorch.load('f')\n"
                       "torch.load('f', weights_only=False)\nimport numpy as np\nnp.load('f', allow_pickle=True)\n"
                       "from ast import literal_eval\nmodel.eval()\n")
        found = _findings(bad)
    finally:
        bad.unlink()
    kinds = " ".join(found)
    assert "import pickle" in kinds and "eval(" in kinds and "exec(" in kinds and "allow_pickle" in kinds
    assert kinds.count("torch.load without") == 2 and "model.eval" not in kinds
    assert len(found) == 7, found


def test_config_parsed_with_tomllib_only():
    src = (REPO / "producers" / "config.py").read_text()
    assert "tomllib.loads(" in src
    assert not any(m in src for m in ("import toml\n", "import tomli", "yaml", "json.loads(p.read"))


def test_h5py_strings_only_no_object_dtype(tmp_path):
    """A store whose ids dataset holds variable-length (object) strings is refused, never unpickled."""
    import h5py

    p = make_store(tmp_path / "m.heldout.full.h5")
    with h5py.File(p, "r+") as f:
        ids = f["ids"][:]
        del f["ids"]
        f.create_dataset("ids", data=ids.astype(object), dtype=h5py.string_dtype())
    from predictions.errors import InputError
    from predictions.store import open_store

    with pytest.raises(InputError, match="fixed-length bytes"):
        open_store(p)


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture()
def trained_job(small_data, tmp_path):
    cfg = job_toml(tmp_path / "job.toml", f"{small_data}/video/train-*.tfrecord", epochs=1)
    assert produce(["train", str(cfg), "--quiet"]) == 0
    return cfg, tmp_path / "runs" / "job" / "checkpoints"


def test_checkpoints_load_with_weights_only(trained_job):
    _, ckpt = trained_job
    for p in sorted(ckpt.glob("*.pt")):
        state = torch.load(p, map_location="cpu", weights_only=True)
        assert "model" in state and "epoch" in state


def test_checkpoint_with_pickled_object_is_refused(trained_job, tmp_path, capsys):
    cfg, ckpt = trained_job
    marker = tmp_path / "PWNED"
    state = torch.load(ckpt / "best.pt", weights_only=True)
    state["payload"] = _Boom(marker)
    torch.save(state, ckpt / "best.pt")
    preds = tmp_path / "runs" / "predictions"
    before = snapshot(tmp_path / "runs")
    rc, err = cli(produce, ["predict", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "best.pt", "not a readable checkpoint")
    assert not marker.exists(), "unpickling ran arbitrary code"
    assert not any(preds.glob("*.h5")) if preds.exists() else True
    assert snapshot(tmp_path / "runs") == before

    # the resume path too: a malicious epoch checkpoint
    ep = sorted(ckpt.glob("epoch-*.pt"))[-1]
    s2 = torch.load(ep, weights_only=True)
    s2["payload"] = _Boom(marker)
    torch.save(s2, ep)
    cfg.write_text(cfg.read_text().replace("epochs = 1", "epochs = 2"))
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", ep.name, "not a readable checkpoint")
    assert not marker.exists()


def test_plain_pickle_file_as_checkpoint_is_refused(trained_job, tmp_path, capsys):
    cfg, ckpt = trained_job
    marker = tmp_path / "PWNED"
    (ckpt / "best.pt").write_bytes(pickle.dumps({"model": _Boom(marker)}))
    rc, err = cli(produce, ["predict", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "best.pt")
    assert not marker.exists()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "a\\b", "ok\n"])
def test_ensemble_name_cannot_escape(name, tmp_path, capsys):
    d = tmp_path / "run"
    make_store(d / "preds" / "m0.heldout.full.h5", model="m0", seed=1)
    make_store(d / "preds" / "m1.heldout.full.h5", model="m1", seed=2)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, ["build", "--members", d / "preds", "--out", d / "out", "--name", name, "--quiet"],
                  capsys)
    assert_clear_error(rc, err, "ensemble", "name")
    assert snapshot(tmp_path) == before


def test_ensemble_empty_name_rejected(tmp_path, capsys):
    d = tmp_path / "run"
    make_store(d / "preds" / "m0.heldout.full.h5", model="m0", seed=1)
    rc, err = cli(ensemble, ["build", "--members", d / "preds", "--out", d / "out", "--name", "", "--quiet"],
                  capsys)
    assert_clear_error(rc, err, "ensemble", "name")


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", "x y"])
def test_output_name_cannot_escape(name, small_data, tmp_path, capsys):
    cfg = job_toml(tmp_path / "job.toml", f"{small_data}/video/train-*.tfrecord", name=name.replace("\\", "\\\\"))
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "job.toml", "name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_model_name_cannot_escape(small_data, tmp_path, capsys):
    for model in ("../lr", "lr/x", ""):
        cfg = job_toml(tmp_path / "job.toml", f"{small_data}/video/train-*.tfrecord", model=model)
        cfg.write_text(cfg.read_text().replace('name = "job"\n', ""))  # output name defaults to the model
        rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
        assert_clear_error(rc, err, "produce", "job.toml")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_import_model_name_cannot_escape(tmp_path, capsys):
    src = tmp_path / "t.csv"
    src.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9\n")
    (tmp_path / "out").mkdir()
    for model in ("../x", "a/b"):
        before = snapshot(tmp_path)
        rc, err = cli(ensemble, ["import", src, "--model", model, "--split", "test", "--classes", 20,
                                 "--out", tmp_path / "out", "--quiet"], capsys)
        assert rc == 1 and snapshot(tmp_path) == before, err
