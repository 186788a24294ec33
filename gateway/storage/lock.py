"""One `sealgate serve` per store: an exclusive lock on <storage dir>/serve.lock, taken
before anything is bound or any row is touched, and held for the life of the process.

The lock file names its holder (the owner id written on the rows it claims), so the next
holder knows whose leases it may end at once: the previous owner and its workers (who share
the lock) are dead, since the kernel drops a flock only when the last of them goes away.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "serve.lock"
ORPHAN_WAIT = 10.0  # seconds to wait for the workers of a dead supervisor to be gone


class StoreInUse(BlockingIOError):
    """Another live process holds the store."""


class StoreUnusable(OSError):
    """The store's directory cannot be written (read-only, permissions, full)."""


@dataclass
class StoreLock:
    path: Path
    fd: int
    owner: str
    previous_owner: str  # "" for a store never served before

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


def lock_store(directory: Path, owner: str) -> StoreLock:
    """Take the store's lock for OWNER, or raise StoreInUse saying who holds it."""
    path = directory / LOCK_NAME
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StoreUnusable(f"storage.dir: cannot lock the store {directory}:"
                            f" {exc.strerror or exc}") from None
    try:
        _flock_unless_held_by_a_live_serve(fd)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StoreInUse(f"another sealgate serve{holder} is already using the store {directory}"
                         f" (it holds {path}); stop it first") from None
    except BaseException:
        os.close(fd)
        raise
    previous = _read(fd).partition(" ")[2].strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {owner}\n".encode(), 0)
    return StoreLock(path, fd, owner, previous)


def _flock_unless_held_by_a_live_serve(fd: int) -> None:
    """The lock, or BlockingIOError. Worker processes share their supervisor's lock; when
    the supervisor that wrote the file is dead (kill -9) but the lock is still held, its
    workers are being killed with it (PR_SET_PDEATHSIG): wait for them, briefly."""
    deadline = time.monotonic() + ORPHAN_WAIT
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if _holder_is_alive(fd) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _holder_is_alive(fd: int) -> bool:
    pid = _read(fd).partition(" ")[0].strip()
    if not pid.isdigit():
        return True  # unknown: assume it is
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(fd: int) -> str:
    return os.pread(fd, 4096, 0).decode(errors="replace")


def _holder(fd: int) -> str:
    pid = _read(fd).partition(" ")[0].strip()
    return f" (pid {pid})" if pid.isdigit() else ""
