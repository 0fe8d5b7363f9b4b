"""``write_report``: an offline HTML report comparing ensemble members and ensembles on one split.

Inputs are the same stores and labels the ``ensemble`` command uses, plus the
build records (``<name>.build.json``) that ``ensemble build`` writes. A store
whose metadata ``extra`` has an ``"ensemble"`` entry is an *ensemble*; every
other store is a *member* (a model's crops are folded into one member, as in
``ensemble build``).

Uncertainty: every GAP on the report's split carries a fold standard error,
and every model's gain over the best member a paired one (see
:mod:`reports.noise`); a gain below two of them is called within noise.

The report directory holds ``index.html`` (self-contained: inline CSS, PNG
figures referenced by relative name, opens from disk with no network),
the figures, ``summary.json`` (every number shown) and ``summary.md``. It is
written into a temporary directory beside the target and renamed into place,
so a failed run leaves no partial report (and keeps a previous one intact).
"""
from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ensembler.candidates import DEFAULT_K_FULL, Candidates
from ensembler.evaluate import find_labels
from ensembler.members import MemberStores, align_members, discover, read_members
from ensembler.record import BuildRecord
from predictions import metrics
from predictions.align import align_labels
from predictions.errors import InputError
from predictions.store import check_input_file, expand_paths
from predictions.types import Labels, Predictions
from predictions.vocabulary import Vocabulary, load_vocabulary

from . import html, noise, plots

__all__ = ["write_report", "Model", "collect", "load_builds"]

N_LOST = 15          # rows of the "ensemble lost most" table
CALIBRATION_BINS = 10


@dataclass
class Model:
    """One leaderboard row: a member or an ensemble, with its predictions on the report's videos.

    ``metrics``: dict gap/map/hit1/perr/n/k of :func:`predictions.metrics.evaluate`.
    ``estimate``: the honest GAP estimate from the model's build record (cross-fitted
    for a learned scheme, the plain fit-split GAP for a fixed one), or None;
    ``std_error``: its fold standard error, or None.
    ``gap_se``: fold standard error of ``metrics["gap"]`` on the report's split;
    ``gain`` / ``gain_se``: GAP minus the best member's, and its paired fold s.e.
    (None for the best member itself).
    """

    name: str
    kind: str                      # "member" or "ensemble"
    pred: Predictions
    metrics: dict
    paths: list[str]
    scheme: str | None = None
    estimate: float | None = None
    std_error: float | None = None
    gap_se: float | None = None
    gain: float | None = None
    gain_se: float | None = None

    def row(self) -> dict:
        off = None if self.estimate is None else self.metrics["gap"] - self.estimate
        return {"name": self.name, "kind": self.kind, "scheme": self.scheme, **self.metrics,
                "gap_se": self.gap_se, "estimate": self.estimate, "std_error": self.std_error,
                "gap_minus_estimate": off, "gain_vs_best_member": self.gain, "gain_se": self.gain_se,
                "gain_verdict": noise.verdict(self.gain, self.gain_se), "paths": self.paths}


@dataclass
class Analysis:
    """Everything the report shows, computed once (numbers only; no drawing)."""

    split: str
    k: int
    n_videos: int
    num_classes: int
    n_positives: int
    models: list[Model]
    builds: dict
    notes: dict = field(default_factory=dict)
    diversity: dict | None = None
    greedy: list[dict] | None = None
    per_class: dict | None = None
    curves: dict = field(default_factory=dict)
    calibration: dict = field(default_factory=dict)
    verticals: list | None = None
    n_folds: int | None = None


# --------------------------------------------------------------------------- inputs
def load_builds(patterns) -> dict[str, BuildRecord]:
    """``{name: record}`` from build records: JSON files, directories (``*.build.json``) or globs."""
    if not patterns:
        return {}
    out: dict[str, BuildRecord] = {}
    for path in expand_paths(patterns, suffix=".build.json"):
        record = BuildRecord.read(path)
        if record.name in out:
            raise InputError(f"two build records named {record.name!r}", path)
        out[record.name] = record
    return out


