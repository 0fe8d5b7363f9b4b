"""Scale-out on Dask: run the chunked ensemble work on a dask.distributed cluster.

``ensemble build/evaluate --scheduler ADDRESS`` sends each row chunk of the
aligned members to a worker, which opens the stores by path (a filesystem
shared with the client is assumed, as for any Dask job over files), reads its
rows, combines them with the fitted scheme and returns the chunk's top-k
predictions; the client writes the output store in order. At most ``window``
chunks are in flight, so the client's memory stays bounded. ``local`` or
``local:N`` starts a ``LocalCluster`` of N workers on this machine.

While a client is active (:func:`use_client`), the xgboost stacker trains
through xgboost's Dask interface.
"""
from __future__ import annotations

import contextlib
from collections import deque
from typing import Callable, Iterable, Iterator

from predictions.errors import InputError

_ACTIVE = []


def connect(address: str):
    """A ``dask.distributed.Client`` for ``address`` (``tcp://host:port``, ``local`` or ``local:N``)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("--scheduler needs dask.distributed: pip install 'yt8m-ensembler[dask]'") from None
    if address == "local" or address.startswith("local:"):
        text = address.split(":", 1)[1] if ":" in address else "2"
        if not text.isdigit() or not 1 <= int(text) <= 1024:
            raise InputError(f"--scheduler {address!r}: expected local or local:N with N workers, 1 to 1024")
        cluster = LocalCluster(n_workers=int(text), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    _check_address(address)
    try:
        return Client(address, timeout=30)
    except (OSError, TimeoutError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(err).split())}") from None


def _check_address(address: str) -> None:
    """InputError unless ``address`` parses as a scheduler address (checked before a Client exists:
    a Client that fails to start hangs a minute in its destructor)."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(loc)
    except (ValueError, TypeError) as err:
        raise InputError(f"--scheduler {address!r} is not a scheduler address (tcp://host:port, local or "
                         f"local:N): {' '.join(str(err).split())}") from None


@contextlib.contextmanager
def use_client(client):
    """Make ``client`` the active one (for the xgboost stacker) inside the block."""
    _ACTIVE.append(client)
    try:
        yield client
    finally:
        _ACTIVE.pop()


def active_client():
    """The client of the innermost :func:`use_client` block, or ``None``."""
    return _ACTIVE[-1] if _ACTIVE else None


def map_ordered(client, fn: Callable, items: Iterable, *args, window: int | None = None) -> Iterator:
    """``fn(item, *args)`` for each item on the cluster, yielded in order, at most ``window`` in flight.

    ``args`` may hold futures (e.g. a scattered fitted combiner); Dask resolves them on the worker.
    """
    if window is None:
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})))
    pending: deque = deque()
    for item in items:
        pending.append(client.submit(fn, item, *args, pure=False))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
