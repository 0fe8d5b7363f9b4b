"""Two builds of the same outputs never leave a mixed set.

Kind "concurrency" of the robustness table. ``ensemble build`` holds ``.<name>.lock`` beside its
outputs (``flock``: the kernel releases it when the process dies, so a crash never blocks the next
run) for the whole build, and writes its stores and record to temporary files renamed together at
the end. A second build of the same ``--out``/``--name`` while the first runs exits 1 with one line
naming the lock; with another ``--name`` it runs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions.atomic import output_lock
from predictions.store import write_store
from predictions.types import Predictions

from .conftest import REPO, assert_clear_error, cli, dead_pid, ids_of, make_labels, make_store, snapshot


def _two_member_sets(root: Path, n: int = 30) -> tuple[Path, Path, Path]:
    a, b = root / "set-a", root / "set-b"
    for d, seeds in ((a, (1, 2)), (b, (3, 4))):
        for split in ("heldout", "test"):
            for j, seed in enumerate(seeds):
                make_store(d / f"{d.name[-1]}{j}.{split}.full.h5", model=f"{d.name[-1]}{j}", split=split,
                           seed=seed + len(split), n=n)
    make_labels(root / "labels" / "labels.heldout.h5", ids_of(n))
    return a, b, root / "labels"


def _build(members, labels, out, *extra):
    return ["build", "--members", members, "--labels", labels, "--out", out, "--folds", 2, "--quiet", *extra]


LOCK_CASES = {
    # name: (out relative to tmp, lock relative to tmp, extra args)
    "directory-default-name": ("out", "out/.ens-uniform.lock", []),
    "directory-named": ("out", "out/.mine.lock", ["--name", "mine"]),
    "single-file": ("out/ens.h5", "out/.ens.h5.lock", []),
}


@pytest.mark.parametrize("case", sorted(LOCK_CASES))
def test_build_while_another_holds_the_lock_is_refused(case, tmp_path, capsys):
    out_rel, lock_rel, extra = LOCK_CASES[case]
    a, b, labels = _two_member_sets(tmp_path)
    members = a if case != "single-file" else a / "a*.heldout.full.h5"
    out, lock = tmp_path / out_rel, tmp_path / lock_rel
    with output_lock(lock):
        before = snapshot(tmp_path)
        rc, err = cli(ensemble, _build(members, labels, out, *extra), capsys)
        assert_clear_error(rc, err, "ensemble", lock.name, "another run is writing", f"pid {os.getpid()}")
        assert snapshot(tmp_path) == before
    rc, err = cli(ensemble, _build(members, labels, out, *extra), capsys)  # released: it runs
    assert rc == 0, err
    assert not lock.exists()


def test_other_name_in_the_same_directory_is_not_blocked(tmp_path, capsys):
    a, b, labels = _two_member_sets(tmp_path)
    out = tmp_path / "out"
    with output_lock(out / ".ens-uniform.lock"):
        rc, err = cli(ensemble, _build(a, labels, out, "--name", "other"), capsys)
        assert rc == 0, err
    assert (out / "other.build.json").exists()


def test_lock_left_by_a_killed_run_does_not_block(tmp_path, capsys):
    a, b, labels = _two_member_sets(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".ens-uniform.lock").write_text(f"{dead_pid()} somehost\n")   # a file, no process holds it
    rc, err = cli(ensemble, _build(a, labels, out), capsys)
    assert rc == 0, err
    assert not (out / ".ens-uniform.lock").exists()


def test_lock_path_that_is_a_symlink_is_not_followed(tmp_path, capsys):
    a, b, labels = _two_member_sets(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (out / ".ens-uniform.lock").symlink_to(victim)
    rc, err = cli(ensemble, _build(a, labels, out), capsys)
    assert_clear_error(rc, err, "ensemble", ".ens-uniform.lock", "lock")
    assert victim.read_text() == "keep me\n" and (out / ".ens-uniform.lock").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == [".ens-uniform.lock"]


def test_failed_build_releases_its_lock(tmp_path, capsys):
    a, b, labels = _two_member_sets(tmp_path)
    out = tmp_path / "out"
    rc, err = cli(ensemble, _build(a, labels, out, "--k", 999), capsys)  # fails after the fit
    assert rc == 1
    assert not out.exists(), "the failed build left its (empty) output directory"
    rc, err = cli(ensemble, _build(a, labels, out), capsys)
    assert rc == 0, err


# --------------------------------------------------------------------------- two real processes


def _big_sets(root: Path, n: int = 20000) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    ids = np.array([f"vid{i:06d}" for i in range(n)])
    for name in ("a", "b"):
        for j in range(2):
            for split in ("heldout", "test"):
                idx = np.argsort(rng.random((n, 100)), axis=1)[:, :20].astype(np.int32)
                sc = -np.sort(-rng.random((n, 20)).astype(np.float32), axis=1)
                write_store(root / f"set-{name}" / f"{name}{j}.{split}.full.h5",
                            Predictions(ids, sc, idx, 100), model=f"{name}{j}", split=split)
    from predictions.labels import write_labels
    from predictions.types import Labels

    write_labels(root / "labels" / "labels.heldout.h5",
                 Labels.from_lists(ids, [rng.choice(100, 3, replace=False) for _ in ids], 100), split="heldout")
    return root / "set-a", root / "set-b", root / "labels"


def test_two_concurrent_builds_leave_one_consistent_set(tmp_path):
    a, b, labels = _big_sets(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [subprocess.Popen([sys.executable, "-m", "ensembler.cli", *map(str, _build(m, labels, out))],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for m in (a, b)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    ok = [rc == 0 for rc, _ in results]
    assert any(ok), results
    for rc, err in results:
        if rc != 0:
            assert rc == 1 and "another run is writing" in err and ".ens-uniform.lock" in err, err
    record = json.loads((out / "ens-uniform.build.json").read_text())
    members = {p for m in record["members"] for p in m["paths"]}
    for split in ("heldout", "test"):
        with h5py.File(out / f"ens-uniform.{split}.full.h5", "r") as f:
            extra = json.loads(f.attrs["extra"])
        used = {Path(p).name for p in extra["ensemble"]["member_paths"]}
        assert {n[0] for n in used} == {Path(p).name[0] for p in members}, (split, used, members)
    assert sorted(p.name for p in out.iterdir()) == ["ens-uniform.build.json", "ens-uniform.heldout.full.h5",
                                                      "ens-uniform.model.npz", "ens-uniform.test.full.h5"]


def test_a_reader_of_the_old_outputs_is_not_disturbed_by_a_rebuild(tmp_path, capsys):
    """A store opened (by an evaluation, a submit) before a rebuild replaces it keeps reading the old,
    complete file: outputs are renamed into place, never rewritten in place."""
    from predictions.store import open_store

    a, b, labels = _two_member_sets(tmp_path)
    out = tmp_path / "out"
    assert cli(ensemble, _build(a, labels, out), capsys)[0] == 0
    with open_store(out / "ens-uniform.test.full.h5") as old:
        before = old.read()
        assert cli(ensemble, _build(b, labels, out), capsys)[0] == 0   # other members, same outputs
        old.verify()
        again = old.read()
    assert np.array_equal(before.indices, again.indices) and np.array_equal(before.scores, again.scores)
    with open_store(out / "ens-uniform.test.full.h5") as new:
        assert new.meta.extra["ensemble"]["members"] == ["b0", "b1"]


def test_concurrent_writers_of_one_file_leave_one_whole_file(tmp_path):
    """Eight threads write the same target at once (atomic_write_text): the result is one writer's
    whole text, and no temporary file is left."""
    import threading

    from predictions.atomic import atomic_write_text

    target = tmp_path / "same.txt"
    texts = [f"writer {i}\n" * 20000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write_text, args=(target, t)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_text() in texts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.txt"]