def _labels_for(labels, split: str) -> Labels:
    if isinstance(labels, Labels):
        return labels
    found = find_labels(labels)
    if split not in found:
        raise InputError(f"no labels file for split {split!r} (labels.{split}.h5); found: "
                         f"{', '.join(sorted(found)) or 'none'}")
    return found[split]


def _vocabulary(vocabulary) -> Vocabulary | None:
    """The vocabulary (loaded); a path that is not a regular file (a FIFO would block) is refused unopened."""
    if vocabulary is None or isinstance(vocabulary, Vocabulary):
        return vocabulary
    check_input_file(Path(vocabulary), "a vocabulary CSV")
    return load_vocabulary(vocabulary)


def _check_vocabulary(vocab: Vocabulary | None, num_classes: int) -> None:
    """InputError unless the vocabulary names exactly ``num_classes`` classes (ids 0 .. C-1)."""
    if vocab is not None and vocab.num_classes != num_classes:
        raise InputError(f"the vocabulary lists {vocab.num_classes:,} classes but the stores and labels have "
                         f"{num_classes:,}: it is another class set, whose names would label the wrong "
                         f"classes", vocab.path)


def _describe(vocab: Vocabulary | None, classes) -> tuple[list[str], list[str]]:
    """Names and verticals of ``classes``; ``"class N"`` and ``""`` without a vocabulary."""
    if vocab is not None:
        return vocab.describe(classes)
    classes = np.asarray(classes, dtype=np.int64).ravel().tolist()
    return [f"class {c}" for c in classes], ["" for _ in classes]


def _is_ensemble(member: MemberStores) -> bool:
    return any("ensemble" in r.meta.extra for r in member.readers)


def _scheme(member: MemberStores) -> str | None:
    for r in member.readers:
        ens = r.meta.extra.get("ensemble")
        if isinstance(ens, dict):
            return ens.get("scheme")
    return None


def _estimate(record: BuildRecord | None) -> float | None:
    """The honest estimate of a build (cross-fitted, or plain for a fixed scheme), if it has one."""
    return None if record is None else record.estimate


def _std_error(record: BuildRecord | None) -> float | None:
    """The fold standard error of that estimate, if measured."""
    return None if record is None else record.std_error


# --------------------------------------------------------------------------- analysis
def collect(members, labels, *, split: str = "eval", builds=(), k: int = 20) -> tuple[Analysis, Labels]:
    """Read the split's stores and labels and score every model; return the analysis and aligned labels."""
    by_split = discover(members)
    if split not in by_split:
        raise InputError(f"no predictions store for split {split!r}; splits found: "
                         f"{', '.join(sorted(by_split)) or 'none'}")
    found = by_split[split]
    truth = _labels_for(labels, split)
    records = load_builds(builds)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        alignment = align_members(found, allow_mixed_k=True, allow_identical=True)
    notes = {}
    if caught:
        notes["alignment"] = str(caught[-1].message)
    counts = truth.counts()
    member_k = max(k, DEFAULT_K_FULL, int(counts.max()) if len(counts) else 1)
    preds = read_members(found, alignment, member_k=member_k)
    truth = align_labels(truth, alignment.ids)
    if len(truth.indices) == 0:
        raise InputError(f"the labels of split {split!r} have no positive label: nothing to score")
    models = []
    for member, pred in zip(found, preds):
        ens = _is_ensemble(member)
        models.append(Model(name=member.name, kind="ensemble" if ens else "member", pred=pred,
                            metrics=metrics.evaluate(pred, truth, k=k), paths=member.paths,
                            scheme=_scheme(member) if ens else None,
                            estimate=_estimate(records.get(member.name)) if ens else None,
                            std_error=_std_error(records.get(member.name)) if ens else None))
    models.sort(key=lambda m: (-m.metrics["gap"], m.name))
    return Analysis(split=split, k=k, n_videos=len(truth), num_classes=truth.num_classes,
                    n_positives=int(len(truth.indices)), models=models, builds=records, notes=notes), truth


def _uniform_gap(cands: Candidates, cols, y: np.ndarray, n_pos: int, k: int) -> float:
    """GAP@k of the uniform average of members ``cols`` over the candidates any of them proposes.

    The average is float32, as in ``ensembler`` (``Candidates.scores.mean(axis=1)``).
    """
    cols = np.asarray(cols, dtype=np.int64)
    mask = cands.present[:, cols].any(axis=1)
    score = cands.scores[:, cols].mean(axis=1)
    return metrics.gap_pooled(cands.row[mask], score[mask], y[mask], n_pos, k=k)


