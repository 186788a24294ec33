"""The PostgreSQL back-end (storage.backend = "postgresql"): several gateway nodes on one
database. One module per concern, as in sqlite/: portal.py, pickups.py (on spool.py),
knowledge.py, audit.py (and the queue views), over connection.py's pool; blobs.py keeps
blobs chunked in the database, sealed.py encrypts into them, keys.py shares the
key-encryption keys, migrations.py the schema. The queue's claims and settlements are
still to come, so `open_storage` does not offer this back-end yet."""

from __future__ import annotations

import time

from gateway.config import StorageConfig
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.protocols import Clock

__all__ = ["PostgresStorage", "open_postgres"]


def open_postgres(config: StorageConfig, clock: Clock = time.time) -> PostgresStorage:
    """The back-end for CONFIG (storage.url, storage.keys_dir); blobs in the database."""
    if config.blobs != "database":
        raise ValueError(f"storage.blobs: {config.blobs!r} is not available with PostgreSQL"
                         ' yet; use "database"')
    return PostgresStorage(config.url, config.keys_path, clock)
