"""The CSV-member cache never serves stale data and never races with itself (issue 25, item 1).

Cases: a member CSV edited in a middle row with its size and modification time kept (``touch
-r``, as ``rsync -t`` and ``cp -p`` do) used to be served from the cache as the old predictions
(the key hashed only the first and last 64 KiB); two builds sharing a cache with different class
counts, and two symbolic links to one CSV, used to end in "cache/<hash>/<name>.h5: file not found"
(writing a new version removed the other versions another build was about to read).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predictions import csvimport
from predictions.csvimport import cached_store, content_digest, stores_of_members
from predictions.errors import InputError
from predictions.store import open_store, read_store

from .conftest import C, REPO

ROWS = 20000    # about 600 KB: the middle row is far from both 64 KiB ends


def _csv(path: Path, rows: int = ROWS, score: str = "0.900000") -> Path:
    body = "".join(f"v{i:05d},{i % C} {score if i == rows // 2 else '0.800000'} {(i + 1) % C} 0.500000\n"
                   for i in range(rows))
    path.write_text("VideoId,LabelConfidencePairs\n" + body)
    return path


def test_middle_row_edited_with_size_and_time_kept_is_reimported(tmp_path):
    src = _csv(tmp_path / "team.heldout.csv")
    first, imported = cached_store(src, num_classes=C, cache_dir=tmp_path / "cache")
    assert imported and read_store(first).scores[ROWS // 2, 0] == np.float32(0.9)
    ref = tmp_path / "ref"
    ref.touch()
    os.utime(ref, ns=(os.stat(src).st_atime_ns, os.stat(src).st_mtime_ns))
    size = os.stat(src).st_size
    _csv(src, score="0.700000")                                   # same length, middle row only
    subprocess.run(["touch", "-r", str(ref), str(src)], check=True)  # size and mtime as before
    assert os.stat(src).st_size == size and os.stat(src).st_mtime_ns == os.stat(ref).st_mtime_ns
    again, imported = cached_store(src, num_classes=C, cache_dir=tmp_path / "cache")
    assert imported and again != first
    assert read_store(again).scores[ROWS // 2, 0] == np.float32(0.7)  # the new content, not the cached one


def test_unchanged_csv_is_a_hit(tmp_path):
    src = _csv(tmp_path / "team.heldout.csv", rows=100)
    first, imported = cached_store(src, num_classes=C, cache_dir=tmp_path / "c")
    assert imported
    again, imported = cached_store(src, num_classes=C, cache_dir=tmp_path / "c")
    assert again == first and not imported


def test_two_class_counts_keep_both_entries(tmp_path):
    src = _csv(tmp_path / "team.heldout.csv", rows=200)
    a, _ = cached_store(src, num_classes=C, cache_dir=tmp_path / "c")
    b, _ = cached_store(src, num_classes=C + 10, cache_dir=tmp_path / "c")
    assert a != b
    with open_store(a) as ra, open_store(b) as rb:  # the first build can still read its entry
        assert (ra.num_classes, rb.num_classes) == (C, C + 10)


_WORKER = """
import sys
from pathlib import Path
from predictions.csvimport import cached_store
from predictions.store import open_store
src, root, classes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
for i in range(12):
    path, _ = cached_store(src, num_classes=classes, cache_dir=root / f"c{i}")
    with open_store(path) as r:
        assert r.num_classes == classes and len(r) == 300
print("ok")
"""


def test_concurrent_builds_with_different_class_counts(tmp_path):
    """Two processes import the same CSV into the same (fresh) cache directories at once."""
    src = _csv(tmp_path / "team.heldout.csv", rows=300)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(src), str(tmp_path), str(c)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in (C, C + 7)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0 and out.strip() == "ok", err[-1500:]


def test_two_symlinks_to_one_csv(tmp_path):
    real = _csv(tmp_path / "real.csv", rows=150)
    for name in ("a.heldout.csv", "b.heldout.csv"):
        (tmp_path / name).symlink_to(real)
    paths = stores_of_members([tmp_path / "a.heldout.csv", tmp_path / "b.heldout.csv"], num_classes=C,
                              cache_dir=tmp_path / "cache")
    assert len(set(paths)) == 2
    for path, model in zip(paths, "ab"):
        with open_store(path) as r:
            assert r.meta.model == model and len(r) == 150
    again = stores_of_members([tmp_path / "a.heldout.csv"], num_classes=C, cache_dir=tmp_path / "cache")
    assert again == paths[:1] and Path(paths[1]).is_file()


def test_file_changed_during_the_import_is_refused(tmp_path, monkeypatch):
    src = _csv(tmp_path / "team.heldout.csv", rows=100)
    read = csvimport.read_predictions_csv

    def read_then_edit(path, num_classes, **kw):
        pred = read(path, num_classes, **kw)
        _csv(src, rows=100, score="0.600000")  # another process rewrites it meanwhile
        return pred

    monkeypatch.setattr(csvimport, "read_predictions_csv", read_then_edit)
    with pytest.raises(InputError, match="changed while it was being imported"):
        cached_store(src, num_classes=C, cache_dir=tmp_path / "c")
    assert not list((tmp_path / "c").rglob("*.h5"))


def test_old_unused_entries_are_pruned_fresh_ones_kept(tmp_path):
    src = _csv(tmp_path / "team.heldout.csv", rows=50)
    old, _ = cached_store(src, num_classes=C, cache_dir=tmp_path / "c")
    kept, _ = cached_store(src, num_classes=C + 1, cache_dir=tmp_path / "c")
    past = os.stat(old).st_mtime - (csvimport.PRUNE_DAYS + 1) * 86400
    os.utime(old, (past, past))
    new, imported = cached_store(src, num_classes=C + 2, cache_dir=tmp_path / "c")
    assert imported and not old.exists() and kept.exists() and new.exists()


def test_content_digest_covers_every_byte(tmp_path):
    src = _csv(tmp_path / "x.csv", rows=5000)
    data = bytearray(src.read_bytes())
    ref = content_digest(src)
    assert ref == (content_digest(src)[0], len(data))
    for at in (0, len(data) // 3, len(data) // 2, len(data) - 2):
        data[at] ^= 1
        src.write_bytes(data)
        assert content_digest(src)[0] != ref[0], at
        data[at] ^= 1
