"""Score members and ensembles against ground truth, streaming over row chunks."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import expand_paths
from predictions.types import Labels

from .members import Member, align_members, concat, iter_member_chunks

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


def evaluate_member(member: Member, labels: Labels, *, k: int = 20, chunk_rows: int = 50000) -> dict:
    """GAP@k, MAP, Hit@1, PERR of one member on the videos it predicts (top-k kept per chunk)."""
    alignment = align_members([member])
    chunks = [parts[0].topk(k) for parts in iter_member_chunks([member], alignment, chunk_rows=chunk_rows)]
    pred = concat(chunks)
    truth = labels.reindex(pred.ids)
    row = metrics.evaluate(pred, truth, k=k)
    return {"name": member.name, **row}


def evaluate_members(members: list[Member], labels: Labels, *, k: int = 20, chunk_rows: int = 50000) -> list[dict]:
    """One metrics row per member, best GAP first."""
    rows = [evaluate_member(m, labels, k=k, chunk_rows=chunk_rows) for m in members]
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
