"""One `sealgate serve` per store: an exclusive lock on <storage dir>/serve.lock, taken
before anything is bound or any row is touched, and held for the life of the process; on
PostgreSQL also an advisory lock per node name on the shared database (lock_storage).

The lock file names its holder (the owner id written on the rows it claims), so the next
holder knows whose leases it may end at once: the previous owner and its workers (who share
the lock) are dead, since the kernel drops a flock only when the last of them goes away.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config import Config

log = logging.getLogger("sealgate.store")

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
    node: NodeLock | None = None  # PostgreSQL: the node's advisory lock

    def release(self) -> None:
        if self.node is not None:
            self.node.release()
            self.node = None
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


# -- PostgreSQL: an advisory lock per node name ------------------------------------------------

NODE_LOCK_PREFIX = "sealgate:node:"
NODE_CHECK_INTERVAL = 5.0  # seconds between checks that the node lock's session is alive


def node_name(config: Config) -> str:
    """The name a node holds on the shared database: its host and its data directory, so
    that several nodes (one host or many) each have their own, and the same node started
    twice meets itself."""
    return f"{socket.gethostname()}:{Path(config.storage.dir).resolve()}"


class NodeLock:
    """A session-level advisory lock on a connection of its own, held while the process
    lives: PostgreSQL drops it when the session ends (the process died, its connection with
    it). Should the database restart under a running node, a watcher thread takes the lock
    again as soon as the server is back."""

    def __init__(self, url: str, name: str, owner: str) -> None:
        self.url = url
        self.name = name
        self.owner = owner
        self._conn: Any = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def acquire(self) -> bool:
        import psycopg

        conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10,
                               application_name=f"sealgate serve {self.owner}"[:63])
        row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                           (NODE_LOCK_PREFIX + self.name,)).fetchone()
        if not (row and row[0]):
            conn.close()
            return False
        self._conn = conn
        return True

    def watch(self) -> None:
        self._watcher = threading.Thread(target=self._keep, name="sealgate-node-lock",
                                         daemon=True)
        self._watcher.start()

    def _keep(self) -> None:
        while not self._stop.wait(NODE_CHECK_INTERVAL):
            try:
                self._conn.execute("SELECT 1")
                continue
            except Exception:  # noqa: BLE001 - the session is gone: take the lock again
                log.warning("the node lock's database session ended; taking it again")
            with contextlib.suppress(Exception):
                self._conn.close()
            while not self._stop.is_set():
                try:
                    if self.acquire():
                        log.info("node lock %s held again", self.name)
                        break
                    log.error("node lock %s is held by another process: is this node"
                              " running twice?", self.name)
                except Exception as exc:  # noqa: BLE001 - the server is not back yet
                    log.debug("node lock: %s", exc)
                self._stop.wait(1.0)

    def release(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=NODE_CHECK_INTERVAL + 1)
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # the session ends: PostgreSQL drops the lock
            self._conn = None


def lock_storage(config: Config, owner: str) -> StoreLock:
    """The store lock `serve` holds for STORAGE's back-end: on SQLite the file lock of the
    store; on PostgreSQL the same file lock on this node's data directory (it remembers the
    node's previous owner, whose leases end at once, and is shared with the workers) and an
    advisory lock per node name on the database, so one node runs once whatever the
    host it starts on, and any number of differently named nodes run side by side."""
    lock = lock_store(config.storage_dir, owner)
    if config.storage.backend != "postgresql":
        return lock
    name = node_name(config)
    node = NodeLock(config.storage.url, name, owner)
    try:
        taken = node.acquire()
    except BaseException:
        lock.release()
        raise
    if not taken:
        lock.release()
        raise StoreInUse(f"another sealgate serve is already running as node {name} on the"
                         " database (it holds the node's advisory lock); stop it first")
    node.watch()
    lock.node = node
    return lock
