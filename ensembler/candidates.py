"""Candidate (video, label) pairs: the one representation every combiner works on.

Members come as top-k or full predictions of the same videos. A *candidate* is
a (video, label) pair proposed by at least one member, i.e. in the union of the
members' top-k lists (full members are first cut to their top ``k_full``
labels, 100 by default: a label outside every member's top 100 practically
never reaches an ensemble's top 20). For each candidate we keep every member's
score, 0 where the member did not propose the label (so top-k and full members
mix freely), and whether it did.

Combiners map the (R, M) score matrix to one score per candidate; the top ``k``
candidates of each video become the ensemble's predictions.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.types import Labels, Predictions, check_aligned

DEFAULT_K_FULL = 100


@dataclass(frozen=True)
class Candidates:
    """Union of the members' top-k labels for ``n`` videos.

    Attributes
    ----------
    ids : (n,) video ids.
    row : (R,) int64 video row of each candidate, non-decreasing.
    label : (R,) int32 label id of each candidate (unique within a video).
    scores : (R, M) float32, member ``m``'s score for the candidate, 0 if not proposed.
    present : (R, M) bool, whether member ``m`` proposed the candidate.
    ranks : (R, M) int16, 0-based rank of the label in member ``m``'s list, -1 if absent.
    num_classes : C.
    member_names : the members' names, length M.
    """

    ids: np.ndarray
    row: np.ndarray
    label: np.ndarray
    scores: np.ndarray
    present: np.ndarray
    ranks: np.ndarray
    num_classes: int
    member_names: tuple[str, ...]

    @property
    def n_videos(self) -> int:
        return len(self.ids)

    @property
    def n_members(self) -> int:
        return self.scores.shape[1]

    def __len__(self) -> int:
        return len(self.row)

    @classmethod
    def from_members(cls, members: list[Predictions], names=None, *, k_full: int = DEFAULT_K_FULL) -> "Candidates":
        """Build from members aligned on the same ids (checked, never assumed)."""
        names = tuple(names) if names is not None else tuple(f"m{i}" for i in range(len(members)))
        topk = _checked_topk(members, names, k_full)
        first = topk[0]
        C = first.num_classes
        n, M = len(first.ids), len(members)
        row, label, flat = _union(topk, n, C)
        R = len(row)
        flat = flat.ravel()
        scores = np.zeros((R, M), dtype=np.float32)
        present = np.zeros((R, M), dtype=bool)
        ranks = np.full((R, M), -1, dtype=np.int16)
        if n:
            scores.ravel()[flat] = np.concatenate([m.scores.astype(np.float32, copy=False) for m in topk],
                                                  axis=1).ravel()
            present.ravel()[flat] = True
            rank_row = np.concatenate([np.arange(m.indices.shape[1], dtype=np.int16) for m in topk])
            ranks.ravel()[flat] = np.broadcast_to(rank_row, (n, len(rank_row))).ravel()
        return cls(first.ids, row, label, scores, present, ranks, C, names)

    def take_videos(self, video_rows) -> "Candidates":
        """The candidates of a subset of videos (rows renumbered 0..len(video_rows)-1 in the given order)."""
        video_rows = np.asarray(video_rows, dtype=np.int64)
        new_pos = np.full(self.n_videos, -1, dtype=np.int64)
        new_pos[video_rows] = np.arange(len(video_rows))
        keep = new_pos[self.row] >= 0
        new_row = new_pos[self.row[keep]]
        order = np.argsort(new_row, kind="stable")
        sel = np.flatnonzero(keep)[order]
        return Candidates(self.ids[video_rows], new_row[order], self.label[sel], self.scores[sel],
                          self.present[sel], self.ranks[sel], self.num_classes, self.member_names)

    def targets(self, labels: Labels) -> np.ndarray:
        """(R,) bool: is each candidate a true label? ``labels`` must be aligned with ``ids``."""
        check_aligned(self.ids, labels.ids, "candidates and labels")
        return labels.is_positive(self.row, self.label)

    def gap(self, score: np.ndarray, labels: Labels, k: int = 20, y: np.ndarray | None = None) -> float:
        """GAP@k of the combined ``score`` (R,), positives outside the candidates counted as missed."""
        y = self.targets(labels) if y is None else y
        return metrics.gap_pooled(self.row, score, y, int(labels.counts().sum()), k=k)

    def scorer(self, labels: Labels, k: int = 20, y: np.ndarray | None = None) -> metrics.GapScorer:
        """A reusable GAP@k of combined scores (R,): equal to :meth:`gap`, much faster when called many times."""
        y = self.targets(labels) if y is None else y
        return metrics.GapScorer(self.row, y, int(labels.counts().sum()), k=k)

    def to_predictions(self, score: np.ndarray, k: int = 20) -> Predictions:
        """Top-``k`` predictions per video from combined scores (R,), clipped to [0, 1].

        Videos with fewer than ``k`` candidates are padded with score 0 and the
        lowest label ids not already in their row.
        """
        return _top_predictions(self.ids, self.row, self.label, score, k, self.num_classes)


def _top_predictions(ids, row, label, score, k: int, num_classes: int) -> Predictions:
    """Top-``k`` Predictions of candidates ``(row, label, score)`` (see :meth:`Candidates.to_predictions`)."""
    score = np.clip(np.nan_to_num(np.asarray(score, dtype=np.float32)), 0.0, 1.0)
    out_s, out_l = _top_per_row(row, label, score, len(ids), k)
    missing = out_l < 0
    if missing.any():
        _pad_labels(out_l, missing, num_classes)
    return Predictions(ids, out_s, out_l.astype(np.int32), num_classes)


def _checked_topk(members: list[Predictions], names, k_full: int) -> list[Predictions]:
    """The members as top-k Predictions (full ones cut to ``k_full``), checked: aligned on the first's
    ids (never assumed; the same ids array is aligned by construction), one class count, label ids
    in range."""
    if not members:
        raise InputError("no members to combine")
    if len(names) != len(members):
        raise InputError(f"{len(names)} names for {len(members)} members")
    first = members[0]
    C = first.num_classes
    topk = []
    for name, m in zip(names, members):
        if m.ids is not first.ids:
            check_aligned(first.ids, m.ids, f"members {names[0]!r} and {name!r}")
        if m.num_classes != C:
            raise InputError(f"member {name!r} has {m.num_classes} classes, expected {C}")
        topk.append(m if m.indices is not None else m.topk(k_full))
        idx = topk[-1].indices
        if idx.size and (idx.min() < 0 or idx.max() >= C):
            raise InputError(f"member {name!r} has label ids outside [0, {C})")
    return topk


def weighted_top_k(members: list[Predictions], weights, k: int = 20, names=None, *,
                   k_full: int = DEFAULT_K_FULL) -> Predictions:
    """Top-``k`` predictions of the weighted mean ``sum_m w_m s_m`` of the members' scores over the
    union of their top-k labels: what ``Candidates.from_members(members).to_predictions(scores @ w, k)``
    gives (same candidates, same order: descending score, then ascending label; same padding), up
    to float32 rounding of the sums, without the (R, M) score matrix.

    Per block of ``b`` videos (a (b, C) table that stays in the CPU caches): each member's weighted
    scores are scatter-added into a dense float32 table and its labels marked; one ``flatnonzero``
    of the marks lists the block's candidates in (video, label) order and gathers their sums.
    Cost: linear in the member entries plus ``n * C`` bytes scanned; memory O(b * C) besides the
    result. ``weights``: (M,) non-negative, as the weighted-mean schemes fit them.
    """
    names = tuple(names) if names is not None else tuple(f"m{i}" for i in range(len(members)))
    topk = _checked_topk(members, names, k_full)
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    if len(w) != len(topk):
        raise InputError(f"{len(w)} weights for {len(topk)} members")
    ids, C = topk[0].ids, topk[0].num_classes
    n = len(ids)
    b = max(1, min(n, _TABLE_CELLS // C))
    acc = np.zeros(b * C, dtype=np.float32)
    mark = np.zeros(b * C, dtype=bool)
    base = np.arange(b, dtype=np.int64)[:, None] * C
    rows, labels, sums = [], [], []
    for a in range(0, n, b):
        e = min(n, a + b)
        for m, wm in zip(topk, w):
            cell = (base[:e - a] + m.indices[a:e]).ravel()
            acc[cell] += wm * m.scores[a:e].astype(np.float32, copy=False).ravel()
            mark[cell] = True
        union = np.flatnonzero(mark[:(e - a) * C])
        sums.append(acc[union])
        acc[union] = 0
        mark[union] = False
        rows.append(union // C + a)
        labels.append((union % C).astype(np.int32))
    if not rows:
        return _top_predictions(ids, np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32), k, C)
    return _top_predictions(ids, np.concatenate(rows), np.concatenate(labels), np.concatenate(sums), k, C)


_TABLE_CELLS = 1 << 21  # cells of the per-block (rows, C) tables (2 MiB bool + 8-16 MiB int)


def _union(topk: list[Predictions], n: int, num_classes: int):
    """Union of the members' (row, label) pairs, sorted by row then label, without a global sort.

    Videos are processed in blocks of ``b`` rows: every member's labels are
    marked in a dense (b, C) bool table, ``np.nonzero`` of the table lists the
    block's candidates already in (row, label) order, and a (b, C) int table
    of candidate numbers maps each member entry to its candidate. Cost is
    linear in the entries plus ``n * C`` bits, memory O(b * C).

    Returns ``(row (R,) int64, label (R,) int32, flat)``: ``flat`` (n, sum_j k_j)
    is, for each entry of the members' label matrices laid side by side
    (member 0's k_0 columns first), its position ``candidate * M + member``
    in a C-ordered (R, M) matrix.
    """
    M = len(topk)
    labels = np.concatenate([m.indices for m in topk], axis=1) if M > 1 else topk[0].indices
    member = np.repeat(np.arange(M), [m.indices.shape[1] for m in topk])
    itype = np.int32 if labels.size * M < 2**31 - 1 else np.int64  # R <= labels.size
    b = max(1, min(n, _TABLE_CELLS // num_classes))
    mark = np.zeros(b * num_classes, dtype=bool)
    slot = np.empty(b * num_classes, dtype=itype)
    rows_out, labels_out = [], []
    flat_out = np.empty(labels.shape, dtype=itype)
    base = np.arange(b, dtype=np.int64)[:, None] * num_classes
    total = 0
    for a in range(0, n, b):
        e = min(n, a + b)
        cell = base[:e - a] + labels[a:e]
        mark[cell] = True
        nz = np.flatnonzero(mark[:(e - a) * num_classes])
        slot[nz] = np.arange(total * M, (total + len(nz)) * M, M, dtype=itype)
        np.add(slot[cell], member.astype(itype), out=flat_out[a:e])
        mark[nz] = False
        rows_out.append(nz // num_classes + a)
        labels_out.append((nz % num_classes).astype(np.int32))
        total += len(nz)
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), flat_out
    return np.concatenate(rows_out), np.concatenate(labels_out), flat_out


def _top_padded(row, label, score, counts, width: int, k: int, out_s, out_l):
    """The fast path of :func:`_top_per_row` for candidates grouped by row in ascending label order.

    Scores (in [0, 1]) go into an (n, width) table, -1 padded, columns in ascending label order.
    One argpartition keeps each row's best ``k``; they are ordered by one sort of integer keys
    (the score's bits, descending, then the column: ties by lower label). A row whose k-th best
    ties with a dropped candidate is redone with a stable sort of the whole row.
    """
    n, R = len(counts), len(row)
    starts = np.cumsum(counts) - counts
    pad = np.full(n * width, -1.0, dtype=np.float32)
    pad[np.arange(R) + (row * width - starts[row])] = score
    pad = pad.reshape(n, width)
    if width > k:
        part = np.argpartition(pad, width - k, axis=1)
        vals = np.take_along_axis(pad, part, axis=1)
        part, kept = part[:, width - k:], vals[:, width - k:]
        kth = kept.min(axis=1)
        tied = np.flatnonzero((vals[:, :width - k].max(axis=1) == kth) & (kth >= 0))
    else:
        part = np.broadcast_to(np.arange(width), (n, width))
        kept, tied = pad, ()
    # order-preserving for floats >= 0 (+ 0 turns a -0.0 into 0.0; padding -1 counts as 0, its column is last)
    bits = (np.maximum(kept, np.float32(0)) + np.float32(0)).view(np.int32).astype(np.int64)
    shift = max(int(width).bit_length(), 1)
    key = ((np.int64(0x7FFFFFFF) - bits) << shift) | part             # score descending, then column
    key.sort(axis=1)
    col = key & ((1 << shift) - 1)
    if len(tied):
        col[tied] = np.argsort(-pad[tied], axis=1, kind="stable")[:, :k]
    real = col < counts[:, None]
    w = col.shape[1]
    out_s[:, :w] = np.where(real, np.take_along_axis(pad, col, axis=1), 0.0)
    out_l[:, :w] = np.where(real, label[np.minimum(starts[:, None] + col, R - 1)], -1)
    return out_s, out_l


def _top_per_row(row: np.ndarray, label: np.ndarray, score: np.ndarray, n: int, k: int):
    """(n, k) float32 scores and int64 labels (-1 where a row has fewer than k) of each row's
    best candidates, by descending score then ascending label."""
    R = len(row)
    out_s = np.zeros((n, k), dtype=np.float32)
    out_l = np.full((n, k), -1, dtype=np.int64)
    if R == 0:
        return out_s, out_l
    counts = np.bincount(row, minlength=n)
    width = int(counts.max())
    grouped = not np.any(row[1:] < row[:-1])
    ascending = grouped and np.all((row[1:] != row[:-1]) | (label[1:] > label[:-1]))
    if ascending and n * width <= 4 * R + 4096 and width.bit_length() <= 31:
        return _top_padded(row, label, score, counts, width, k, out_s, out_l)
    # General case: sort candidates by (row, -score, label); rank within row; keep rank < k.
    order = np.lexsort((label, -score, row))
    rows = row[order]
    starts = np.searchsorted(rows, np.arange(n))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < k
    out_s[rows[keep], rank[keep]] = score[order][keep]
    out_l[rows[keep], rank[keep]] = label[order][keep]
    return out_s, out_l


def _pad_labels(out_l: np.ndarray, missing: np.ndarray, num_classes: int) -> None:
    """Fill the -1 slots of each row with the lowest label ids not used in that row (in place, vectorised)."""
    k = out_l.shape[1]
    if k > num_classes:
        raise InputError(f"k={k} exceeds the number of classes {num_classes}")
    rows = np.flatnonzero(missing.any(axis=1))
    width = min(2 * k, num_classes)  # a row uses < k labels, so k free ones lie below 2k
    used = np.zeros((len(rows), width), dtype=bool)
    sub = out_l[rows]
    r, c = np.nonzero((sub >= 0) & (sub < width))
    used[r, sub[r, c]] = True
    free_rank = np.cumsum(~used, axis=1) - 1  # rank of each free label within its row
    slot_rank = np.cumsum(sub < 0, axis=1) - 1  # rank of each empty slot within its row
    fr, fc = np.nonzero(~used)
    table = np.full((len(rows), width), -1, dtype=np.int64)
    table[fr, free_rank[fr, fc]] = fc
    sr, sc = np.nonzero(sub < 0)
    sub[sr, sc] = table[sr, slot_rank[sr, sc]]
    out_l[rows] = sub
