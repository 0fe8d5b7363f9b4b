"""Apply a fitted ensemble later: ``ensemble apply BUILD.json`` and :func:`load_build`.

A build saves its fitted model beside its record (``<name>.model.npz``,
:mod:`ensembler.persist`, no pickle). :func:`load_build` reads both back;
:meth:`FittedBuild.apply` runs the model on new prediction files of the same
members (stores or Kaggle CSVs, matched by member name), exactly as the build
streamed its own splits, so the stores it writes are identical to the build's
for the same inputs::

    fitted = ensembler.load_build("runs/x/ens-caruana.build.json")
    fitted.apply(["preds/moe.test.csv", "preds/lr.test.csv"], out="runs/new")   # {split: store path}
    fitted.apply([...])                                                      # {split: Predictions}

A missing, extra or renamed member, or a different class count, is a one-line
InputError naming it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from predictions.atomic import AtomicSet
from predictions.errors import InputError

from .base import Combiner
from .coverage import split_alignment
from .members import chunk_tasks, concat, discover, has_csv, verify_members, with_csv_stores
from .persist import load_combiner
from .record import BuildRecord
from .streaming import SplitPlan, apply_to_splits, auto_chunk_rows, combine_chunk, local_readers
from .truth import find_truth, read_truth

__all__ = ["FittedBuild", "load_build"]


@dataclass
class FittedBuild:
    """A build record and its fitted model (``combiner``), ready to apply to new member files."""

    record: BuildRecord
    combiner: Combiner

    @property
    def member_names(self) -> list[str]:
        return list(self.combiner.member_names_)

    @property
    def top(self) -> int:
        return int(self.record.extra_outputs.get("top") or 20)

    def _members_by_split(self, members, *, classes=None, csv_cache=None, progress=False, log=None) -> dict:
        if isinstance(members, (str, os.PathLike)):
            members = [members]
        members = list(members)
        if has_csv(members):
            members = with_csv_stores(members, classes=classes or self.record.extra_outputs.get("num_classes"),
                                      csv_cache=csv_cache, progress=progress, log=log)
        by_split = discover(members)
        by_split = {s: [m for m in ms if m.name != self.record.name] for s, ms in by_split.items()}
        want = self.member_names
        num_classes = self.record.extra_outputs.get("num_classes")
        out = {}
        for split, ms in sorted(by_split.items()):
            names = [m.name for m in ms]
            lacking = [n for n in want if n not in names]
            extra = [n for n in names if n not in want]
            if lacking or extra:
                parts = ([f"missing member(s) {', '.join(lacking)}"] if lacking else []) + (
                    [f"member(s) the ensemble was not fitted on: {', '.join(extra)}"] if extra else [])
                raise InputError(f"split {split!r}: {'; '.join(parts)} (the ensemble {self.record.name!r} "
                                 f"combines {', '.join(want)})")
            by_name = {m.name: m for m in ms}
            ordered = [by_name[n] for n in want]
            for m in ordered:
                if num_classes is not None and m.num_classes != num_classes:
                    raise InputError(f"{m.num_classes} classes, but the ensemble was fitted on {num_classes}",
                                     m.paths[0])
            out[split] = ordered
        if not out:
            raise InputError("no member stores given")
        return out

    def _plans(self, by_split: dict, out: Path | None, missing: str) -> list[SplitPlan]:
        plans = []
        for split, ms in by_split.items():
            alignment, coverage = split_alignment(ms, split=split, fit_split="", rule=missing, align_kw={})
            path = None if out is None else out / f"{self.record.name}.{split}.full.h5"
            plans.append(SplitPlan(split, ms, alignment, path, coverage))
        return plans

    def apply(self, members, out=None, *, labels=None, missing: str = "error", verify: bool = True,
              chunk_rows: int | None = None, classes=None, csv_cache=None, progress: bool = False,
              log=None) -> dict:
        """Run the fitted ensemble on ``members`` (stores or CSVs of every member, any splits).

        With ``out`` (a directory): writes ``<name>.<split>.full.h5`` per split, all or none, and
        returns ``{split: path}``; without: returns ``{split: Predictions}``. ``missing`` as in
        ``ensemble build`` (a split whose members cover different videos is an error by default).
        """
        by_split = self._members_by_split(members, classes=classes, csv_cache=csv_cache, progress=progress,
                                          log=log)
        if verify:
            verify_members([m for ms in by_split.values() for m in ms], progress=progress)
        out = None if out is None else Path(out)
        plans = self._plans(by_split, out, missing)
        first = next(iter(by_split.values()))
        chunk_rows = chunk_rows or auto_chunk_rows(first)
        ks = {p.split: [m.k for m in p.members] for p in plans}
        if out is None:
            weights = self.combiner.linear_weights()
            return {p.split: concat([combine_chunk(t, self.combiner, self.member_names, ks[p.split], self.top, None,
                                                   reader_for=local_readers(p.members), weights=weights)
                                     for t in chunk_tasks(p.members, p.alignment, chunk_rows)])
                    for p in plans}
        from .build import check_out, locked_outputs
        check_out(out)
        truth = read_truth(find_truth(labels), first[0].num_classes) if labels else {}
        with locked_outputs(out, self.record.name), AtomicSet() as staging:
            outputs, _ = apply_to_splits(self.combiner, plans, truth, name=self.record.name,
                                         fit_split=self.record.fit_split or "", k_out=self.top,
                                         chunk_rows=chunk_rows, member_k=None,
                                         config={"scheme": self.record.scheme, "params": self.record.params},
                                         progress=progress, staging=staging)
        return outputs


def load_build(path) -> FittedBuild:
    """The build record at ``path`` (``<name>.build.json``) and its saved model."""
    record = BuildRecord.read(path)
    model = record.extra_outputs.get("model")
    model_path = Path(path).with_name(Path(model).name) if model else Path(path).with_name(
        f"{record.name}.model.npz")
    if not model_path.exists():
        why = record.extra_outputs.get("model_error")
        raise InputError(f"no saved model beside the record ({model_path.name}" + (f": {why}" if why else "") +
                         "): rebuild with this version to apply it later", path)
    return FittedBuild(record, load_combiner(model_path))
