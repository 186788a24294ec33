"""The store lock on PostgreSQL: besides the file lock of its data directory, `serve` holds
an advisory lock named for the node (host and data directory) on the shared database, so
one node runs once while differently named nodes run side by side; the lock is taken again
when its database session ends under a running node."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from gateway.config import Config
from gateway.storage.lock import NodeLock, StoreInUse, lock_storage, node_name


def pg_config(tmp_path: Path, url: str, name: str) -> Config:
    config = Config()
    config.storage.backend = "postgresql"
    config.storage.blobs = "database"
    config.storage.url = url
    config.storage.dir = str(tmp_path / name)
    return config


def holders(url: str, owner: str) -> set[int]:
    """The server pids of OWNER's node lock sessions that hold an advisory lock now."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a"
                            " ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted"
                            " AND a.application_name = %s", (f"sealgate serve {owner}",)
                            ).fetchall()
    return {int(r[0]) for r in rows}


def test_a_node_name_is_held_by_one_process_at_a_time(postgres_url: str) -> None:
    first, second = NodeLock(postgres_url, "gw1", "a"), NodeLock(postgres_url, "gw1", "b")
    assert first.acquire()
    try:
        assert not second.acquire()
    finally:
        first.release()
    assert second.acquire()
    second.release()


def test_nodes_with_different_names_hold_their_locks_side_by_side(postgres_url: str) -> None:
    one, other = NodeLock(postgres_url, "gw1", "a"), NodeLock(postgres_url, "gw2", "b")
    assert one.acquire() and other.acquire()
    one.release()
    other.release()


def test_serve_refuses_a_node_whose_name_is_held_and_leaves_its_data_dir_unlocked(
        postgres_url: str, tmp_path: Path) -> None:
    config = pg_config(tmp_path, postgres_url, "node")
    elsewhere = NodeLock(postgres_url, node_name(config), "elsewhere")
    assert elsewhere.acquire()
    try:
        with pytest.raises(StoreInUse, match="already running as node"):
            lock_storage(config, "me")
    finally:
        elsewhere.release()
    lock_storage(config, "me").release()  # the file lock was given back


def test_the_node_lock_is_taken_again_after_its_session_was_ended(
        postgres_url: str, tmp_path: Path) -> None:
    lock = lock_storage(pg_config(tmp_path, postgres_url, "node"), "watched")
    try:
        [first] = holders(postgres_url, "watched")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
        deadline = time.monotonic() + 15
        while not holders(postgres_url, "watched") - {first}:  # a new session holds it
            assert time.monotonic() < deadline, "the node lock was not taken again"
            time.sleep(0.2)
    finally:
        lock.release()
    deadline = time.monotonic() + 5
    while holders(postgres_url, "watched"):  # its session ends as the server sees it go
        assert time.monotonic() < deadline, "the node lock outlived its release"
        time.sleep(0.05)