def correlation(scores: np.ndarray, chunk_rows: int = 1 << 20) -> np.ndarray:
    """(M, M) Pearson correlation of the columns of (R, M) ``scores``, in float64 row chunks.

    A constant column has correlation NaN with the others (1 on the diagonal).
    """
    R, M = scores.shape
    total = np.zeros(M)
    gram = np.zeros((M, M))
    for a in range(0, R, chunk_rows):
        block = np.asarray(scores[a:a + chunk_rows], dtype=np.float64)
        total += block.sum(axis=0)
        gram += block.T @ block
    mean = total / max(R, 1)
    cov = gram / max(R, 1) - np.outer(mean, mean)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov / np.outer(sd, sd)
    corr = np.clip(corr, -1.0, 1.0)
    corr[np.diag_indices(M)] = 1.0
    return corr


def diversity(cands: Candidates, truth: Labels, k: int) -> tuple[dict, list[dict]]:
    """Correlation of members' candidate scores, leave-one-out deltas and the greedy forward order.

    Returns ``(diversity, greedy)``: diversity has ``members``, ``correlation``
    (M, M) Pearson over the (R,) candidate scores (0 where a member did not
    propose the label), ``uniform_gap`` and ``loo`` {member: GAP without it
    minus GAP with all}; greedy is a list of ``{"member", "gap"}``, the member
    added at each step and the uniform average's GAP after adding it.
    """
    names = list(cands.member_names)
    M = len(names)
    y = cands.targets(truth)
    n_pos = int(len(truth.indices))
    corr = correlation(cands.scores)
    all_gap = _uniform_gap(cands, range(M), y, n_pos, k)
    loo = {names[j]: _uniform_gap(cands, [i for i in range(M) if i != j], y, n_pos, k) - all_gap
           for j in range(M)} if M > 1 else {}
    chosen: list[int] = []
    order = []
    remaining = list(range(M))
    while remaining:
        gaps = [_uniform_gap(cands, chosen + [j], y, n_pos, k) for j in remaining]
        best = int(np.argmax(gaps))
        chosen.append(remaining.pop(best))
        order.append({"member": names[chosen[-1]], "gap": float(gaps[best])})
    return {"members": names, "correlation": corr.tolist(), "uniform_gap": all_gap, "loo": loo}, order


