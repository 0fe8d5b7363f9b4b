"""Every scheme's parameters checked up front, one line each (issue 25, item 4), and every wait on
``--scheduler`` with a deadline (item 3).

The sweep walks the ``ensembler.schemes`` registry: for every scheme and every constrained
parameter it tries values beyond int64, NaN, +-inf, wrong types and bools. A value the rule
cannot accept must be a one-line :class:`InputError` naming the parameter (never a TypeError
from ``isnan``, an sklearn InvalidParameterError or an allocation); before issue 25
``--param n_iterations=99999999999999999999`` was a TypeError and ``--seed 4294967296`` with lr
an sklearn InvalidParameterError.

Scheduler cases connect only to 127.0.0.1 ports the test opened itself: a port bound then
closed (nothing listens), a server that accepts and says nothing, one that speaks HTTP (its
first 8 bytes read as a length of about 3 EiB), one that closes at once, one that sends half
a handshake.
"""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

import ensembler  # noqa: F401  (registers the schemes)
from ensembler import distributed
from ensembler.base import combiner_class, create_combiner, list_combiners
from ensembler.cli import main as ensemble
from predictions.errors import InputError
from predictions.params import Check, Choice, Num

from .conftest import assert_clear_error, cli, ids_of, make_labels, make_store

BIG = 2**63                     # int64 + 1
VALUES = {"int64+1": BIG, "-int64-2": -BIG - 1, "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"),
          "true": True, "false": False, "str": "abc", "list": [1], "dict": {"a": 1}, "half": 2.5}

CONSTRAINED = [(s, p) for s in list_combiners() for p in combiner_class(s)._parameter_constraints]


def _must_refuse(rule, value) -> bool:
    """Whether ``rule`` must refuse ``value``, stated here from the rule's kind (not by calling it)."""
    if isinstance(value, (str, list, dict)) and not isinstance(rule, Check):
        return True
    if isinstance(value, float) and np.isnan(value):
        return True   # NaN is never a meaningful parameter, whatever the rule
    if isinstance(rule, Num):
        if isinstance(value, bool):
            return True
        if rule.integer:
            return not (isinstance(value, int) and abs(value) <= BIG - 1 and value == value) or \
                (rule.hi is not None and value > rule.hi) or (rule.lo is not None and value < rule.lo)
        if np.isinf(value):
            return not rule.inf
        return (rule.hi is not None and value > rule.hi) or (rule.lo is not None and value < rule.lo)
    if isinstance(rule, Choice):
        return not any(value is o if isinstance(o, bool) or isinstance(value, bool) else value == o
                       for o in rule.options)
    return False   # a custom Check: refused or not, never a crash (asserted below)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, c = 40, 6
    members = [rng.random((n, c)).astype(np.float32) for _ in range(3)]
    labels = (rng.random((n, c)) < 0.3).astype(np.int8)
    labels[:, 0] = 1
    return members, labels


@pytest.mark.parametrize("scheme, param", CONSTRAINED, ids=[f"{s}-{p}" for s, p in CONSTRAINED])
def test_every_scheme_parameter_refuses_hostile_values(scheme, param, data):
    rule = combiner_class(scheme)._parameter_constraints[param]
    members, labels = data
    refused = []
    for name, value in VALUES.items():
        try:
            create_combiner(scheme, **{param: value}).fit(members, labels)
        except InputError as err:
            text = str(err)
            assert "\n" not in text and param in text, (name, text)
            refused.append(name)
        except Exception as err:  # noqa: BLE001  the point: nothing but InputError
            pytest.fail(f"{scheme} {param}={value!r}: {type(err).__name__}: {err}")
        else:
            assert not _must_refuse(rule, value), f"{scheme} {param}={value!r} accepted"
    assert {"nan", "str"} <= set(refused) or isinstance(rule, Check), refused


def _first_numeric(scheme: str) -> str | None:
    for p, rule in combiner_class(scheme)._parameter_constraints.items():
        if isinstance(rule, Num) and not rule.inf:
            return p
    return None


CLI_VALUES = {"beyond-int64": "99999999999999999999", "NaN": "NaN", "Infinity": "Infinity", "bool": "true",
              "string": '"abc"', "list": "[1]"}
CLI_CASES = [(s, v) for s in list_combiners() if _first_numeric(s) for v in CLI_VALUES]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    ids = ids_of(40)
    for split in ("heldout", "eval"):
        for j in range(2):
            make_store(root / "preds" / f"m{j}.{split}.full.h5", n=40, model=f"m{j}", split=split, seed=j)
        make_labels(root / "labels" / f"labels.{split}.h5", ids, split=split)
    return root


