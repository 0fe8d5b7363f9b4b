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
from producers.config import JobConfig, load_config
from producers.jobs import predict_job, train_job
from producers.models import create_model, list_models

__all__ = ["create_model", "list_models", "load_config", "JobConfig", "train_job", "predict_job"]
