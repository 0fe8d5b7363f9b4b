"""Offline HTML reports comparing ensemble members and ensembles (see :func:`write_report`).

Class names and verticals come from :func:`predictions.vocabulary.load_vocabulary`.
"""
from .report import write_report

__all__ = ["write_report"]
