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

The names above are imported on first use (PEP 562), so ``import ensembler``
and ``ensemble --help`` cost no numpy or h5py; the first use of the registry
through the package (``ensembler.create_combiner`` ...) registers the built-in
schemes (:mod:`ensembler.schemes`), as :mod:`ensembler.build` and the command
line do. Nothing here imports the reports or a heavy optional dependency.
"""
import importlib

# ``crossfit`` is both a submodule and a function of the face: bound here, after the submodule's import,
# so that no later import of ``ensembler.crossfit`` replaces the function by the module (numpy only).
from .crossfit import CrossFitResult, FoldBag, crossfit

_LAZY = {"create_combiner": ".base", "list_combiners": ".base", "combiner_class": ".base",
         "register_combiner": ".base", "Combiner": ".base", "NotFittedError": ".base", "build": ".build",
         "Candidates": ".candidates", "fit_ensemble": ".ensemble", "FitResult": ".ensemble",
         "load_members": ".members", "BuildRecord": ".record"}


def __getattr__(name):
    if name in _LAZY:
        if _LAZY[name] == ".base":
            importlib.import_module(".schemes", __name__)  # the registry's built-in schemes
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["create_combiner", "list_combiners", "combiner_class", "register_combiner", "Combiner",
           "NotFittedError", "Candidates", "crossfit", "CrossFitResult", "FoldBag", "fit_ensemble", "FitResult",
           "load_members", "build", "BuildRecord"]
