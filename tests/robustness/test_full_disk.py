"""A full (or read-only) disk is one line naming the output, exit 1, and no temporary file left.

Each case writes one output of the predictions layer into a tiny tmpfs mounted by the test in
its own tmp dir (``mount -t tmpfs -o size=200k``; skipped when not root or when mounting fails),
filled up to a few KiB before the write, in a subprocess: before issue 25, HDF5's "errno = 28"
left its file half-closed and the process died in h5py (SIGSEGV, exit -11) instead.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import C, REPO, assert_clear_error, ids_of, make_labels, make_store
from .test_bounded import _RUN

SLACK = 8 << 10   # bytes left free on the "full" tmpfs


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def tmpfs(tmp_path):
    """A 200 KiB tmpfs mounted at ``tmp_path/disk`` (unmounted after the test)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    d = tmp_path / "disk"
    d.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(d)], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {p.stderr.decode(errors='replace').strip()}")
    try:
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)


def _fill(d: Path, leave: int = SLACK) -> None:
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    with open(d / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    os.sync()


def _left(d: Path) -> list[str]:
    """Everything under ``d`` but the filler: must be empty after a refused write."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != "filler")


def _api(code: str):
    return subprocess.run([sys.executable, "-c", _RUN, code], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=120)


def _ensemble(*argv):
    return subprocess.run([sys.executable, "-m", "ensembler.cli", *map(str, argv)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)


_STORE = ("import numpy as np\nfrom predictions.types import Predictions\n"
          "n = 3000\nids = np.array([f'v{i:05d}' for i in range(n)])\n"
          "sc = np.tile(np.linspace(1, 0.1, 5, dtype=np.float32), (n, 1))\n"
          "ix = np.tile(np.arange(5, dtype=np.int32), (n, 1))\np = Predictions(ids, sc, ix, 20)\n")


def _assert_refused(p, d: Path, prog: str, *needles):
    assert p.returncode != -11, "segmentation fault"
    assert_clear_error(p.returncode, p.stderr, prog, *needles)
    assert _left(d) == [], _left(d)


def test_write_store_on_a_full_disk(tmpfs):
    _fill(tmpfs)
    p = _api(_STORE + f"from predictions.store import write_store\n"
             f"write_store({str(tmpfs / 'm.h5')!r}, p, model='m', split='heldout')")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "m.h5"), "No space left on device")


def test_store_writer_when_only_fallocate_can_tell(tmpfs):
    """The free-space check skipped: the reservation itself (fallocate) refuses, before HDF5 writes."""
    _fill(tmpfs)
    p = _api(_STORE + "import predictions.storewriter as sw\nsw.check_free = lambda *a, **k: None\n"
             f"with sw.StoreWriter({str(tmpfs / 'm.h5')!r}, ids=ids, num_classes=20, k=5, model='m', "
             f"split='heldout') as w:\n    w.write(p)\n")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "m.h5"), "No space left on device")


def test_store_larger_than_the_whole_disk(tmpfs):
    """Nothing filled: the store (3000 x 5 top-k, about 1.2 MiB with its margin) cannot fit in 200 KiB."""
    p = _api(_STORE.replace("n = 3000", "n = 30000") + "from predictions.store import write_store\n"
             f"write_store({str(tmpfs / 'm.h5')!r}, p, model='m', split='heldout')")
    _assert_refused(p, tmpfs, "api", "m.h5", "needs about")


def test_write_labels_on_a_full_disk(tmpfs):
    _fill(tmpfs)
    p = _api("import numpy as np\nfrom predictions.types import Labels\nfrom predictions.labels import write_labels\n"
             "ids = np.array([f'v{i:05d}' for i in range(3000)])\n"
             "lab = Labels.from_lists(ids, [[i % 20] for i in range(3000)], 20)\n"
             f"write_labels({str(tmpfs / 'l.h5')!r}, lab, split='heldout')")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "l.h5"), "No space left on device")


def test_write_submission_on_a_full_disk(tmpfs):
    _fill(tmpfs)
    p = _api(_STORE + "from predictions.csvio import write_submission\n"
             f"write_submission({str(tmpfs / 's.csv')!r}, p)")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "s.csv"), "No space left on device")


def test_atomic_write_text_on_a_full_disk(tmpfs):
    _fill(tmpfs)
    p = _api(f"from predictions.atomic import atomic_write_text\natomic_write_text({str(tmpfs / 'r.json')!r}, "
             f"'x' * 100000)")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "r.json"), "No space left on device")


def _csv(path: Path, n: int = 3000) -> Path:
    rows = "".join(f"v{i:05d},{i % C} 0.9 {(i + 1) % C} 0.5\n" for i in range(n))
    path.write_text("VideoId,LabelConfidencePairs\n" + rows)
    return path


def test_csv_member_cache_import_on_a_full_disk(tmpfs, tmp_path):
    src = _csv(tmp_path / "team.heldout.csv")
    _fill(tmpfs)
    p = _api(f"from predictions.csvimport import cached_store\n"
             f"cached_store({str(src)!r}, num_classes={C}, cache_dir={str(tmpfs / 'cache')!r})")
    assert p.returncode != -11
    assert_clear_error(p.returncode, p.stderr, "api", "No space left on device", str(tmpfs))
    assert not [x for x in _left(tmpfs) if x.endswith(".h5") or ".tmp" in x], _left(tmpfs)


def test_ensemble_import_on_a_full_disk(tmpfs, tmp_path):
    src = _csv(tmp_path / "team.csv")
    _fill(tmpfs)
    p = _ensemble("import", src, "--model", "team", "--split", "test", "--classes", C, "--out", tmpfs, "--quiet")
    _assert_refused(p, tmpfs, "ensemble", "No space left on device", str(tmpfs))


def test_ensemble_evaluate_csv_member_into_a_full_cache(tmpfs, tmp_path):
    ids = np.array([f"v{i:05d}" for i in range(3000)])
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids, split="heldout")
    src = _csv(tmp_path / "team.heldout.csv")
    _fill(tmpfs)
    p = _ensemble("evaluate", "--members", src, "--labels", tmp_path / "labels", "--classes", C,
                  "--csv-cache", tmpfs / "cache", "--quiet")
    assert p.returncode != -11
    assert_clear_error(p.returncode, p.stderr, "ensemble", "No space left on device")
    assert not [x for x in _left(tmpfs) if x.endswith(".h5") or ".tmp" in x], _left(tmpfs)


def test_ensemble_build_on_a_full_disk(tmpfs, tmp_path):
    ids = ids_of(300)
    for split in ("heldout", "eval"):
        for j in range(2):
            make_store(tmp_path / "preds" / f"m{j}.{split}.full.h5", n=300, model=f"m{j}", split=split, seed=j)
        make_labels(tmp_path / "labels" / f"labels.{split}.h5", ids, split=split)
    _fill(tmpfs)
    p = _ensemble("build", "--weights=uniform", "--members", tmp_path / "preds", "--labels", tmp_path / "labels",
                  "--out", tmpfs, "--quiet")
    _assert_refused(p, tmpfs, "ensemble", "No space left on device", str(tmpfs))


def test_read_only_mount(tmpfs):
    """EROFS: refused before anything is written, naming the path."""
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    p = _api(_STORE + f"from predictions.store import write_store\n"
             f"write_store({str(tmpfs / 'm.h5')!r}, p, model='m', split='heldout')")
    assert p.returncode != -11
    assert_clear_error(p.returncode, p.stderr, "api", str(tmpfs / "m.h5"), "not writable")


def test_estimate_covers_every_layout(tmp_path):
    """The reservation is never smaller than what HDF5 allocates (partial last chunks included)."""
    from predictions.storewriter import StoreWriter
    from predictions.types import Predictions
    rng = np.random.default_rng(0)
    for n, c, k, comp, dt in [(1, 5, 2, None, "float32"), (1, 100000, None, None, "float32"),
                              (3000, 3862, None, None, "float16"), (3001, 3862, None, None, "float32"),
                              (3000, 500, None, "gzip", "float32"), (20000, 100, 100, "lzf", "float32"),
                              (4097, 10, 3, None, "float32"), (50000, 3862, 20, "gzip", "float32")]:
        ids = np.array([f"vid{i:07d}" for i in range(n)])
        w = k or c
        idx = np.tile(np.arange(w, dtype=np.int32), (n, 1)) if k else None
        sc = rng.random((n, w)).astype(np.float32)
        if k:
            sc = -np.sort(-sc, axis=1)
        path = tmp_path / f"s{n}.{c}.h5"
        sw = StoreWriter(path, ids=ids, num_classes=c, k=k, model="m", split="s", compression=comp, dtype=dt)
        with sw as out:
            out.write(Predictions(ids, sc, idx, c))
        st = os.stat(path)
        assert sw._disk_bytes() >= st.st_blocks * 512, (n, c, k, comp, dt, st.st_blocks * 512, sw._disk_bytes())
        assert st.st_blocks * 512 < st.st_size + (1 << 20), "the reservation past the end was not released"
