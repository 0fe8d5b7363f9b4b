"""Issue 25, items 0-3, 5 and 6: a probe of surfaces the suite had not attacked, kept as tests.

* the Python API entry points of ``predictions`` and ``producers.data`` with wrong types (an
  int, None, bytes or a list for a path; a bool, NaN, a string or 10**12 for a count; the wrong
  object to write): each a one-line InputError, never a TypeError/AttributeError/ValueError
  from deep inside (before issue 25, 27 of these 45 were tracebacks or silently accepted);
* the CSV-member cache with hard links (two names for one inode; an edit seen through the other
  name) and a symbolic link moved to another file;
* more writers on a full or read-only tmpfs: TFRecord shards, a gzip store, ``ensemble submit``,
  ``produce generate``, labels and submissions on a read-only mount;
* hostile class indices in member and truth CSVs and TFRecord labels, under the RSS bound of
  test_bounded;
* named inputs that are FIFOs given to ``produce search/distill/predict``, ``ensemble report
  --vocabulary`` and ``--param verticals=`` (each used to wait forever);
* item 5: the error is the last line on stderr when a progress bar was drawn.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from predictions.errors import InputError
from predictions.types import Labels

from .conftest import C, REPO, assert_clear_error, ids_of, job_toml, make_labels, make_store, special, topk_preds
from .test_bounded import _refused
from .test_csv_cache import _csv as _cache_csv
from .test_full_disk import _api, _assert_refused, _fill, tmpfs  # noqa: F401  (tmpfs: the fixture)

ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _one_line(fn) -> str:
    with pytest.raises(InputError) as err:
        fn()
    text = str(err.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --------------------------------------------------------------------------- API with wrong types

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    (d / "t.csv").write_text("VideoId,LabelConfidencePairs\nv1,1 0.5 2 0.3\n")
    (d / "tr.csv").write_text("VideoId,Labels\nv1,1 2\n")
    from producers.data.generator import generate
    generate(d / "g", n_train=6, n_test=2, num_classes=C, level="video", shards=1, seed=0)
    return d


def _api_cases():
    from predictions import csvimport, csvio, metrics
    from predictions.atomic import atomic_write_text
    from predictions.labels import read_labels, write_labels
    from predictions.store import StoreWriter, open_store, read_store, write_store
    from producers.data import readers
    from producers.data.tfrecord_io import iter_payloads, write_tfrecord

    p = topk_preds(ids_of(10))
    lab = Labels.from_lists(ids_of(10), [[1]] * 10, C)
    shard = lambda d: next((d / "g").rglob("train-*.tfrecord"))  # noqa: E731
    return {
        "read_store-int": (lambda d: read_store(123), "store path must be a path"),
        "read_store-None": (lambda d: read_store(None), "NoneType"),
        "open_store-list": (lambda d: open_store(["a"]), "list"),
        "read_labels-int": (lambda d: read_labels(5), "labels path must be a path"),
        "write_store-not-predictions": (lambda d: write_store(d / "x.h5", "abc", model="m", split="heldout"),
                                        "expects a Predictions object, got str"),
        "write_store-path-int": (lambda d: write_store(5, p, model="m", split="s"), "store path"),
        "store_writer-path-None": (lambda d: StoreWriter(None, ids=p.ids, num_classes=C, k=5, model="m", split="s"),
                                   "store path"),
        "write_labels-not-labels": (lambda d: write_labels(d / "l.h5", p, split="heldout"),
                                    "expects a Labels object, got Predictions"),
        "write_labels-path-list": (lambda d: write_labels([1], lab, split="heldout"), "labels path"),
        "predictions_csv-path-int": (lambda d: csvio.read_predictions_csv(5, C), "path must be"),
        "predictions_csv-classes-nan": (lambda d: csvio.read_predictions_csv(d / "t.csv", float("nan")),
                                        "num_classes"),
        "predictions_csv-classes-bool": (lambda d: csvio.read_predictions_csv(d / "t.csv", True), "num_classes"),
        "truth_csv-path-bytes": (lambda d: csvio.read_truth_csv(b"x", C), "path must be"),
        "submission-path-int": (lambda d: csvio.write_submission(5, p), "path must be"),
        "submission-not-predictions": (lambda d: csvio.write_submission(d / "s.csv", [1, 2]),
                                       "expects a Predictions object"),
        "submission-top-bool": (lambda d: csvio.write_submission(d / "s.csv", p, top=True), "top must be"),
        "submission-precision-bool": (lambda d: csvio.write_submission(d / "s.csv", p, precision=True),
                                      "precision must be"),
        "cached_store-classes-nan": (lambda d: csvimport.cached_store(d / "t.csv", num_classes=float("nan"),
                                                                      cache_dir=d / "c"), "num_classes"),
        "cached_store-classes-huge": (lambda d: csvimport.cached_store(d / "t.csv", num_classes=10**12,
                                                                       cache_dir=d / "c"), "num_classes"),
        "cached_store-cache-int": (lambda d: csvimport.cached_store(d / "t.csv", num_classes=C, cache_dir=5),
                                   "cache_dir must be a path"),
        "cached_store-csv-None": (lambda d: csvimport.cached_store(None, num_classes=C), "csv must be a path"),
        "import_csv-csv-int": (lambda d: csvimport.import_csv(5, d / "o.h5", model="m", split="s", num_classes=C),
                               "csv must be a path"),
        "import_csv-out-None": (lambda d: csvimport.import_csv(d / "t.csv", None, model="m", split="s",
                                                               num_classes=C), "out must be a path"),
        "content_digest-int": (lambda d: csvimport.content_digest(4), "path must be"),
        "stores_of_members-int": (lambda d: csvimport.stores_of_members(5, num_classes=C), "members must be"),
        "stores_of_members-item-None": (lambda d: csvimport.stores_of_members([None], num_classes=C),
                                        "member must be a path"),
        "atomic_write_text-path-int": (lambda d: atomic_write_text(5, "x"), "path must be"),
        "atomic_write_text-text-int": (lambda d: atomic_write_text(d / "a.txt", 5), "text must be a str"),
        "gap-k-nan": (lambda d: metrics.gap(p, lab, k=float("nan")), "k must be"),
        "load_video_level-int": (lambda d: readers.load_video_level(5), "shards must be"),
        "load_video_level-None": (lambda d: readers.load_video_level(None), "shards must be"),
        "load_video_level-classes-str": (lambda d: readers.load_video_level(shard(d), num_classes="x"),
                                         "num_classes"),
        "load_video_level-classes-bool": (lambda d: readers.load_video_level(shard(d), num_classes=True),
                                          "num_classes"),
        "load_video_level-classes-huge": (lambda d: readers.load_video_level(shard(d), num_classes=10**12),
                                          "num_classes"),
        "load_video_level-classes-nan": (lambda d: readers.load_video_level(shard(d), num_classes=float("nan")),
                                         "num_classes"),
        "load_video_level-ids-int": (lambda d: readers.load_video_level(shard(d), ids=5), "ids must be"),
        "scan_ids-int": (lambda d: readers.scan_ids(7), "shards must be"),
        "iter_frame-max_frames-str": (lambda d: list(readers.iter_frame(shard(d), max_frames="a")), "max_frames"),
        "iter_frame-max_frames-bool": (lambda d: list(readers.iter_frame(shard(d), max_frames=True)), "max_frames"),
        "iter_payloads-int": (lambda d: list(iter_payloads(3)), "path must be"),
        "write_tfrecord-path-int": (lambda d: write_tfrecord(3, [b"x"]), "path must be"),
        "write_tfrecord-str-payload": (lambda d: write_tfrecord(d / "o.tfrecord", ["abc"]),
                                       "record 0: a payload must be bytes"),
        "write_tfrecord-not-iterable": (lambda d: write_tfrecord(d / "o2.tfrecord", 5), "must be an iterable"),
    }


API_CASES = sorted(_api_cases())


@pytest.mark.parametrize("case", API_CASES)
def test_api_entry_point_with_a_wrong_type(case, files):
    fn, needle = _api_cases()[case]
    text = _one_line(lambda: fn(files))
    assert needle in text, text
    assert not (files / "o.tfrecord").exists() and not (files / "o2.tfrecord").exists()


# --------------------------------------------------------------------------- the cache and links

def _csv(path: Path, score: str = "0.900000") -> Path:
    return _cache_csv(path, rows=200, score=score)


def test_two_hard_links_to_one_csv_are_two_members(tmp_path):
    from predictions.csvimport import stores_of_members
    from predictions.store import open_store
    real = _csv(tmp_path / "a.heldout.csv")
    os.link(real, tmp_path / "b.heldout.csv")
    paths = stores_of_members([tmp_path / "a.heldout.csv", tmp_path / "b.heldout.csv"], num_classes=C,
                              cache_dir=tmp_path / "cache")
    assert len(set(paths)) == 2
    for path, model in zip(paths, "ab"):
        with open_store(path) as r:
            assert r.meta.model == model and len(r) == 200


def test_edit_through_one_hard_link_is_seen_through_the_other(tmp_path):
    from predictions.csvimport import cached_store
    from predictions.store import read_store
    a = _csv(tmp_path / "a.heldout.csv")
    b = tmp_path / "b.heldout.csv"
    os.link(a, b)
    first, _ = cached_store(b, num_classes=C, cache_dir=tmp_path / "c")
    st = os.stat(a)
    with open(a, "r+") as fh:        # in place (same inode, same size), then the old times back
        fh.write(_csv(tmp_path / "new.csv", score="0.700000").read_text())
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    again, imported = cached_store(b, num_classes=C, cache_dir=tmp_path / "c")
    assert imported and again != first and read_store(again).scores[100, 0] == np.float32(0.7)


def test_symlink_moved_to_another_file_is_reimported(tmp_path):
    from predictions.csvimport import cached_store
    from predictions.store import read_store
    one, two = _csv(tmp_path / "one.csv"), _csv(tmp_path / "two.csv", score="0.600000")
    link = tmp_path / "team.heldout.csv"
    link.symlink_to(one)
    first, _ = cached_store(link, num_classes=C, cache_dir=tmp_path / "c")
    link.unlink()
    link.symlink_to(two)
    again, imported = cached_store(link, num_classes=C, cache_dir=tmp_path / "c")
    assert imported and read_store(again).scores[100, 0] == np.float32(0.6)
    assert read_store(first).scores[100, 0] == np.float32(0.9)


# --------------------------------------------------------------------------- full / read-only disk

def test_write_tfrecord_on_a_full_disk(tmpfs):  # noqa: F811
    _fill(tmpfs)
    p = _api("from producers.data.tfrecord_io import write_tfrecord\n"
             f"write_tfrecord({str(tmpfs / 'train-0.tfrecord')!r}, [b'x' * 4000] * 100)")
    _assert_refused(p, tmpfs, "api", str(tmpfs / "train-0.tfrecord"), "No space left on device")


def test_gzip_store_on_a_full_disk(tmpfs):  # noqa: F811
    _fill(tmpfs)
    code = ("import numpy as np\nfrom predictions.types import Predictions\nfrom predictions.store import write_store\n"
            "rng = np.random.default_rng(0)\nids = np.array([f'v{i:05d}' for i in range(5000)])\n"
            "p = Predictions(ids, rng.random((5000, 20)).astype(np.float32), None, 20)\n"
            f"write_store({str(tmpfs / 'm.h5')!r}, p, model='m', split='heldout', compression='gzip')")
    _assert_refused(_api(code), tmpfs, "api", str(tmpfs / "m.h5"), "No space left on device")


def test_ensemble_submit_on_a_full_disk(tmpfs, tmp_path):  # noqa: F811
    src = make_store(tmp_path / "m.test.full.h5", n=3000, split="test")
    _fill(tmpfs)
    p = subprocess.run([sys.executable, "-m", "ensembler.cli", "submit", src, "--out", tmpfs / "s.csv", "--quiet"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    _assert_refused(p, tmpfs, "ensemble", str(tmpfs / "s.csv"), "No space left on device")


def test_produce_generate_on_a_full_disk(tmpfs):  # noqa: F811
    _fill(tmpfs, leave=64 << 10)
    p = subprocess.run([sys.executable, "-m", "producers.cli", "generate", tmpfs / "data", "--videos", "400",
                        "--test-videos", "50", "--classes", str(C), "--shards", "2", "--quiet"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120)
    assert p.returncode != -11
    assert_clear_error(p.returncode, p.stderr, "produce", "No space left on device")
    left = [str(x) for x in (tmpfs / "data").rglob("*")] if (tmpfs / "data").exists() else []
    assert not [x for x in left if x.endswith(".tfrecord") or ".tmp" in x], left


@pytest.mark.parametrize("writer", ["labels", "submission", "text", "tfrecord"])
def test_read_only_mount_for_every_writer(writer, tmpfs):  # noqa: F811
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    code = {"labels": "from predictions.labels import write_labels\nfrom predictions.types import Labels\n"
                      "import numpy as np\nids = np.array(['a', 'b'])\n"
                      "write_labels(T, Labels.from_lists(ids, [[0], [1]], 3), split='heldout')",
            "submission": "import numpy as np\nfrom predictions.types import Predictions\n"
                          "from predictions.csvio import write_submission\n"
                          "write_submission(T, Predictions(np.array(['a']), np.ones((1, 2), np.float32), None, 2))",
            "text": "from predictions.atomic import atomic_write_text\natomic_write_text(T, 'x')",
            "tfrecord": "from producers.data.tfrecord_io import write_tfrecord\nwrite_tfrecord(T, [b'x'])"}[writer]
    target = tmpfs / "out.file"
    p = _api(f"T = {str(target)!r}\n" + code)
    assert p.returncode != -11
    line = assert_clear_error(p.returncode, p.stderr, "api", str(target))
    assert "read-only" in line.lower() or "not writable" in line, line


# --------------------------------------------------------------------------- class indices bounded

def _rows(path: Path, header: str, n: int, bad_row: int, bad: str, good) -> Path:
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for i in range(n):
            fh.write(f"v{i:06d},{bad if i == bad_row else good(i)}\n")
    return path


def test_member_csv_naming_class_10_to_the_9(tmp_path):
    src = _rows(tmp_path / "m.csv", "VideoId,LabelConfidencePairs", 200_000, 100_000, "1000000000 0.5",
                lambda i: f"{i % C} 0.9")
    _refused(f"from predictions.csvio import read_submission\nread_submission({str(src)!r}, {C})",
             "line 100002", "1000000000")


def test_truth_csv_naming_class_10_to_the_12(tmp_path):
    src = _rows(tmp_path / "t.csv", "VideoId,Labels", 200_000, 100_000, "1 999999999999", lambda i: f"{i % C}")
    _refused(f"from predictions.csvio import read_truth_csv\nread_truth_csv({str(src)!r}, {C})",
             "line 100002", "999999999999")


def test_rank_csv_with_a_million_labels_on_one_line(tmp_path):
    src = _rows(tmp_path / "r.csv", "VideoId,Label", 1000, 500, " ".join(["1"] * 1_000_000), lambda i: f"{i % C}")
    _refused(f"from predictions.csvio import read_rank_csv\nread_rank_csv({str(src)!r}, {C})", "line 502")


# --------------------------------------------------------------------------- special files, by the CLIs

def _run(argv, timeout=90):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["search", "distill", "predict", "train"])
def test_produce_config_that_is_a_fifo(command, tmp_path):
    fifo = special("fifo", tmp_path / "job.toml")
    t0 = time.perf_counter()
    p = _run(["-m", "producers.cli", command, fifo])
    assert_clear_error(p.returncode, p.stderr, "produce", str(fifo), "FIFO")
    assert time.perf_counter() - t0 < 60


def test_job_test_truth_that_is_a_fifo(small_data, tmp_path):
    fifo = special("fifo", tmp_path / "truth.csv")
    job = job_toml(tmp_path / "job.toml", small_data / "video" / "train-*.tfrecord", run_dir=str(tmp_path / "runs"))
    job.write_text(job.read_text().replace("[split]", f'test_truth = "{fifo}"\n[split]'))
    p = _run(["-m", "producers.cli", "train", job])
    assert_clear_error(p.returncode, p.stderr, "produce", str(fifo), "FIFO")


def _members(root: Path) -> None:
    ids = ids_of(40)
    for split in ("heldout", "eval"):
        for j in range(2):
            make_store(root / "preds" / f"m{j}.{split}.full.h5", n=40, model=f"m{j}", split=split, seed=j)
        make_labels(root / "labels" / f"labels.{split}.h5", ids, split=split)


def test_report_vocabulary_that_is_a_fifo(tmp_path):
    _members(tmp_path)
    fifo = special("fifo", tmp_path / "vocabulary.csv")
    p = _run(["-m", "ensembler.cli", "report", "--members", tmp_path / "preds", "--labels", tmp_path / "labels",
              "--vocabulary", fifo, "--out", tmp_path / "rep", "--quiet"])
    assert_clear_error(p.returncode, p.stderr, "ensemble", str(fifo), "FIFO")
    assert not (tmp_path / "rep").exists()


def test_param_verticals_that_is_a_fifo(tmp_path):
    _members(tmp_path)
    fifo = special("fifo", tmp_path / "verticals.csv")
    p = _run(["-m", "ensembler.cli", "build", "--weights", "lr", "--param", f"verticals={fifo}", "--members",
              tmp_path / "preds", "--labels", tmp_path / "labels", "--out", tmp_path / "o", "--folds", 2, "--quiet"])
    assert_clear_error(p.returncode, p.stderr, "ensemble", str(fifo), "FIFO")


# --------------------------------------------------------------------------- item 5: the error comes last

def _last_visible_line(stderr: str) -> str:
    """What a terminal shows last: stderr split at line ends and carriage returns, blanks dropped."""
    parts = [s.strip() for s in stderr.replace("\r", "\n").split("\n")]
    return [s for s in parts if s][-1]


def test_error_after_the_csv_cache_progress_bar_is_the_last_line(tmp_path):
    ids = ids_of(40)
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids, split="heldout")
    rows = "".join(f"{v},1 0.9 2 0.5\n" for v in ids)
    (tmp_path / "a.heldout.csv").write_text("VideoId,LabelConfidencePairs\n" + rows)
    (tmp_path / "b.heldout.csv").write_text("VideoId,LabelConfidencePairs\n" + rows + "v9,1 nonsense\n")
    p = _run(["-m", "ensembler.cli", "evaluate", "--members", tmp_path / "a.heldout.csv", tmp_path / "b.heldout.csv",
              "--labels", tmp_path / "labels", "--classes", C, "--csv-cache", tmp_path / "cache"])
    assert p.returncode == 1, p.stderr
    last = _last_visible_line(p.stderr)
    assert last.startswith("ensemble: error: ") and "b.heldout.csv" in last, repr(p.stderr[-600:])


def test_error_after_the_verify_progress_bar_is_the_last_line(tmp_path):
    """A member with one flipped score byte: the checksum error is the last line, no bar after it."""
    import h5py
    _members(tmp_path)
    target = tmp_path / "preds" / "m1.heldout.full.h5"
    with h5py.File(target, "r+") as f:   # one score one ulp lower; the stored checksum kept
        row = f["scores"][5]
        row[0] = np.nextafter(row[0], np.float32(0))
        f["scores"][5] = row
    p = _run(["-m", "ensembler.cli", "build", "--members", tmp_path / "preds", "--labels", tmp_path / "labels",
              "--out", tmp_path / "o", "--folds", 2])
    assert p.returncode == 1, p.stderr
    last = _last_visible_line(p.stderr)
    assert last.startswith("ensemble: error: ") and "checksum" in last, repr(p.stderr[-600:])


# --------------------------------------------------------------------------- produce: sizes and run_dir

@pytest.mark.parametrize("argv, needle", [
    (["--videos", "0"], "--videos"),
    (["--classes", "20000000"], "--classes"),
    (["--videos", "99999999999999999999"], "--videos"),
    (["--shards", "0"], "--shards"),
], ids=["videos-0", "classes-2e7", "videos-huge", "shards-0"])
def test_produce_generate_sizes_bounded(argv, needle, tmp_path, capsys):
    from producers.cli import main as produce
    capsys.readouterr()
    rc = produce(["generate", str(tmp_path / "data"), *argv, "--quiet"])
    assert_clear_error(rc, capsys.readouterr().err, "produce", needle)
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("*.tfrecord"))


@pytest.mark.parametrize("case", ["num_classes-1e8", "moe-num_experts-1e5", "run_dir-regular-file"])
def test_produce_train_refuses_before_allocating(case, small_data, tmp_path, capsys):
    from producers.cli import main as produce
    train = small_data / "video" / "train-*.tfrecord"
    kw = {"run_dir": str(tmp_path / "runs")}
    if case == "num_classes-1e8":
        kw["num_classes"], needle = 100_000_000, "num_classes"
    elif case == "moe-num_experts-1e5":
        kw.update(model="moe", hparams="num_experts = 100000")
        needle = "parameters"   # refused by its weight count, before any allocation
    else:
        (tmp_path / "runs").write_text("a file")
        needle = str(tmp_path / "runs")
    job = job_toml(tmp_path / "job.toml", train, **kw)
    capsys.readouterr()
    rc = produce(["train", str(job)])
    assert_clear_error(rc, capsys.readouterr().err, "produce", needle)


def test_produce_train_into_a_read_only_run_dir(small_data, tmpfs, capsys):  # noqa: F811
    from producers.cli import main as produce
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    job = job_toml(tmpfs.parent / "job.toml", small_data / "video" / "train-*.tfrecord", run_dir=str(tmpfs / "runs"))
    capsys.readouterr()
    rc = produce(["train", str(job)])
    assert_clear_error(rc, capsys.readouterr().err, "produce", str(tmpfs))


def test_produce_train_checkpoints_onto_a_full_disk(small_data, tmpfs, capsys):  # noqa: F811
    """The run_dir fills up while training writes its first checkpoint: one line naming the path, no temp file."""
    from producers.cli import main as produce
    job = job_toml(tmpfs.parent / "job.toml", small_data / "video" / "train-*.tfrecord", run_dir=str(tmpfs / "runs"))
    _fill(tmpfs, leave=4096)
    capsys.readouterr()
    rc = produce(["train", str(job), "--quiet"])
    err = capsys.readouterr().err
    assert_clear_error(rc, err, "produce", str(tmpfs))
    assert "No space left on device" in err or "not enough free space" in err or "full" in err, err
    assert not [q for q in tmpfs.rglob("*") if q.is_file() and q.name != "filler" and q.suffix in (".pt", ".tmp")]


@pytest.mark.skipif(subprocess.run([sys.executable, "-c", "import matplotlib"], capture_output=True).returncode != 0,
                    reason="the report needs matplotlib ([report])")
def test_ensemble_report_onto_a_full_disk(tmp_path, tmpfs):  # noqa: F811
    d = tmp_path / "m"
    for m in ("m0", "m1"):
        make_store(d / f"{m}.eval.full.h5", n=40, model=m, split="eval", seed=int(m[1]))
    make_labels(tmp_path / "labels" / "labels.eval.h5", ids_of(40), split="eval")
    _fill(tmpfs)
    p = subprocess.run([sys.executable, "-m", "ensembler.cli", "report", "--members", str(d), "--labels",
                        str(tmp_path / "labels"), "--split", "eval", "--out", str(tmpfs / "report"), "--quiet"],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    _assert_refused(p, tmpfs, "ensemble", str(tmpfs))


# --------------------------------------------------------------------------- item 3: long fits show progress

@pytest.mark.parametrize("scheme", ["caruana", "lr", "auto"])
def test_a_learned_fit_shows_progress_per_fold_and_its_bound_is_documented(tmp_path, scheme):
    """A learned scheme's cross-fit is the long part of a build: it has a bar (count, rate, ETA) per fold;
    caruana's n_iterations is bounded (and says so in ``ensemble schemes caruana``)."""
    d = tmp_path / "m"
    for m in ("m0", "m1"):
        for split in ("heldout", "test"):
            make_store(d / f"{m}.{split}.full.h5", n=40, model=m, split=split, seed=int(m[1]))
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids_of(40))
    p = subprocess.run([sys.executable, "-m", "ensembler.cli", "build", "--weights", scheme, "--members", str(d),
                        "--labels", str(tmp_path / "labels"), "--folds", "2", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert p.returncode == 0, p.stderr
    bars = [line for line in p.stderr.replace("\r", "\n").splitlines() if "fold/s" in line or "fold]" in line]
    assert any("2/2" in line for line in bars), p.stderr[-1000:]
    listing = subprocess.run([sys.executable, "-m", "ensembler.cli", "schemes", "caruana"], capture_output=True,
                             text=True, cwd=REPO, timeout=60).stdout
    assert "n_iterations" in listing and "<= 100000" in listing
