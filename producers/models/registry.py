"""The model registry: one decorator to register, one ``create_model`` to build.

Every producer architecture is a ``torch.nn.Module`` registered by name::

    @register_model("moe", level="video")
    class MoE(nn.Module):
        def __init__(self, input_dim, num_classes, num_experts=2): ...

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

    def hparams(self) -> dict:
        """Tunable constructor arguments and their defaults (excluding input_dim, num_classes)."""
        sig = inspect.signature(self.cls.__init__)
        return {p.name: p.default for p in list(sig.parameters.values())[1:]
                if p.name not in ("input_dim", "num_classes")
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, level: str) -> Callable[[type], type]:
    """Class decorator adding an architecture to the registry under ``name``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")

    def deco(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        _REGISTRY[name] = ModelEntry(name, cls, level, doc)
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
    return entry.cls(input_dim=input_dim, num_classes=num_classes, **hparams)
