"""Save a fitted combiner without pickle, and load it back: ``<name>.model.npz``.

The file is a numpy ``.npz`` archive (read with ``allow_pickle=False``): one
``state`` entry holding JSON, the numeric arrays beside it, and an xgboost
model as its own JSON bytes (xgboost's portable format). Loading builds only
classes it knows: combiners and helper classes of this package (by module
path under ``ensembler.``), scikit-learn's ``LogisticRegression`` (its fitted
arrays) and xgboost's ``XGBClassifier``; nothing else is ever imported or
called, so a model file from elsewhere cannot run code.

A combiner is saved as its class, its constructor parameters and its fitted
attributes (names ending in ``_``, less the class's ``_transient`` ones, which
only describe the fit); an object of another type is an InputError naming it.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path

import numpy as np

from predictions.errors import InputError

from .base import Combiner

__all__ = ["save_combiner", "load_combiner", "MODEL_FORMAT"]

#: Version of the layout below; a newer file is refused.
MODEL_FORMAT = 1


class _Encoder:
    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray) -> dict:
        if a.dtype.kind == "O":
            raise InputError("cannot save an array of Python objects without pickle")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = a
        return {"__array__": key}

    def __call__(self, v):
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, tuple):
            return {"__tuple__": [self(x) for x in v]}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise InputError(f"cannot save a dict with non-string keys: {list(v)[:3]}")
            return {"__dict__": {k: self(x) for k, x in v.items()}}
        if isinstance(v, Combiner):
            state = {k: x for k, x in vars(v).items() if k.endswith("_") and k not in type(v)._transient}
            return {"__combiner__": _qualname(v), "params": self(v.get_params()), "state": self(state)}
        kind = _qualname(v)
        if kind.startswith("xgboost.") and hasattr(v, "get_booster"):
            raw = bytes(v.get_booster().save_raw("json"))
            return {"__xgboost__": self.array(np.frombuffer(raw, dtype=np.uint8))}
        if kind == "sklearn.linear_model._logistic:LogisticRegression":
            fitted = {k: x for k, x in vars(v).items() if k.endswith("_")}
            return {"__sklearn_lr__": self({"params": v.get_params(), "fitted": fitted})}
        if kind.startswith("ensembler.") and (dataclasses.is_dataclass(v) or hasattr(v, "__dict__")):
            return {"__object__": kind, "state": self(dict(vars(v)))}
        raise InputError(f"cannot save a fitted {kind} without pickle")


def _qualname(v) -> str:
    return f"{type(v).__module__}:{type(v).__qualname__}"


def save_combiner(combiner: Combiner, path) -> Path:
    """Write the fitted ``combiner`` to ``path`` (an ``.npz`` archive; see the module docstring)."""
    if not hasattr(combiner, "member_names_"):
        raise InputError("the combiner is not fitted: nothing to save")
    enc = _Encoder()
    state = {"format": MODEL_FORMAT, "combiner": enc(combiner)}
    text = json.dumps(state, allow_nan=True).encode()
    path = Path(path)
    with open(path, "wb") as fh:
        np.savez(fh, state=np.frombuffer(text, dtype=np.uint8), **enc.arrays)
        fh.flush()
        os.fsync(fh.fileno())
    return path


class _Decoder:
    def __init__(self, arrays, path):
        self.arrays, self.path = arrays, path

    def __call__(self, v):
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__array__" in v:
            return self.arrays[v["__array__"]]
        if "__tuple__" in v:
            return tuple(self(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: self(x) for k, x in v["__dict__"].items()}
        if "__combiner__" in v:
            cls = self._class(v["__combiner__"])
            if not (isinstance(cls, type) and issubclass(cls, Combiner)):
                raise InputError(f"{v['__combiner__']} is not a combiner", self.path)
            obj = cls(**self(v["params"]))
            for k, x in self(v["state"]).items():
                setattr(obj, k, x)
            return obj
        if "__object__" in v:
            cls = self._class(v["__object__"])
            obj = cls.__new__(cls)
            obj.__dict__.update(self(v["state"]))
            return obj
        if "__xgboost__" in v:
            from .schemes.stacking import _import_xgboost
            model = _import_xgboost().XGBClassifier()
            model.load_model(bytearray(self.arrays[v["__xgboost__"]["__array__"]].tobytes()))
            return model
        if "__sklearn_lr__" in v:
            from sklearn.linear_model import LogisticRegression
            spec = self(v["__sklearn_lr__"])
            model = LogisticRegression(**spec["params"])
            for k, x in spec["fitted"].items():
                setattr(model, k, x)
            return model
        raise InputError(f"unknown entry {sorted(v)[:3]} in the model file", self.path)

    def _class(self, qualname: str):
        module, _, name = str(qualname).partition(":")
        if not (module == "ensembler" or module.startswith("ensembler.")) or "." in name or not name:
            raise InputError(f"the model file names class {qualname!r}, which is not this package's", self.path)
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            raise InputError(f"class {qualname!r} of the model file does not exist in this version", self.path) \
                from None


def load_combiner(path) -> Combiner:
    """The fitted combiner saved by :func:`save_combiner`; one-line InputError for a bad file."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise InputError(f"not a readable model file ({' '.join(str(err).split())[:200]})", path) from None
    try:
        state = json.loads(arrays.pop("state").tobytes().decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError):
        raise InputError("not a model file: no readable 'state' entry", path) from None
    if not isinstance(state, dict) or state.get("format") not in range(1, MODEL_FORMAT + 1):
        raise InputError(f"model format {state.get('format') if isinstance(state, dict) else '?'} is not one "
                         f"this package reads ({MODEL_FORMAT})", path)
    try:
        comb = _Decoder(arrays, path)(state["combiner"])
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"malformed model file ({type(err).__name__}: {err})", path) from None
    if not isinstance(comb, Combiner):
        raise InputError("the model file holds no combiner", path)
    return comb
