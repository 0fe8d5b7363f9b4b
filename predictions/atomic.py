"""Safe file output: temporary file beside the target, then rename; checked targets; locks.

* :func:`atomic_path` writes one file: an interrupted or failed write leaves
  nothing at the target path (and a previous file there stays intact).
* :class:`AtomicSet` writes several files that appear together (an ensemble's
  stores and its record): every file is written to its temporary name first
  and all are renamed only when every one of them is complete.
* :func:`check_target` refuses, before any work is done, an output path that
  could not be written or that must not be replaced: a directory, a device, a
  FIFO, a socket, a symbolic link; a parent that is a file or cannot be
  created; a name too long for the file system. ``os.replace`` onto a device
  node would replace the node itself (we may run as root), so it is never done.
* :func:`output_lock` serialises two runs writing the same outputs (a lock
  file held with ``flock``; a clear error when another run holds it).

Temporary files are named ``.<name>.tmp<pid>.<host>.<random><suffix>``: hidden
from globs, and tied to the process that writes them, so that the temporary
files of a run that was killed (dead pid, same host) are removed by the next
write into the same directory (:func:`clean_stale_temps`).

Every problem is an :class:`~predictions.errors.InputError` naming the path.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import socket
import stat
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InputError

#: Longest file name (bytes) that most file systems accept.
NAME_MAX = 255
_RANDOM = 8                                 # characters mkstemp adds
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_TEMP = re.compile(r"^\..*\.tmp(\d+)\.([0-9a-f]{6})\.")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """``"a directory"``, ``"a FIFO"``, ... for a ``st_mode`` (``"a regular file"`` for one)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "a special file"


#: errno values meaning "the file system cannot take this output": named plainly, never as a traceback.
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)


def _why(err: OSError) -> str:
    if getattr(err, "errno", None) in DISK_ERRORS:  # h5py's own message for these is several lines long
        return os.strerror(err.errno)
    return err.strerror or type(err).__name__


def why(err: BaseException) -> str:
    """Short reason of an OSError or an h5py error: a full or read-only disk named plainly (h5py's own
    message for it spans several lines of driver details), else the error's own one-line text."""
    code = getattr(err, "errno", None)
    if code not in DISK_ERRORS:
        code = next((e for e in DISK_ERRORS if f"errno = {e}," in str(err)), None)
    if code is not None:
        return os.strerror(code)
    if isinstance(err, OSError) and err.strerror and not str(err).startswith("Unable"):
        return err.strerror
    return " ".join(str(err).split()) or type(err).__name__


def target_of_temp(path: str | os.PathLike) -> Path:
    """The target a temporary file of :func:`atomic_path` / :class:`AtomicSet` stands for (else ``path``)."""
    path = Path(path)
    m = re.match(r"^\.(.+)\.tmp\d+\.[0-9a-f]{6}\.", path.name)
    return path.with_name(m.group(1)) if m else path


def check_free(path: str | os.PathLike, nbytes: int, *, target=None, what: str = "output") -> None:
    """InputError naming ``target`` when the file system of ``path`` (a file or a directory to be written
    in) has less than ``nbytes`` free for this user (``os.statvfs``); nothing when it cannot tell."""
    free = _free(path)
    if free is not None and free < nbytes:
        raise InputError(f"cannot write the {what} ({os.strerror(errno.ENOSPC)}: it needs about "
                         f"{_mib(nbytes)}, {_mib(free)} free)", Path(path if target is None else target))


def disk_error(err: BaseException) -> bool:
    """Whether ``err`` (an OSError, or an h5py error carrying an errno) says the disk is full or read-only."""
    if getattr(err, "errno", None) in DISK_ERRORS:
        return True
    text = str(err)
    return any(f"errno = {e}," in text for e in DISK_ERRORS)  # h5py's RuntimeError on a failed flush


_FALLOC_KEEP_SIZE = 1   # Linux FALLOC_FL_KEEP_SIZE: allocate blocks without changing the file size
_fallocate = None


def _libc_fallocate():
    global _fallocate
    if _fallocate is None:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.fallocate
            fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
            fn.restype = ctypes.c_int
            _fallocate = (fn, ctypes)
        except (OSError, AttributeError):  # pragma: no cover - not Linux
            _fallocate = False
    return _fallocate


