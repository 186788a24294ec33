"""The SQLite back-end: every storage Protocol (gateway/storage/protocols.py) over one
database, `sealgate.db`, and files (spool, encrypted blobs, keys) under one directory.

`Store` composes the parts under gateway/storage/sqlite/, one per concern, and owns what
they share: the write connection with its lock, the read connection, the group-commit
writer and the clock. `open_storage` (gateway/storage/__init__.py) is how the rest of
Sealgate opens it; it sees only the Protocols.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.storage.group_commit import GroupCommitter
from gateway.storage.ids import new_owner_id, new_pickup_id, new_queue_id
from gateway.storage.protocols import Pickup, QueuedRecipient, Report, Route, Settlement
from gateway.storage.schema import migrate
from gateway.storage.sqlite.audit import SQLiteAudit, SQLiteQueueInspection
from gateway.storage.sqlite.knowledge import SQLiteKnowledge
from gateway.storage.sqlite.pickups import SQLitePickups
from gateway.storage.sqlite.portal import SQLitePortal
from gateway.storage.sqlite.queue import DEFAULT_LEASE, SQLiteQueue, new_report_writer
from gateway.storage.sqlite.sender_links import SQLiteSenderLinks
from gateway.storage.sqlite.spool import SpoolFiles
from gateway.vault import crypto

# Value objects and ids kept importable from here, where they were defined before.
__all__ = ["DEFAULT_LEASE", "Pickup", "QueuedRecipient", "Report", "Route", "Settlement",
           "Store", "new_owner_id", "new_pickup_id", "new_queue_id", "open_store"]

Clock = Callable[[], float]


class Store(SQLitePortal, SQLitePickups, SQLiteKnowledge, SQLiteAudit, SQLiteQueueInspection,
            SQLiteQueue, SQLiteSenderLinks):
    def __init__(self, directory: Path, clock: Clock = time.time, owner: str | None = None,
                 lease: float = DEFAULT_LEASE) -> None:
        self.directory = directory
        self.clock = clock
        self.owner = owner or new_owner_id()  # written on the rows this process claims
        self.lease = lease
        self.spool_dir = directory / "spool"
        self.blob_dir = directory / "blobs"
        for path in (directory, self.spool_dir, self.blob_dir):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool_files = SpoolFiles(self.spool_dir)
        self.keys = crypto.KeyRing(directory / "keys")
        self.keys.ensure()
        self._lock = threading.RLock()
        self.db = sqlite3.connect(directory / "sealgate.db", check_same_thread=False,
                                  isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "secure_delete=ON", "busy_timeout=30000"):
            self.db.execute(f"PRAGMA {pragma}")
        with self._lock:
            migrate(self.db)
        # Reads outside a transaction use a connection of their own: in WAL mode they need
        # not wait while the writer thread holds the write connection through a commit
        # and its fsync (an event loop reading the MTA-STS cache would stall for it).
        self._reader = sqlite3.connect(directory / "sealgate.db", check_same_thread=False,
                                       isolation_level=None, timeout=30)
        self._reader.row_factory = sqlite3.Row
        for pragma in ("foreign_keys=ON", "secure_delete=ON", "busy_timeout=30000"):
            self._reader.execute(f"PRAGMA {pragma}")
        self._read_lock = threading.Lock()
        self._writing = threading.local()  # .active: this thread is inside transaction()
        self.committer = GroupCommitter(self.spool_dir, self.transaction)
        self._report_writer = new_report_writer()

    def close(self) -> None:
        self._report_writer.shutdown()  # its settlements reach the writer before it stops
        self.committer.close()
        with self._lock:
            self.db.close()
        with self._read_lock:
            self._reader.close()

    # The parts' access to the database; not part of any Protocol.

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            outer = getattr(self._writing, "active", False)
            self._writing.active = True
            try:
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            finally:
                self._writing.active = outer

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        if getattr(self._writing, "active", False):  # sees this transaction's own writes
            with self._lock:
                return self.db.execute(sql, params).fetchall()
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()


def open_store(directory: Path, clock: Clock = time.time, owner: str | None = None,
               lease: float = DEFAULT_LEASE) -> Store:
    os.umask(0o077)
    return Store(directory, clock, owner, lease)
