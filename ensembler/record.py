"""The build record: what ``ensemble build`` did and measured, as one typed, versioned object.

``ensemble build`` writes it as ``<name>.build.json`` beside its stores; the
CLI summary, the HTML report and scripts all read it through
:class:`BuildRecord` (``BuildRecord.read(path)``), never by raw key. The JSON
layout (``record_version`` 1)::

    record_version, scheme, name, params, fit_split,
    members        [{"name", "paths"}]: the member stores of the fit split
    n_fit_videos
    member_gap     {member: GAP@20 on the fit split}        (when labelled)
    best_single    [member, GAP@20]                          (when labelled)
    uniform_gap    GAP@20 of the plain average               (learned schemes)
    crossfit       {"n_folds", "fold_scores", "fold_sizes", "estimate", "std_error", "seconds"}  (learned schemes)
    estimate       plain GAP@20 on the fit split              (fixed schemes: they never see labels)
    std_error      fold standard error of that plain GAP     (fixed schemes, when measured)
    fit_seconds, fitted (the final model's ``describe()``: "weights" per member; for a bag of fold
                   models "bagged_models" and "folds"; for ``auto`` "chosen" and "candidates"
                   {scheme: {"estimate", "std_error", "fold_scores", ...}})
    weights        {member: weight} when the final model is a weighted mean (also in ``fitted``)
    importance     {member: importance} of a stacker whose model has one
    coverage       {split: {"videos", "kept", "rule", "lacking": {member: n}}} where members differ
    missing        the --missing rule; skipped_splits {split: [members missing there]}
    outputs        {split: store path}; extra_outputs {"model": path, "submission": {...}}
    scores         {split: {"ensemble": metrics, "members": [metrics rows]}}
    build_seconds, versions, command

Records written before versioning (no ``record_version``) read as version 1;
a newer version is refused with a clear error.
"""
from __future__ import annotations

import json
import numbers
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from predictions.atomic import atomic_write_text
from predictions.errors import InputError

from .crossfit import CrossFitResult

__all__ = ["RECORD_VERSION", "BuildRecord", "RecordMember", "json_default", "package_versions"]

RECORD_VERSION = 1


@dataclass(frozen=True)
class RecordMember:
    """One member of a build: its name and its store(s) on the fit split (several for folded crops)."""

    name: str
    paths: tuple = ()