def reserve_space(path: str | os.PathLike, nbytes: int, *, target=None, what: str = "output") -> None:
    """Reserve ``nbytes`` of disk for the existing file ``path`` before a library writes it.

    HDF5 that runs out of space while flushing leaves its file half-closed and the
    process dies later in h5py (SIGSEGV, measured with h5py 3.16 / HDF5 2.0), so a
    writer reserves the space first: ``fallocate(FALLOC_FL_KEEP_SIZE)`` allocates
    the blocks without changing the file's size (the writes that follow cannot fail
    for space, and the blocks past the end are freed when the file is truncated to
    its length after closing, see :func:`release_reserve`). Where fallocate is not
    supported, the free space is compared instead (``os.statvfs``). InputError
    naming ``target`` when the space is not there.
    """
    target = Path(path if target is None else target)
    nbytes = int(nbytes)
    if nbytes <= 0:
        return
    lib = _libc_fallocate()
    if lib:
        fn, ctypes = lib
        fd = os.open(path, os.O_WRONLY)
        try:
            rc = fn(fd, _FALLOC_KEEP_SIZE, 0, nbytes)
            err = ctypes.get_errno() if rc else 0
        finally:
            os.close(fd)
        if not err:
            return
        if err in DISK_ERRORS:
            release_reserve(path)  # a failed fallocate may keep the blocks it got (ext4): give them back
            raise InputError(f"cannot write the {what} ({os.strerror(err)}: it needs about "
                             f"{_mib(nbytes)}, {_mib(_free(path))} free)", target)
        # EOPNOTSUPP, ENOSYS, EINVAL: a file system without fallocate: compare the free space
    check_free(path, nbytes, target=target, what=what)


def release_reserve(path: str | os.PathLike) -> None:
    """Free the blocks :func:`reserve_space` allocated past the end of the (closed) file ``path``."""
    with contextlib.suppress(OSError):
        os.truncate(path, os.stat(path).st_size)


def _free(path) -> int | None:
    path = os.path.abspath(path)
    try:
        st = os.statvfs(path if os.path.isdir(path) else os.path.dirname(path))
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _mib(nbytes) -> str:
    if nbytes is None:
        return "? MiB"
    return f"{nbytes / 2**20:.1f} MiB" if nbytes >= 1 << 20 else f"{max(0, nbytes) // 1024} KiB"


def check_target(target: str | os.PathLike, *, what: str = "output") -> Path:
    """Refuse an output path that cannot be written or must not be replaced; return it as a Path.

    Allowed: a new name in an existing (or creatable) directory, or an existing
    regular file (replaced atomically later). Refused with an InputError: the
    target is a directory, a symbolic link, a FIFO, a device or a socket; a
    component of its directory is not a directory; the directory cannot be
    created or written; the name is too long. Nothing is created.
    """
    target = Path(target)
    name = target.name
    if not name or name in (".", ".."):
        raise InputError(f"{what} path names no file", target)
    if len(os.fsencode(name)) > NAME_MAX:
        raise InputError(f"{what} file name is {len(os.fsencode(name))} bytes long; the file system allows "
                         f"{NAME_MAX}", target)
    _check_dir(target.parent, target, what)  # first: a parent that is a file is named as such
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:  # ENAMETOOLONG (a long path), EACCES
        raise InputError(f"cannot write the {what} here ({_why(err)})", target) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} path is {file_kind(st.st_mode)}: refusing to replace it "
                         f"(give a regular file name)", target)
    return target


def _check_dir(d: Path, target: Path, what: str) -> None:
    """``d`` is a writable directory, or can be created: its deepest existing ancestor is one."""
    d = Path(os.path.abspath(d))
    existing = None
    for a in reversed([d, *d.parents]):  # from the root down
        try:
            st = os.stat(a)
        except FileNotFoundError:
            break
        except OSError as err:
            raise InputError(f"cannot write the {what} here ({_why(err)})", target) from None
        if not stat.S_ISDIR(st.st_mode):
            raise InputError(f"cannot write the {what}: {a} is {file_kind(st.st_mode)}, not a directory", target)
        existing = a
    if existing is None:  # pragma: no cover - the root always exists
        raise InputError(f"cannot write the {what}: no existing directory above it", target)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the {what}: directory {existing} is not writable", target)


def check_not_input(target: str | os.PathLike, inputs, *, what: str = "output") -> None:
    """Refuse an output path that is one of the command's inputs (the same file, or the same path):
    ``submit m.h5 --out m.h5`` would replace the store with its own CSV."""
    target = Path(target)
    for src in inputs:
        try:
            same = os.path.samefile(target, src)
        except OSError:  # one of them does not exist
            same = os.path.abspath(target) == os.path.abspath(src)
        if same:
            raise InputError(f"the {what} would replace the input {src}: give another path", target)


def check_directory(d: str | os.PathLike, *, what: str = "output directory") -> Path:
    """Refuse a directory path under which nothing could be written: a component that is a file, or
    the deepest existing ancestor not writable (a missing tail is fine: it is created later)."""
    d = Path(d)
    _check_dir(d, d, what)
    return d


def _make_dir(d: Path, target: Path, what: str) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the directory of the {what} ({_why(err)})", target) from None


def _temp_prefix(target: Path) -> str:
    tag = f".tmp{os.getpid()}.{_HOST}."
    room = NAME_MAX - len(tag) - 1 - _RANDOM - 16  # 16: room for a suffix
    name = os.fsencode(target.name)[:max(1, room)].decode("utf-8", "ignore") or "x"
    return f".{name}{tag}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def clean_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files left in ``directory`` by killed writers on this host; return them.

    A temporary file is stale when its name carries this host's tag and the
    pid of a process that no longer exists. Anything else is left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP.match(e.name)
        if not m or m.group(2) != _HOST or _pid_alive(int(m.group(1))):
            continue
        with contextlib.suppress(OSError):
            if e.is_file(follow_symlinks=False):
                os.unlink(e.path)
                removed.append(Path(e.path))
    return removed


