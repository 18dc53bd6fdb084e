"""Atomic file writes: the one way this package writes a file that must never be seen half done.

:func:`atomic_output` yields a file object; the bytes go to a hidden temporary file in the
target folder (same filesystem), which is flushed, fsync'ed and ``os.replace``'d onto the
target when the ``with`` block ends without error, then the folder is fsync'ed (best
effort).  On any failure the temporary file is removed and :class:`AtomicWriteError` (an
``OSError``) naming the target is raised.  :func:`atomic_write_bytes`,
:func:`atomic_write_text` and :func:`atomic_link_or_copy` are the common cases.

Used by map files (``Mapper.save``), meshes and PLY (:mod:`.ply`), JSON outputs
(:mod:`.jsonio`), images (``visualize.write_image``), checkpoints and corrupted-label files.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["AtomicWriteError", "atomic_output", "atomic_write_bytes", "atomic_write_text",
           "atomic_link_or_copy", "check_directory"]


class AtomicWriteError(OSError):
    """A file that could not be written (folder missing or not writable, disk full, ...).
    No partial file is left behind."""


def check_directory(path: Path) -> None:
    """Raise :class:`AtomicWriteError` naming the problem unless a file ``path`` can be
    created: its folder exists, is a folder and is writable, and ``path`` is no folder."""
    parent = path.parent
    if not parent.exists():
        raise AtomicWriteError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise AtomicWriteError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise AtomicWriteError(f"cannot write {path}: directory {parent} is not writable")
    if path.is_dir():
        raise AtomicWriteError(f"cannot write {path}: it is a directory")


def _open_temp_file(fd: int, mode: str, **kwargs):
    """Wrap the temporary file descriptor (a seam for failure-injection tests)."""
    return os.fdopen(fd, mode, **kwargs)


@contextlib.contextmanager
def atomic_output(path, mode: str = "wb") -> Iterator:
    """Context manager yielding a file object whose content replaces ``path``
    only if the ``with`` block finishes without error.

    The temporary file lives in the same directory (same filesystem, so the
    final ``os.replace`` is atomic), is fsync'ed before the rename, and is
    removed on any failure.  Errors are re-raised as :class:`AtomicWriteError`
    naming ``path`` (the original exception is chained).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_output mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    check_directory(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=str(path.parent), prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise AtomicWriteError(f"cannot write {path}: cannot create a temporary file in "
                              f"{path.parent}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        kwargs = {} if "b" in mode else {"encoding": "ascii", "newline": "\n"}
        try:
            fh = _open_temp_file(fd, mode, **kwargs)
        except BaseException:
            os.close(fd)
            raise
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, AtomicWriteError) or not isinstance(exc, Exception):
            raise
        raise AtomicWriteError(f"cannot write {path}: {type(exc).__name__}: {exc}") from exc
    # Persist the rename itself (best effort; not all filesystems allow it).
    with contextlib.suppress(OSError):
        dfd = os.open(str(path.parent), os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _read_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask() would
    briefly set it process-wide, racing with other threads creating files)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()   # read once, at import (single-threaded)


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the absolute path."""
    path = Path(path).expanduser().absolute()
    with atomic_output(path, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (ASCII-safe text: JSON, YAML, OBJ) to ``path`` atomically; returns the
    absolute path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_link_or_copy(src, dst) -> Path:
    """Make ``dst`` a second name of the file ``src`` atomically: a hard link where the
    filesystem allows (no second copy of a large file), else a copy; either is built
    under a temporary name and ``os.replace``'d onto ``dst``."""
    src, dst = Path(src), Path(dst).expanduser().absolute()
    check_directory(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except OSError as exc:
        raise AtomicWriteError(f"cannot write {dst}: {type(exc).__name__}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return dst
