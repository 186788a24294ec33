"""Blobs in the database (storage.blobs = "database"): spool copies and encrypted pickups
cut into rows of table blob_chunks, CHUNK_SIZE bytes each (the last one shorter).

Writing takes any iterable of chunks and inserts a row as soon as CHUNK_SIZE bytes are
there; reading fetches one row at a time. Either way memory holds about one chunk, whatever
the size of the message. Writes run inside the caller's transaction, so a blob and the row
that points at it are committed together or not at all. Reads go through a FetchBinary:
Database.fetch_binary (a pooled connection per chunk, for a stream the portal holds while a
download runs) or fetch_in(cursor) (inside a transaction that reads one blob to write another).

ChunkTableBlobs is the same table as a BlobStore (gateway/storage/blob_store.py), each call
in a transaction of its own; the back-end itself writes inside its own transactions.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, BinaryIO

from gateway.storage.postgres.connection import Cursor, Database, FetchBinary

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

CHUNK_SIZE = 1 << 20
Chunk = bytes | memoryview
_OLDER_THAN_SQL = ("SELECT blob FROM blob_chunks WHERE seq = 0 AND starts_with(blob, %s)"
                   " AND written <= extract(epoch FROM clock_timestamp()) - %s ORDER BY blob")


def rechunked(chunks: Iterable[Chunk], size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """CHUNKS regrouped into pieces of exactly SIZE bytes (the last one shorter, never
    empty: no data gives no piece)."""
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def write_blob(cursor: Cursor, name: str, chunks: Iterable[Chunk]) -> int:
    """Store CHUNKS as blob NAME inside CURSOR's transaction (replacing any blob of that
    name); returns its size."""
    cursor.execute("DELETE FROM blob_chunks WHERE blob = %s", (name,))
    size = 0
    for seq, piece in enumerate(rechunked(chunks)):
        _insert_chunk(cursor, name, seq, piece)
        size += len(piece)
    if size == 0:  # an empty blob still exists: one empty row says so
        _insert_chunk(cursor, name, 0, b"")
    return size


def _insert_chunk(cursor: Cursor, name: str, seq: int, piece: bytes) -> None:
    cursor.execute("INSERT INTO blob_chunks (blob, seq, data) VALUES (%s, %s, %b)",
                   (name, seq, piece))


def delete_blob(cursor: Cursor, name: str) -> None:
    cursor.execute("DELETE FROM blob_chunks WHERE blob = %s", (name,))


def blob_size(fetch: FetchBinary, name: str) -> int | None:
    """The size of blob NAME, None when there is no such blob."""
    row = fetch("SELECT count(*), coalesce(sum(length(data)), 0) FROM blob_chunks"
                " WHERE blob = %s", (name,))
    return None if row is None or not row[0] else int(row[1])


def blob_chunks(fetch: FetchBinary, name: str) -> Iterator[bytes]:
    """The chunks of blob NAME in order, one query each; KeyError when it does not exist."""
    seq = 0
    while (chunk := _chunk(fetch, name, seq)) is not None:
        yield chunk
        seq += 1
    if seq == 0:
        raise KeyError(name)


def _chunk(fetch: FetchBinary, name: str, seq: int) -> bytes | None:
    row = fetch("SELECT data FROM blob_chunks WHERE blob = %s AND seq = %s", (name, seq))
    return None if row is None else bytes(row[0])


class _ChunkedRaw(io.RawIOBase):
    """Blob NAME as a seekable raw file that fetches the one chunk a read needs."""

    def __init__(self, fetch: FetchBinary, name: str, size: int) -> None:
        self._fetch = fetch
        self._name = name
        self._size = size
        self._position = 0
        self._cached: tuple[int, bytes] = (-1, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        if self._position >= self._size:
            return 0
        seq, start = divmod(self._position, CHUNK_SIZE)
        target = memoryview(buffer).cast("B")
        chunk = self._cached_chunk(seq)[start:start + len(target)]
        target[:len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def _cached_chunk(self, seq: int) -> bytes:
        if self._cached[0] != seq:
            # A chunk gone since the blob was opened reads as its end: the reader finds it
            # truncated.
            self._cached = (seq, _chunk(self._fetch, self._name, seq) or b"")
        return self._cached[1]


def open_blob_file(fetch: FetchBinary, name: str) -> tuple[BinaryIO, int]:
    """Blob NAME as a seekable binary file and its size; KeyError when it does not exist."""
    size = blob_size(fetch, name)
    if size is None:
        raise KeyError(name)
    return io.BufferedReader(_ChunkedRaw(fetch, name, size), buffer_size=CHUNK_SIZE), size


class ChunkTableBlobs:
    """The BlobStore over blob_chunks: a blob is its rows, written in one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, name: str, chunks: Iterable[Chunk]) -> int:
        with self.db.transaction() as cursor:
            return write_blob(cursor, name, chunks)

    def get(self, name: str) -> Iterator[bytes]:
        if blob_size(self.db.fetch_binary, name) is None:  # the call itself fails
            raise KeyError(name)
        return blob_chunks(self.db.fetch_binary, name)

    def open(self, name: str) -> tuple[BinaryIO, int]:
        return open_blob_file(self.db.fetch_binary, name)

    def size(self, name: str) -> int | None:
        return blob_size(self.db.fetch_binary, name)

    def delete(self, name: str) -> bool:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM blob_chunks WHERE blob = %s", (name,))
            return bool(cursor.rowcount)

    def older_than(self, prefix: str, age: float) -> list[str]:
        return [r["blob"] for r in self.db.query(_OLDER_THAN_SQL, (prefix, age))]

    def close(self) -> None:
        """The pool belongs to the back-end that lent it."""