def calibration(pred: Predictions, truth: Labels, k: int, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability over the pooled top-``k`` entries: per equal-width score bin on [0, 1].

    Returns ``edges`` (bins + 1,), per bin ``count``, ``mean_pred`` (mean score),
    ``observed`` (fraction of entries that are true labels; NaN for empty
    bins), and ``ece`` = sum over bins of count/N * |mean_pred - observed|.
    """
    top = pred.topk(k)
    n, width = top.scores.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), width)
    s = np.asarray(top.scores, dtype=np.float64).ravel()
    pos = truth.is_positive(rows, top.indices.ravel()).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    b = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    count = np.bincount(b, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(b, weights=s, minlength=bins) / count
        observed = np.bincount(b, weights=pos, minlength=bins) / count
    ok = count > 0
    ece = float(np.sum(count[ok] / count.sum() * np.abs(mean_pred[ok] - observed[ok]))) if ok.any() else 0.0
    return {"edges": edges.tolist(), "count": count.tolist(), "mean_pred": mean_pred.tolist(),
            "observed": observed.tolist(), "ece": ece}


def per_class_compare(best_member: Model, best_ensemble: Model | None, truth: Labels, k: int,
                      vocab) -> dict:
    """Per-class AP of the best member (and best ensemble), and the classes the ensemble lost most on."""
    freq = np.bincount(truth.indices, minlength=truth.num_classes)
    out = {"frequency": freq, "ap": {best_member.name: metrics.per_class_ap(best_member.pred, truth, k)}}
    if best_ensemble is None:
        return out
    ap_m = out["ap"][best_member.name]
    ap_e = out["ap"][best_ensemble.name] = metrics.per_class_ap(best_ensemble.pred, truth, k)
    delta = ap_e - ap_m
    has = ~np.isnan(delta)
    out["better"] = int(np.sum(delta[has] > 0))
    out["worse"] = int(np.sum(delta[has] < 0))
    out["same"] = int(np.sum(delta[has] == 0))
    cls = np.flatnonzero(has & (delta < 0))
    cls = cls[np.lexsort((cls, delta[cls]))][:N_LOST]
    names, verticals = _describe(vocab, cls)
    out["lost"] = [{"class": int(c), "name": nm, "vertical": v, "positives": int(freq[c]),
                    "ap_member": float(ap_m[c]), "ap_ensemble": float(ap_e[c]), "delta": float(delta[c])}
                   for c, nm, v in zip(cls, names, verticals)]
    return out


def _uncertainty(analysis: Analysis, truth: Labels, compared: list[Model], vocab: Vocabulary | None) -> None:
    """Fold s.e. of every model's GAP, paired s.e. of its gain over the best member, GAP per vertical.

    ``compared``: [best member, best ensemble] (either may be missing); the
    per-vertical breakdown compares them.
    """
    scorer = noise.FoldScorer(truth)
    analysis.n_folds = scorer.n_folds if scorer.fold is not None else None
    folds, kept = {}, {}
    for m in analysis.models:
        e = noise.entries(m.pred, truth, analysis.k)
        folds[m.name] = scorer.folds(e)
        m.gap_se = scorer.se(folds[m.name])
        if any(m is c for c in compared):
            kept[m.name] = e
    ref = next((m for m in analysis.models if m.kind == "member"), None)
    for m in analysis.models:
        if ref is not None and m is not ref:
            m.gain = m.metrics["gap"] - ref.metrics["gap"]
            m.gain_se = None if folds[m.name] is None else scorer.se(folds[m.name] - folds[ref.name])
    if vocab is None or not vocab.has_verticals:
        analysis.notes["verticals"] = ("no vocabulary with verticals given (--vocabulary): the per-vertical "
                                       "breakdown is skipped" if vocab is None else
                                       "the vocabulary has no verticals: the per-vertical breakdown is skipped")
    elif kept:
        analysis.verticals = noise.vertical_breakdown({m.name: kept[m.name] for m in compared}, truth,
                                                      vocab.verticals, vocab.vertical_names, scorer)


def analyse(members, labels, *, split: str = "eval", builds=(), vocabulary=None, k: int = 20,
            progress: bool = False) -> Analysis:
    """Compute every number of the report (see :func:`write_report`)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    k = int(k)
    vocab = _vocabulary(vocabulary)
    bar = tqdm(total=6, desc="report", unit="step", disable=not progress, leave=False)  # cleared: an error is last
    try:
        bar.set_postfix_str("scoring")
        analysis, truth = collect(members, labels, split=split, builds=builds, k=k)
        _check_vocabulary(vocab, analysis.num_classes)
        bar.update()
        base = [m for m in analysis.models if m.kind == "member"]
        ens = [m for m in analysis.models if m.kind == "ensemble"]
        bar.set_postfix_str("standard errors")
        _uncertainty(analysis, truth, base[:1] + ens[:1], vocab)
        bar.update()
        if not ens:
            analysis.notes["ensemble"] = (f"no ensemble store for split {split!r} (a store whose metadata "
                                          f"has extra.ensemble, as written by 'ensemble build')")
        bar.set_postfix_str("diversity")
        if len(base) >= 2:
            names = [m.name for m in sorted(base, key=lambda m: m.name)]
            by_name = {m.name: m for m in base}
            cands = Candidates.from_members([by_name[n].pred for n in names], names)
            analysis.diversity, analysis.greedy = diversity(cands, truth, k)
            del cands
        else:
            analysis.notes["diversity"] = (f"{len(base)} member{'s' if len(base) != 1 else ''} "
                                           f"(not counting ensembles): diversity needs at least 2")
        bar.update()
        bar.set_postfix_str("per-class AP")
        if base:
            analysis.per_class = per_class_compare(base[0], ens[0] if ens else None, truth, k, vocab)
        else:
            analysis.notes["per_class"] = "no member store (only ensembles): nothing to compare"
        bar.update()
        bar.set_postfix_str("curves")
        shown = ([base[0]] if base else []) + ([ens[0]] if ens else [])
        for m in shown:
            prec, rec = metrics.precision_recall_curve(m.pred, truth, k=k)
            analysis.curves[m.name] = (prec, rec, m.metrics["gap"])
            analysis.calibration[m.name] = calibration(m.pred, truth, k)
        bar.update()
    finally:
        bar.close()
    return analysis


# --------------------------------------------------------------------------- output
def _numbers(d) -> dict[str, float] | None:
    """``{str: float}`` when ``d`` is a non-empty dict of real numbers, else None."""
    if isinstance(d, dict) and d and all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                         for v in d.values()):
        return {str(key): float(v) for key, v in d.items()}
    return None


