"""PostgreSQL schema migrations: each step once, even when nodes start at the same moment,
and a failing step leaves the database as it was."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import psycopg
import pytest

from gateway.storage.postgres.migrations import MIGRATIONS, Migration, migrate
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.schema import MigrationError

NODES = 4
ALL_STEPS = [step.name for step in MIGRATIONS]


def _migrate_at_once(url: str, nodes: int) -> list[list[str]]:
    """NODES connections that call migrate() together; what each applied."""
    barrier = threading.Barrier(nodes)

    def node() -> list[str]:
        with psycopg.connect(url, autocommit=True) as conn:
            barrier.wait()
            return migrate(conn)

    with ThreadPoolExecutor(nodes) as pool:
        return list(pool.map(lambda _: node(), range(nodes)))


def _recorded(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]


def test_nodes_starting_together_apply_each_step_once(postgres_url: str) -> None:
    applied = _migrate_at_once(postgres_url, NODES)
    every = [name for names in applied for name in names]
    assert sorted(every) == sorted(ALL_STEPS)  # each step by exactly one node
    assert _recorded(postgres_url) == sorted(ALL_STEPS)


def test_nodes_opening_together_all_start(open_pg: Callable[..., PostgresStorage],
                                          postgres_url: str, tmp_path: Path) -> None:
    barrier = threading.Barrier(NODES)

    def node(_: int) -> tuple[str, bytes]:
        barrier.wait()
        return open_pg(keys_dir=tmp_path / "keys").keys.epoch_key(date(2030, 1, 1))

    with ThreadPoolExecutor(NODES) as pool:
        keys = list(pool.map(node, range(NODES)))
    assert len(set(keys)) == 1  # one master key, and one key for the epoch every node asked
    assert _recorded(postgres_url) == sorted(ALL_STEPS)


def test_a_migrated_database_gets_nothing_new(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert migrate(conn) == ALL_STEPS
        assert migrate(conn) == []


def test_a_failing_step_is_rolled_back_and_not_recorded(postgres_url: str) -> None:
    broken = Migration("broken_step", ("CREATE TABLE half_done (a integer)",
                                       "SELECT 1 / 0"))
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        with pytest.raises(MigrationError, match="broken_step"):
            migrate(conn, [*MIGRATIONS, broken])
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
    assert _recorded(postgres_url) == sorted(ALL_STEPS)  # the good steps before it stay