def _new_temp(target: Path, suffix: str, what: str) -> Path:
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=suffix, dir=target.parent)
    except OSError as err:
        raise InputError(f"cannot write the {what} ({_why(err)})", target) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # mkstemp makes 0600: an output gets the mode the umask gives
    finally:
        os.close(fd)
    return Path(tmp)


def _umask() -> int:
    """The process umask (read by setting it and putting it back: POSIX has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _replace(tmp: Path, target: Path, what: str) -> None:
    """Rename ``tmp`` onto ``target`` unless the target became something else than a regular file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise InputError(f"cannot write the {what} ({_why(err)})", target) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} path is {file_kind(st.st_mode)}: refusing to replace it", target)
    try:
        os.replace(tmp, target)
    except OSError as err:
        raise InputError(f"cannot write the {what} ({_why(err)})", target) from None


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str = "", *, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename onto target on success.

    The target is checked first (:func:`check_target`); the temporary name
    starts with ``.<name>.tmp`` so that globs such as ``*.h5`` never pick up a
    half-written file. On any exception the temporary file is removed and the
    exception propagates; an ``OSError`` while writing becomes an InputError
    naming the target.
    """
    target = check_target(target, what=what)
    _make_dir(target.parent, target, what)
    clean_stale_temps(target.parent)
    tmp = _new_temp(target, suffix, what)
    try:
        try:
            yield tmp
            _fsync(tmp)
        except OSError as err:
            raise InputError(f"cannot write the {what} ({_why(err)})", target) from None
        _replace(tmp, target, what)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the path."""
    if isinstance(target, bytes) or not isinstance(target, (str, os.PathLike)):
        raise InputError(f"path must be a str or os.PathLike, got {type(target).__name__}")
    if not isinstance(text, str):
        raise InputError(f"text must be a str, got {type(text).__name__}", target)
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


class AtomicSet:
    """Files that appear together or not at all.

    ``tmp = s.add(target)`` checks the target and returns a new temporary file
    beside it (empty; write it in place); :meth:`commit` renames every
    temporary file onto its target once all are written; :meth:`discard`
    removes them. As a context manager: commit on success, discard on error.
    Combine with :func:`output_lock` so that two runs never interleave their
    renames.
    """

    def __init__(self, what: str = "output"):
        self.what = what
        self._pending: list[tuple[Path, Path]] = []

    def add(self, target: str | os.PathLike, suffix: str = "") -> Path:
        target = check_target(target, what=self.what)
        if any(t == target for _, t in self._pending):
            raise InputError(f"{self.what} written twice in one set", target)
        _make_dir(target.parent, target, self.what)
        clean_stale_temps(target.parent)
        tmp = _new_temp(target, suffix, self.what)
        self._pending.append((tmp, target))
        return tmp

    def temp_of(self, target) -> Path:
        """The temporary path of a target already added."""
        target = Path(target)
        for tmp, t in self._pending:
            if t == target:
                return tmp
        raise KeyError(target)

    def commit(self) -> list[Path]:
        """fsync every temporary file, then rename each onto its target; return the targets."""
        try:
            for tmp, target in self._pending:
                try:
                    _fsync(tmp)
                except OSError as err:
                    raise InputError(f"cannot write the {self.what} ({_why(err)})", target) from None
                _replace_check(target, self.what)
        except BaseException:
            self.discard()
            raise
        done = []
        for tmp, target in self._pending:
            _replace(tmp, target, self.what)
            done.append(target)
        self._pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self._pending:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._pending = []

    def __enter__(self) -> "AtomicSet":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
        return False


def _replace_check(target: Path, what: str) -> None:
    """Refuse now (before any rename of a set) a target that became a non-regular file."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{what} path is {file_kind(st.st_mode)}: refusing to replace it", target)


def _lock_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return ""
    return f" (pid {text[0]} on {text[1]})" if len(text) >= 2 else ""


@contextlib.contextmanager
def output_lock(lock: str | os.PathLike, *, what: str = "these outputs") -> Iterator[Path]:
    """Hold an exclusive lock on the file ``lock`` (created; removed on release) inside the block.

    Another process holding it is a one-line InputError. The kernel releases
    the lock of a killed process, so a lock file left by a crash never blocks
    a later run. Uses ``fcntl.flock``; where it is missing, no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield Path(lock)
        return
    lock = Path(lock)
    _make_dir(lock.parent, lock, "lock file")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as err:
            raise InputError(f"cannot create the lock file ({_why(err)})", lock) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(f"another run is writing {what}{_lock_holder(lock)}: wait for it to "
                                 f"finish (this lock file is released when it ends)", lock) from None
            raise InputError(f"cannot lock ({_why(err)})", lock) from None
        # The holder before us may have removed the file after we opened it: lock the current one.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)
