"""Stream every split's members through a fitted combiner into ensemble stores, chunk by chunk.

:func:`apply_to_splits` is the apply step of ``ensemble build`` and of
``ensemble apply``: for each planned split it reads the aligned members in
row chunks (:func:`~ensembler.members.chunk_tasks`; memory bounded by
``chunk_rows``), combines each chunk (:func:`combine_chunk`: the dense fast
path when the combiner declares itself a weighted mean, see
:meth:`~ensembler.base.Combiner.linear_weights`) and writes the chunk to the
split's output store ``<name>.<split>.full.h5``, itself a valid member. The
splits with labels are scored.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from predictions import metrics
from predictions.atomic import AtomicSet
from predictions.store import StoreWriter, read_store
from predictions.types import Labels, Predictions

from .base import Combiner
from .candidates import Candidates, weighted_top_k
from .crossfit import plain_fold_scores
from .distributed import map_ordered
from .evaluate import evaluate_members
from .members import ChunkTask, MemberStores, chunk_tasks, read_chunk

__all__ = ["SplitPlan", "apply_to_splits", "auto_chunk_rows", "combine_chunk", "progress_bar", "CHUNK_ENTRIES"]

#: Candidate entries (videos x members x k) per streamed chunk: about 0.5 GB of working memory.
CHUNK_ENTRIES = 4_000_000


@dataclass
class SplitPlan:
    """What one split's output is made of: its members (in the combiner's order), their alignment
    (``rows`` of -1 where a member lacks a video, under ``--missing zero``) and the output path."""

    split: str
    members: list[MemberStores]
    alignment: object
    path: Path
    coverage: dict = field(default_factory=dict)


def auto_chunk_rows(members: list[MemberStores]) -> int:
    """Videos per chunk so that a chunk holds about CHUNK_ENTRIES member entries (500 to 50,000)."""
    width = sum(m.k or 100 for m in members) or 1
    return int(min(50_000, max(500, CHUNK_ENTRIES // width)))


def combine_chunk(task: ChunkTask, combiner: Combiner, names, member_ks, k_out: int, member_k: int | None,
                  reader_for=None, weights=None) -> Predictions:
    """Read one chunk and combine it with the fitted scheme: the chunk's top ``k_out`` predictions.

    ``weights`` (``combiner.linear_weights()``, when its score is a weighted mean of the member
    scores): the chunk is combined by :func:`~ensembler.candidates.weighted_top_k`, which adds the
    scores straight into a dense block instead of building the candidates' (R, M) matrix.
    Runs in this process or on a Dask worker (``reader_for`` None: stores opened by path and cached).
    """
    preds = read_chunk(task, member_ks, member_k=member_k, reader_for=reader_for)
    if weights is not None:
        return weighted_top_k(preds, weights, k=k_out, names=names)
    return combiner.predict(Candidates.from_members(preds, names), k=k_out)


def local_readers(members: list[MemberStores]):
    """``path -> open StoreReader`` of the members' stores (this process)."""
    return {p: r for m in members for p, r in zip(m.paths, m.readers)}.__getitem__


class _NoBar:
    def update(self, n=1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(*, disable: bool, **kw):
    """A tqdm bar, imported only when shown (``ensemble --help`` and quiet builds do not pay for it);
    it is cleared from the terminal when closed, so an error printed after it is the last line."""
    if disable:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(leave=False, **kw)


def apply_to_splits(combiner: Combiner, plans: list[SplitPlan], truth: dict[str, Labels], *, name: str,
                    fit_split: str, k_out: int, chunk_rows: int, member_k: int | None, config: dict,
                    progress: bool = False, client=None, staging: AtomicSet | None = None,
                    folds: tuple[int, int] | None = None, learned: bool = True) -> tuple[dict, dict]:
    """Stream every planned split through the fitted ``combiner``; return ``(outputs, scores)``.

    ``outputs`` is ``{split: store path}``; ``scores`` is ``{split: {"ensemble":
    metrics, "members": rows}}`` for the labelled splits (member rows on the
    splits other than the fit split). ``config`` (``{"scheme", "params"}``) is
    recorded in each store. With ``staging`` every store is written to its
    temporary file in that :class:`~predictions.atomic.AtomicSet`, renamed into
    place by the caller's commit (all outputs appear together or not at all).
    ``folds`` (n_folds, seed): a fixed scheme's fold scores on the fit split
    (its standard error), on the folds a learned scheme is cross-fitted on.
    """
    names = [m.name for m in plans[0].members]
    outputs, scores = {}, {}
    combiner_ref = client.scatter(combiner, broadcast=True) if client is not None else combiner
    weights = combiner.linear_weights()  # a weighted mean: summed straight into dense blocks
    for plan in plans:
        members, alignment = plan.members, plan.alignment
        write_to = plan.path if staging is None else staging.add(plan.path)
        extra = {"ensemble": {"scheme": config.get("scheme"), "members": names, "fit_split": fit_split,
                              "member_paths": [p for m in members for p in m.paths]}}
        tasks = chunk_tasks(members, alignment, chunk_rows)
        opts = (names, [m.k for m in members], k_out, member_k)
        if client is None:
            results = (combine_chunk(t, combiner, *opts, reader_for=local_readers(members), weights=weights)
                       for t in tasks)
        else:
            results = map_ordered(client, combine_chunk, tasks, combiner_ref, *opts, None, weights)
        bar = progress_bar(total=len(alignment.ids), unit="video", desc=f"{name} {plan.split}", disable=not progress)
        try:
            with StoreWriter(write_to, ids=alignment.ids, num_classes=members[0].num_classes, k=k_out, model=name,
                             split=plan.split, crop="full", config=config, extra=extra,
                             atomic=staging is None) as writer:
                for pred in results:
                    writer.write(pred)
                    bar.update(len(pred))
        finally:
            bar.close()
        outputs[plan.split] = str(plan.path)
        if plan.split in truth:
            scores[plan.split] = _score_split(write_to, plan, truth[plan.split], fit_split=fit_split,
                                              chunk_rows=chunk_rows, client=client,
                                              folds=None if learned else folds)
    return outputs, scores


def _score_split(store, plan: SplitPlan, labels: Labels, *, fit_split: str, chunk_rows: int, client,
                 folds) -> dict:
    pred = read_store(store)
    out = {"ensemble": metrics.evaluate(pred, labels.reindex(pred.ids))}
    if plan.split == fit_split and folds is not None:
        out["fold_gaps"] = plain_fold_scores(pred, labels, *folds)
    if plan.split != fit_split:
        out["members"] = evaluate_members(plan.members, labels, chunk_rows=chunk_rows, client=client)
    return out
