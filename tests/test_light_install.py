"""The core install without extras (issue 21.8): blending works, and a command that needs an extra says
which one in one line. The extras' modules are hidden from a subprocess (a meta-path finder that refuses
them), which is what ``pip install .`` without extras gives; the real fresh-venv check is in the closing
note of issue 21 (``python -m venv v && v/bin/pip install . && v/bin/ensemble build ...``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .ensemble_fixtures import write_members

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("torch", "xgboost", "pandas", "matplotlib", "dask", "distributed", "tfrecord", "crc32c")

_HIDE = f"""
import importlib.abc, sys
class _NoExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _NoExtras())
"""


def _run(module: str, *argv) -> subprocess.CompletedProcess:
    code = _HIDE + f"import runpy, sys\nsys.argv = {['x', *map(str, argv)]!r}\nrunpy.run_module({module!r}, " \
                   "run_name='__main__')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    return write_members(tmp_path_factory.mktemp("light"), names=["moe", "lr", "mlp"])


def test_build_caruana_and_submit_without_extras(members, tmp_path):
    p = _run("ensembler.cli", "build", "--weights=caruana", "--members", members["predictions"], "--labels",
             members["labels"], "--folds", 2, "--out", tmp_path / "o", "--quiet", "--submit", tmp_path / "a.csv")
    assert p.returncode == 0, p.stderr
    p = _run("ensembler.cli", "submit", tmp_path / "o" / "ens-caruana.test.full.h5", "--out", tmp_path / "b.csv",
             "--quiet")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


@pytest.mark.parametrize("module, argv, extra", [
    ("ensembler.cli", ["build", "--weights=xgboost"], "xgboost"),
    ("ensembler.cli", ["report", "--split", "heldout"], "report"),
    ("producers.cli", ["train", str(ROOT / "configs" / "demo" / "moe.toml")], "producers"),
    ("producers.cli", ["models"], "producers"),
])
def test_a_command_needing_an_extra_names_it(members, tmp_path, module, argv, extra):
    if module == "ensembler.cli":
        argv = [*argv, "--members", members["predictions"], "--labels", members["labels"], "--out", tmp_path / "o"]
    p = _run(module, *argv)
    err = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(err) == 1, p.stderr
    assert f'pip install "yt8m-ensembler[{extra}]"' in err[0] and "Traceback" not in p.stderr
    assert not (tmp_path / "o").exists()