def _top_level(rec: BuildRecord, key: str) -> dict[str, float] | None:
    """A record's top-level ``{member: value}`` field (``weights``, ``importance``), when it has one.

    Read from the record object when it carries the field, else from its JSON
    file (records written before the field existed have neither: None).
    """
    value = getattr(rec, key, None)
    if value is None and rec.path:
        try:
            value = json.loads(Path(rec.path).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError, AttributeError):
            value = None
    return _numbers(value)


def _weights(builds: dict[str, BuildRecord]) -> dict[str, dict[str, float]]:
    """``{build: {member: weight}}`` of the builds whose scheme has per-member weights.

    The record's top-level ``weights`` (weighted-mean schemes) when present, else
    its fitted model's ``weights``.
    """
    out = {}
    for name, rec in builds.items():
        w = _top_level(rec, "weights") or rec.member_weights
        if w is not None:
            out[name] = w
    return out


def _features(fitted: dict) -> tuple[str, dict[str, float]] | None:
    """A stacker's per-feature importances: ``("gain", ...)`` (xgboost) or ``("coef", ...)`` (lr), or None.

    Looked up in the fitted model's description, or (``auto``) the chosen one's.
    """
    for key in ("gain", "coef"):
        values = _numbers(fitted.get(key))
        if values is not None:
            return key, values
    inner = fitted.get("chosen_fitted")
    return _features(inner) if isinstance(inner, dict) else None


def _trajectory(entries) -> tuple[list[float], list | None] | None:
    """Scores (and the member added) per step from a build record's ``fitted.trajectory``."""
    if not isinstance(entries, list) or not entries:
        return None
    scores, labels = [], []
    for e in entries:
        if isinstance(e, numbers.Real):
            scores.append(float(e))
            labels.append(None)
        elif isinstance(e, dict):
            v = next((e[key] for key in ("score", "gap", "value") if isinstance(e.get(key), numbers.Real)), None)
            if v is None:
                return None
            scores.append(float(v))
            labels.append(next((e[key] for key in ("member", "added", "name") if key in e), None))
        elif isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[1], numbers.Real):
            labels.append(e[0])
            scores.append(float(e[1]))
        else:
            return None
    return scores, (labels if any(l is not None for l in labels) else None)


def _first_trajectory(fitted: dict):
    """A selection trajectory: the fitted one, or (a bag of fold models, or auto's winner) the first fold's."""
    if "trajectory" in fitted:
        return fitted["trajectory"]
    inner = fitted.get("chosen_fitted")
    if isinstance(inner, dict):
        return _first_trajectory(inner)
    folds = fitted.get("folds")
    if isinstance(folds, list) and folds and isinstance(folds[0], dict):
        return folds[0].get("trajectory")
    return None


