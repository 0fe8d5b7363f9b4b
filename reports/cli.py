"""The ``ensemble report`` command, on the report's own floor.

``ensemble`` finds it through the entry point group ``yt8m_ensembler.commands``
(name ``report``, value ``reports.cli``) and calls the two functions below:
:func:`add_arguments` on the ``report`` sub-parser (after adding its shared
``--quiet`` and ``--json``), then :func:`run` on the parsed arguments. Nothing
heavy is imported until :func:`run` (``ensemble --help`` stays fast).

Exit codes: 0 success, 1 bad input (one line on stderr: ``ensemble: error: ...``).
"""
from __future__ import annotations

import json
import sys

__all__ = ["HELP", "EPILOG", "add_arguments", "run"]

HELP = "write an HTML evaluation report (leaderboard, weights, diversity, per-class AP, plots)"
EPILOG = ("example:\n  ensemble report --members runs/demo/predictions --labels runs/demo/labels --split eval \\\n"
          "      --builds runs/demo/predictions --vocabulary runs/demo/data/vocabulary.csv --out runs/demo/report")


def _positive_int(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def add_arguments(parser) -> None:
    """Add the options of ``ensemble report`` to ``parser`` (an argparse parser or sub-parser)."""
    parser.add_argument("--members", nargs="+", required=True,
                        help="stores (members and ensembles): files, dirs or globs")
    parser.add_argument("--labels", nargs="+", required=True, help="labels files labels.<split>.h5")
    parser.add_argument("--split", default="eval", help="split to report on (default eval)")
    parser.add_argument("--builds", nargs="*", help="build records (*.build.json): files, dirs or globs")
    parser.add_argument("--vocabulary",
                        help="vocabulary CSV for label names and verticals (must list the stores' class count)")
    parser.add_argument("--k", type=_positive_int, default=20, help="GAP@k (default 20)")
    parser.add_argument("--title", help="report title")
    parser.add_argument("--out", required=True, help="report directory to write (replaced atomically)")


def run(args) -> int:
    """Write the report for parsed ``args``; print where (or, with ``--json``, ``{"index": path}``).

    Returns the exit code: 0, or 1 after printing a bad input's one-line error.
    Anything else (KeyboardInterrupt included) propagates to the caller.
    """
    quiet, as_json = getattr(args, "quiet", False), getattr(args, "json", False)
    from predictions.errors import InputError
    try:
        from .report import write_report
        index = write_report(args.out, members=args.members, labels=args.labels, split=args.split,
                             builds=args.builds or (), vocabulary=args.vocabulary, k=args.k, title=args.title,
                             progress=not (quiet or as_json))
    except InputError as err:
        print(f"ensemble: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a last net: a file-system error not already turned into an InputError
        where = f"{err.filename}: " if err.filename else ""
        print(f"ensemble: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps({"index": str(index)}, indent=2))
    elif not quiet:
        print(f"wrote {index}")
    return 0


def main(argv=None) -> int:
    """``python -m reports.cli ...``: the same command without the ``ensemble`` front end."""
    import argparse
    parser = argparse.ArgumentParser(prog="ensemble report", description=HELP, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
