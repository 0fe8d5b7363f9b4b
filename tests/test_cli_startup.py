"""CLI start-up: ``ensemble --help``, ``ensemble schemes`` and ``produce --help`` load no heavy module.

Each command runs in a fresh interpreter the way its console script does (``from X.cli import main``,
then ``main()``), and the modules it left in ``sys.modules`` are checked. The time it takes is measured
by ``python bench/run.py --only startup`` (bench/README.md), not asserted here: it depends on the load.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Imported only by the commands (or schemes) that use them.
HEAVY = ("torch", "xgboost", "scipy", "sklearn", "matplotlib", "dask", "distributed", "pandas", "pyarrow",
         "tqdm", "jinja2", "numba", "tensorflow")

_PROBE = """
import contextlib, io, json, sys
from {package}.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        rc = main({argv!r})
    except SystemExit as exit:
        rc = exit.code
print(json.dumps({{"rc": rc, "modules": sorted(sys.modules), "out": out.getvalue()}}))
"""


def _modules_after(package: str, argv: list[str]) -> tuple[set[str], str]:
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(package=package, argv=argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.splitlines()[-1])
    assert res["rc"] in (0, None), res
    return {m.split(".")[0] for m in res["modules"]}, res["out"]


def _loaded(modules: set[str], names) -> list[str]:
    return sorted(set(names) & modules)


@pytest.mark.parametrize("argv", [["--help"], ["build", "--help"], ["import", "--help"]])
def test_ensemble_help_imports_nothing_heavy(argv):
    modules, out = _modules_after("ensembler", argv)
    assert "usage: ensemble" in out
    assert _loaded(modules, HEAVY) == []


def test_ensemble_schemes_imports_nothing_heavy():
    modules, out = _modules_after("ensembler", ["schemes"])
    assert "caruana" in out and "uniform" in out  # the registry is complete
    assert _loaded(modules, HEAVY) == []


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_produce_help_imports_nothing_heavy(argv):
    modules, out = _modules_after("producers", argv)
    assert "usage: produce" in out
    # produce --help needs neither the arrays nor the stores: not even numpy or h5py
    assert _loaded(modules, HEAVY + ("numpy", "h5py", "predictions")) == []
