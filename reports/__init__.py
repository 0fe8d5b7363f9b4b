"""Offline HTML reports comparing ensemble members and ensembles (see :func:`write_report`).

Class names and verticals come from :func:`predictions.vocabulary.load_vocabulary`.
``write_report`` is imported on first use, so that loading the ``ensemble report``
command (:mod:`reports.cli`) for ``ensemble --help`` stays light.
"""
__all__ = ["write_report"]


def __getattr__(name):
    if name == "write_report":
        from .report import write_report
        return write_report
    raise AttributeError(f"module 'reports' has no attribute {name!r}")
