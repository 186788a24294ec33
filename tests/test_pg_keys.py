"""Key-encryption keys shared by the nodes of one database (gateway/storage/postgres/keys.py):
any node decrypts what any node stored, a rotation on one node is used by all at once, and a
node without the cluster's master key refuses to start instead of failing on a pickup."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway.storage.postgres.keys import MASTER_FILE, MasterKeyError
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.store import Route

SENDER, PAT = "doctor@clinic.test", "pat@patients.test"
RAW = b"Subject: results\r\n\r\nall clear\r\n"


def stored(storage: PostgresStorage) -> str:
    queue_id = storage.enqueue(SENDER, [Route(PAT, True, "pickup")], RAW)
    return storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + 86400)


def second_node(open_pg: Callable[..., PostgresStorage], first: Path, tmp_path: Path
                ) -> PostgresStorage:
    """Another node: its own keys directory, with the master key copied in by the admin."""
    keys = tmp_path / "node-b-keys"
    keys.mkdir()
    shutil.copy2(first / MASTER_FILE, keys / MASTER_FILE)
    return open_pg(keys_dir=keys)


def key_id_of(url: str, pickup_id: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT key_id FROM pickups WHERE id = %s", (pickup_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_node_opens_what_another_node_stored(open_pg: Callable[..., PostgresStorage],
                                               tmp_path: Path) -> None:
    node_a = open_pg(keys_dir=tmp_path / "keys")
    node_b = second_node(open_pg, tmp_path / "keys", tmp_path)
    assert node_b.open_pickup(stored(node_a)) == RAW
    assert node_a.open_pickup(stored(node_b)) == RAW


def test_a_rotation_on_one_node_is_used_by_the_others_at_once(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    node_a = open_pg(keys_dir=tmp_path / "keys")
    node_b = second_node(open_pg, tmp_path / "keys", tmp_path)
    before = stored(node_b)
    new_key = node_a.keys.rotate()
    after = stored(node_b)
    assert key_id_of(postgres_url, after) == new_key != key_id_of(postgres_url, before)
    assert node_b.keys.key_ids() == sorted([key_id_of(postgres_url, before), new_key])
    assert node_a.open_pickup(before) == node_a.open_pickup(after) == RAW  # old keys decrypt


def test_a_node_without_the_master_key_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    with pytest.raises(MasterKeyError, match="missing: copy it from a node"):
        open_pg(keys_dir=tmp_path / "empty")


def test_a_node_with_another_master_key_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    other = tmp_path / "other"
    other.mkdir()
    (other / MASTER_FILE).write_bytes(b"k" * 32)
    with pytest.raises(MasterKeyError, match="but the database's keys were wrapped by"):
        open_pg(keys_dir=other)


def test_the_master_key_is_a_private_file_and_not_in_the_database(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    master = tmp_path / "keys" / MASTER_FILE
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT count(*) FROM keys WHERE position(%s IN wrapped) > 0",
                             (master.read_bytes(),)).fetchone()
    assert found == (0,)