@dataclass
class BuildRecord:
    """Everything one build did and measured (see the module docstring for the JSON layout).

    ``estimate`` is the honest GAP@20 on the fit split: the cross-fitted one for
    a learned scheme, the plain one for a fixed scheme; None without labels.
    ``std_error`` is its fold standard error (the cross-fit's for a learned
    scheme; None when not measured).
    ``path`` is where the record was read from or written to (not part of the JSON).
    """

    name: str
    scheme: str | None = None
    params: dict = field(default_factory=dict)
    fit_split: str | None = None
    members: list = field(default_factory=list)
    n_fit_videos: int | None = None
    member_gap: dict | None = None
    best_single: tuple | None = None
    uniform_gap: float | None = None
    crossfit: CrossFitResult | None = None
    estimate: float | None = None
    std_error: float | None = None
    fit_seconds: float | None = None
    fitted: dict = field(default_factory=dict)
    weights: dict | None = None
    importance: dict | None = None
    coverage: dict = field(default_factory=dict)
    missing: str | None = None
    skipped_splits: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    extra_outputs: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)
    build_seconds: float | None = None
    versions: dict = field(default_factory=dict)
    command: str | None = None
    record_version: int = RECORD_VERSION
    path: str | None = field(default=None, compare=False)

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def __post_init__(self):
        if self.crossfit is not None and self.std_error is None:
            self.std_error = self.crossfit.std_error

    @property
    def chosen_scheme(self) -> str | None:
        """The scheme ``auto`` chose (``fitted["chosen"]``), or None for any other scheme."""
        chosen = self.fitted.get("chosen")
        return chosen if isinstance(chosen, str) else None

    @property
    def candidate_estimates(self) -> dict | None:
        """``{scheme: {"estimate", "std_error"}}`` of every scheme ``auto`` tried (cross-fitted on the
        whole fit split, the same folds for all), or None for any other scheme."""
        cands = self.fitted.get("candidates")
        if not isinstance(cands, dict):
            return None
        out = {}
        for scheme, c in cands.items():
            if isinstance(c, dict) and _is_number(c.get("estimate")):
                se = c.get("std_error")
                out[str(scheme)] = {"estimate": float(c["estimate"]),
                                    "std_error": float(se) if _is_number(se) else None}
        return out

    @property
    def member_weights(self) -> dict | None:
        """``{member: weight}`` of the fitted scheme (``weights``, else ``fitted["weights"]``), or None."""
        w = self.weights if self.weights else self.fitted.get("weights")
        if isinstance(w, dict) and w and all(_is_number(v) for v in w.values()):
            return {str(m): float(v) for m, v in w.items()}
        return None

    # --- JSON -------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready dict (the layout of the module docstring)."""
        out = {"record_version": self.record_version, "scheme": self.scheme, "name": self.name,
               "params": self.params, "fit_split": self.fit_split,
               "members": [{"name": m.name, "paths": list(m.paths)} for m in self.members],
               "n_fit_videos": self.n_fit_videos}
        optional = {"member_gap": self.member_gap,
                    "best_single": None if self.best_single is None else list(self.best_single),
                    "uniform_gap": self.uniform_gap,
                    "crossfit": None if self.crossfit is None else self.crossfit.to_dict(),
                    "estimate": self.estimate if self.crossfit is None else None,
                    "std_error": self.std_error if self.crossfit is None else None}
        out.update({k: v for k, v in optional.items() if v is not None})
        out.update({k: v for k, v in {"weights": self.weights, "importance": self.importance,
                                      "coverage": self.coverage or None, "missing": self.missing,
                                      "skipped_splits": self.skipped_splits or None}.items() if v is not None})
        out.update({"fit_seconds": self.fit_seconds, "fitted": self.fitted, "outputs": self.outputs,
                    "extra_outputs": self.extra_outputs, "scores": self.scores,
                    "build_seconds": self.build_seconds, "versions": self.versions, "command": self.command})
        return _plain(out)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=json_default)

    @classmethod
    def from_dict(cls, data, path=None) -> "BuildRecord":
        """A record from its JSON dict; InputError (naming ``path``) when it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise InputError("not a build record: expected a JSON object with a 'name'", path)
        version = data.get("record_version", 1)
        if not isinstance(version, int) or version < 1:
            raise InputError(f"bad record_version {version!r}", path)
        if version > RECORD_VERSION:
            raise InputError(f"build record version {version} is newer than this package reads "
                             f"({RECORD_VERSION}); upgrade yt8m-ensembler", path)
        get = _Fields(data, path)
        crossfit = None
        if data.get("crossfit") is not None:
            try:
                crossfit = CrossFitResult.from_dict(get("crossfit", dict))
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"field 'crossfit' is malformed ({type(err).__name__}: {err})", path) from None
        members = []
        for m in get("members", list, []):
            if isinstance(m, str):
                members.append(RecordMember(m))
            elif isinstance(m, dict) and isinstance(m.get("name"), str):
                members.append(RecordMember(m["name"], tuple(str(p) for p in m.get("paths") or ())))
            else:
                raise InputError(f"field 'members': expected names or {{name, paths}} objects, got {m!r}", path)
        best = get("best_single", list)
        if best is not None and not (len(best) == 2 and isinstance(best[0], str) and _is_number(best[1])):
            raise InputError(f"field 'best_single': expected [member, GAP], got {best!r}", path)
        estimate = get("estimate", numbers.Real)
        std_error = get("std_error", numbers.Real)
        return cls(name=data["name"], scheme=get("scheme", str), params=get("params", dict, {}),
                   fit_split=get("fit_split", str), members=members, n_fit_videos=get("n_fit_videos", int),
                   member_gap=get("member_gap", dict), best_single=None if best is None else (best[0], float(best[1])),
                   uniform_gap=get("uniform_gap", numbers.Real), crossfit=crossfit,
                   estimate=crossfit.estimate if crossfit is not None else estimate,
                   std_error=crossfit.std_error if crossfit is not None else std_error,
                   fit_seconds=get("fit_seconds", numbers.Real), fitted=get("fitted", dict, {}),
                   weights=get("weights", dict), importance=get("importance", dict),
                   coverage=get("coverage", dict, {}), missing=get("missing", str),
                   skipped_splits=get("skipped_splits", dict, {}),
                   outputs=get("outputs", dict, {}), extra_outputs=get("extra_outputs", dict, {}),
                   scores=get("scores", dict, {}),
                   build_seconds=get("build_seconds", numbers.Real), versions=get("versions", dict, {}),
                   command=get("command", str), record_version=RECORD_VERSION,
                   path=None if path is None else str(path))

    @classmethod
    def from_json(cls, text: str, path=None) -> "BuildRecord":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(f"not a readable build record ({' '.join(str(err).split())})", path) from None
        return cls.from_dict(data, path)

    @classmethod
    def read(cls, path) -> "BuildRecord":
        """Read a ``<name>.build.json``; every problem is a one-line InputError naming the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise InputError(f"not a readable build record ({' '.join(str(err).split())})", path) from None
        return cls.from_json(text, path)

    def write(self, path) -> Path:
        """Write the JSON atomically (temp file + rename); remember ``path``."""
        path = Path(path)
        atomic_write_text(path, self.to_json())
        self.path = str(path)
        return path


class _Fields:
    """Typed access to a record's optional fields: ``get(key, type, default)``; InputError on a wrong type."""

    def __init__(self, data: dict, path):
        self.data, self.path = data, path

    def __call__(self, key: str, kind, default=None):
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, kind) or isinstance(value, bool):
            name = getattr(kind, "__name__", str(kind)).lower()
            raise InputError(f"field {key!r}: expected {name}, got {type(value).__name__}", self.path)
        return value


def _is_number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _plain(x):
    """Tuples to lists, numpy scalars to Python (so the dict compares equal to its JSON round trip)."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def json_default(x):
    """``json.dumps`` fallback for numpy values and paths."""
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def package_versions() -> dict:
    """Python and the main packages' versions, for the record."""
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "xgboost", "scikit-learn", "h5py", "yt8m-ensembler"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
