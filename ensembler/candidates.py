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
    members : member names, length M.
    """

    ids: np.ndarray
    row: np.ndarray
    label: np.ndarray
    scores: np.ndarray
    present: np.ndarray
    ranks: np.ndarray
    num_classes: int
    members: tuple[str, ...]

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
        if not members:
            raise InputError("no members to combine")
        names = tuple(names) if names is not None else tuple(f"m{i}" for i in range(len(members)))
        if len(names) != len(members):
            raise InputError(f"{len(names)} names for {len(members)} members")
        first = members[0]
        C = first.num_classes
        topk = []
        for name, m in zip(names, members):
            check_aligned(first.ids, m.ids, f"members {names[0]!r} and {name!r}")
            if m.num_classes != C:
                raise InputError(f"member {name!r} has {m.num_classes} classes, expected {C}")
            topk.append(m if m.indices is not None else m.topk(k_full))
        n, M = len(first.ids), len(members)
        # Pool (key = row * C + label, member, score, rank) over members, then unique keys.
        keys, member_of, score_of, rank_of = [], [], [], []
        for j, m in enumerate(topk):
            k = m.scores.shape[1]
            keys.append((np.arange(n, dtype=np.int64)[:, None] * C + m.indices).ravel())
            member_of.append(np.full(n * k, j, dtype=np.int32))
            score_of.append(m.scores.astype(np.float32, copy=False).ravel())
            rank_of.append(np.broadcast_to(np.arange(k, dtype=np.int16), (n, k)).ravel())
        keys = np.concatenate(keys)
        uniq, inv = np.unique(keys, return_inverse=True)
        R = len(uniq)
        member_of = np.concatenate(member_of)
        scores = np.zeros((R, M), dtype=np.float32)
        present = np.zeros((R, M), dtype=bool)
        ranks = np.full((R, M), -1, dtype=np.int16)
        scores[inv, member_of] = np.concatenate(score_of)
        present[inv, member_of] = True
        ranks[inv, member_of] = np.concatenate(rank_of)
        return cls(first.ids, uniq // C, (uniq % C).astype(np.int32), scores, present, ranks, C, names)

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
                          self.present[sel], self.ranks[sel], self.num_classes, self.members)

    def select_members(self, which) -> "Candidates":
        """Keep only some members (by index); candidates no kept member proposes are dropped."""
        which = np.asarray(which, dtype=np.int64)
        keep = self.present[:, which].any(axis=1)
        return Candidates(self.ids, self.row[keep], self.label[keep], self.scores[keep][:, which],
                          self.present[keep][:, which], self.ranks[keep][:, which], self.num_classes,
                          tuple(self.members[i] for i in which))

    def targets(self, labels: Labels) -> np.ndarray:
        """(R,) bool: is each candidate a true label? ``labels`` must be aligned with ``ids``."""
        check_aligned(self.ids, labels.ids, "candidates and labels")
        return labels.is_positive(self.row, self.label)

    def gap(self, score: np.ndarray, labels: Labels, k: int = 20, y: np.ndarray | None = None) -> float:
        """GAP@k of the combined ``score`` (R,), positives outside the candidates counted as missed."""
        y = self.targets(labels) if y is None else y
        return metrics.gap_pooled(self.row, score, y, int(labels.counts().sum()), k=k)

    def to_predictions(self, score: np.ndarray, k: int = 20) -> Predictions:
        """Top-``k`` predictions per video from combined scores (R,), clipped to [0, 1].

        Videos with fewer than ``k`` candidates are padded with score 0 and the
        lowest label ids not already in their row.
        """
        score = np.clip(np.nan_to_num(np.asarray(score, dtype=np.float32)), 0.0, 1.0)
        n = self.n_videos
        # Sort candidates by (row, -score, label); rank within row; keep rank < k.
        order = np.lexsort((self.label, -score, self.row))
        rows = self.row[order]
        starts = np.searchsorted(rows, np.arange(n))
        rank = np.arange(len(rows)) - starts[rows]
        keep = rank < k
        out_s = np.zeros((n, k), dtype=np.float32)
        out_l = np.full((n, k), -1, dtype=np.int64)
        out_s[rows[keep], rank[keep]] = score[order][keep]
        out_l[rows[keep], rank[keep]] = self.label[order][keep]
        missing = out_l < 0
        if missing.any():
            _pad_labels(out_l, missing, self.num_classes)
        return Predictions(self.ids, out_s, out_l.astype(np.int32), self.num_classes)


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
