"""Storage: the Protocols by concern (protocols.py) and the factory that opens a back-end.

The rest of Sealgate reaches stored data only through these Protocols; SQL lives in
sqlite/ (one part per concern, composed by store.py), migrations in schema.py, and for
PostgreSQL in postgres/."""

from __future__ import annotations

import sqlite3
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.storage.protocols import Clock, Storage


def open_storage(config: Config, clock: Clock = time.time, owner: str | None = None) -> Storage:
    """The back-end named by storage.backend (validated by config): "sqlite" (SQLite and
    files under storage.dir) or "postgresql" (gateway/storage/postgres).
    OWNER names this process on the claims it makes (None: a new id); two storages with
    different owners on the same data are two runners. Claims hold for delivery.lease."""
    from gateway.config import parse_duration
    from gateway.storage.store import open_store  # not at import: store.py imports this package

    lease = parse_duration(config.delivery.lease)
    if config.storage.backend == "postgresql":
        from gateway.storage.postgres import open_postgres  # psycopg only for PostgreSQL

        return open_postgres(config.storage, clock, owner, lease)
    if config.storage.backend != "sqlite":
        raise ValueError(f"storage.backend: {config.storage.backend!r} is not available")
    return open_store(config.storage_dir, clock, owner, lease)


def storage_errors() -> tuple[type[Exception], ...]:
    """What the back-end raises when the database cannot be used (unwritable, corrupt,
    locked too long), for callers that answer with a clear message instead of a traceback;
    PostgreSQL's: a lost or refused connection, a pool with no connection to give, a
    failed statement (psycopg.Error covers them all, psycopg_pool.PoolTimeout included)."""
    # psycopg is looked up, not imported: a process that never loaded it (every SQLite one,
    # spared its 0.2 s import) cannot have met its errors.
    psycopg = sys.modules.get("psycopg")
    from gateway.storage.blob_store import BlobStoreError  # an object store that is down

    found: tuple[type[Exception], ...] = (sqlite3.Error, BlobStoreError)
    return found if psycopg is None else (*found, psycopg.Error)


def is_storage_full(exc: BaseException) -> bool:
    """True when EXC says the database's disk is full (SQLITE_FULL; PostgreSQL's
    disk_full, SQLSTATE 53100)."""
    psycopg_errors = sys.modules.get("psycopg.errors")  # see storage_errors
    if psycopg_errors is not None and isinstance(exc, psycopg_errors.DiskFull):
        return True
    return (isinstance(exc, sqlite3.OperationalError)
            and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                 or "database or disk is full" in str(exc)))
