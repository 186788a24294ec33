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
