"""Benchmarks of the toolkit against plain baselines, timed in the same process on the same data.

Usage::

    python bench/run.py [--quick] [--only NAME ...] [--data-dir DIR] [--json OUT]

Figures (``NAME``): ``gap``, ``ensemble``, ``read``, ``stacking``, ``bounded``, ``csv``, ``verify``,
``build``, ``startup``.
``--quick`` uses about 1/20 of the full sizes (a smoke run).

Every *case* (one row of the table) runs in its own subprocess, so its peak
memory is the process's ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the
resident set high-water mark, which counts numpy/h5py/C allocations that
tracemalloc does not see). ``ours peak`` is read right after our code ran
(before the baseline started); it includes the interpreter, the imports and the
case's inputs held in memory (e.g. the full score matrix of the GAP figure).
Inputs on disk are generated first, in a separate subprocess, and cached under
``--data-dir``; generation is never timed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

C = 3862
POOL = 40          # candidate labels per video the synthetic members choose from
K_TOP = 20
FIGURES = ("gap", "ensemble", "read", "stacking", "bounded", "csv", "verify", "build", "startup")


# =========================================================================== sizes
def sizes(quick: bool) -> dict:
    d = 20 if quick else 1
    return {
        "gap_full": [20000 // d, 200000 // d],
        "ens_n": 200000 // d, "ens_fit": 20000 // d, "ens_k": [16, 36],
        "stack_n": 25000 // d, "stack_m": 8,
        "bounded_n": [100000 // d, 700000 // d], "bounded_fit": 20000 // d, "bounded_k": 4,
        "chunk_rows": 20000 // d,
        "csv_n": 100000 // d, "csv_k": [16, 36],
        "verify_n": 100000 // d,
        # figure 8: the build against the numpy floor, on a 20,000-video labelled held-out split and an
        # N-video test split of K members (the same stores for every K: members m00..m{K-1})
        "build_n": [100000 // d, 700000 // d], "build_k": [16, 36], "build_fit": 20000 // d,
        "build_rounds": {100000 // d: 2, 700000 // d: 1},
        # the pandas pipeline runs ~25 s per member at N=200k on a loaded 2-core machine; in the
        # full run it reads the first 50,000 rows of each CSV and its time is scaled by N / 50,000
        "naive_rows": None if quick else 50000,
    }


def maxrss_mib() -> float:
    """Peak resident set of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# =========================================================================== synthetic data