def _bagged(fitted: dict) -> int | None:
    """How many fold models the final model averages (None: a single model)."""
    n = fitted.get("bagged_models")
    if n is None and isinstance(fitted.get("chosen_fitted"), dict):
        n = fitted["chosen_fitted"].get("bagged_models")
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def _draw(analysis: Analysis, out: Path) -> dict[str, str]:
    """Draw every figure that has data into ``out``; {figure key: file name}."""
    figs: dict[str, str] = {}
    models = analysis.models
    figs["leaderboard"] = plots.leaderboard(
        out / "leaderboard.png", [m.name for m in models], [m.metrics["gap"] for m in models],
        [m.kind == "ensemble" for m in models], [m.estimate for m in models], [m.std_error for m in models]).name
    weights = _weights(analysis.builds)
    if weights:
        members = list(dict.fromkeys(n for w in weights.values() for n in w))
        figs["weights"] = plots.weights(out / "weights.png", members, weights).name
    curves = {}
    for name, rec in analysis.builds.items():
        traj = _trajectory(_first_trajectory(rec.fitted))
        if traj is not None:
            curves[name] = traj
    if curves:
        figs["trajectory"] = plots.trajectory(out / "trajectory.png", curves,
                                              {n: analysis.builds[n].std_error for n in curves}).name
    for i, (name, rec) in enumerate(analysis.builds.items()):
        imp = _top_level(rec, "importance")
        if imp is not None:
            figs[f"importance:{name}"] = plots.importance(
                out / f"importance_{i}.png", list(imp), list(imp.values()), f"member importance in {name}",
                "importance (from the build record)").name
        feats = _features(rec.fitted)
        if feats is not None:
            kind, values = feats
            figs[f"features:{name}"] = plots.importance(
                out / f"features_{i}.png", list(values), list(values.values()), f"features of {name}",
                "total gain (xgboost)" if kind == "gain" else "coefficient (standardised feature)").name
    if analysis.diversity is not None:
        d = analysis.diversity
        figs["correlation"] = plots.correlation(out / "correlation.png", d["members"], d["correlation"]).name
        figs["loo"] = plots.leave_one_out(out / "leave_one_out.png", list(d["loo"]), list(d["loo"].values())).name
        refs = {}
        base = [m for m in models if m.kind == "member"]
        ens = [m for m in models if m.kind == "ensemble"]
        if base:
            refs[f"best member ({base[0].name})"] = base[0].metrics["gap"]
        if ens:
            refs[f"best ensemble ({ens[0].name})"] = ens[0].metrics["gap"]
        figs["greedy"] = plots.greedy(out / "ensemble_size.png", [g["member"] for g in analysis.greedy],
                                      [g["gap"] for g in analysis.greedy], refs).name
    if analysis.per_class is not None:
        figs["per_class"] = plots.per_class(out / "per_class_ap.png", analysis.per_class["frequency"],
                                            analysis.per_class["ap"]).name
    if analysis.curves:
        figs["pr"] = plots.precision_recall(out / "precision_recall.png", analysis.curves).name
        figs["reliability"] = plots.reliability(out / "reliability.png", analysis.calibration).name
    return figs


