"""Key-encryption keys shared by the nodes of one database (gateway/storage/postgres/keys.py):
any node decrypts what any node stored and finds the epoch KEK another node made, a rotation
on one node is used by all at once, a node without the cluster's master key or epoch chain
refuses to start instead of failing on a pickup, and every node's chain moves past the
epochs purge destroyed."""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from gateway.storage.postgres.epoch_chain import PREFIX, ChainFileError
from gateway.storage.postgres.keys import MASTER_FILE, MasterKeyError
from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.store import Route
from gateway.vault.epochs import DAY
from gateway.vault.expiry import purge
from tests.legacy_keys import legacy_wrapped_kek
from tests.storage.helpers import FakeClock

SENDER, PAT = "doctor@clinic.test", "pat@patients.test"
RAW = b"Subject: results\r\n\r\nall clear\r\n"
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
END_OF_NOV_15 = 1_700_092_800.0


def stored(storage: PostgresStorage, expires_in: float = DAY) -> str:
    queue_id = storage.enqueue(SENDER, [Route(PAT, True, "pickup")], RAW)
    return storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + expires_in)


def copy_keys(first: Path, tmp_path: Path, name: str = "node-b-keys") -> Path:
    """Another node's keys directory: the first node's, copied by the admin."""
    keys = tmp_path / name
    shutil.copytree(first, keys)
    return keys


def chain_files(keys: Path) -> list[str]:
    return sorted(p.name for p in keys.glob(f"{PREFIX}*.key"))


def key_id_of(url: str, pickup_id: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT key_id FROM pickups WHERE id = %s", (pickup_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_a_node_opens_what_another_node_stored(open_pg: Callable[..., PostgresStorage],
                                               tmp_path: Path) -> None:
    node_a = open_pg(keys_dir=tmp_path / "keys")
    node_b = open_pg(keys_dir=copy_keys(tmp_path / "keys", tmp_path))
    assert node_b.open_pickup(stored(node_a)) == RAW
    assert node_a.open_pickup(stored(node_b)) == RAW


def test_a_node_uses_the_epoch_key_another_node_made(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    node_a = open_pg(keys_dir=tmp_path / "keys")
    node_b = open_pg(keys_dir=copy_keys(tmp_path / "keys", tmp_path))
    first, second = stored(node_a), stored(node_b)
    assert key_id_of(postgres_url, first) == key_id_of(postgres_url, second)
    assert len(node_a.keys.key_ids()) == 1


def test_a_rotation_on_one_node_is_used_by_the_others_at_once(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    node_a = open_pg(keys_dir=tmp_path / "keys")
    node_b = open_pg(keys_dir=copy_keys(tmp_path / "keys", tmp_path))
    before = stored(node_b)
    assert node_a.rotate_keys() == 1
    after = stored(node_b)
    assert key_id_of(postgres_url, after) == key_id_of(postgres_url, before)[:-1] + "1"
    assert node_a.open_pickup(before) == node_a.open_pickup(after) == RAW  # old keys decrypt


def test_a_node_without_the_master_key_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    with pytest.raises(MasterKeyError, match="missing: copy it from a node"):
        open_pg(keys_dir=tmp_path / "empty")


def test_a_node_with_another_master_key_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    other = copy_keys(tmp_path / "keys", tmp_path, "other")
    (other / MASTER_FILE).write_bytes(b"k" * 32)
    with pytest.raises(MasterKeyError, match="but the database's keys were wrapped by"):
        open_pg(keys_dir=other)


def test_a_node_without_the_epoch_chain_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy2(tmp_path / "keys" / MASTER_FILE, other / MASTER_FILE)
    with pytest.raises(MasterKeyError, match="epoch-chain-.* is missing: copy the keys dir"):
        open_pg(keys_dir=other)


def test_a_node_with_another_epoch_chain_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    other = copy_keys(tmp_path / "keys", tmp_path, "other")
    [link] = other.glob(f"{PREFIX}*.key")
    link.write_bytes(b"c" * 32)
    with pytest.raises(MasterKeyError, match="is not this cluster's epoch chain"):
        open_pg(keys_dir=other)


def test_every_node_moves_its_chain_past_the_epochs_purge_destroyed(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    clock = FakeClock(START)
    node_a = open_pg(keys_dir=tmp_path / "keys", clock=clock)
    node_b_keys = copy_keys(tmp_path / "keys", tmp_path)
    node_b = open_pg(keys_dir=node_b_keys, clock=clock)
    stored(node_a)
    assert chain_files(node_b_keys) == [f"{PREFIX}20231113.key"]  # the day before the first
    clock.now = END_OF_NOV_15 + DAY  # Nov 15 destroyed; a day of slack for slow clocks
    assert purge(node_a) == (1, ["e20231115g0"])
    purge(node_b)  # the other node's own expiry turn: nothing left to destroy but its link
    assert chain_files(node_b_keys) == chain_files(tmp_path / "keys") == [
        f"{PREFIX}20231116.key"]


def test_a_node_that_was_down_catches_up_with_the_chain_when_it_starts(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    clock = FakeClock(START)
    node_a = open_pg(keys_dir=tmp_path / "keys", clock=clock)
    node_b_keys = copy_keys(tmp_path / "keys", tmp_path)  # copied, not started yet
    clock.advance(10 * DAY)
    purge(node_a)
    open_pg(keys_dir=node_b_keys, clock=clock)
    assert chain_files(node_b_keys) == chain_files(tmp_path / "keys") == [
        f"{PREFIX}20231123.key"]


def test_a_key_of_the_ring_before_epochs_decrypts_until_nothing_needs_it(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    node = open_pg(keys_dir=tmp_path / "keys", clock=FakeClock(START))
    kek = b"\x07" * 32
    with psycopg.connect(postgres_url) as conn:  # as a database from before epochs has it
        conn.execute("INSERT INTO keys (id, master_id, wrapped, created) VALUES"
                     " ('0a1b2c3d', 'old', %s, 0)",
                     (legacy_wrapped_kek(node.keys.master, "0a1b2c3d", kek),))
    assert node.keys.kek("0a1b2c3d") == kek
    assert purge(node) == (0, ["0a1b2c3d"])  # it wraps no pickup: nothing needs it
    assert "0a1b2c3d" not in node.keys.key_ids()


def test_the_master_key_is_a_private_file_and_not_in_the_database(
        open_pg: Callable[..., PostgresStorage], postgres_url: str, tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    master = tmp_path / "keys" / MASTER_FILE
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute("SELECT count(*) FROM keys WHERE position(%s IN wrapped) > 0",
                             (master.read_bytes(),)).fetchone()
    assert found == (0,)


def test_a_node_whose_epoch_chain_file_is_damaged_refuses_to_start(
        open_pg: Callable[..., PostgresStorage], tmp_path: Path) -> None:
    open_pg(keys_dir=tmp_path / "keys")
    other = copy_keys(tmp_path / "keys", tmp_path, "other")
    [link] = other.glob(f"{PREFIX}*.key")
    link.write_bytes(b"short")
    with pytest.raises(ChainFileError, match="is not an epoch chain link"):
        open_pg(keys_dir=other)
