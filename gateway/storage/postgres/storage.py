"""The PostgreSQL back-end: every storage concern but the queue's claims and settlements
(to come), over one connection pool, with blobs in the database (storage.blobs =
"database") and the key-encryption keys shared through the `keys` table (keys.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from gateway.storage.postgres.audit import PostgresAudit, PostgresQueueInspection
from gateway.storage.postgres.connection import CONNECT_TIMEOUT, POOL_TIMEOUT, Database
from gateway.storage.postgres.keys import DatabaseKeyRing
from gateway.storage.postgres.knowledge import PostgresKnowledge
from gateway.storage.postgres.migrations import migrate
from gateway.storage.postgres.pickups import PostgresPickups
from gateway.storage.postgres.portal import PostgresPortal
from gateway.storage.protocols import Clock

if TYPE_CHECKING:
    from gateway.storage.protocols import (
        AuditStore,
        KnowledgeStore,
        PickupStore,
        PortalStore,
        QueueInspection,
    )

POOL_SIZE = 8  # connections per process: portal requests and listener threads share them


class PostgresStorage(PostgresPortal, PostgresPickups, PostgresKnowledge, PostgresAudit,
                      PostgresQueueInspection):
    """Opening migrates the schema (once, whichever node comes first) and loads the keys;
    a database that cannot be reached raises psycopg.OperationalError at once."""

    def __init__(self, url: str, keys_dir: Path, clock: Clock = time.time,
                 pool_size: int = POOL_SIZE, pool_timeout: float = POOL_TIMEOUT) -> None:
        self.clock = clock
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

    def close(self) -> None:
        self.db.close()


def _implements_every_concern_but_the_queue(
        storage: PostgresStorage) -> tuple[PortalStore, PickupStore, KnowledgeStore, AuditStore,
                                           QueueInspection]:
    """Never called: mypy checks here that PostgresStorage fits each Protocol it claims."""
    return storage, storage, storage, storage, storage
