"""Offline HTML reports comparing ensemble members and ensembles (see :func:`write_report`)."""
from .report import write_report
from .vocabulary import load_vocabulary

__all__ = ["write_report", "load_vocabulary"]
