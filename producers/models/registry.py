"""The model registry: one decorator to register, one ``create_model`` to build.

Every producer architecture is a ``torch.nn.Module`` registered by name::

    @register_model("moe", level="video", paper="starter code MoeModel")
    class MoE(nn.Module):
        def __init__(self, input_dim, num_classes, num_experts=2): ...

One class may be registered under several names, each with its own
``defaults`` (a parametrised family: the learnable-pooling models are one
class registered five times). ``paper`` (the paper and section a model
follows), ``headline`` (the paper's own score for it, e.g. "GAP 0.82046,
Tang et al. 2017 Table 3") and ``frames`` (the frame-level input its paper
used: "crop", "all" or "sample", see :mod:`producers.crops`) are metadata
for ``produce models`` and the job defaults.

Contract of a registered model
------------------------------
* ``__init__(input_dim, num_classes, **hparams)``; ``input_dim`` is the feature
  width per video (video level) or per frame (frame level), 1024 + 128 = 1152
  for YouTube-8M.
* ``forward(x, lengths=None) -> logits``:
  video level: ``x`` (B, D) float32; frame level: ``x`` (B, T, D) float32 and
  ``lengths`` (B,) int64 valid frames per row (frames past it are padding).
  Returns (B, C) logits, the log-odds of each class probability (heads whose
  probability is not a plain sigmoid, such as mixtures of experts, compute
  them in log space; see :mod:`producers.models.heads`). The training loss is
  the BCE of the logits; predictions are their sigmoid.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from predictions.errors import InputError

LEVELS = ("video", "frame")


@dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one architecture."""

    name: str
    cls: type
    level: str  # "video" or "frame"
    doc: str
    defaults: tuple = ()          # (name, value) pairs overriding the class's own defaults
    paper: str | None = None      # the paper (and section) the model follows
    headline: str | None = None   # the paper's own score for the model, with where it is reported
    frames: str | None = None     # frame level: the input its paper used ("crop", "all", "sample")

    def hparams(self) -> dict:
        """Tunable constructor arguments and their defaults (excluding input_dim, num_classes)."""
        sig = inspect.signature(self.cls.__init__)
        out = {p.name: p.default for p in list(sig.parameters.values())[1:]
               if p.name not in ("input_dim", "num_classes")
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        out.update(self.defaults)
        return out


_REGISTRY: dict[str, ModelEntry] = {}


FRAME_INPUTS = ("crop", "all", "sample")  # as producers.crops.FRAME_MODES


def register_model(name: str, *, level: str, defaults: dict | None = None, doc: str | None = None,
                   paper: str | None = None, headline: str | None = None,
                   frames: str | None = None) -> Callable[[type], type]:
    """Class decorator adding an architecture to the registry under ``name``.

    ``defaults`` override the class's constructor defaults for this name
    (they must name constructor arguments); ``doc`` replaces the first
    paragraph of the class docstring as the one-line description; ``paper``,
    ``headline`` and ``frames``: see the module docstring.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if frames is not None and frames not in FRAME_INPUTS:
        raise ValueError(f"frames must be one of {FRAME_INPUTS}, got {frames!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        line = doc if doc is not None else (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        entry = ModelEntry(name, cls, level, line, tuple((defaults or {}).items()), paper, headline, frames)
        unknown = sorted(set(dict(entry.defaults)) - set(inspect.signature(cls.__init__).parameters))
        if unknown:
            raise ValueError(f"model {name!r}: defaults name no constructor argument: {', '.join(unknown)}")
        _REGISTRY[name] = entry
        return cls

    return deco


def get_entry(name: str) -> ModelEntry:
    """The registry entry of ``name``; InputError listing known names otherwise."""
    if name not in _REGISTRY:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models(level: str | None = None) -> list[str]:
    """Registered model names, optionally only those of one level."""
    return sorted(n for n, e in _REGISTRY.items() if level is None or e.level == level)


def create_model(name: str, *, input_dim: int, num_classes: int, **hparams):
    """Build model ``name``; unknown hyper-parameters are rejected with InputError."""
    entry = get_entry(name)
    known = entry.hparams()
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise InputError(f"model {name!r} has no option(s) {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(known)) or 'none'}")
    return entry.cls(input_dim=input_dim, num_classes=num_classes, **{**dict(entry.defaults), **hparams})
