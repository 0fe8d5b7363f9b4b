"""Optional dependencies: import one, or say in one line which extra installs it.

The core install (``pip install yt8m-ensembler``) is the blending toolkit;
training producers, xgboost stacking, the HTML report and the Dask backend
are extras::

    torch = require("torch", extra="producers")      # InputError if missing

The error names the command that needs it and the ``pip install`` line.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from .errors import InputError

__all__ = ["require", "check_available", "EXTRAS"]

#: Which extra brings each optional top-level module.
EXTRAS = {
    "torch": "producers", "tfrecord": "producers", "google.protobuf": "producers", "crc32c": "producers",
    "xgboost": "xgboost", "matplotlib": "report", "dask": "dask", "distributed": "dask",
    "pandas": "pandas",
}


def require(module: str, extra: str | None = None, *, what: str | None = None) -> ModuleType:
    """Import ``module``; if it is not installed, an InputError naming the extra to install.

    ``what`` names the feature that needs it (e.g. ``"produce train"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        if getattr(err, "name", None) not in (None, module, top) and not module.startswith(str(err.name)):
            raise  # the module exists but one of its own imports is broken: show it
        extra = extra or EXTRAS.get(module) or EXTRAS.get(top)
        need = f"{what} needs {module}" if what else f"{module} is not installed"
        hint = f': pip install "yt8m-ensembler[{extra}]"' if extra else f": pip install {top}"
        raise InputError(need + hint) from None


def check_available(module: str, extra: str | None = None, *, what: str | None = None) -> None:
    """The InputError of :func:`require` when ``module`` is not installed, without importing it (a
    command checks its extras up front, before reading any input)."""
    import importlib.util
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        require(module, extra, what=what)
