"""The predictions store: the on-disk contract between producers and ensembler.

Public API (see FORMAT.md for the file format)::

    Predictions, Labels            in-memory arrays keyed by video id (types.py)
    InputError, AlignmentError     one-line user errors (errors.py)
    write_store, open_store, read_store, StoreWriter    HDF5 stores (store.py)
    write_labels, read_labels      ground-truth labels files (labels.py)
    align_stores, iter_aligned     align members on video id (align.py)
    assign_splits                  deterministic hash split (split.py)
    load_vocabulary, Vocabulary    class names, verticals, counts (vocabulary.py)
    metrics                        GAP@k, MAP, Hit@1, PERR (metrics.py)
    csvio                          Kaggle CSV import and export (csvio.py)

Metrics and the vocabulary live here, in the base layer, because producers
(early stopping, vertical-aware models), the ensembler and reports all use them
and none may depend on another. Importing this package is cheap: no pandas.
"""
__version__ = "0.2.0"

from .errors import AlignmentError, InputError
from .types import Labels, Predictions, check_aligned
from .store import StoreWriter, open_store, read_store, write_store
from .labels import read_labels, write_labels
from .align import align_stores, iter_aligned
from .split import assign_splits
from .vocabulary import Vocabulary, load_vocabulary
from . import metrics

__all__ = ["__version__", "AlignmentError", "InputError", "Labels", "Predictions", "check_aligned", "StoreWriter", "open_store",
           "read_store", "write_store", "read_labels", "write_labels", "align_stores", "iter_aligned",
           "assign_splits", "Vocabulary", "load_vocabulary", "metrics"]