def _clean(x):
    """JSON-ready copy: numpy -> Python, NaN/inf -> None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def summary(analysis: Analysis, figures: dict, title: str) -> dict:
    """The report's numbers as a JSON-ready dict (what summary.json holds)."""
    builds = {}
    for name, rec in analysis.builds.items():
        cf = rec.crossfit
        builds[name] = {"scheme": rec.scheme, "fit_split": rec.fit_split, "members": rec.member_names,
                        "best_single": rec.best_single, "uniform_gap": rec.uniform_gap,
                        "crossfit_estimate": None if cf is None else cf.estimate, "estimate": rec.estimate,
                        "std_error": rec.std_error, "n_folds": None if cf is None else cf.n_folds,
                        "fold_scores": None if cf is None else cf.fold_scores,
                        "weights": _top_level(rec, "weights") or rec.member_weights,
                        "bagged_models": _bagged(rec.fitted), "chosen": rec.chosen_scheme,
                        "candidates": rec.candidate_estimates, "record_path": rec.path,
                        "importance": _top_level(rec, "importance"), "features": _features(rec.fitted)}
        best = rec.best_single
        gain = None if best is None or rec.estimate is None else rec.estimate - best[1]
        builds[name].update(gain_over_best_single=gain, gain_verdict=noise.verdict(gain, rec.std_error))
    pc = None
    if analysis.per_class is not None:
        pc = {key: analysis.per_class[key] for key in ("better", "worse", "same", "lost") if key in analysis.per_class}
        pc["models"] = list(analysis.per_class["ap"])
        pc["map"] = {n: float(np.nanmean(ap)) for n, ap in analysis.per_class["ap"].items()}
    base = [m for m in analysis.models if m.kind == "member"]
    ens = [m for m in analysis.models if m.kind == "ensemble"]
    gain = ens[0].gain if ens and base else None
    gain_se = ens[0].gain_se if ens and base else None
    return _clean({
        "title": title, "split": analysis.split, "k": analysis.k, "n_videos": analysis.n_videos,
        "num_classes": analysis.num_classes, "n_positives": analysis.n_positives,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "leaderboard": [m.row() for m in analysis.models],
        "best": {"model": analysis.models[0].name if analysis.models else None,
                 "member": base[0].name if base else None, "ensemble": ens[0].name if ens else None,
                 "gain_over_best_member": gain, "gain_se": gain_se,
                 "gain_z": None if gain is None or not gain_se else gain / gain_se,
                 "gain_verdict": noise.verdict(gain, gain_se), "noise_z": noise.NOISE_Z,
                 "n_folds": analysis.n_folds},
        "verticals": analysis.verticals,
        "builds": builds, "diversity": analysis.diversity, "greedy": analysis.greedy, "per_class": pc,
        "calibration": {n: {"ece": c["ece"], "bins": {key: c[key] for key in ("edges", "count", "mean_pred",
                                                                              "observed")}}
                        for n, c in analysis.calibration.items()},
        "figures": figures, "notes": analysis.notes,
    })


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished ``tmp`` directory onto ``target`` (a previous report there is replaced)."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _check_target(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InputError("exists and is not a directory (the report is a directory)", out_dir)
        entries = [p.name for p in out_dir.iterdir()]
        if entries and "summary.json" not in entries:
            raise InputError("directory exists and is not a previous report (no summary.json); refusing "
                             "to replace it", out_dir)


def write_report(out_dir, *, members, labels, split: str = "eval", builds=(), vocabulary=None, k: int = 20,
                 title: str | None = None, progress: bool = False) -> Path:
    """Write a self-contained HTML report comparing members and ensembles on ``split``; return index.html.

    Parameters
    ----------
    out_dir : report directory to create (or a previous report to replace, atomically).
    members : prediction stores (files, directories or globs), members and
        ensembles together, as for ``ensemble build --members``.
    labels : labels files ``labels.<split>.h5`` (files, directories or globs), or a Labels object.
    split : the split to report on (its stores and labels are used).
    builds : build records ``<name>.build.json`` (files, directories or globs).
    vocabulary : a vocabulary file (see :func:`predictions.vocabulary.load_vocabulary`),
        an already loaded :class:`~predictions.vocabulary.Vocabulary`, or None.
    k : GAP@k and the top-k of every per-class / calibration figure.
    title : page title (default "Ensemble report: <split>").
    progress : show a progress bar on stderr.

    Every bad input is an InputError with a one-line message; nothing is left
    at ``out_dir`` then (a previous report there stays intact). A write that
    fails (a full disk, a read-only file system) is an InputError naming
    ``out_dir``, with the temporary directory removed. A ``vocabulary`` must
    name exactly the split's class count; one that is not a regular file (a
    FIFO) is refused before it is opened. Without matplotlib (the ``[report]``
    extra) the InputError says what to install.
    """
    out_dir = Path(out_dir)
    _check_target(out_dir)
    plots.require()
    title = title or f"Ensemble report: {split}"
    analysis = analyse(members, labels, split=split, builds=builds, vocabulary=vocabulary, k=k, progress=progress)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp", dir=out_dir.parent))
    except OSError as err:
        raise InputError(f"cannot write the report ({err.strerror or err})", out_dir) from None
    try:
        figures = _draw(analysis, tmp)
        data = summary(analysis, figures, title)
        (tmp / "summary.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
        (tmp / "summary.md").write_text(html.markdown(data), encoding="utf-8")
        (tmp / "index.html").write_text(html.page(data), encoding="utf-8")
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out_dir)
    except OSError as err:  # a full disk (ENOSPC, EDQUOT), a read-only mount (EROFS), ...
        shutil.rmtree(tmp, ignore_errors=True)
        raise InputError(f"cannot write the report ({err.strerror or err}); nothing was written", out_dir) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "index.html"
