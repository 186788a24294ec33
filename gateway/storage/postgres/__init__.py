"""The PostgreSQL back-end (storage.backend = "postgresql"): several gateway nodes on one
database. One module per concern, as in sqlite/: portal.py, pickups.py (on spool.py),
queue.py (claims as leases, settlements), knowledge.py, audit.py (and the queue views),
over connection.py's pool; blobs.py keeps blobs chunked in the database, sealed.py
encrypts into them, keys.py shares the key-encryption keys, migrations.py the schema."""

from __future__ import annotations

import time

from gateway.config import StorageConfig
from gateway.storage.postgres.storage import DEFAULT_LEASE, PostgresStorage
from gateway.storage.protocols import Clock

__all__ = ["PostgresStorage", "open_postgres"]


def open_postgres(config: StorageConfig, clock: Clock = time.time, owner: str | None = None,
                  lease: float = DEFAULT_LEASE) -> PostgresStorage:
    """The back-end for CONFIG (storage.url, storage.keys_dir); blobs in the database."""
    if config.blobs != "database":
        raise ValueError(f"storage.blobs: {config.blobs!r} is not available with PostgreSQL"
                         ' yet; use "database"')
    return PostgresStorage(config.url, config.keys_path, clock, owner=owner, lease=lease)
