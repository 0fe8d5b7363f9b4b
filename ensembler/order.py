"""The members' order as the user gave it, for ``member_weights`` given as a list.

Members are discovered sorted by name, but a user who writes
``--members moe.heldout.h5 lr.heldout.h5 --param member_weights=[0.7,0.3]``
means 0.7 for ``moe``. :func:`given_member_order` finds the member names in
the order of the patterns that name them; it is None (ambiguous) when one
pattern (a directory, a glob) names several members, whose order the user
did not choose. :func:`weights_by_name` turns a list into ``{member: weight}``
or gives a one-line error saying how to name them.
"""
from __future__ import annotations

import os

from predictions.csvimport import is_csv, member_of_csv
from predictions.errors import InputError
from predictions.store import expand_paths, open_store

__all__ = ["given_member_order", "weights_by_name"]


def _models_of(pattern) -> list[str]:
    """Model names of the files one ``--members`` pattern matches (labels files skipped)."""
    if is_csv(pattern):
        return [member_of_csv(p)[0] for p in expand_paths([pattern], suffix=".csv")]
    names = []
    for path in expand_paths([pattern]):
        if not path.name.startswith("labels."):
            with open_store(path) as reader:
                names.append(reader.meta.model)
    return names


def given_member_order(patterns) -> list[str] | tuple[str, list[str]]:
    """Member names in the order their patterns were given; ``(pattern, names)`` of the first pattern
    that names several members (their order is then not the user's)."""
    order: list[str] = []
    for pattern in patterns:
        names = list(dict.fromkeys(_models_of(pattern)))
        fresh = [n for n in names if n not in order]
        if len(fresh) > 1:
            return os.fspath(pattern), names
        order += fresh
    return order


def weights_by_name(weights, names: list[str], order) -> dict:
    """``{member: weight}`` from a list given in the members' order ``order`` (see the module docstring)."""
    example = "{" + ", ".join(f'"{n}": ...' for n in names) + "}"
    if isinstance(order, tuple):
        pattern, matched = order
        raise InputError(f"member_weights is a list, but {pattern!r} names several members ({', '.join(matched)}) "
                         f"in an order you did not choose: give the weights by name, "
                         f"--param 'member_weights={example}'")
    order = [n for n in order if n in names]
    if len(weights) != len(names):
        raise InputError(f"member_weights has {len(weights)} values for {len(names)} members "
                         f"({', '.join(order or names)}, in the order given): give one per member, or by name, "
                         f"--param 'member_weights={example}'")
    if sorted(order) != sorted(names):
        raise InputError(f"member_weights is a list, but the order of members {', '.join(names)} cannot be "
                         f"matched to the command line: give the weights by name, --param 'member_weights={example}'")
    return dict(zip(order, weights))
