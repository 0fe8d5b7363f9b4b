"""Outputs are never written in the wrong place, never replace what they must not, never left half-done.

Kind "outputs" of the robustness table. Every output path of ``ensemble submit``, ``import`` and
``build`` is checked before any work: a FIFO, a device node, a symbolic link or a directory at the
target is refused and left as it was (``os.replace`` onto a device would replace the node itself:
we run as root); a parent that is a file, a name too long, a read-only or full file system give
one line and no file. A build that fails at any point leaves no store, no record and no temporary
file, and a previous ensemble stays byte-identical. Temporary files of killed runs (dead pid, same
host) are removed by the next write into their directory.

Special files are made only inside each test's own tmp dir (``os.mkfifo``, ``os.mknod`` with the
null device's numbers), never under /dev.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions import atomic
from predictions.store import open_store

from .conftest import (SPECIAL_KINDS, assert_clear_error, cli, dead_pid, ids_of, make_labels, make_store, snapshot,
                       special, still_special)

SPLITS = ("heldout", "eval", "test")


def _members(root: Path, n: int = 30) -> tuple[Path, Path]:
    """m0, m1 on heldout/eval/test; labels for heldout and eval."""
    d = root / "preds"
    for split in SPLITS:
        for j in range(2):
            make_store(d / f"m{j}.{split}.full.h5", model=f"m{j}", split=split, seed=10 * j + len(split), n=n)
    for split in ("heldout", "eval"):
        make_labels(root / "labels" / f"labels.{split}.h5", ids_of(n), split=split)
    return d, root / "labels"


def _csv(root: Path) -> Path:
    src = root / "team.csv"
    src.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9 7 0.5\nv2,1 0.8\n")
    return src


def _argv(command: str, root: Path, out: Path, extra=()) -> list:
    if command == "submit":
        store = make_store(root / "in" / "m0.test.full.h5", split="test")
        return ["submit", store, "--out", out, "--quiet", *extra]
    if command == "import":
        return ["import", _csv(root), "--model", "team", "--split", "test", "--classes", 20, "--out", out,
                "--quiet", *extra]
    d, labels = _members(root)
    if command == "build-file":
        return ["build", "--members", *sorted(d.glob("*.heldout.full.h5")), "--labels", labels, "--out", out,
                "--folds", 2, "--quiet", *extra]
    return ["build", "--members", d, "--labels", labels, "--out", out, "--folds", 2, "--quiet", *extra]


def _target(command: str, root: Path) -> Path:
    """The file a command writes: submit/import name it; build-file writes x.h5."""
    return {"submit": root / "out" / "sub.csv", "import": root / "out" / "team.h5",
            "build-file": root / "out" / "ens.h5"}[command]


# --------------------------------------------------------------------------- special files at the target

TARGET_CASES = [(c, k) for c in ("submit", "import", "build-file") for k in SPECIAL_KINDS + ("link-to-file",)
                if not (c in ("build-file", "import") and k == "directory")]  # an existing dir: --out as a directory


@pytest.mark.parametrize("command,kind", TARGET_CASES, ids=[f"{c}-{k}" for c, k in TARGET_CASES])
def test_special_file_at_the_target_is_refused_and_kept(command, kind, tmp_path, capsys):
    target = _target(command, tmp_path)
    if kind == "link-to-file":
        (tmp_path / "out").mkdir()
        (tmp_path / "real.txt").write_text("precious\n")
        target.symlink_to(tmp_path / "real.txt")
    else:
        special(kind, target)
    argv = _argv(command, tmp_path, target)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    line = assert_clear_error(rc, err, "ensemble", target.name)
    assert "refusing to replace" in line or "directory" in line, line
    if kind == "link-to-file":
        assert target.is_symlink() and (tmp_path / "real.txt").read_text() == "precious\n"
    else:
        still_special(kind, target)
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- where the output goes

def _parent_is_file(root: Path, command: str) -> Path:
    (root / "afile").write_text("x")
    return root / "afile" / ("ens" if command == "build-dir" else _target(command, root).name)


def _long_name(root: Path, command: str) -> Path:
    return root / "out" / ("e" * 300 + (".csv" if command == "submit" else ".h5"))


def _empty(root: Path, command: str) -> str:
    return ""


LOCATION_CASES = {
    "empty-out": (_empty, "--out is empty"),
    "parent-is-a-file": (_parent_is_file, "not a directory"),
    "name-300-bytes": (_long_name, "bytes long"),
}
LOCATION_COMMANDS = ("submit", "import", "build-file", "build-dir")


@pytest.mark.parametrize("command", LOCATION_COMMANDS)
@pytest.mark.parametrize("case", sorted(LOCATION_CASES))
def test_bad_output_location(case, command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty --out must not write here either (it once meant ".")
    make, needle = LOCATION_CASES[case]
    if case == "name-300-bytes" and command == "build-dir":
        pytest.skip("a directory --out has no file name: see test_build_name_too_long")
    out = make(tmp_path, command)
    argv = _argv("build" if command == "build-dir" else command, tmp_path, out)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", needle)
    assert snapshot(tmp_path) == before


def test_build_out_is_a_regular_file(tmp_path, capsys):
    out = tmp_path / "outfile"
    out.write_text("mine\n")
    argv = _argv("build", tmp_path, out)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", "outfile", "expected a directory")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("length", [129, 300])
def test_build_name_too_long(length, tmp_path, capsys):
    argv = _argv("build", tmp_path, tmp_path / "out", extra=["--name", "n" * length])
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", f"{length} characters")
    assert not (tmp_path / "out").exists()


FS_ERRORS = {"read-only-fs": errno.EROFS, "permission": errno.EACCES, "no-space": errno.ENOSPC,
             "quota": errno.EDQUOT}


@pytest.mark.parametrize("command", ("submit", "import", "build-dir"))
@pytest.mark.parametrize("case", sorted(FS_ERRORS))
def test_file_system_refuses_the_write(case, command, tmp_path, capsys, monkeypatch):
    """As root a chmod'ed directory is still writable: the file system's refusal is simulated where
    the temporary file is made (read-only, permission) or flushed (full disk, quota)."""
    code = FS_ERRORS[case]
    out = tmp_path / "out" / ("sub.csv" if command == "submit" else "team.h5") if command != "build-dir" \
        else tmp_path / "out"
    argv = _argv("build" if command == "build-dir" else command, tmp_path, out)
    (tmp_path / "out").mkdir(exist_ok=True)
    before = snapshot(tmp_path)

    def refuse(*a, **k):
        raise OSError(code, os.strerror(code))

    if code in (errno.EROFS, errno.EACCES):
        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)   # the directory refuses a new file
    else:
        monkeypatch.setattr(atomic, "_fsync", refuse)             # the data does not fit
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", os.strerror(code))
    assert snapshot(tmp_path) == before, "a refused write left a file"


@pytest.mark.parametrize("command", ("submit", "import", "build-dir"))
def test_output_under_a_missing_directory_is_created(command, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / ("sub.csv" if command == "submit" else "team.h5")
    if command == "build-dir":
        out = tmp_path / "new" / "deeper"
    rc, err = cli(ensemble, _argv("build" if command == "build-dir" else command, tmp_path, out), capsys)
    assert rc == 0, err
    assert out.exists()


@pytest.mark.parametrize("command", ("build-file", "import"))
def test_out_named_h5_that_is_a_directory_writes_into_it(command, tmp_path, capsys):
    out = _target(command, tmp_path)
    out.mkdir(parents=True)
    rc, err = cli(ensemble, _argv(command, tmp_path, out), capsys)
    assert rc == 0, err
    expected = (["ens-uniform.build.json", "ens-uniform.heldout.full.h5", "ens-uniform.model.npz"]
                if command == "build-file"
                else ["team.test.full.h5"])
    assert sorted(p.name for p in out.iterdir()) == expected


# --------------------------------------------------------------------------- a failed build leaves nothing

def _drop_label(labels: Path, split: str, n: int = 30):
    make_labels(labels / f"labels.{split}.h5", ids_of(n)[1:], split=split)


def _nan_in_test_member(d: Path):
    with h5py.File(d / "m1.test.full.h5", "r+") as f:
        s = f["scores"][:]
        s[7, 0] = np.nan
        f["scores"][:] = s


def _flip_eval_member(d: Path):
    with h5py.File(d / "m1.eval.full.h5", "r+") as f:
        s = f["scores"][:]
        s[4, 0] = np.nextafter(s[4, 0], np.float32(2))  # a valid score, another value: only the checksum sees it
        f["scores"][:] = s


BUILD_FAILURES = {
    # name: (mutate(members dir, labels dir), scheme, extra args, needles)
    "eval-labels-miss-a-video-fixed": (lambda d, l: _drop_label(l, "eval"), "uniform", [],
                                       ("labels.eval.h5", "no entry", "v00000")),
    "eval-labels-miss-a-video-learned": (lambda d, l: _drop_label(l, "eval"), "lr", [],
                                         ("labels.eval.h5", "no entry")),
    "fit-labels-miss-a-video-learned": (lambda d, l: _drop_label(l, "heldout"), "lr", [],
                                        ("labels.heldout.h5", "no entry")),
    "fit-labels-miss-a-video-fixed": (lambda d, l: _drop_label(l, "heldout"), "uniform", [],
                                      ("labels.heldout.h5", "no entry")),
    "nan-in-last-split-no-verify": (lambda d, l: _nan_in_test_member(d), "uniform", ["--no-verify"],
                                    ("m1.test.full.h5", "NaN")),
    "checksum-of-eval-member": (lambda d, l: _flip_eval_member(d), "uniform", [],
                                ("m1.eval.full.h5", "checksum mismatch")),
    "k-above-classes": (lambda d, l: None, "uniform", ["--top", "21"], ("--top 21", "classes")),
}


@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-previous"])
@pytest.mark.parametrize("case", sorted(BUILD_FAILURES))
def test_failed_build_writes_nothing(case, previous, tmp_path, capsys):
    mutate, scheme, extra, needles = BUILD_FAILURES[case]
    d, labels = _members(tmp_path)
    out = tmp_path / "out"
    if previous:
        rc, err = cli(ensemble, ["build", "--members", d, "--labels", labels, "--out", out, "--weights", scheme,
                                 "--folds", 2, "--quiet"], capsys)
        assert rc == 0, err
    mutate(d, labels)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, ["build", "--members", d, "--labels", labels, "--out", out, "--weights", scheme,
                             "--folds", 2, "--quiet", *extra], capsys)
    assert_clear_error(rc, err, "ensemble", *needles)
    assert snapshot(tmp_path) == before, "a failed build wrote, replaced or left a file"
    assert out.exists() == previous, "a failed build left its output directory behind"


# --------------------------------------------------------------------------- temporary files of killed runs

@pytest.mark.parametrize("command", ("submit", "import", "build-dir", "build-file"))
def test_stale_temporaries_of_dead_runs_are_removed(command, tmp_path, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    host = atomic._HOST
    other = "000000" if host != "000000" else "111111"
    dead = out_dir / f".sub.csv.tmp{dead_pid()}.{host}.abcd1234"
    alive = out_dir / f".sub.csv.tmp{os.getpid()}.{host}.abcd1234"     # this process: a live writer
    foreign = out_dir / f".sub.csv.tmp{dead_pid()}.{other}.abcd1234"   # another host: its pid means nothing here
    user = out_dir / ".notes.tmp.txt"                                   # not ours at all
    for p in (dead, alive, foreign, user):
        p.write_text("partial")
    target = {"submit": out_dir / "sub.csv", "import": out_dir / "team.h5", "build-dir": out_dir,
              "build-file": out_dir / "ens.h5"}[command]
    rc, err = cli(ensemble, _argv("build" if command == "build-dir" else command, tmp_path, target), capsys)
    assert rc == 0, err
    assert not dead.exists(), "the temporary file of a dead run was not removed"
    assert alive.exists() and foreign.exists() and user.exists()
    left = [p.name for p in out_dir.iterdir() if p.name.startswith(".") and p not in (alive, foreign, user)]
    assert not left, f"this run left temporaries or a lock behind: {left}"


def test_long_target_names_get_a_short_temporary_name(tmp_path):
    """A 250-byte target name (legal) must not make its temporary name illegal (> 255 bytes)."""
    target = tmp_path / ("x" * 250 + ".csv")
    with atomic.atomic_path(target) as tmp:
        assert len(tmp.name.encode()) <= 255 and tmp.name.startswith(".x")
        tmp.write_text("ok\n")
    assert target.read_text() == "ok\n"


def test_atomic_set_commits_all_or_nothing(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError):
        with atomic.AtomicSet() as s:
            s.add(a).write_text("new a")
            s.add(b).write_text("new b")
            raise RuntimeError("killed half-way")
    assert a.read_text() == "old a" and not b.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    with atomic.AtomicSet() as s:
        s.add(a).write_text("new a")
        s.add(b).write_text("new b")
        assert a.read_text() == "old a" and not b.exists()  # nothing visible before the commit
    assert a.read_text() == "new a" and b.read_text() == "new b"


def test_store_written_over_a_fifo_through_the_api_is_refused(tmp_path):
    """The library itself refuses, not only the CLI: write_store onto a FIFO."""
    from predictions.errors import InputError

    fifo = special("fifo", tmp_path / "m.h5")
    with pytest.raises(InputError, match="a FIFO: refusing to replace it"):
        make_store(fifo)
    still_special("fifo", fifo)
    with open_store(make_store(tmp_path / "ok.h5")) as s:
        s.verify()


# --------------------------------------------------------------------------- an output onto an input

def _self_submit(root: Path):
    store = make_store(root / "m0.test.full.h5", split="test")
    return ["submit", store, "--out", store, "--quiet", "--no-verify"], store


def _hardlink_submit(root: Path):
    store = make_store(root / "m0.test.full.h5", split="test")
    os.link(store, root / "alias.csv")
    return ["submit", store, "--out", root / "alias.csv", "--quiet"], store


def _import_onto_csv(root: Path):
    src = root / "team.h5"                       # a CSV that happens to be named .h5
    src.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9\n")
    return ["import", src, "--model", "team", "--split", "test", "--classes", 20, "--out", src, "--quiet"], src


def _build_onto_member(root: Path):
    d, labels = _members(root)
    m0 = d / "m0.heldout.full.h5"
    return ["build", "--members", m0, d / "m1.heldout.full.h5", "--out", m0, "--quiet"], m0


def _build_name_collides_with_member(root: Path):
    d, labels = _members(root)
    victim = make_store(d / "ens-uniform.heldout.full.h5", model="m9", seed=9)  # a member, named like the output
    return ["build", "--members", d, "--labels", labels, "--out", d, "--folds", 2, "--quiet"], victim


def _build_onto_labels(root: Path):
    d, labels = _members(root)
    lab = labels / "labels.heldout.h5"
    return ["build", "--members", *sorted(d.glob("*.heldout.full.h5")), "--labels", lab, "--out", lab,
            "--quiet"], lab


SELF_CASES = {"submit-onto-its-store": _self_submit, "submit-onto-a-hard-link-of-its-store": _hardlink_submit,
              "import-onto-its-csv": _import_onto_csv, "build-file-onto-a-member": _build_onto_member,
              "build-name-collides-with-a-member": _build_name_collides_with_member,
              "build-file-onto-the-labels": _build_onto_labels}


@pytest.mark.parametrize("case", sorted(SELF_CASES))
def test_output_onto_an_input_is_refused(case, tmp_path, capsys):
    argv, victim = SELF_CASES[case](tmp_path)
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, argv, capsys)
    assert_clear_error(rc, err, "ensemble", "would replace the input", victim.name)
    assert snapshot(tmp_path) == before
