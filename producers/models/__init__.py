"""The producer architectures: a registry (``create_model``) and the built-in models it holds.

Importing this package registers every built-in model (``video``, ``frame``);
the registry module itself imports no model, so there is no import circle.
"""
from .registry import ModelEntry, create_model, get_entry, list_models, register_model
from . import frame, video  # noqa: E402,F401  (their @register_model decorators fill the registry)

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
