"""The one exception type for bad user input.

Every reader in the project turns a bad file into an :class:`InputError` whose
message is one line naming the file and the problem. The CLIs print that line
and exit with code 1; they never show a traceback for it.
"""
from __future__ import annotations

import os


class InputError(ValueError):
    """Bad input: a corrupt file, a mismatch between files, an invalid option.

    ``str(err)`` is a single line of the form ``"<path>: <problem>"`` when a
    path is known, else ``"<problem>"``.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None):
        problem = " ".join(str(problem).split())  # force one line
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class AlignmentError(InputError):
    """Two arrays that must be keyed by the same video ids are not."""
