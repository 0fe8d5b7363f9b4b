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
import socket
import struct
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from predictions.errors import InputError
from predictions.extras import require

_ACTIVE = []
#: Seconds to wait for a remote scheduler: the TCP connection, then its first message, then the Client.
CONNECT_TIMEOUT = 10.0
#: Largest first message (the handshake, a few hundred bytes from a real scheduler) the probe accepts.
MAX_HANDSHAKE_BYTES = 1 << 20


def connect(address: str, timeout: float | None = None):
    """A ``dask.distributed.Client`` for ``address`` (``tcp://host:port``, ``local`` or ``local:N``).

    A remote address is probed first (:func:`probe_scheduler`): every wait has a deadline of
    ``timeout`` seconds (default :data:`CONNECT_TIMEOUT`) and anything that does not answer like a Dask scheduler is a one-line
    InputError naming the address, before a Client exists (a Client that fails to start hangs in
    its destructor, and a garbage length in a reply would be allocated as it is).
    """
    if not isinstance(address, str):
        raise InputError(f"--scheduler must be an address string, got {type(address).__name__}")
    timeout = CONNECT_TIMEOUT if timeout is None else timeout  # read now: a test may lower the module's value
    require("distributed", "dask", what="--scheduler")
    from dask.distributed import Client, LocalCluster
    if address == "local" or address.startswith("local:"):
        text = address.split(":", 1)[1] if ":" in address else "2"
        if not text.isdigit() or not 1 <= int(text) <= 1024:
            raise InputError(f"--scheduler {address!r}: expected local or local:N with N workers, 1 to 1024")
        cluster = LocalCluster(n_workers=int(text), threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    scheme, host, port = _check_address(address)
    if scheme == "tcp":
        probe_scheduler(address, host, port, timeout)
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {' '.join(str(err).split())}") from None


def probe_scheduler(address: str, host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> None:
    """InputError naming ``address`` unless a Dask scheduler answers there within ``timeout`` seconds.

    A scheduler sends its handshake as soon as it accepts a connection: a message framed as a
    little-endian uint64 length then that many bytes. The probe connects (deadline), reads the
    8 length bytes (deadline), refuses a length of 0 or over MAX_HANDSHAKE_BYTES (a server that
    speaks something else: HTTP, SSH, ... reads as an absurd length) and reads the message
    itself (deadline); nothing is allocated from what the peer says beyond that bound.
    """
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.timeout:
        raise InputError(f"cannot reach the Dask scheduler at {address}: no connection within {timeout:g} s") \
            from None
    except OSError as err:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {err.strerror or err}") from None
    with sock:
        head = _recv(sock, 8, deadline, address)
        (n,) = struct.unpack("<Q", head)
        if not 0 < n <= MAX_HANDSHAKE_BYTES:
            shown = head.decode("ascii", "replace").replace("\ufffd", "?")
            raise InputError(f"{address} does not speak the Dask protocol (its first bytes {shown!r} announce a "
                             f"message of {n} bytes; a scheduler's handshake is under "
                             f"{MAX_HANDSHAKE_BYTES >> 20} MiB): is it a Dask scheduler's address?")
        _recv(sock, n, deadline, address)


def _recv(sock: socket.socket, n: int, deadline: float, address: str) -> bytes:
    """Exactly ``n`` bytes from ``sock`` before ``deadline``; InputError naming ``address`` otherwise."""
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise InputError(f"{address} does not answer like a Dask scheduler (got {len(buf)} of the {n} bytes "
                             f"expected within the timeout)")
        sock.settimeout(left)
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 16))
        except socket.timeout:
            continue
        except OSError as err:
            raise InputError(f"cannot talk to the Dask scheduler at {address}: {err.strerror or err}") from None
        if not chunk:
            raise InputError(f"{address} closed the connection after {len(buf)} bytes: not a Dask scheduler "
                             f"(or it refused this client)")
        buf += chunk
    return bytes(buf)


def _check_address(address: str) -> tuple[str, str | None, int | None]:
    """``(scheme, host, port)`` of a scheduler address (host and port None for other schemes);
    InputError unless it parses (checked before a Client exists: a Client that fails to start hangs a
    minute in its destructor)."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, loc = parse_address(address)
        get_backend(scheme)
        host, port = None, None
        if scheme in ("tcp", "tls", "ws", "wss"):
            host, port = parse_host_port(loc)
    except (ValueError, TypeError) as err:
        raise InputError(f"--scheduler {address!r} is not a scheduler address (tcp://host:port, local or "
                         f"local:N): {' '.join(str(err).split())}") from None
    if port is None and scheme == "tcp":
        raise InputError(f"--scheduler {address!r}: the address needs a port (tcp://host:8786)")
    return scheme, host, port


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
