"""Bounded SQLite lock waits, and who holds the lock: shared by the SQLite store and
destination.

A write waits for another connection's write lock at most as long as the lease it works
under still runs (:func:`lock_wait`); when it gives up, :func:`lock_holder` asks the
operating system which process holds the WAL write lock, so the error can name it.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from statesync.errors import DatabaseLockedError

_E = TypeVar("_E", bound=DatabaseLockedError)

_DEADLINE: Final[contextvars.ContextVar[Callable[[], float] | None]] = contextvars.ContextVar(
    "statesync_lock_deadline", default=None
)

_WAL_WRITE_LOCK: Final = 120
"""Byte of the ``-shm`` file SQLite's unix VFS locks for a WAL writer ((22 + 8) * 4)."""

_MIN_WAIT: Final = 0.05


Deadline = contextvars.Token[Callable[[], float] | None]


def set_lease_deadline(expires_at: Callable[[], float]) -> Deadline:
    """From here on in this task (and tasks it starts), lock waits end when the lease
    would: ``expires_at`` answers the lease's current expiry. Undo with the token."""
    return _DEADLINE.set(expires_at)


def reset_lease_deadline(token: Deadline) -> None:
    with contextlib.suppress(ValueError):  # set in another context: nothing to undo here
        _DEADLINE.reset(token)


def lock_wait(default: float, expires_at: float | None = None) -> float:
    """Seconds a write may wait for the lock: ``default``, cut to the lease's time left."""
    if expires_at is None:
        current = _DEADLINE.get()
        expires_at = None if current is None else current()
    if expires_at is None:
        return default
    return max(_MIN_WAIT, min(default, expires_at - time.time()))


def is_locked(exc: sqlite3.Error) -> bool:
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def locked_error(
    exc: sqlite3.Error, db: str | Path, what: str, waited: float, kind: type[_E]
) -> _E | None:
    """``kind`` naming the lock's holder when ``exc`` is SQLite giving up on ``db``'s
    lock after ``waited`` seconds; ``None`` for any other error."""
    if not is_locked(exc):
        return None
    pid, name = lock_holder(db)
    return kind(what, waited, pid, name)


def lock_holder(db: str | Path) -> tuple[int | None, str]:
    """The pid holding ``db``'s WAL write lock (when the OS says), and its name."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on this platform
        return None, ""
    try:
        fd = os.open(f"{db}-shm", os.O_RDWR)
    except OSError:
        return None, ""
    try:
        # struct flock: l_type, l_whence, l_start, l_len, l_pid (native layout).
        probe = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, _WAL_WRITE_LOCK, 1, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, probe)
        kind, _, _, _, pid = struct.unpack("hhqqi4x", answer)
    except OSError:
        return None, ""
    finally:
        os.close(fd)
    if kind == fcntl.F_UNLCK:
        return None, ""
    return pid, _command(pid)


def _command(pid: int) -> str:
    # The process name only: a command line may carry a DSN with its password.
    with contextlib.suppress(OSError):
        name = Path(f"/proc/{pid}/comm").read_text().strip()
        if name:
            return f" ({name})"
    return ""