def _pools(n: int, rng) -> np.ndarray:
    """(n, POOL) int32 distinct labels per row (random start + increasing random gaps, mod C)."""
    start = rng.integers(0, C, n)
    offs = np.cumsum(rng.integers(1, (C - 1) // POOL + 1, (n, POOL)), axis=1)  # < C: distinct
    return ((start[:, None] + offs) % C).astype(np.int32)


def make_labels(ids, pool: np.ndarray, rng):
    """Labels: the first 1..6 pool entries of each video (about 3.5 per video)."""
    from predictions.types import Labels

    n = len(ids)
    cnt = rng.integers(1, 7, n)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(cnt, out=indptr[1:])
    take = np.arange(POOL)[None, :] < cnt[:, None]
    return Labels(ids, indptr, pool[take], C), cnt


def make_member(ids, pool, cnt, rng, k: int = K_TOP):
    """Top-k member: continuous random scores, the true labels (pool columns < cnt) favoured."""
    from predictions.types import Predictions

    n = len(ids)
    signal = 0.05 + 0.25 * rng.random()
    x = rng.random((n, POOL)) + signal * (np.arange(POOL)[None, :] < cnt[:, None])
    x = x / (1.0 + signal)
    order = np.argsort(-x, axis=1)[:, :k]
    s = np.take_along_axis(x, order, axis=1).astype(np.float32)
    lab = np.take_along_axis(pool, order, axis=1)
    # float32 rounding may create ties; the stored order must stay non-increasing
    s = -np.sort(-s, axis=1)
    return Predictions(ids, s, lab.astype(np.int32), C)


def video_ids(n: int, prefix: str) -> np.ndarray:
    return np.array([f"{prefix}{i:07d}" for i in range(n)])


def write_split(dirpath: Path, split: str, n: int, n_members: int, seed: int, csv_members: int = 0) -> None:
    """Stores ``m00..`` of one split, labels (in ``labels/``) and the first ``csv_members`` as Kaggle CSVs."""
    from predictions.csvio import write_submission
    from predictions.labels import write_labels
    from predictions.store import write_store

    rng = np.random.default_rng(seed)
    ids = video_ids(n, split[:1])
    pool = _pools(n, rng)
    labels, cnt = make_labels(ids, pool, rng)
    (dirpath / "labels").mkdir(parents=True, exist_ok=True)
    (dirpath / "stores").mkdir(parents=True, exist_ok=True)
    (dirpath / "csv").mkdir(parents=True, exist_ok=True)
    write_labels(dirpath / "labels" / f"labels.{split}.h5", labels, split=split)
    for j in range(n_members):
        m = make_member(ids, pool, cnt, rng)
        write_store(dirpath / "stores" / f"m{j:02d}.{split}.full.h5", m, model=f"m{j:02d}", split=split)
        if j < csv_members:
            write_submission(dirpath / "csv" / f"m{j:02d}.{split}.csv", m, top=K_TOP)


def write_starter_csv(store: Path, out: Path) -> None:
    """The member as the YouTube-8M starter code's inference.py writes it: ``"%i %g"`` pairs (not timed)."""
    from predictions.store import read_store

    p = read_store(store)
    with open(out, "w") as fh:
        fh.write("VideoId,LabelConfidencePairs\n")
        for vid, lab, sc in zip(p.ids.tolist(), p.indices.tolist(), p.scores.tolist()):
            fh.write(vid + "," + " ".join("%i %g" % (l, s) for l, s in zip(lab, sc)) + "\n")


def prepare(name: str, S: dict, data: Path) -> None:
    """Generate (once) the on-disk inputs of figure ``name``."""
    def once(tag: str, fn):
        d = data / tag
        if (d / "DONE").exists():
            return
        d.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        fn(d)
        (d / "DONE").write_text("ok\n")
        print(f"  generated {tag} in {time.perf_counter() - t:.1f}s", file=sys.stderr, flush=True)

    if name in ("read", "gap"):  # member m00 of the "ens" test split (same seed), alone
        once("one", lambda d: write_split(d, "test", S["ens_n"], 1, 2, csv_members=1))
    if name == "ensemble":
        kmax = max(S["ens_k"])
        once("ens", lambda d: (write_split(d, "heldout", S["ens_fit"], kmax, 1),
                               write_split(d, "test", S["ens_n"], kmax, 2, csv_members=kmax)))
    if name == "csv":  # max(csv_k) Kaggle CSVs of one test split (their stores too), m00 also as the starter code
        kmax = max(S["csv_k"])  # writes it; K < kmax uses members m00..m{K-1}
        once("csv", lambda d: (write_split(d, "test", S["csv_n"], kmax, 5, csv_members=kmax),
                               write_starter_csv(d / "stores" / "m00.test.full.h5", d / "csv" / "m00.test.g.csv")))
    if name == "build":  # max(build_k) members of a labelled held-out split and of an N-video test split
        kmax = max(S["build_k"])
        for n in S["build_n"]:
            once(f"build{n}", lambda d: (write_split(d, "heldout", S["build_fit"], kmax, 7),
                                         write_split(d, "test", n, kmax, 8)))
    if name == "verify":  # two top-20 members of a 100,000-video split, with labels
        once("verify", lambda d: write_split(d, "heldout", S["verify_n"], 2, 6))
    if name == "bounded":
        for n in S["bounded_n"]:
            once(f"bounded{n}", lambda d: (write_split(d, "heldout", S["bounded_fit"], S["bounded_k"], 3),
                                           write_split(d, "test", n, S["bounded_k"], 4)))


# =========================================================================== baselines (plain, like eval_util)
def baseline_gap_rows(row_scores, row_labels, truth_lists, k: int, num_positives: int) -> float:
    """GAP@k written plainly: per-video top-k, pooled python list, sort, running precision.

    ``row_scores(i)`` gives video i's scores (1-D), ``row_labels(i)`` their label
    ids (None: position = label). Ties in the pooled list: negatives first.
    """
    pooled = []
    for i, truth in enumerate(truth_lists):
        s = row_scores(i)
        labs = row_labels(i)
        if len(s) > k:
            top = np.argpartition(s, -k)[-k:]          # as eval_util's top_k_by_class
        else:
            top = np.arange(len(s))
        pos = set(truth)
        for j in top.tolist():
            lab = j if labs is None else int(labs[j])
            pooled.append((float(s[j]), lab in pos))
    pooled.sort(key=lambda e: (-e[0], e[1]))
    hits, ap = 0, 0.0
    for rank, (_, is_pos) in enumerate(pooled, 1):
        if is_pos:
            hits += 1
            ap += hits / rank
    return ap / num_positives if num_positives else 0.0


def naive_pandas_ensemble(csv_paths, weights, k: int = K_TOP, nrows=None):
    """Kaggle-CSV ensembling the way a notebook does it: explode pairs, groupby-sum, top k per video."""
    import pandas as pd

    acc = None
    for path, w in zip(csv_paths, weights):
        df = pd.read_csv(path, nrows=nrows)
        tok = df["LabelConfidencePairs"].str.split()
        long = pd.DataFrame({"VideoId": df["VideoId"], "label": tok.str[0::2], "score": tok.str[1::2]})
        long = long.explode(["label", "score"])
        long["label"] = long["label"].astype(np.int64)
        long["score"] = long["score"].astype(np.float64) * w
        part = long.groupby(["VideoId", "label"])["score"].sum()
        acc = part if acc is None else acc.add(part, fill_value=0.0)
    out = acc.reset_index().sort_values(["VideoId", "score"], ascending=[True, False])
    return out.groupby("VideoId").head(k)


def numpy_floor(store_paths, weights=None, k: int = K_TOP, chunk_rows: int = 4096, block_rows: int = 512):
    """The least a weighted top-k average of aligned top-k stores must do: read, add, select.

    Per row chunk (``chunk_rows``: the stores' HDF5 chunk height) each member's labels and scores are
    read with h5py, nothing checked (rows assumed aligned, ids not even read). Per block of
    ``block_rows`` rows of it (a dense table that stays in the CPU caches): scatter-add each member's
    weighted scores into a dense (block, C) float32 table, gather the sums once at the union of the
    members' top-k cells, and ``argpartition`` the top ``k`` among them. Returns the (n, k) int32
    labels of each video's top ``k``, unordered within a row; nothing is written.
    """
    import h5py

    files = [h5py.File(p, "r", rdcc_nbytes=0) for p in store_paths]
    try:
        n, width = files[0]["indices"].shape
        C = int(files[0].attrs["num_classes"])
        w = np.full(len(files), 1.0 / len(files)) if weights is None else np.asarray(weights, np.float64)
        b = max(1, min(block_rows, n))
        acc = np.zeros(b * C, np.float32)
        mark = np.zeros(b * C, bool)
        base = np.arange(b, dtype=np.int64)[:, None] * C
        out = np.empty((n, k), np.int32)
        data = [(f["indices"], f["scores"], np.float32(wj)) for f, wj in zip(files, w)]
        for a in range(0, n, chunk_rows):
            chunk = [(ix[a:a + chunk_rows], sc[a:a + chunk_rows], wj) for ix, sc, wj in data]
            for c in range(0, len(chunk[0][0]), b):
                m = min(len(chunk[0][0]) - c, b)
                for indices, scores, wj in chunk:
                    cell = (base[:m] + indices[c:c + m]).ravel()
                    acc[cell] += wj * scores[c:c + m].ravel()   # a member's labels are distinct within a row
                    mark[cell] = True
                union = np.flatnonzero(mark[:m * C])
                sums = acc[union]
                acc[union] = 0
                mark[union] = False
                row = union // C
                counts = np.bincount(row, minlength=m)
                col = np.arange(len(union)) - np.repeat(np.cumsum(counts) - counts, counts)
                pad = np.full((m, int(counts.max())), -1.0, np.float32)
                pad[row, col] = sums
                cell_of = np.zeros(pad.shape, np.int64)
                cell_of[row, col] = union
                kk = min(k, pad.shape[1])
                top = np.argpartition(-pad, kk - 1, axis=1)[:, :kk]
                out[a + c:a + c + m, :kk] = np.take_along_axis(cell_of, top, axis=1) % C
        return out
    finally:
        for f in files:
            f.close()


def pandas_read_csv(path, k: int = K_TOP):
    """One Kaggle CSV to (ids, labels (n, k), scores (n, k)) with pandas."""
    import pandas as pd

    df = pd.read_csv(path)
    parts = df["LabelConfidencePairs"].str.split(" ", expand=True)
    labels = parts.iloc[:, 0::2].astype(np.int32).to_numpy()
    scores = parts.iloc[:, 1::2].astype(np.float32).to_numpy()
    return df["VideoId"].to_numpy(), labels, scores


# =========================================================================== timing
def timed(fn, repeat_under: float = 1.0, max_repeat: int = 3):
    """(best seconds, result): repeated (up to ``max_repeat``) while a run takes < ``repeat_under`` s."""
    best, out = None, None
    for _ in range(max_repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
        if dt >= repeat_under:
            break
    return best, out


def row(figure, case, ours, base, *, ours_peak, check="", note="", base_label="baseline"):
    return {"figure": figure, "case": case, "ours_s": ours, "base_s": base,
            "ratio": (base / ours) if ours and base else None, "ours_peak_mib": ours_peak,
            "proc_peak_mib": maxrss_mib(), "check": check, "note": note, "base_label": base_label,
            "load": loadavg()}


# =========================================================================== cases
def case_gap_full(S, data, n):
    from predictions import metrics
    from predictions.types import Labels, Predictions

    rng = np.random.default_rng(10 + n)
    ids = video_ids(n, "f")
    pool = _pools(n, rng)
    truth, cnt = make_labels(ids, pool, rng)
    avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    dtype = np.float32 if n * C * 4 * 2.5 < avail else np.float16
    scores = np.empty((n, C), dtype=dtype)
    for a in range(0, n, 2048):
        b = min(n, a + 2048)
        x = rng.random((b - a, C), dtype=np.float32) * np.float32(0.9)
        rows = np.repeat(np.arange(b - a), cnt[a:b])
        x[rows, truth.indices[truth.indptr[a]:truth.indptr[b]]] += np.float32(0.1) + rng.random(len(rows), np.float32) * np.float32(0.5)
        x = (x / np.float32(1.5)).astype(dtype)  # < 1, continuous
        # no ties among the top k+1 of a row, so which labels make the cut is unambiguous
        top = -np.sort(-np.partition(x, C - K_TOP - 1, axis=1)[:, C - K_TOP - 1:], axis=1)
        for r in np.flatnonzero((top[:, 1:] == top[:, :-1]).any(axis=1)):
            while True:
                x[r] = (rng.random(C, np.float32) * np.float32(0.99)).astype(dtype)
                t = -np.sort(-x[r])[:K_TOP + 1]
                if not (t[1:] == t[:-1]).any():
                    break
        scores[a:b] = x
    pred = Predictions(ids, scores, None, C)
    t_ours, g_ours = timed(lambda: metrics.gap(pred, truth, k=K_TOP))
    peak = maxrss_mib()
    lists = [l.tolist() for l in truth.lists()]
    t_base, g_base = timed(lambda: baseline_gap_rows(lambda i: scores[i], lambda i: None, lists, K_TOP,
                                                    len(truth.indices)), max_repeat=1)
    ok = abs(g_ours - g_base) <= 1e-12
    return row("1 GAP@20", f"full N={n} ({np.dtype(dtype).name})", t_ours, t_base, ours_peak=peak,
               check=f"{'equal' if ok else 'DIFFERENT'} |d|={abs(g_ours - g_base):.1e} gap={g_ours:.6f}",
               note="peak includes the (N, C) matrix", base_label="plain python (argpartition per video)")


def case_gap_topk(S, data):
    from predictions import metrics
    from predictions.labels import read_labels
    from predictions.store import read_store

    d = data / "one"
    pred = read_store(d / "stores" / "m00.test.full.h5")
    truth = read_labels(d / "labels" / "labels.test.h5").reindex(pred.ids)
    t_ours, g_ours = timed(lambda: metrics.gap(pred, truth, k=K_TOP))
    peak = maxrss_mib()
    lists = [l.tolist() for l in truth.lists()]
    sc, ix = pred.scores, pred.indices
    t_base, g_base = timed(lambda: baseline_gap_rows(lambda i: sc[i], lambda i: ix[i], lists, K_TOP,
                                                    len(truth.indices)), max_repeat=1)
    ok = abs(g_ours - g_base) <= 1e-12
    return row("1 GAP@20", f"top-20 store N={len(pred)}", t_ours, t_base, ours_peak=peak,
               check=f"{'equal' if ok else 'DIFFERENT'} |d|={abs(g_ours - g_base):.1e} gap={g_ours:.6f}",
               base_label="plain python (sort per video)")


def case_ensemble(S, data, n_members):
    """Uniform and GAP-weighted builds of K members (ours), then one naive pandas run (same process)."""
    import tempfile

    from ensembler.build import build
    from predictions.store import read_store

    d = data / "ens"
    names = [f"m{j:02d}" for j in range(n_members)]
    paths = [str(d / "stores" / f"{m}.{s}.full.h5") for m in names for s in ("heldout", "test")]
    res = {}
    for weights in ("uniform", "gap"):
        with tempfile.TemporaryDirectory(dir=data) as out:
            def ours():
                return build(paths, scheme=weights, labels=[str(d / "labels" / "labels.heldout.h5")], out=out,
                             name=f"ens-{weights}", chunk_rows=None, progress=False,
                             log=lambda *a: None)
            t, rec = timed(ours, repeat_under=1e9, max_repeat=1)
            res[weights] = (t, maxrss_mib(), rec, read_store(rec.outputs["test"]))
    n = S["ens_n"]
    nrows = S["naive_rows"] if S["naive_rows"] and S["naive_rows"] < n else None
    scale = n / nrows if nrows else 1.0
    csvs = [d / "csv" / f"{m}.test.csv" for m in names]
    w = res["gap"][2].fitted["weights"]
    w = [w[m] for m in names]
    t_base, top = timed(lambda: naive_pandas_ensemble(csvs, w, nrows=nrows), repeat_under=1e9, max_repeat=1)
    t_base *= scale
    first = top.groupby("VideoId").head(1).set_index("VideoId")["label"]
    rows = []
    for weights, (t, peak, rec, ens) in res.items():
        sel = slice(None) if nrows is None else slice(0, nrows)
        got = first.reindex(ens.ids[sel]).to_numpy()
        agree = float(np.mean(got == ens.indices[sel, 0])) if weights == "gap" else None
        check = f"top-1 = naive on {agree:.4f} of videos" if agree is not None else ""
        base_label = "pandas: read CSVs, explode, groupby-sum, top-20 (GAP weights; cost does not depend on weights)"
        if nrows:
            base_label += f"; ran on the first {nrows} rows, time x{scale:g}"
        rows.append(row("2 ensemble", f"{weights} K={n_members} N={n}", t, t_base, ours_peak=peak, check=check,
                        note=f"ours: build() = fit on {S['ens_fit']} held-out videos (+5-fold cross-fit, member "
                             f"GAPs) + stream the N test videos (auto chunk: 4M entries) into a store; "
                             f"peak is cumulative (uniform ran first)",
                        base_label=base_label))
    return rows


def case_read(S, data):
    from predictions.csvio import read_submission
    from predictions.store import read_store

    d = data / "one"
    store, csv = d / "stores" / "m00.test.full.h5", d / "csv" / "m00.test.csv"
    t_ours, p = timed(lambda: read_store(store))
    peak = maxrss_mib()
    t_pd, (ids, lab, sc) = timed(lambda: pandas_read_csv(csv))
    t_csv, q = timed(lambda: read_submission(csv, C))
    ok = np.array_equal(ids.astype(str), p.ids) and np.array_equal(lab, p.indices) and np.array_equal(q.indices, p.indices)
    note = f"csvio.read_submission: {t_csv:.3f}s ({t_csv / t_ours:.0f}x the store)"
    return row("3 read", f"one member N={len(p)} top-20", t_ours, t_pd, ours_peak=peak,
               check="same labels" if ok else "DIFFERENT", note=note, base_label="pandas.read_csv + split")


def case_stacking(S, data):
    import tempfile

    from ensembler.candidates import Candidates
    from ensembler.schemes.stacking import XGBoostStacker, _import_xgboost

    rng = np.random.default_rng(7)
    n, m = S["stack_n"], S["stack_m"]
    ids = video_ids(n, "s")
    pool = _pools(n, rng)
    labels, cnt = make_labels(ids, pool, rng)
    cands = Candidates.from_members([make_member(ids, pool, cnt, rng) for _ in range(m)])
    y = cands.targets(labels)
    stacker = XGBoostStacker(n_estimators=300, n_jobs=2, random_state=0, device="cpu")
    t_ours, _ = timed(lambda: stacker.fit(cands, labels), repeat_under=1e9, max_repeat=1)
    peak = maxrss_mib()
    xgb = _import_xgboost()
    X = np.column_stack([cands.scores, cands.ranks.astype(np.float32), cands.present.astype(np.float32)])
    plain = xgb.XGBClassifier(n_estimators=300, n_jobs=2, random_state=0, tree_method="hist")
    t_base, _ = timed(lambda: plain.fit(X, y), repeat_under=1e9, max_repeat=1)
    return row("4 stacking", f"xgboost 300 rounds, R={len(cands)} rows, M={m}", t_ours, t_base, ours_peak=peak,
               note="ours: XGBoostStacker.fit incl. features (n_jobs=2, max_bin=64, depth 6)",
               base_label="XGBClassifier defaults on raw score/rank/present (max_bin 256)")


def case_bounded(S, data, n):
    import tempfile

    from ensembler.build import build

    d = data / f"bounded{n}"
    paths = sorted(str(p) for p in (d / "stores").glob("*.h5"))
    with tempfile.TemporaryDirectory(dir=data) as out:
        t_ours, rec = timed(lambda: build(paths, scheme="uniform", out=out, chunk_rows=S["chunk_rows"],
                                          progress=False, log=lambda *a: None), repeat_under=1e9, max_repeat=1)
    peak = maxrss_mib()
    return {"n": n, "seconds": t_ours, "peak": peak, "load": loadavg()}


def case_csv_import(S, data, fmt):
    """One top-20 Kaggle CSV: csvio's reader vs pandas.read_csv of the same file (just reading it).

    ``fmt``: ``f6`` as ``write_submission`` writes it (``%.6f``), ``g`` as the starter code does (``%g``).
    """
    import tempfile

    import pandas as pd

    from predictions.csvimport import import_csv
    from predictions.csvio import read_predictions_csv

    csv = data / "csv" / "csv" / ("m00.test.csv" if fmt == "f6" else "m00.test.g.csv")
    # interleaved, best of 7 each, wall and CPU time: on a loaded machine the CPU-time ratio is the steadier
    # (both are single-threaded)
    best = {"ours": [1e9, 1e9], "base": [1e9, 1e9]}
    for _ in range(7):
        for who, fn in (("base", lambda: pd.read_csv(csv)), ("ours", lambda: read_predictions_csv(csv, C))):
            t, c = time.perf_counter(), time.process_time()
            out = fn()
            best[who] = [min(best[who][0], time.perf_counter() - t), min(best[who][1], time.process_time() - c)]
            if who == "ours":
                p = out
    (t_ours, c_ours), (t_base, c_base) = best["ours"], best["base"]
    peak = maxrss_mib()
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        def import_():  # what `ensemble import` does: read, check, then write a store
            return import_csv(csv, Path(tmp) / "m00.test.full.h5", model="m00", split="test", num_classes=C)
        t_import, _ = timed(import_, max_repeat=5)
    ids, lab, sc = pandas_read_csv(csv)
    same = np.array_equal(ids.astype(str), p.ids) and np.array_equal(lab, p.indices)
    dmax = float(np.abs(sc - p.scores).max()) if sc.size else 0.0
    style = "%.6f, as write_submission" if fmt == "f6" else "%g, as the starter code"
    return row("6 csv", f"import one CSV, N={len(p)} top-20 ({style}; {csv.stat().st_size / 2 ** 20:.0f} MiB)",
               t_ours, t_base, ours_peak=peak, base_label="pandas.read_csv of the same file (just reading it)",
               check=(f"{'same labels' if same else 'DIFFERENT labels'} as pandas+split, |d score| <= {dmax:.0e}; "
                      f"ours = {t_ours / t_base:.1f}x read_csv wall, {c_ours / c_base:.1f}x CPU "
                      f"({c_ours * 1e3:.0f} vs {c_base * 1e3:.0f} ms; target <= 2x)"),
               note=f"ours: csvio.read_predictions_csv (parsed, checked, Predictions); with the store written, "
                    f"as `ensemble import` (csvimport.import_csv): {t_import:.3f}s = {t_import / t_base:.1f}x read_csv")


def case_csv_submission(S, data, n_members):
    """K Kaggle CSVs -> one uniform top-20 submission: the project end to end (CSV members imported into the
    CSV cache, the build, the submission file) vs a naive pandas pipeline, back to back in this process."""
    import tempfile

    from ensembler.build import build
    from ensembler.members import with_csv_stores
    from predictions.csvio import write_submission
    from predictions.store import read_store

    names = [f"m{j:02d}" for j in range(n_members)]
    csvs = [data / "csv" / "csv" / f"{m}.test.csv" for m in names]
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        tmp = Path(tmp)
        steps = {}

        def ours():  # what `ensemble build --members 'csv/*.csv' --out ens.h5` + `ensemble submit` do
            t = time.perf_counter()
            with_csv_stores([str(c) for c in csvs], classes=C, csv_cache=tmp / "cache")  # the build's first step
            steps["import"] = time.perf_counter() - t
            t = time.perf_counter()
            build([str(c) for c in csvs], scheme="uniform", out=tmp / "ens.h5", name="ens", progress=False,
                  log=lambda *a: None, classes=C, csv_cache=tmp / "cache")  # the CSVs are cache hits now
            steps["build"] = time.perf_counter() - t
            t = time.perf_counter()
            ens = read_store(tmp / "ens.h5", verify=True)
            write_submission(tmp / "submission.csv", ens, top=K_TOP)
            steps["submit"] = time.perf_counter() - t
            return ens
        c = time.process_time()
        t_ours, ens = timed(ours, repeat_under=1e9, max_repeat=1)
        c_ours = time.process_time() - c
        peak = maxrss_mib()
    n = len(ens)
    nrows = S["naive_rows"] if S["naive_rows"] and n_members > min(S["csv_k"]) and S["naive_rows"] < n else None
    scale = n / nrows if nrows else 1.0
    c = time.process_time()
    t_base, top = timed(lambda: naive_pandas_ensemble(csvs, [1.0] * n_members, nrows=nrows), repeat_under=1e9,
                        max_repeat=1)
    c_base = (time.process_time() - c) * scale
    t_base *= scale
    # same top-20 label set per video? (the naive output: 20 rows per video, best first)
    top = top.sort_values(["VideoId", "label"])
    naive = top["label"].to_numpy().reshape(-1, K_TOP)
    order = np.argsort(ens.ids)[:len(naive)] if nrows is None else np.arange(nrows)
    if nrows is not None:
        order = order[np.argsort(ens.ids[:nrows])]
    ours_sets = np.sort(ens.indices[order, :K_TOP], axis=1)
    agree = float(np.mean((ours_sets == naive).all(axis=1))) if len(naive) == len(order) else float("nan")
    base_label = "pandas: read_csv, split pairs, explode, groupby-sum, top 20 (no file written)"
    if nrows:
        base_label += f"; ran on the first {nrows} rows of each CSV, time x{scale:g}"
    return row("6 csv", f"{n_members} CSVs -> uniform top-20 submission, N={n}", t_ours, t_base,
               ours_peak=peak, base_label=base_label,
               check=(f"same top-20 label set on {agree:.4f} of videos (the rest: ties at the cut); "
                      f"{t_base / t_ours:.1f}x wall, {c_base / c_ours:.1f}x CPU ({c_ours:.1f} vs {c_base:.1f} s); "
                      f"target >= 20x"),
               note=(f"ours: CSV members into the cache {steps['import']:.1f}s ({steps['import'] / n_members:.2f}s "
                     f"per CSV: read_predictions_csv + store write) + build uniform {steps['build']:.1f}s + "
                     f"read (verified) + write_submission {steps['submit']:.1f}s"))


def paired(fa, fb, rounds: int = 5):
    """Best seconds of ``fa`` and of ``fb`` run alternately ``rounds`` times each (the load of a shared
    machine then hits both alike); returns (t_a, t_b, last result of fa)."""
    ta = tb = None
    out = None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fa()
        dt = time.perf_counter() - t
        ta = dt if ta is None else min(ta, dt)
        t = time.perf_counter()
        fb()
        dt = time.perf_counter() - t
        tb = dt if tb is None else min(tb, dt)
    return ta, tb, out


def case_verify(S, data):
    """Cost of checksum verification (the --verify default) on a top-20 store: each path with and without
    it, back to back in this process; the streaming verify's own peak is read before anything is held."""
    import contextlib
    import io
    import tempfile

    from ensembler.build import build
    from ensembler.cli import main as ensemble
    from predictions.csvio import write_submission
    from predictions.store import open_store, read_store

    d = data / "verify"
    stores = sorted((d / "stores").glob("*.h5"))
    store = stores[0]
    base_peak = maxrss_mib()
    with open_store(store) as r:
        n = len(r)
        t_alone, _ = timed(lambda: r.verify(), max_repeat=5)
    verify_peak = maxrss_mib()
    rows = []
    p = read_store(store)
    t_ver, t_plain, q = paired(lambda: read_store(store, verify=True), lambda: read_store(store), rounds=7)
    same = np.array_equal(p.indices, q.indices) and np.array_equal(p.scores, q.scores)
    rows.append(row("7 verify", f"read one store, N={n} top-20: read_store(verify=True) vs read_store()", t_ver,
                    t_plain, ours_peak=maxrss_mib(), check="same rows" if same else "DIFFERENT",
                    base_label="read_store() (no checksum)",
                    note=f"the checksum of the rows just read costs {100 * (t_ver / t_plain - 1):+.0f}%; "
                         f"StoreReader.verify() alone (a streaming pass, chunks of 65,536 rows) {t_alone:.3f}s, "
                         f"peak {verify_peak - base_peak:+.0f} MiB over the {base_peak:.0f} MiB before it"))
    with tempfile.TemporaryDirectory(dir=data) as tmp:
        tmp = Path(tmp)
        quiet = contextlib.redirect_stdout(io.StringIO())

        def submit(flag):
            with quiet:
                assert ensemble(["submit", str(store), "--out", str(tmp / "s.csv"), "--quiet", flag]) == 0
        t_v, t_nv, _ = paired(lambda: submit("--verify"), lambda: submit("--no-verify"))
        rows.append(row("7 verify", f"ensemble submit, N={n} top-20: --verify (default) vs --no-verify", t_v, t_nv,
                        ours_peak=maxrss_mib(), base_label="--no-verify",
                        note=f"verification costs {100 * (t_v / t_nv - 1):+.0f}% of the submit"))

        def evaluate(flag):
            with quiet:
                assert ensemble(["evaluate", "--members", *map(str, stores), "--labels", str(d / "labels"),
                                 "--quiet", flag]) == 0
        t_v, t_nv, _ = paired(lambda: evaluate("--verify"), lambda: evaluate("--no-verify"))
        rows.append(row("7 verify", f"ensemble evaluate, 2 members N={n} top-20: --verify vs --no-verify", t_v, t_nv,
                        ours_peak=maxrss_mib(), base_label="--no-verify",
                        note=f"verification costs {100 * (t_v / t_nv - 1):+.0f}% of the evaluation"))

        def built(verify):
            build([str(p) for p in stores], scheme="uniform", labels=[str(d / "labels")], out=tmp / "ens",
                  name="ens", verify=verify, progress=False, log=lambda *a: None)
        t_v, t_nv, _ = paired(lambda: built(True), lambda: built(False), rounds=3)
        rows.append(row("7 verify", f"build uniform, 2 members N={n} top-20: verify=True vs False", t_v, t_nv,
                        ours_peak=maxrss_mib(), base_label="verify=False",
                        note=f"verification costs {100 * (t_v / t_nv - 1):+.0f}% of the build"))
    return rows


def case_build(S, data, n, n_members, scheme):
    """``build()`` of K members vs the numpy floor over the same stores, back to back in this process.

    ``uniform``: the N-video test split alone (what the issue timed: a fixed scheme needs no labels).
    ``gap``: a labelled 20,000-video held-out split (fit, cross-fitted estimate) plus the test split; the
    floor then combines both splits with the weights the build learned. Each round runs ours (checksums
    verified, the default), the floor, and ours with ``verify=False``; the best wall and CPU time of
    each is kept. Ours runs first, so its peak (read right after it) is its own.
    """
    import tempfile

    from ensembler.build import build
    from predictions.store import read_store

    d = data / f"build{n}"
    names = [f"m{j:02d}" for j in range(n_members)]
    held = [str(d / "stores" / f"{m}.heldout.full.h5") for m in names]
    test = [str(d / "stores" / f"{m}.test.full.h5") for m in names]
    labels = [str(d / "labels" / "labels.heldout.h5")]
    if scheme == "uniform":
        held, labels = [], None
    best: dict[str, list] = {}

    def clock(key, fn):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        old = best.get(key, [1e18, 1e18])
        best[key] = [min(old[0], dt), min(old[1], dc)]
        return out

    def ours(verify):
        with tempfile.TemporaryDirectory(dir=data) as out:
            rec = clock("ours" if verify else "noverify",
                        lambda: build(held + test, scheme=scheme, labels=labels, out=out, name="ens", verify=verify,
                                      progress=False, log=lambda *a: None))
            return rec, read_store(rec.outputs["test"]).indices  # (not timed)

    peak = weights = ens = None
    for _ in range(S["build_rounds"].get(n, 1)):
        rec, got = ours(True)
        if peak is None:
            peak, ens = maxrss_mib(), got
            w = rec.fitted.get("weights")
            weights = None if scheme == "uniform" or not w else [w[m] for m in names]
        top = clock("floor", lambda: (numpy_floor(held, weights) if held else None, numpy_floor(test, weights)))[1]
        ours(False)
    agree = float(np.mean((np.sort(top, axis=1) == np.sort(ens[:, :K_TOP], axis=1)).all(axis=1)))
    (t_ours, c_ours), (t_floor, c_floor), (t_nv, c_nv) = best["ours"], best["floor"], best["noverify"]
    rounds = S["build_rounds"].get(n, 1)
    fit = f" + {len(read_store_ids(held[0]))} labelled held-out" if held else ""
    return row("8 build", f"{scheme} K={n_members} N={n}{fit}", t_ours, t_floor, ours_peak=peak,
               base_label="numpy floor: h5py read, scatter-add, gather the union, argpartition top 20 (no check, "
                          "nothing written)" + (", both splits" if held else ""),
               check=(f"build = {t_ours / t_floor:.2f}x the floor wall, {c_ours / c_floor:.2f}x CPU (target <= 1.5x "
                      f"at <= 1 GB); top-20 set = floor's on {agree:.4f} of test videos"),
               note=(f"verify=False: {t_nv:.1f}s = {t_nv / t_floor:.2f}x the floor wall, {c_nv / c_floor:.2f}x CPU "
                     f"(verifying costs {100 * (t_ours / t_nv - 1):+.0f}%); best of {rounds}; CPU ours "
                     f"{c_ours:.1f}s, floor {c_floor:.1f}s"))


def read_store_ids(path):
    from predictions.store import open_store

    with open_store(path) as r:
        return r.ids


#: Heavy modules the start-up rows report as loaded (numpy and h5py included, for information).
STARTUP_HEAVY = ("numpy", "h5py", "tqdm", "pandas", "scipy", "sklearn", "torch", "xgboost", "matplotlib", "dask")


_STARTUP_PROBE = """
import contextlib, io, sys
sys.argv = {argv!r}
from {pkg}.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
print(",".join(m for m in {heavy!r} if m in sys.modules) or "none")
"""


def case_startup(S, data):
    """Start-up of the console scripts (a fresh process each, as a user runs them) vs the bare interpreter,
    interleaved, best of 7; and the heavy modules each command leaves loaded."""
    bindir = Path(sys.executable).parent
    bare = [sys.executable, "-c", "pass"]
    rows = []
    for label, script, argv, pkg in (("ensemble --help", "ensemble", ["--help"], "ensembler"),
                                     ("ensemble schemes", "ensemble", ["schemes"], "ensembler"),
                                     ("produce --help", "produce", ["--help"], "producers")):
        exe = bindir / script
        cmd = [str(exe), *argv] if exe.exists() else [sys.executable, "-m", f"{pkg}.cli", *argv]
        t_ours, t_base, _ = paired(lambda: subprocess.run(cmd, capture_output=True, check=True),
                                   lambda: subprocess.run(bare, capture_output=True, check=True), rounds=7)
        probe = _STARTUP_PROBE.format(argv=[script, *argv], pkg=pkg, heavy=STARTUP_HEAVY)
        pr = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
        loaded = pr.stdout.strip().splitlines()[-1] if pr.returncode == 0 else f"probe failed: {pr.stderr[-200:]}"
        rows.append(row("9 startup", label, t_ours, t_base, ours_peak=maxrss_mib(), base_label="python -c pass",
                        check=f"{'met' if t_ours <= 0.3 else 'MISSED'}: target <= 0.3 s",
                        note=f"loads: {loaded}"))
    return rows


def run_case(spec: str, S: dict, data: Path) -> dict:
    name, _, arg = spec.partition(":")
    if name == "gap_full":
        return case_gap_full(S, data, int(arg))
    if name == "gap_topk":
        return case_gap_topk(S, data)
    if name == "ensemble":
        return case_ensemble(S, data, int(arg))
    if name == "read":
        return case_read(S, data)
    if name == "stacking":
        return case_stacking(S, data)
    if name == "bounded":
        return case_bounded(S, data, int(arg))
    if name == "csv_import":
        return case_csv_import(S, data, arg)
    if name == "csv_submission":
        return case_csv_submission(S, data, int(arg))
    if name == "verify":
        return case_verify(S, data)
    if name == "build":
        n, k, scheme = arg.split(":")
        return case_build(S, data, int(n), int(k), scheme)
    if name == "startup":
        return case_startup(S, data)
    raise SystemExit(f"unknown case {spec}")


def cases_of(fig: str, S: dict) -> list[str]:
    if fig == "gap":
        return [f"gap_full:{n}" for n in S["gap_full"]] + ["gap_topk"]
    if fig == "ensemble":
        return [f"ensemble:{k}" for k in S["ens_k"]]
    if fig == "read":
        return ["read"]
    if fig == "stacking":
        return ["stacking"]
    if fig == "bounded":
        return [f"bounded:{n}" for n in S["bounded_n"]]
    if fig == "csv":
        return ["csv_import:f6", "csv_import:g"] + [f"csv_submission:{k}" for k in S["csv_k"]]
    if fig == "verify":
        return ["verify"]
    if fig == "build":
        return [f"build:{n}:{k}:{w}" for n in S["build_n"] for k in S["build_k"] for w in ("uniform", "gap")]
    if fig == "startup":
        return ["startup"]
    raise SystemExit(f"unknown figure {fig}")


# =========================================================================== driver
def _sub(args: list[str]) -> dict | None:
    cmd = [sys.executable, str(Path(__file__).resolve())] + args
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        return {"error": f"{' '.join(args)} failed (rc {proc.returncode})"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(("{", "["))]
    return json.loads(lines[-1]) if lines else None


def fmt(x, unit="s"):
    return "-" if x is None else f"{x:.3f}{unit}" if x < 10 else f"{x:.1f}{unit}"


def table(rows: list[dict]) -> str:
    out = ["| figure | case | ours | baseline | ratio | ours peak RSS | process peak | check | baseline | note |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            out.append(f"| error | {r['error']} |||||||||")
            continue
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        out.append(f"| {r['figure']} | {r['case']} | {fmt(r['ours_s'])} | {fmt(r['base_s'])} | {ratio} | "
                   f"{r['ours_peak_mib']:.0f} MiB | {r['proc_peak_mib']:.0f} MiB | {r['check']} | "
                   f"{r['base_label']} | {r['note']} (load {r['load']}) |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1/20 sizes (smoke run)")
    ap.add_argument("--only", nargs="+", choices=FIGURES, help="figures to run (default all)")
    ap.add_argument("--data-dir", type=Path, help="cache of generated inputs (default /tmp/yt8m-bench-<size>)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    ap.add_argument("--_prepare", help=argparse.SUPPRESS)
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    S = sizes(args.quick)
    data = args.data_dir or Path(f"/tmp/yt8m-bench-{'quick' if args.quick else 'full'}")
    data.mkdir(parents=True, exist_ok=True)
    common = (["--quick"] if args.quick else []) + ["--data-dir", str(data)]
    if args._prepare:
        prepare(args._prepare, S, data)
        print("{}")
        return 0
    if args._case:
        print(json.dumps(run_case(args._case, S, data)))
        return 0

    figs = args.only or list(FIGURES)
    print(f"# bench ({'quick' if args.quick else 'full'}), {os.cpu_count()} cores, load {loadavg()}", flush=True)
    rows = []
    for fig in figs:
        err = _sub(["--_prepare", fig] + common)
        if err and "error" in err:
            rows.append(err)
            continue
        results = []
        for c in cases_of(fig, S):
            r = _sub(["--_case", c] + common)
            results.extend(r if isinstance(r, list) else [r])
        if fig == "bounded":
            if any("error" in r for r in results):
                rows.extend(r for r in results if "error" in r)
                continue
            small, big = results
            results = [{"figure": "5 bounded", "case": f"build uniform K={S['bounded_k']} N={big['n']} "
                         f"vs N={small['n']} (chunk {S['chunk_rows']})",
                         "ours_s": big["seconds"], "base_s": small["seconds"], "ratio": None,
                         "ours_peak_mib": big["peak"], "proc_peak_mib": small["peak"],
                         "check": f"peak ratio {big['peak'] / small['peak']:.2f} for {big['n'] / small['n']:.0f}x N",
                         "note": "'baseline' = the same build at the small N; process peak = its peak",
                         "base_label": f"same build, N={small['n']}", "load": big["load"]}]
        rows.extend(results)
        for r in results:
            print(json.dumps(r), flush=True)
    text = table(rows)
    print(text)
    print(f"# load average at end: {loadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
