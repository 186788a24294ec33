"""The PostgreSQL back-end (storage.backend = "postgresql"): several gateway nodes on one
database. One module per concern, as in sqlite/: portal.py, pickups.py (on spool.py),
queue.py (claims as leases, settlements), knowledge.py, audit.py (and the queue views),
over connection.py's pool; blobs.py keeps blobs chunked in the database, sealed.py
encrypts into them (or into gateway/storage/s3 for storage.blobs = "s3"), keys.py shares
the key-encryption keys, migrations.py the schema."""

from __future__ import annotations

import time

from gateway.config import StorageConfig
from gateway.storage.blob_store import BlobStore
from gateway.storage.postgres.storage import DEFAULT_LEASE, PostgresStorage
from gateway.storage.protocols import Clock

__all__ = ["PostgresStorage", "open_postgres"]


def open_postgres(config: StorageConfig, clock: Clock = time.time, owner: str | None = None,
                  lease: float = DEFAULT_LEASE) -> PostgresStorage:
    """The back-end for CONFIG (storage.url, storage.keys_dir); blobs in the database, or
    with storage.blobs = "s3" the encrypted pickups in [storage.s3]'s bucket (checked
    here: BlobStoreError when it cannot be reached)."""
    if config.blobs not in ("database", "s3"):
        raise ValueError(f"storage.blobs: {config.blobs!r} is not available with PostgreSQL;"
                         ' use "database" or "s3"')
    external: BlobStore | None = None
    if config.blobs == "s3":
        from gateway.storage.s3 import S3Blobs, S3Settings  # botocore only for S3

        s3 = config.s3
        external = S3Blobs(S3Settings(s3.endpoint, s3.bucket, s3.region, s3.access_key_id,
                                      s3.secret_access_key()))
        try:
            external.check()
        except BaseException:
            external.close()
            raise
    try:
        return PostgresStorage(config.url, config.keys_path, clock, owner=owner, lease=lease,
                               external_blobs=external)
    except BaseException:
        if external is not None:
            external.close()
        raise
