"""A node whose database connections drop: the unit of work that cannot reach the server
fails with a storage error (which callers answer with 451), and the next one after the
server is back works on fresh connections, without reopening the storage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway.storage import storage_errors
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.store import Route
from tests.fakes.ports import free_port
from tests.postgres import Cluster


def test_connections_the_server_ended_are_replaced(open_pg: Callable[..., PostgresStorage],
                                                   postgres_cluster: Cluster) -> None:
    storage = open_pg()
    storage.audit("p1", "before")
    with psycopg.connect(postgres_cluster.url(postgres_cluster.database),
                         autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE pid <> pg_backend_pid() AND datname = current_database()"
                              ).fetchone()
    assert ended is not None and ended[0] >= 1
    storage.audit("p1", "after")
    assert [e.event for e in storage.audit_events("p1")] == ["before", "after"]


def test_work_fails_while_the_server_is_down_and_resumes_after(
        postgres_cluster: Cluster, postgres_url: str, tmp_path: Path) -> None:
    storage = PostgresStorage(postgres_url, tmp_path / "keys", pool_timeout=2)
    try:
        storage.audit("p1", "before")
        postgres_cluster.stop()
        try:
            with pytest.raises(storage_errors()):
                storage.audit("p1", "while down")
        finally:
            postgres_cluster.start(postgres_cluster.port)
        storage.audit("p1", "after")
        assert [e.event for e in storage.audit_events("p1")] == ["before", "after"]
    finally:
        storage.close()


def test_opening_on_a_server_that_is_not_there_is_a_storage_error(tmp_path: Path) -> None:
    closed_port = free_port()
    with pytest.raises(storage_errors(), match="Connection refused"):
        PostgresStorage(f"postgresql://sealgate@127.0.0.1:{closed_port}/sealgate",
                        tmp_path / "keys")


def test_every_unit_of_work_needs_one_connection_only(postgres_url: str, tmp_path: Path) -> None:
    """A unit that held one pooled connection while waiting for another would, with every
    connection held that way, wait forever: with a pool of one it would time out here."""
    storage = PostgresStorage(postgres_url, tmp_path / "keys", pool_size=1, pool_timeout=2)
    try:
        queue_id = storage.enqueue("doctor@clinic.test", [Route("pat@patients.test")],
                                   b"Subject: x\r\n\r\nbody\r\n")
        root = storage.store_pickup(queue_id, "doctor@clinic.test", "pat@patients.test",
                                    storage.clock() + 60)
        reply_id, size = storage.spool_stream(iter([b"Subject: Re\r\n\r\nthanks\r\n"]))
        reply = storage.store_reply(root, reply_id, "pat@patients.test", "doctor@clinic.test",
                                    size)
        storage.keys.rotate()
        assert storage.open_pickup(reply).endswith(b"thanks\r\n")
        with storage.open_pickup_stream(root) as stream:
            assert b"".join(stream.chunks()).endswith(b"body\r\n")
    finally:
        storage.close()
