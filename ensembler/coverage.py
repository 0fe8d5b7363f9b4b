"""Which videos each split's ensemble covers when the members cover different videos.

On the split a submission is made from, dropping a video is a silently wrong
submission, so a difference between the members' id sets is an error unless
the user chose a rule (``--missing``):

* ``error`` (default): InputError naming each member and how many of the
  split's videos (the union over the members) it lacks;
* ``zero``: the union; a member that lacks a video scores 0 for it;
* ``drop``: the intersection, stated in the summary.

The fit split always uses the intersection (a combiner is fitted on videos
every member scored), and the build summary says how many were dropped.
:func:`split_alignment` returns the alignment and a ``coverage`` dict for the
record: ``{"videos": union, "kept": n, "rule": ..., "lacking": {member: n}}``.
"""
from __future__ import annotations

import warnings

import numpy as np

from predictions.align import Alignment
from predictions.errors import InputError

from .members import MemberStores, align_members

__all__ = ["MISSING_RULES", "split_alignment", "union_alignment", "describe_coverage"]

MISSING_RULES = ("error", "zero", "drop")


def _member_ids(m: MemberStores) -> np.ndarray:
    """The videos a member scores (a model's crops: those all its crops have)."""
    ids = m.readers[0].ids
    for r in m.readers[1:]:
        ids = ids[np.isin(ids, r.ids)]
    return ids


def union_alignment(members: list[MemberStores]) -> Alignment:
    """Every video any member scores (first member's order, then each new one in its member's order);
    ``rows`` per store, -1 where the store lacks the video."""
    parts, seen = [], None
    for m in members:
        ids = _member_ids(m)
        new = ids if seen is None else ids[~np.isin(ids, seen)]
        parts.append(new)
        seen = new if seen is None else np.concatenate([seen, new])
    union = np.concatenate(parts) if len(parts) > 1 else parts[0]
    rows = []
    for m in members:
        for r in m.readers:
            order = np.argsort(r.ids, kind="stable")
            pos = np.searchsorted(r.ids[order], union)
            pos = np.minimum(pos, len(order) - 1)
            hit = r.ids[order][pos] == union
            rows.append(np.where(hit, order[pos], -1).astype(np.int64))
    return Alignment(ids=union, rows=rows)


def split_alignment(members: list[MemberStores], *, split: str, fit_split: str, rule: str,
                    align_kw: dict) -> tuple[Alignment, dict]:
    """``(alignment, coverage)`` of one split under ``rule`` (see the module docstring)."""
    if rule not in MISSING_RULES:
        raise InputError(f"--missing must be one of {', '.join(MISSING_RULES)}, got {rule!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped videos are reported in the coverage instead
        inter = align_members(members, **align_kw)
    ids = [_member_ids(m) for m in members]
    union_n = len(np.unique(np.concatenate(ids)))
    lacking = {m.name: union_n - len(i) for m, i in zip(members, ids) if len(i) < union_n}
    coverage = {"videos": union_n, "kept": len(inter.ids), "rule": "intersection", "lacking": lacking}
    if not lacking or split == fit_split:
        return inter, coverage
    if rule == "error":
        detail = ", ".join(f"{n} lacks {c}" for n, c in lacking.items())
        raise InputError(f"split {split!r}: the members cover different videos ({union_n} in all; {detail}): "
                         f"an ensemble of the {len(inter.ids)} they share would drop "
                         f"{union_n - len(inter.ids)}; choose --missing zero (a member that lacks a video "
                         f"scores 0 for it) or --missing drop (keep the shared videos)")
    if rule == "drop":
        return inter, {**coverage, "rule": "drop"}
    union = union_alignment(members)
    return union, {**coverage, "kept": len(union.ids), "rule": "zero"}


def describe_coverage(split: str, coverage: dict) -> str | None:
    """One summary line when a split's members did not all cover the same videos, else None."""
    lacking = coverage.get("lacking") or {}
    if not lacking:
        return None
    detail = ", ".join(f"{n} lacks {c}" for n, c in lacking.items())
    dropped = coverage["videos"] - coverage["kept"]
    if coverage.get("rule") == "zero":
        return (f"  {split}: members cover different videos ({detail}); all {coverage['videos']} kept, a "
                f"missing member scoring 0 (--missing zero)")
    why = "the fit split keeps the videos every member scored" if coverage.get("rule") == "intersection" \
        else "--missing drop"
    return f"  {split}: dropped {dropped} of {coverage['videos']} videos ({detail}): {why}"
