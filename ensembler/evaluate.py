"""Score members and ensembles against ground truth, streaming over row chunks."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import check_input_file, expand_paths
from predictions.types import Labels, Predictions

from .distributed import map_ordered
from .members import ChunkTask, MemberStores, align_members, chunk_tasks, concat, read_chunk

_LABELS_NAME = re.compile(r"^labels\.(?P<split>[A-Za-z0-9_-]+)\.h5$")


def find_label_files(patterns) -> dict[str, Path]:
    """``{split: path}`` of the labels files named ``labels.<split>.h5`` among files, dirs or globs.

    Other names inside a directory or a glob are skipped; a file named
    explicitly must be a labels file (``labels.<split>.h5``); every labels
    file found must be a regular file (a FIFO or a dangling link is an error,
    even for a split that is not read).
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    out: dict[str, Path] = {}
    for pattern in patterns:
        explicit = not Path(pattern).is_dir() and os.path.lexists(pattern)
        for path in expand_paths([pattern]):
            m = _LABELS_NAME.match(Path(path).name)
            if not m:
                if explicit:
                    raise InputError("not a labels file name: expected labels.<split>.h5", path)
                continue
            split = m.group("split")
            if split in out:
                raise InputError(f"two labels files for split {split!r} (the other: {out[split]})", path)
            check_input_file(Path(path), "a labels file (.h5)")  # even if this split is not read
            out[split] = Path(path)
    if not out:
        raise InputError(f"no labels file (labels.<split>.h5) among {', '.join(map(str, patterns))}")
    return out


def find_labels(patterns) -> dict[str, Labels]:
    """``{split: Labels}`` from labels files named ``labels.<split>.h5`` (files, dirs or globs)."""
    return {split: read_labels(path) for split, path in find_label_files(patterns).items()}


def check_labels_cover(labels: Labels, ids, label_path, store_path=None) -> None:
    """InputError naming the labels file unless every id of ``ids`` (a store's videos) has an entry."""
    ids = np.asarray(ids)
    missing = ~np.isin(ids, labels.ids)
    if missing.any():
        where = f" of {store_path}" if store_path is not None else ""
        raise InputError(f"{int(missing.sum())} of the {len(ids)} videos{where} have no entry in this labels "
                         f"file (first: {str(ids[missing][0])!r})", label_path)


def _topk_chunk(task: ChunkTask, member_ks, k: int, reader_for=None) -> Predictions:
    """One chunk of one member, cut to its top ``k`` (runs here or on a Dask worker)."""
    return read_chunk(task, member_ks, reader_for=reader_for)[0].topk(k)


def evaluate_member(member: MemberStores, labels: Labels, *, k: int = 20, chunk_rows: int = 50000, client=None) -> dict:
    """GAP@k, MAP, Hit@1, PERR of one member on the videos it predicts.

    Streams over row chunks keeping only each video's top ``k``, so memory is
    O(videos x k); with a Dask ``client`` the chunks are read on its workers.
    """
    alignment = align_members([member])
    tasks = chunk_tasks([member], alignment, chunk_rows)
    if client is None:
        local = dict(zip(member.paths, member.readers))
        chunks = [_topk_chunk(t, [member.k], k, reader_for=local.__getitem__) for t in tasks]
    else:
        chunks = list(map_ordered(client, _topk_chunk, tasks, [member.k], k))
    if not chunks:
        raise InputError("the store holds no video: nothing to evaluate", member.paths[0])
    pred = concat(chunks)
    truth = labels.reindex(pred.ids)
    return {"name": member.name, **metrics.evaluate(pred, truth, k=k)}


def evaluate_members(members: list[MemberStores], labels: Labels, *, k: int = 20, chunk_rows: int = 50000,
                     client=None) -> list[dict]:
    """One metrics row per member, best GAP first."""
    rows = [evaluate_member(m, labels, k=k, chunk_rows=chunk_rows, client=client) for m in members]
    return sorted(rows, key=lambda r: -r["gap"])


def format_table(rows: list[dict], extra: tuple[str, ...] = ()) -> str:
    """A fixed-width text table of metric rows (name, GAP, MAP, Hit@1, PERR, n, extras)."""
    cols = [("name", "member", "{}"), ("gap", "GAP@20", "{:.4f}"), ("map", "MAP", "{:.4f}"),
            ("hit1", "Hit@1", "{:.4f}"), ("perr", "PERR", "{:.4f}"), ("n", "videos", "{:d}")]
    cols += [(e, e, "{}") for e in extra]
    cells = [[h for _, h, _ in cols]]
    for r in rows:
        cells.append(["-" if r.get(key) is None else (fmt.format(r[key]) if not isinstance(r[key], float)
                      or not np.isnan(r[key]) else "nan") for key, _, fmt in cols])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = ["  ".join(c[i].ljust(widths[i]) if i == 0 else c[i].rjust(widths[i]) for i in range(len(cols)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
