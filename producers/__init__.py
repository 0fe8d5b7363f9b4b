"""Producers: train a submodel on YouTube-8M TFRecords and dump its predictions as stores.

The Python face of ``produce``::

    from producers import create_model, list_models, load_config, train_job, predict_job

    cfg = load_config("jobs/mlp.toml")   # a validated JobConfig (see producers.config)
    train_job(cfg)                        # resumable; the best-dev-GAP checkpoint is kept
    stores = predict_job(cfg)             # [Path] of prediction stores, one per split x crop

``create_model(name, input_dim=..., num_classes=..., **hparams)`` builds any
registered model (``list_models("video")``, ``list_models("frame")``); it
returns logits of shape ``(batch, num_classes)``. Nothing in ``predictions``
or ``ensembler`` imports this package.
"""
from __future__ import annotations

import importlib

__all__ = ["create_model", "list_models", "load_config", "JobConfig", "train_job", "predict_job"]

# Imported on first use (PEP 562), so that ``produce --help`` does not pay for torch.
_HOME = {"create_model": "producers.models", "list_models": "producers.models", "load_config": "producers.config",
         "JobConfig": "producers.config", "train_job": "producers.jobs", "predict_job": "producers.jobs"}


def __getattr__(name: str):
    if name not in _HOME:
        raise AttributeError(f"module 'producers' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOME[name]), name)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
