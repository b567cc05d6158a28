"""Run folders: one owner at a time, content fingerprints, leftovers of killed runs.

A run folder (``gnnmd simulate -o``, ``gnnmd train -o``, a Python
:class:`~gnnmd.sim.simulation.Simulation`) is owned by one process at a time
through an OS-level lock (``flock`` on a lock file in the folder), taken before
anything else is written. The lock dies with its process, so a run killed with
``kill -9`` never leaves a stale lock behind; a second writer gets a
:class:`RunFolderBusyError` naming the folder and the holder's pid.

Everything here is engine-neutral: the simulation and the training loop both
use it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from gnnmd.errors import GnnmdError

LOCK_FILE = ".gnnmd.lock"
_HASH_CHUNK = 1 << 22


class RunFolderBusyError(GnnmdError, RuntimeError):
    """Another process holds the run folder's lock."""


class RunFolderError(GnnmdError, ValueError):
    """A run folder cannot be used: not a directory, foreign files, or a run that does not match."""


class RunFolderLock:
    """Exclusive ownership of ``directory`` (created if missing) while held.

    Args:
        directory: the run folder.
        name: lock file name inside it; several locks in one folder are independent.

    Use as a context manager, or :meth:`acquire` / :meth:`release`.
    """

    def __init__(self, directory: str | os.PathLike, name: str = LOCK_FILE) -> None:
        self.directory = Path(directory)
        self.path = self.directory / name
        self._fd: int | None = None

    def acquire(self) -> RunFolderLock:
        """Take the lock or raise RunFolderBusyError (never waits)."""
        if self._fd is not None:
            return self
        if self.directory.exists() and not self.directory.is_dir():
            raise RunFolderError(f"{self.directory}: exists and is not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunFolderBusyError(
                f"{self.directory}: in use by {_describe_holder(self.path)}; wait for it to end "
                "or choose another folder"
            ) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": sys.argv}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        # The file stays: deleting a lock file races with a process that just opened it.
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _describe_holder(path: Path, patience_s: float = 1.0) -> str:
    """The holder's pid, host and command, read from the lock file.

    A holder that has just taken the lock writes them a moment later: wait up to
    ``patience_s`` for them to appear.
    """
    deadline = time.monotonic() + patience_s
    while True:
        try:
            holder = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):  # empty, or half written
            holder = {}
        if holder or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if not holder:
        return "another process"
    command = " ".join(str(part) for part in holder.get("command", []))
    return f"pid {holder.get('pid')} on {holder.get('host')} ({command})"


def claim(lock: RunFolderLock) -> None:
    """Take a run folder's lock, then remove what writes killed half-way left behind (only the owner may)."""
    lock.acquire()
    remove_temporary_files(lock.directory)


def remove_temporary_files(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.*.tmp`` files that writes killed half-way leave behind; returns them.

    Call only while holding the folder's lock: a live writer's temporary file would go too.
    """
    removed = []
    folder = Path(directory)
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        # ".name.<random>.tmp", ".name.tmp.pdb" (hidden temporaries) and "name.tmp" (model files)
        temporary = path.name.endswith(".tmp") or (path.name.startswith(".") and ".tmp" in path.name)
        if temporary and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def require_fresh(directory: str | os.PathLike, record: str, advice: str) -> None:
    """Refuse a folder that holds anything but bookkeeping files: it is not ours to overwrite.

    ``record`` names the run record whose presence means "a run is here" (for the message).
    """
    folder = Path(directory)
    if not folder.is_dir():
        return
    if (folder / record).exists():
        raise RunFolderError(f"{folder} already holds a run ({record}); {advice}")
    # Lock files (the folder's and each Simulation's) are bookkeeping, not a run.
    foreign = sorted(p.name for p in folder.iterdir() if not _is_lock(p.name))
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise RunFolderError(
            f"{folder} is not empty ({shown}) and holds no {record}; choose a new or empty folder"
        )


def _is_lock(name: str) -> bool:
    return name.startswith(".") and name.endswith(".lock")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks: datasets may be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_failure(error: BaseException, path: str | os.PathLike, action: str) -> OSError:
    """An OSError naming ``path`` for a write that failed inside a library with a foreign error.

    Libraries report a full disk in their own ways (mdtraj's DCD writer raises
    ``TypeError: 'dict' object is not callable``, torch.save a RuntimeError); this
    gives the user ENOSPC when the disk is (nearly) full, else EIO, with the cause.
    """
    if isinstance(error, OSError):  # a file object's error carries no path: add it
        if error.filename is not None:
            return error
        return OSError(error.errno, error.strerror or str(error), str(path))
    folder = Path(path).parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else 0
    code = errno.ENOSPC if free < (1 << 20) else errno.EIO
    reason = f"{os.strerror(code)} while {action} ({type(error).__name__}: {error}; {free} bytes free)"
    return OSError(code, reason, str(path))


def atomic_write_bytes(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``.

    A crash leaves the old file or the new one, never a torn one; a failed write
    (a full disk included) raises an OSError naming ``path`` and removes the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(handle, "wb") as file:  # closing flushes: a full disk may show only here
                write(file)
                file.flush()
                os.fsync(file.fileno())
        except Exception as error:  # torch.save reports a full disk as a RuntimeError
            raise write_failure(error, path, "writing") from error
        # mkstemp creates 0600; give the file the mode it replaces, or the usual 0644.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
