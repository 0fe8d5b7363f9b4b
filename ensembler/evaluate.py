"""Score members and ensembles against ground truth, streaming over row chunks."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import expand_paths
from predictions.types import Labels, Predictions

from .distributed import map_ordered
from .members import ChunkTask, MemberStores, align_members, chunk_tasks, concat, read_chunk

_LABELS_NAME = re.compile(r"^labels\.(?P<split>[A-Za-z0-9_-]+)\.h5$")


def find_labels(patterns) -> dict[str, Labels]:
    """``{split: Labels}`` from labels files named ``labels.<split>.h5`` (files, dirs or globs)."""
    out: dict[str, Labels] = {}
    for path in expand_paths(patterns):
        m = _LABELS_NAME.match(Path(path).name)
        if not m:
            continue
        split = m.group("split")
        if split in out:
            raise InputError(f"two labels files for split {split!r}", path)
        out[split] = read_labels(path)
    if not out:
        raise InputError(f"no labels file (labels.<split>.h5) among {patterns}")
    return out


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