@pytest.mark.parametrize("scheme, value", CLI_CASES, ids=[f"{s}-{v}" for s, v in CLI_CASES])
def test_cli_param_sweep_is_one_line(scheme, value, run, tmp_path, capsys):
    param = _first_numeric(scheme)
    rc, err = cli(ensemble, ["build", "--weights", scheme, "--param", f"{param}={CLI_VALUES[value]}",
                             "--members", run / "preds", "--labels", run / "labels", "--out", tmp_path / "o",
                             "--folds", 2, "--quiet"], capsys)
    assert_clear_error(rc, err, "ensemble", param)
    assert not (tmp_path / "o").exists()


SEEDS = [(s, v) for s in ("lr", "caruana", "uniform") for v in ("4294967296", "-1", "18446744073709551616")]


@pytest.mark.parametrize("scheme, seed", SEEDS, ids=[f"{s}-{v}" for s, v in SEEDS])
def test_seed_outside_every_library_range_is_refused(scheme, seed, run, tmp_path, capsys):
    rc, err = cli(ensemble, ["build", "--weights", scheme, "--seed", seed, "--members", run / "preds", "--labels",
                             run / "labels", "--out", tmp_path / "o", "--folds", 2, "--quiet"], capsys)
    # beyond int64 the message names int64's bound rather than the seed range (predictions/params.py)
    assert_clear_error(rc, err, "ensemble", "--seed", "4294967295" if int(seed) < 2**63 else seed)


def test_seed_range_is_stated_in_help(capsys):
    with pytest.raises(SystemExit):
        ensemble(["build", "--help"])
    assert "4294967295" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- --scheduler

def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Server:
    """A 127.0.0.1 server of this test: on each connection, send ``reply`` then wait (or close)."""

    def __init__(self, reply: bytes = b"", close: bool = False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.reply, self.close_at_once, self.conns = reply, close, []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if self.reply:
                conn.sendall(self.reply)
            if self.close_at_once:
                conn.close()

    def stop(self):
        self.sock.close()
        for c in self.conns:
            c.close()


SERVERS = {
    "silent": (dict(), "does not answer like a Dask scheduler"),
    "http": (dict(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"), "does not speak the Dask protocol"),
    "closes-at-once": (dict(close=True), "closed the connection"),
    "half-handshake": (dict(reply=(1000).to_bytes(8, "little") + b"x" * 10), "got 10 of the 1000 bytes"),
    "zero-length": (dict(reply=bytes(8)), "does not speak the Dask protocol"),
}


@pytest.mark.parametrize("case", sorted(SERVERS))
def test_probe_of_a_server_that_is_not_dask(case):
    kw, needle = SERVERS[case]
    srv = _Server(**kw)
    address = f"tcp://127.0.0.1:{srv.port}"
    t0 = time.perf_counter()
    try:
        with pytest.raises(InputError) as err:
            distributed.probe_scheduler(address, "127.0.0.1", srv.port, timeout=1.0)
    finally:
        srv.stop()
    assert address in str(err.value) and needle in str(err.value), str(err.value)
    assert time.perf_counter() - t0 < 3.0


def test_probe_of_a_closed_port():
    port = _closed_port()
    with pytest.raises(InputError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        distributed.probe_scheduler(f"tcp://127.0.0.1:{port}", "127.0.0.1", port, timeout=1.0)


@pytest.mark.parametrize("command", ["build", "evaluate"])
@pytest.mark.parametrize("case", ["closed-port", "silent", "http"])
def test_scheduler_option_has_a_deadline(case, command, run, tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 1.0)
    srv = None
    if case == "closed-port":
        port = _closed_port()
    else:
        srv = _Server(**SERVERS[case][0])
        port = srv.port
    argv = [command, "--members", run / "preds", "--labels", run / "labels", "--scheduler",
            f"tcp://127.0.0.1:{port}", "--quiet"]
    if command == "build":
        argv += ["--out", tmp_path / "o", "--folds", 2]
    t0 = time.perf_counter()
    try:
        rc, err = cli(ensemble, argv, capsys)
    finally:
        if srv is not None:
            srv.stop()
    seconds = time.perf_counter() - t0
    assert_clear_error(rc, err, "ensemble", f"127.0.0.1:{port}")
    assert seconds < 10, f"{seconds:.1f} s"   # the deadline is 1 s here (10 s by default)
