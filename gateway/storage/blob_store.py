"""Blob storage as its own Protocol (ARCHITECTURE.md): put a stream, get a stream, delete,
so PostgreSQL's chunk table (postgres/blobs.py, ChunkTableBlobs) and an S3-compatible object
store (s3/, S3Blobs) are interchangeable under the back-ends that keep blobs by name.

Names are short ASCII strings like "pickup:<id>"; a blob is written whole or not at all (a
reader never sees half of a put), and a put under an existing name replaces it. Neither
direction holds a blob whole in memory: put consumes an iterable of chunks as it goes, get
and open read a piece at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO, Protocol

Chunk = bytes | memoryview


class BlobStoreError(OSError):
    """The blob store could not be used (unreachable, refused, misconfigured); the message
    says what it answered."""


class BlobStore(Protocol):
    def put(self, name: str, chunks: Iterable[Chunk]) -> int:
        """Store CHUNKS (consumed once) as blob NAME, replacing any blob of that name; returns
        the size written. When it returns, the blob is durable in the store."""
        ...

    def get(self, name: str) -> Iterator[bytes]:
        """The blob's bytes in chunks, streamed; KeyError (from the call itself, before any
        chunk) when there is no such blob."""
        ...

    def open(self, name: str) -> tuple[BinaryIO, int]:
        """The blob as a seekable binary file and its size; KeyError when it does not exist.
        The caller closes the file."""
        ...

    def size(self, name: str) -> int | None:
        """The blob's size, None when there is no such blob."""
        ...

    def delete(self, name: str) -> bool:
        """Remove blob NAME; False when there was none."""
        ...

    def older_than(self, prefix: str, age: float) -> list[str]:
        """The names starting with PREFIX of blobs written AGE seconds ago or earlier (by the
        store's clock): candidates for a debris sweep, which checks each against its rows."""
        ...

    def close(self) -> None:
        ...
