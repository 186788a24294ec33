"""The BlobStore contract (gateway/storage/blob_store.py), run against PostgreSQL's chunk
table and an S3 bucket on the session's S3 server (tests/s3_server.py, over HTTP on
loopback): streamed both ways, large blobs with bounded memory, replace, delete, debris."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from gateway.storage.blob_store import BlobStore, BlobStoreError
from gateway.storage.postgres.blobs import ChunkTableBlobs
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.s3 import S3Blobs, S3Settings

MiB = 1 << 20
LARGE = 48 * MiB  # six multipart parts of 8 MiB on S3, 48 rows in the chunk table
MEMORY_BOUND = 20 * MiB  # two 8 MiB parts at most (one cut while the last is let go)


@pytest.fixture(params=["database", "s3"])
def blobs(request: pytest.FixtureRequest) -> Iterator[BlobStore]:
    store: BlobStore
    if request.param == "database":
        open_pg: Callable[..., PostgresStorage] = request.getfixturevalue("open_pg")
        store = ChunkTableBlobs(open_pg().db)
    else:
        settings: S3Settings = request.getfixturevalue("s3_settings")
        store = S3Blobs(settings)
    yield store
    store.close()


def pattern(size: int, piece: int = 64 * 1024 + 7) -> Iterator[bytes]:
    """SIZE bytes that differ from place to place, in odd-sized pieces."""
    made = 0
    counter = 0
    while made < size:
        block = hashlib.sha256(counter.to_bytes(8, "big")).digest() * (piece // 32 + 1)
        block = block[:min(piece, size - made)]
        counter += 1
        made += len(block)
        yield block


def digest(chunks: Iterator[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    for chunk in chunks:
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def test_a_blob_round_trips_streamed(blobs: BlobStore) -> None:
    size = 3 * MiB + 11
    assert blobs.put("pickup:a", pattern(size)) == size
    assert digest(blobs.get("pickup:a")) == digest(pattern(size))
    assert blobs.size("pickup:a") == size


def test_the_chunks_read_are_bounded(blobs: BlobStore) -> None:
    blobs.put("pickup:a", pattern(5 * MiB))
    assert max(len(c) for c in blobs.get("pickup:a")) <= 1 * MiB


def test_an_empty_blob_exists(blobs: BlobStore) -> None:
    assert blobs.put("pickup:empty", iter([])) == 0
    assert blobs.size("pickup:empty") == 0
    assert b"".join(blobs.get("pickup:empty")) == b""


def test_an_opened_blob_is_seekable(blobs: BlobStore) -> None:
    data = b"".join(pattern(2 * MiB + 5))
    blobs.put("pickup:a", [data])
    handle, size = blobs.open("pickup:a")
    with handle:
        assert size == len(data)
        handle.seek(size - 16)
        assert handle.read(16) == data[-16:]
        handle.seek(MiB - 3)
        assert handle.read(10) == data[MiB - 3:MiB + 7]
        handle.seek(0)
        assert handle.read() == data


def test_a_large_blob_is_never_whole_in_memory(blobs: BlobStore) -> None:
    tracemalloc.start()
    try:
        written = blobs.put("pickup:large", pattern(LARGE))
        put_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = digest(blobs.get("pickup:large"))
        get_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak traced memory: put {put_peak / MiB:.1f} MiB, get {get_peak / MiB:.1f} MiB")
    assert written == LARGE and read == digest(pattern(LARGE))
    assert put_peak < MEMORY_BOUND, put_peak
    assert get_peak < MEMORY_BOUND, get_peak


def test_a_missing_blob_is_a_key_error(blobs: BlobStore) -> None:
    with pytest.raises(KeyError):
        blobs.get("pickup:nothing")
    with pytest.raises(KeyError):
        blobs.open("pickup:nothing")
    assert blobs.size("pickup:nothing") is None


def test_a_put_replaces_the_blob_of_that_name(blobs: BlobStore) -> None:
    blobs.put("pickup:a", pattern(2 * MiB))
    blobs.put("pickup:a", [b"short"])
    assert b"".join(blobs.get("pickup:a")) == b"short"
    assert blobs.size("pickup:a") == 5


def test_a_deleted_blob_is_gone(blobs: BlobStore) -> None:
    blobs.put("pickup:a", [b"secret"])
    blobs.put("pickup:b", [b"other"])
    assert blobs.delete("pickup:a") is True
    assert blobs.size("pickup:a") is None
    with pytest.raises(KeyError):
        blobs.get("pickup:a")
    assert blobs.delete("pickup:a") is False
    assert b"".join(blobs.get("pickup:b")) == b"other"


def test_a_failed_put_leaves_no_blob(blobs: BlobStore) -> None:
    def failing() -> Iterator[bytes]:
        yield from pattern(20 * MiB)
        raise OSError("the source broke")

    with pytest.raises(OSError, match="the source broke"):
        blobs.put("pickup:broken", failing())
    assert blobs.size("pickup:broken") is None


def test_debris_lists_old_blobs_with_the_prefix(blobs: BlobStore) -> None:
    blobs.put("pickup:a", [b"1"])
    blobs.put("pickup:b", [b"2"])
    blobs.put("spool:c", [b"3"])
    assert blobs.older_than("pickup:", 0) == ["pickup:a", "pickup:b"]
    assert blobs.older_than("pickup:", 3600) == []


def test_the_s3_store_refuses_a_missing_bucket(s3_settings: S3Settings) -> None:
    store = S3Blobs(replace(s3_settings, bucket="no-such-bucket"))
    with pytest.raises(BlobStoreError, match="no-such-bucket"):
        store.check()
    store.close()


def test_the_s3_server_checks_signatures(s3_settings: S3Settings) -> None:
    """The server is a real check on the client: a request signed with another secret is
    refused, and nothing is stored."""
    forged = S3Blobs(replace(s3_settings, secret_access_key="not-the-secret"))
    with pytest.raises(BlobStoreError, match="SignatureDoesNotMatch"):
        forged.put("pickup:forged", [b"x"])
    forged.close()
    honest = S3Blobs(s3_settings)
    assert honest.size("pickup:forged") is None
    honest.close()
