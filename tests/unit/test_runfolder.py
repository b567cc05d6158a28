"""Run folders: the OS-level lock, refusing foreign folders, leftovers, write failures named."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from gnnmd.runfolder import (
    RunFolderBusyError,
    RunFolderError,
    RunFolderLock,
    atomic_write_bytes,
    file_sha256,
    remove_temporary_files,
    require_fresh,
    write_failure,
)


def test_second_owner_is_refused_with_the_holders_pid(tmp_path):
    with RunFolderLock(tmp_path / "run"):
        with pytest.raises(RunFolderBusyError, match=rf"run: in use by pid {os.getpid()} on "):
            RunFolderLock(tmp_path / "run").acquire()
    RunFolderLock(tmp_path / "run").acquire().release()  # free again once released


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gnnmd.runfolder import RunFolderLock; "
         f"RunFolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusyError, match=f"pid {holder.pid}"):
            RunFolderLock(tmp_path).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    RunFolderLock(tmp_path).acquire().release()


def test_locks_of_one_folder_with_other_names_are_independent(tmp_path):
    with RunFolderLock(tmp_path), RunFolderLock(tmp_path, ".checkpoint.pt.lock"):
        with pytest.raises(RunFolderBusyError):
            RunFolderLock(tmp_path, ".checkpoint.pt.lock").acquire()


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="file: exists and is not a directory"):
        RunFolderLock(tmp_path / "file").acquire()
    with pytest.raises(NotADirectoryError):
        RunFolderLock(tmp_path / "file" / "sub").acquire()


def test_require_fresh_refuses_runs_and_foreign_files_not_locks(tmp_path):
    require_fresh(tmp_path / "missing", "run.json", "")
    with RunFolderLock(tmp_path):
        require_fresh(tmp_path, "run.json", "")  # the lock file is bookkeeping
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match=r"is not empty \(notes.txt\) and holds no run.json"):
        require_fresh(tmp_path, "run.json", "")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"already holds a run \(run.json\); resume it"):
        require_fresh(tmp_path, "run.json", "resume it")


def test_temporary_files_of_killed_writes_are_removed(tmp_path):
    leftovers = [".checkpoint.pt.abc123.tmp", ".replica_0000.dcd.tmp", ".x.pdb.tmp.pdb", "best.pt.tmp"]
    kept = ["checkpoint.pt", "replica_0000.dcd", ".gnnmd.lock"]
    for name in leftovers + kept:
        (tmp_path / name).write_text("x")
    removed = remove_temporary_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_foreign_write_errors_become_os_errors_naming_the_path(tmp_path):
    error = write_failure(TypeError("'dict' object is not callable"), tmp_path / "a.dcd", "writing frame 3")
    assert isinstance(error, OSError) and error.errno == errno.EIO  # this disk is not full
    assert error.filename == str(tmp_path / "a.dcd") and "writing frame 3 (TypeError" in error.strerror
    named = OSError(errno.ENOSPC, "No space left on device", "b")
    assert write_failure(named, tmp_path / "a", "x") is named
    unnamed = write_failure(OSError(errno.ENOSPC, "No space left on device"), tmp_path / "a", "x")
    assert (unnamed.errno, unnamed.filename) == (errno.ENOSPC, str(tmp_path / "a"))


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "state.pt"
    atomic_write_bytes(path, lambda file: file.write(b"old"))

    def failing(file):
        file.write(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file")

    with pytest.raises(OSError, match="while writing") as caught:
        atomic_write_bytes(path, failing)
    assert caught.value.filename == str(path)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["state.pt"]


def test_file_hash_changes_with_content(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"a" * 10_000_000)
    first = file_sha256(path)
    time.sleep(0.01)
    path.write_bytes(b"a" * 9_999_999 + b"b")
    assert file_sha256(path) != first and len(first) == 64
