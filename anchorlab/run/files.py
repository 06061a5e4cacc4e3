"""The run folder's files: atomic writes whose failure is one line naming the file (a full disk
included), and the writer lock.

One writer per run folder: an OS lock (flock) on `run.lock`, held from opening the run to its end.

The kernel drops the lock when its holder dies, however it dies (SIGKILL included), so a lock is
never stale; the file also records who holds it (pid, host, start) for the refusal message, and is
emptied on a clean release, so a non-empty file found unlocked means its holder died mid-run: the
lock is taken over, and the takeover is logged.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..errors import UserError

log = logging.getLogger("anchorlab")

LOCK = "run.lock"


def write_error(path: Path, exc: OSError) -> UserError:
    """A failed write as one line naming the file; a full disk says so and how to go on."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"cannot write {path}: no space left on device; what is stored stays: free space, then "
                         "rerun with --resume")
    return UserError(f"cannot write {path}: {exc.strerror or exc}")


def atomic_write(path: Path, data: bytes | Callable) -> None:
    """`data` (bytes, or a function writing to a binary file) into `path` via a temporary file and a
    rename: a reader never sees half a file, and a failed write (a full disk) leaves no temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            data(fh) if callable(data) else fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not recorded itself yet"


class RunLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._read())
            os.close(self.fd)
            raise UserError(f"{folder} is being written by another anchorlab run ({holder}); wait for it to end "
                            "or pass --out elsewhere") from None
        previous = self._read()
        if previous.strip():
            log.warning("took over the lock of %s: its holder (%s) is no longer running", folder, _holder(previous))
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, json.dumps(me).encode(), 0)
        except OSError as exc:
            self.release()
            raise write_error(self.path, exc) from None

    def _read(self) -> str:
        return os.pread(self.fd, 4096, 0).decode(errors="replace")

    def release(self) -> None:
        """Empty the file (a clean end, not a takeover for the next run), then unlock; idempotent."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # the next holder then logs a takeover: harmless
        os.close(self.fd)  # closing the only descriptor releases the flock
        self.fd = None
