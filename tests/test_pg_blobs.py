"""Blobs in PostgreSQL (storage.blobs = "database"): the spool and encrypted pickups are
stored in rows of at most 1 MiB and streamed both ways, so a 100 MiB message is never whole
in memory; a changed or truncated stored copy does not decrypt."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator

import psycopg
import pytest

from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.store import Route
from gateway.vault.crypto import DecryptionError

MiB = 1 << 20
BIG = 100 * MiB
MEMORY_BOUND = 16 * MiB  # a few chunks in flight; the message is more than six times that
SENDER, PAT = "doctor@clinic.test", "pat@patients.test"


def big_message() -> Iterator[bytes]:
    yield b"Subject: scan\r\n\r\n"
    line = b"0123456789abcdef" * 4095 + b"0123456789abcd\r\n"  # 64 KiB lines
    for _ in range(BIG // len(line)):
        yield line


def stored_pickup(storage: PostgresStorage, chunks: Iterator[bytes]) -> str:
    queue_id, size = storage.spool_stream(chunks)
    return storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + 86400)


def _sql(url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def test_a_100_mib_message_is_never_whole_in_memory(
        open_pg: Callable[..., PostgresStorage]) -> None:
    storage = open_pg()
    tracemalloc.start()
    try:
        pickup_id = stored_pickup(storage, big_message())
        stored_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        read = 0
        with storage.open_pickup_stream(pickup_id) as stream:
            for chunk in stream.chunks():
                read += len(chunk)
        read_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = sum(len(c) for c in big_message())
    assert read == stream.size == expected
    print(f"peak traced memory: storing {stored_peak / MiB:.1f} MiB,"
          f" reading {read_peak / MiB:.1f} MiB")
    assert stored_peak < MEMORY_BOUND and read_peak < MEMORY_BOUND, (stored_peak, read_peak)


def test_blobs_are_stored_in_rows_of_at_most_1_mib(open_pg: Callable[..., PostgresStorage],
                                                   postgres_url: str) -> None:
    storage = open_pg()
    pickup_id = stored_pickup(storage, iter([b"x" * (3 * MiB + 5)]))
    [(rows, largest, total)] = _sql(
        postgres_url, "SELECT count(*), max(length(data)), sum(length(data)) FROM blob_chunks"
        " WHERE blob = %s", (f"pickup:{pickup_id}",))
    assert rows == 4 and largest == MiB
    pickup = storage.get_pickup(pickup_id)
    assert pickup is not None and pickup.size == total
    assert storage.open_pickup(pickup_id) == b"x" * (3 * MiB + 5)


def test_a_changed_chunk_does_not_decrypt(open_pg: Callable[..., PostgresStorage],
                                          postgres_url: str) -> None:
    storage = open_pg()
    pickup_id = stored_pickup(storage, iter([b"y" * (2 * MiB)]))
    _sql(postgres_url, "UPDATE blob_chunks SET data = overlay(data PLACING '\\x00'::bytea"
         " FROM 100) WHERE blob = %s AND seq = 1", (f"pickup:{pickup_id}",))
    with pytest.raises(DecryptionError):
        storage.open_pickup(pickup_id)


def test_a_truncated_blob_does_not_decrypt(open_pg: Callable[..., PostgresStorage],
                                           postgres_url: str) -> None:
    storage = open_pg()
    pickup_id = stored_pickup(storage, iter([b"z" * (2 * MiB)]))
    _sql(postgres_url, "DELETE FROM blob_chunks WHERE blob = %s AND seq = 2",
         (f"pickup:{pickup_id}",))
    with pytest.raises(DecryptionError):
        storage.open_pickup(pickup_id)


def test_an_empty_message_is_spooled_and_stored(open_pg: Callable[..., PostgresStorage]) -> None:
    storage = open_pg()
    queue_id = storage.enqueue(SENDER, [Route(PAT, True, "pickup")], b"")
    assert storage.read_spool(queue_id) == b""
    pickup_id = storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + 60)
    assert storage.open_pickup(pickup_id) == b""


def test_a_deleted_message_takes_its_spool_copy(open_pg: Callable[..., PostgresStorage]) -> None:
    storage = open_pg()
    queue_id = storage.enqueue(SENDER, [Route(PAT)], b"Subject: x\r\n\r\nbody\r\n")
    assert storage.read_spool_headers(queue_id) == b"Subject: x\r\n"
    assert storage.delete_message(queue_id)
    with pytest.raises(FileNotFoundError):
        storage.read_spool(queue_id)
