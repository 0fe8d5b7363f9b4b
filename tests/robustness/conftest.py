"""Shared fixtures and helpers of the robustness suite (bad inputs, crashes, trust, load).

Helpers
-------
``cli(main, argv, capsys)`` -> (exit code, stderr) of a CLI ``main(argv)``.
``assert_clear_error(rc, err, prog, *needles)``: exit 1, stderr one line starting
``"<prog>: error: "`` and holding every needle (typically the file name and the problem).
``snapshot(root)``: {relative path: sha256} of every file under ``root`` (temporary
``.*.tmp*`` files included; FIFOs, devices and links by their mode, never read), to
assert that a failed command left nothing behind.
``make_store(path, ...)``: a small valid top-k store with known content.
``job_toml(path, ...)``: a small ``produce`` job config.
``special(kind, path)``: make a FIFO, a character device (the null device's numbers, made
with ``os.mknod`` in the test's own tmp dir), a dangling symbolic link or a directory at
``path``; ``still_special(kind, path)`` checks it was left as it was.
``dead_pid()``: the pid of a process that has exited.
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from predictions.labels import write_labels
from predictions.store import write_store
from predictions.types import Labels, Predictions

REPO = Path(__file__).resolve().parents[2]
C = 20          # classes of the small generated data and stores
K = 5           # top-k of the small stores


def cli(main, argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def assert_clear_error(rc: int, err: str, prog: str, *needles: str) -> str:
    """Exit code 1 and a single stderr line ``<prog>: error: ...`` holding each needle."""
    lines = [l for l in err.splitlines() if not l.startswith(f"{prog}: warning:")]
    assert rc == 1, f"exit code {rc}, stderr: {err!r}"
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    line = lines[0]
    assert line.startswith(f"{prog}: error: "), line
    assert "Traceback" not in err
    for numpy_repr in ("np.str_(", "np.int64(", "np.float32(", "np.float64(", "np.bytes_("):
        assert numpy_repr not in line, f"numpy scalar repr in the message: {line!r}"
    for n in needles:
        assert str(n) in line, f"{n!r} not in {line!r}"
    return line


def snapshot(root) -> dict[str, str]:
    root = Path(root)
    if not root.exists():
        return {}
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in files + [d for d in dirs if os.path.islink(Path(dirpath) / d)]:
            p = Path(dirpath) / f
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:  # never read a FIFO or a device: record what it is
                out[str(p.relative_to(root))] = f"mode {oct(st.st_mode)}" + (
                    f" -> {os.readlink(p)}" if stat.S_ISLNK(st.st_mode) else "")
    return out


def ids_of(n: int, prefix: str = "v") -> np.ndarray:
    return np.array([f"{prefix}{i:05d}" for i in range(n)])


def topk_preds(ids, num_classes: int = C, k: int = K, seed: int = 0) -> Predictions:
    """Random valid top-k predictions (rows sorted descending, distinct labels)."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    idx = np.argsort(rng.random((n, num_classes)), axis=1)[:, :k].astype(np.int32)
    sc = -np.sort(-rng.random((n, k)).astype(np.float32), axis=1)
    return Predictions(np.asarray(ids), sc, idx, num_classes)


def make_store(path, *, n: int = 30, num_classes: int = C, k: int = K, model: str = "m0",
               split: str = "heldout", ids=None, seed: int = 0) -> Path:
    ids = ids_of(n) if ids is None else np.asarray(ids)
    return write_store(path, topk_preds(ids, num_classes, k, seed), model=model, split=split)


def make_labels(path, ids, num_classes: int = C, split: str = "heldout", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lists = [rng.choice(num_classes, size=2, replace=False) for _ in ids]
    return write_labels(path, Labels.from_lists(np.asarray(ids), lists, num_classes), split=split)


def job_toml(path, train, *, model: str = "lr", level: str | None = None, name: str = "job",
             epochs: int = 2, extra: str = "", num_classes: int = C, hparams: str = "",
             test: str | None = None, heldout: int = 10, patience: int = 10, batch_size: int = 16,
             top_k: int = 5, run_dir: str = "runs") -> Path:
    text = f'[model]\nname = "{model}"\n'
    if hparams:
        text += f"[model.hparams]\n{hparams}\n"
    text += f'[data]\ntrain = "{train}"\nnum_classes = {num_classes}\n'
    if level:
        text += f'level = "{level}"\n'
    if test:
        text += f'test = "{test}"\n'
    text += (f"[split]\nheldout = {heldout}\neval = 0\ndev_fraction = 0.1\n"
             f"[train]\nepochs = {epochs}\nbatch_size = {batch_size}\npatience = {patience}\n"
             f'device = "cpu"\n'
             f"[predict]\ntop_k = {top_k}\n"
             f'[output]\nrun_dir = "{run_dir}"\nname = "{name}"\n' + extra)
    path = Path(path)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """Generated video- and frame-level shards: 60 labelled + 10 test videos, C=20, 2 shards each."""
    from producers.data.generator import generate

    root = tmp_path_factory.mktemp("yt8m-small")
    generate(root, n_train=60, n_test=10, num_classes=C, level="both", shards=2, seed=0,
             min_frames=5, max_frames=12)
    return root


SPECIAL_KINDS = ("fifo", "chardev", "dangling-link", "link-to-chardev", "directory")


def special(kind: str, path) -> Path:
    """Create a non-regular file ``kind`` at ``path`` (inside the test's tmp dir only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind in ("chardev", "link-to-chardev"):
        node = path if kind == "chardev" else path.with_name(path.name + ".node")
        try:
            os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # the null device's numbers
        except PermissionError:
            pytest.skip("cannot create a device node here (not root)")
        if kind == "link-to-chardev":
            path.symlink_to(node)
    elif kind == "dangling-link":
        path.symlink_to(path.with_name("nowhere-" + path.name))
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(kind)
    return path


def still_special(kind: str, path) -> None:
    st = os.lstat(path)
    test = {"fifo": stat.S_ISFIFO, "chardev": stat.S_ISCHR, "dangling-link": stat.S_ISLNK,
            "link-to-chardev": stat.S_ISLNK, "directory": stat.S_ISDIR}[kind]
    assert test(st.st_mode), f"{path} was replaced (mode {oct(st.st_mode)})"
    if kind == "link-to-chardev":
        assert stat.S_ISCHR(os.stat(path).st_mode)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid
