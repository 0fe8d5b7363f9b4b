"""Ensembling and stacking of saved multi-label predictions: the Python API.

In a notebook (see docs/python-api.md for a tour)::

    import ensembler
    heldout = ensembler.load_members("runs/demo/predictions", split="heldout")   # {name: Predictions}
    fit = ensembler.fit_ensemble(heldout, labels, "caruana", n_folds=5, random_state=0)
    fit.estimate, fit.std_error, fit.best_single    # cross-fitted GAP@20 +- fold s.e., best member
    pred = fit.predict(ensembler.load_members("runs/demo/predictions", split="test"))

The final model of a learned scheme is the average of its cross-fit's fold
models (:class:`FoldBag`): the models the estimate measured. The ``auto``
scheme picks the scheme with the best estimate and reports a nested estimate
of that choice.

Schemes are scikit-learn-style estimators (``create_combiner``,
``list_combiners``; ``get_params``/``set_params``, ``sklearn.base.clone``)
that take per-member score matrices or Predictions and a 0/1 label matrix or
Labels. :func:`build` is ``ensemble build``: stores in, ensemble stores and a
:class:`BuildRecord` out.

A fitted build is applied to prediction files that arrive later with
``ensembler.load_build("x.build.json").apply(members)``.

Importing the package registers the built-in schemes; it does not import the
command line, the reports, or any heavy optional dependency.
"""
from predictions import __version__

from . import schemes  # noqa: F401  (registers the built-in schemes)
from .apply import FittedBuild, load_build
from .base import Combiner, NotFittedError, combiner_class, create_combiner, list_combiners, register_combiner
from .build import build
from .candidates import Candidates
from .crossfit import CrossFitResult, FoldBag, crossfit
from .ensemble import FitResult, fit_ensemble
from .members import load_members
from .record import BuildRecord

__all__ = ["create_combiner", "list_combiners", "combiner_class", "register_combiner", "Combiner",
           "NotFittedError", "Candidates", "crossfit", "CrossFitResult", "FoldBag", "fit_ensemble", "FitResult",
           "load_members", "build", "BuildRecord", "load_build", "FittedBuild", "__version__"]
