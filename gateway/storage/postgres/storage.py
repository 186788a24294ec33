"""The PostgreSQL back-end: every storage Protocol over one connection pool, with blobs in the
database (storage.blobs = "database"), or the encrypted pickups in an external BlobStore
(storage.blobs = "s3": EXTERNAL_BLOBS; the spool stays in the database, written in the
queue's own transactions), and the key-encryption keys shared through the `keys` table
(keys.py). Several nodes open it on one database at once; each process (and worker)
claims under an owner id of its own."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from gateway.storage.blob_store import BlobStore
from gateway.storage.ids import new_owner_id
from gateway.storage.postgres.audit import PostgresAudit, PostgresQueueInspection
from gateway.storage.postgres.connection import CONNECT_TIMEOUT, POOL_TIMEOUT, Database
from gateway.storage.postgres.keys import DatabaseKeyRing
from gateway.storage.postgres.knowledge import PostgresKnowledge
from gateway.storage.postgres.migrations import migrate
from gateway.storage.postgres.portal import PostgresPortal
from gateway.storage.postgres.queue import PostgresQueue
from gateway.storage.postgres.sender_links import PostgresSenderLinks
from gateway.storage.protocols import Clock

if TYPE_CHECKING:
    from gateway.storage.protocols import Storage

POOL_SIZE = 8  # connections per process: portal requests, listener and writer threads share them
DEFAULT_LEASE = 600.0  # delivery.lease's default
# What purge VACUUMs once it destroyed something: deleted rows keep their data in the
# table's pages (the ciphertext of a destroyed pickup, its wrapped data key) until then.
VACUUMED = ("pickups", "blob_chunks")


class PostgresStorage(PostgresPortal, PostgresKnowledge, PostgresAudit,
                      PostgresQueueInspection, PostgresQueue, PostgresSenderLinks):
    """Opening migrates the schema (once, whichever node comes first) and loads the keys;
    a database that cannot be reached raises psycopg.OperationalError at once."""

    def __init__(self, url: str, keys_dir: Path, clock: Clock = time.time,
                 pool_size: int = POOL_SIZE, pool_timeout: float = POOL_TIMEOUT,
                 owner: str | None = None, lease: float = DEFAULT_LEASE,
                 external_blobs: BlobStore | None = None) -> None:
        self.clock = clock
        self.external_blobs = external_blobs
        self.owner = owner or new_owner_id()
        self.lease = lease
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            migrate(conn)
        self.db = Database(url, pool_size, pool_timeout)
        self.db.open()
        try:
            self.keys = DatabaseKeyRing(self.db, keys_dir)
            self.keys.open()
        except BaseException:
            self.db.close()
            raise
        self.start_writers()

    def close(self) -> None:
        self.stop_writers()
        self.db.close()
        if self.external_blobs is not None:
            self.external_blobs.close()

    def vacuum(self) -> None:
        """Reclaim the pages of deleted pickups and blob chunks (after a purge): until then
        they still hold what was deleted. VACUUM runs outside a transaction."""
        with self.db.pool.connection() as conn:
            for table in VACUUMED:
                conn.execute(f"VACUUM {table}")  # noqa: S608 - fixed table names


def _implements_storage(storage: PostgresStorage) -> Storage:
    """Never called: mypy checks here that PostgresStorage is a whole Storage."""
    return storage
