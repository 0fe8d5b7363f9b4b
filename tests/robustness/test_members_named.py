"""Nothing a user named is silently dropped: what cannot be read is an error naming it.

Kind "members" of the robustness table. A member directory or glob that holds a dangling symbolic
link, a FIFO, a device (or a link to one), a directory named like a store, a store with an unknown
``crop`` attribute, or one model with both a whole-video store and crop stores: ``ensemble build``
and ``evaluate`` exit 1 naming that file, never "ensemble over 1 members". ``submit``/``import`` on a
FIFO fail at once (they used to block forever). The same holds for labels files and for the TFRecord
shards of ``produce``.

Special files are made only in each test's own tmp dir.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import h5py
import pytest

from ensembler.cli import main as ensemble
from predictions.errors import InputError

from .conftest import (SPECIAL_KINDS, assert_clear_error, cli, ids_of, make_labels, make_store, snapshot, special,
                       still_special)


def _dir_with_members(root: Path) -> tuple[Path, Path]:
    d = root / "preds"
    make_store(d / "m0.heldout.full.h5", model="m0", seed=1)
    make_store(d / "m1.heldout.full.h5", model="m1", seed=2)
    make_labels(root / "labels" / "labels.heldout.h5", ids_of(30))
    return d, root / "labels"


def _set_attr(name, value):
    def mutate(d: Path) -> Path:
        p = make_store(d / "m2.heldout.full.h5", model="m2", seed=3)
        with h5py.File(p, "r+") as f:
            f.attrs[name] = value
        return p
    return mutate


def _full_and_crops(d: Path) -> Path:
    make_store(d / "m2.heldout.full.h5", model="m2", seed=3)
    from predictions.store import write_store

    from .conftest import topk_preds
    write_store(d / "m2.heldout.crop0.h5", topk_preds(ids_of(30), seed=4), model="m2", split="heldout", crop="0")
    return d / "m2.heldout.full.h5"


def _loop(d: Path) -> Path:
    a, b = d / "m2.heldout.full.h5", d / "zz-other.h5"
    a.symlink_to(b.name)
    b.symlink_to(a.name)
    return a


def _special_member(kind):
    def mutate(d: Path) -> Path:
        return special(kind, d / "m2.heldout.full.h5")
    return mutate


MEMBER_CASES = {
    **{f"special-{k}": (_special_member(k), "m2.heldout.full.h5") for k in SPECIAL_KINDS},
    "symlink-loop": (_loop, "Too many levels of symbolic links"),
    "crop-attribute-weird": (_set_attr("crop", "weird"), "crop"),
    "crop-attribute-negative": (_set_attr("crop", "-1"), "crop"),
    "crop-attribute-empty": (_set_attr("crop", ""), "crop"),
    "full-and-crop-stores-of-one-model": (_full_and_crops, "both"),
}


@pytest.mark.parametrize("how", ["directory", "glob", "explicit"])
@pytest.mark.parametrize("command", ["build", "evaluate"])
@pytest.mark.parametrize("case", sorted(MEMBER_CASES))
def test_unreadable_member_is_an_error_not_dropped(case, command, how, tmp_path, capsys):
    mutate, needle = MEMBER_CASES[case]
    d, labels = _dir_with_members(tmp_path)
    bad = mutate(d)
    members = {"directory": [d], "glob": [d / "*.h5"],
               "explicit": sorted(d.glob("m[01]*.h5")) + [bad] + sorted(d.glob("m2.heldout.crop*.h5"))}[how]
    before = snapshot(tmp_path)
    argv = (["build", "--members", *members, "--labels", labels, "--out", tmp_path / "out", "--folds", 2, "--quiet"]
            if command == "build" else ["evaluate", "--members", *members, "--labels", labels, "--quiet"])
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", bad.name, needle)
    assert snapshot(tmp_path) == before
    if case.startswith("special-"):
        still_special(case[len("special-"):], bad)


def test_a_missing_member_among_good_ones_is_named(tmp_path, capsys):
    d, labels = _dir_with_members(tmp_path)
    rc, err = cli(ensemble, ["build", "--members", d / "m0.heldout.full.h5", d / "m1.heldout.full.h5",
                             d / "gone.heldout.full.h5", "--out", tmp_path / "out", "--quiet"], capsys)
    assert_clear_error(rc, err, "ensemble", "gone.heldout.full.h5", "not found")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- labels files

LABEL_CASES = {
    **{f"special-{k}": (lambda d, k=k: special(k, d / "labels.eval.h5"), "labels.eval.h5") for k in SPECIAL_KINDS},
    "explicit-non-labels-name": (lambda d: make_labels(d / "truth.h5", ids_of(30)), "labels.<split>.h5"),
}


@pytest.mark.parametrize("command", ["build", "evaluate"])
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_unreadable_labels_file_is_an_error(case, command, tmp_path, capsys):
    mutate, needle = LABEL_CASES[case]
    d, labels = _dir_with_members(tmp_path)
    bad = mutate(labels)
    given = [labels, bad] if case == "explicit-non-labels-name" else [labels]
    before = snapshot(tmp_path)
    argv = (["build", "--members", d, "--labels", *given, "--out", tmp_path / "out", "--folds", 2, "--quiet"]
            if command == "build" else ["evaluate", "--members", d, "--labels", *given, "--quiet"])
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", bad.name, needle)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- inputs that would block

def _unblock(fifo: Path, fired: list):
    """Watchdog: if the command still blocks on the FIFO after 20 s, open its other end so the test
    fails instead of hanging."""
    def run():
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # nobody is blocked reading it: good
            return
        fired.append(True)
        os.close(fd)
    t = threading.Timer(20.0, run)
    t.daemon = True
    t.start()
    return t


@pytest.mark.parametrize("kind", SPECIAL_KINDS)
@pytest.mark.parametrize("command", ["submit", "import"])
def test_submit_and_import_refuse_special_inputs_without_blocking(command, kind, tmp_path, capsys):
    src = special(kind, tmp_path / ("m0.test.full.h5" if command == "submit" else "team.csv"))
    fired: list = []
    timer = _unblock(src, fired) if kind == "fifo" else None
    argv = (["submit", src, "--out", tmp_path / "sub.csv", "--quiet"] if command == "submit" else
            ["import", src, "--model", "t", "--split", "test", "--classes", 20, "--out", tmp_path / "o", "--quiet"])
    try:
        rc, err = cli(ensemble, argv, capsys)
    finally:
        if timer is not None:
            timer.cancel()
    assert not fired, "the command blocked on the FIFO"
    assert_clear_error(rc, err, "ensemble", src.name)
    assert not (tmp_path / "sub.csv").exists() and not (tmp_path / "o").exists()
    still_special(kind, src)


# --------------------------------------------------------------------------- TFRecord shards

@pytest.mark.parametrize("how", ["directory", "glob"])
@pytest.mark.parametrize("kind", SPECIAL_KINDS)
def test_unreadable_shard_among_training_shards_is_an_error(kind, how, small_data, tmp_path):
    import shutil

    from producers.data.readers import load_video_level, scan_ids

    d = tmp_path / "shards"
    d.mkdir()
    for p in sorted((small_data / "video").glob("train-*.tfrecord")):
        shutil.copy(p, d / p.name)
    bad = special(kind, d / "train-0002-of-0003.tfrecord")
    pattern = d if how == "directory" else d / "train-*.tfrecord"
    for read in (lambda: load_video_level(pattern, num_classes=20), lambda: scan_ids(pattern)):
        with pytest.raises(InputError) as err:
            read()
        assert bad.name in str(err.value) and "\n" not in str(err.value)
    still_special(kind, bad)
