"""Options and inputs that used to end in a traceback (or were silently accepted) give one line, exit 1.

Kind "tracebacks" of the robustness table (output locations are in test_outputs.py): option values
out of range (``--chunk-rows 0`` used to mean "default", ``--k 0`` too), stores with no video, a
single-file ``--out`` for members of several splits (it silently wrote one split), attributes of the
wrong type, scheduler addresses that are not addresses, and the ``produce`` cases the lead fixed
(``lr = nan``, a device this machine lacks, a checkpoint that is not a training checkpoint).
Nothing is written by a refused command.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions.store import write_store
from predictions.types import Predictions
from producers.cli import main as produce

from .conftest import C, assert_clear_error, cli, ids_of, job_toml, make_labels, make_store, snapshot


def _setup(root: Path) -> dict:
    d = root / "preds"
    for split in ("heldout", "eval", "test"):
        for j in range(2):
            make_store(d / f"m{j}.{split}.full.h5", model=f"m{j}", split=split, seed=j + 3 * len(split))
    for split in ("heldout", "eval"):
        make_labels(root / "labels" / f"labels.{split}.h5", ids_of(30), split=split)
    empty = write_store(root / "empty" / "e0.heldout.full.h5",
                        Predictions(np.zeros(0, "<U1"), np.zeros((0, 5), np.float32), np.zeros((0, 5), np.int32), C),
                        model="e0", split="heldout")
    return {"d": d, "labels": root / "labels", "out": root / "out", "empty": empty,
            "m0": d / "m0.heldout.full.h5", "heldout": sorted(d.glob("*.heldout.full.h5"))}


def _build(*extra):
    return lambda s: ["build", "--members", s["d"], "--labels", s["labels"], "--out", s["out"], "--folds", 2,
                      "--quiet", *extra]


def _evaluate(*extra):
    return lambda s: ["evaluate", "--members", s["d"], "--labels", s["labels"], "--quiet", *extra]


def _submit(*extra):
    return lambda s: ["submit", s["m0"], "--out", s["out"] / "s.csv", "--quiet", "--any-split", *extra]


def _import(*extra):
    def argv(s):
        src = s["out"].parent / "t.csv"
        src.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9\n")
        return ["import", src, "--model", "t", "--split", "test", "--out", s["out"], "--quiet", *extra]
    return argv


def _other_split(root: Path, **kw) -> Path:
    """members m0, m1 on heldout (C=20, top-5) and on test with ``kw`` (another C or k)."""
    d = root / "cross"
    for j in range(2):
        make_store(d / f"m{j}.heldout.full.h5", model=f"m{j}", split="heldout", seed=j)
        make_store(d / f"m{j}.test.full.h5", model=f"m{j}", split="test", seed=j + 5, **kw)
    return d


def _labels_of(root: Path, num_classes: int) -> Path:
    return make_labels(root / f"labels{num_classes}" / "labels.heldout.h5", ids_of(30), num_classes=num_classes).parent


CASES = {
    "build-test-split-with-other-class-count": (
        lambda s: ["build", "--members", _other_split(s["out"].parent, num_classes=30), "--out", s["out"], "--quiet"],
        ("m0.test.full.h5", "30 classes")),
    "build-test-split-with-other-k": (
        lambda s: ["build", "--members", _other_split(s["out"].parent, k=3), "--labels", s["labels"], "--out",
                   s["out"], "--weights", "lr", "--folds", 2, "--quiet"], ("m0.test.full.h5", "top-3")),
    "build-labels-with-other-class-count": (
        lambda s: ["build", "--members", *s["heldout"], "--labels", _labels_of(s["out"].parent, 30), "--out",
                   s["out"], "--quiet"], ("labels.heldout.h5", "30 classes")),
    "evaluate-labels-with-fewer-classes": (
        lambda s: ["evaluate", "--members", s["m0"], "--labels", _labels_of(s["out"].parent, 10), "--quiet"],
        ("m0.heldout.full.h5", "10")),
    # name: (argv(setup), needles)
    "build-chunk-rows-0": (_build("--chunk-rows", 0), ("--chunk-rows", "positive")),
    "build-chunk-rows-negative": (_build("--chunk-rows", -3), ("--chunk-rows",)),
    "build-k-0": (_build("--top", 0), ("--top", "positive")),
    "build-k-negative": (_build("--top", -1), ("--top",)),
    "build-old-k-alias-above-classes": (_build("--k", C + 1), ("--top", "classes")),
    "build-k-above-classes": (_build("--top", C + 1), ("--top", "classes")),
    "build-member-k-0": (_build("--member-k", 0), ("--member-k",)),
    "build-folds-1": (_build("--folds", 1), ("--folds",)),
    "build-seed-negative": (_build("--seed", -1, "--weights", "lr"), ("--seed",)),
    "build-unknown-scheme": (_build("--weights", "nope"), ("nope",)),
    "build-fit-split-absent": (_build("--fit-split", "dev", "--weights", "lr"), ("dev",)),
    "build-scheduler-not-an-address": (_build("--scheduler", "nonsense://x"), ("--scheduler", "nonsense")),
    "build-scheduler-local-abc": (_build("--scheduler", "local:abc"), ("local:abc",)),
    "build-scheduler-local-0": (_build("--scheduler", "local:0"), ("local:0",)),
    "build-single-file-three-splits": (
        lambda s: ["build", "--members", s["d"], "--out", s["out"] / "ens.h5", "--quiet"],
        ("ens.h5", "3 splits", "eval, heldout, test")),
    "build-zero-video-member": (
        lambda s: ["build", "--members", *s["heldout"], s["empty"], "--out", s["out"], "--quiet"],
        ("e0.heldout.full.h5", "no video")),
    "evaluate-chunk-rows-0": (_evaluate("--chunk-rows", 0), ("--chunk-rows",)),
    "evaluate-k-0": (_evaluate("--gap-k", 0), ("--gap-k",)),
    "evaluate-k-negative": (_evaluate("--gap-k", -5), ("--gap-k",)),
    "evaluate-split-without-labels": (_evaluate("--split", "test"), ("labels.test.h5",)),
    "evaluate-zero-video-store": (
        lambda s: ["evaluate", "--members", s["empty"], "--labels", s["labels"], "--quiet"],
        ("e0.heldout.full.h5", "no video")),
    "evaluate-scheduler-not-an-address": (_evaluate("--scheduler", "xyz"), ("--scheduler",)),
    "submit-zero-video-store": (lambda s: ["submit", s["empty"], "--out", s["out"] / "s.csv", "--quiet", "--any-split"],
                                ("e0.heldout.full.h5", "no video")),
    "submit-top-0": (_submit("--top", 0), ("top",)),
    "submit-top-negative": (_submit("--top", -2), ("top",)),
    "submit-precision-13": (_submit("--precision", 13), ("precision",)),
    "submit-precision-negative": (_submit("--precision", -1), ("precision",)),
    "import-classes-0": (_import("--classes", 0), ("--classes",)),
    "import-classes-2^25": (_import("--classes", 2**25), ("--classes",)),
    "import-model-empty": (lambda s: [a if a != "t" else "" for a in _import()(s)], ("--model",)),
    "import-split-with-slash": (lambda s: [a if a != "test" else "a/b" for a in _import()(s)], ("--split",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_error_and_nothing_written(case, tmp_path, capsys):
    make_argv, needles = CASES[case]
    s = _setup(tmp_path)
    argv = make_argv(s)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", *needles)
    assert snapshot(tmp_path) == before
    assert not s["out"].exists() or not any(s["out"].iterdir())


# --------------------------------------------------------------------------- attributes of the wrong type

def _attr(name, value):
    def mutate(p):
        with h5py.File(p, "r+") as f:
            f.attrs[name] = value
    return mutate


ATTR_CASES = {
    "format-version-text": _attr("format_version", "one"),
    "format-version-array": _attr("format_version", np.array([1, 1])),
    "n-negative": _attr("n", -1),
    "n-too-large": _attr("n", 31),
    "k-text": _attr("k", "five"),
    "k-zero-topk": _attr("k", 0),
    "num-classes-zero": _attr("num_classes", 0),
    "num-classes-float": _attr("num_classes", 2.5),
    "layout-unknown": _attr("layout", "sparse"),
    "kind-unknown": _attr("kind", "pictures"),
    "checksum-number": _attr("checksum", 5),
    "crop-number": _attr("crop", 3.5),
}


@pytest.mark.parametrize("command", ["build", "evaluate", "submit"])
@pytest.mark.parametrize("case", sorted(ATTR_CASES))
def test_attribute_of_the_wrong_type(case, command, tmp_path, capsys):
    s = _setup(tmp_path)
    ATTR_CASES[case](s["m0"])
    argv = {"build": _build(), "evaluate": _evaluate(), "submit": _submit()}[command](s)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", "m0.heldout.full.h5")
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- produce (fixed by the lead)

def _checkpoint(content):
    def prepare(cfg_path: Path):
        import torch

        ckpt = cfg_path.parent / "runs" / "job" / "checkpoints"
        ckpt.mkdir(parents=True)
        torch.save(content, ckpt / "best.pt")
    return prepare


PRODUCE_CASES = {
    "lr-nan": ("train", lambda p: p.write_text(p.read_text().replace("[train]\n", "[train]\nlr = nan\n")), "lr"),
    "lr-inf": ("train", lambda p: p.write_text(p.read_text().replace("[train]\n", "[train]\nlr = inf\n")), "lr"),
    "device-cuda-7": ("train", lambda p: p.write_text(p.read_text().replace('device = "cpu"', 'device = "cuda:7"')),
                      "cuda:7"),
    "checkpoint-dict-without-model": ("predict", _checkpoint({"foo": 1}), "best.pt"),
    "checkpoint-list": ("predict", _checkpoint([1, 2, 3]), "best.pt"),
}


@pytest.mark.parametrize("case", sorted(PRODUCE_CASES))
def test_produce_one_line_error(case, small_data, tmp_path, capsys):
    import torch

    command, prepare, needle = PRODUCE_CASES[case]
    if case == "device-cuda-7" and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    cfg = job_toml(tmp_path / "job.toml", f"{small_data}/video/train-*.tfrecord")
    prepare(cfg)
    rc, err = cli(produce, [command, cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", needle)
    if command == "train":
        assert not (tmp_path / "runs").exists(), "a failed train left its job directory"
    else:
        assert not (tmp_path / "runs" / "predictions").exists() or not any((tmp_path / "runs" / "predictions")
                                                                            .iterdir())
