"""Keys that really expire: a copy of the data (database and blobs, not the keys) taken
before expiry decrypts nothing once purge has destroyed the keys of its epochs, even with
the key ring as it is now. The same copy with the keys as they were then does decrypt:
the keys are what the copy lacks."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.protocols import Storage
from gateway.storage.store import Route, open_store
from gateway.vault.crypto import DecryptionError
from gateway.vault.epochs import DAY
from gateway.vault.expiry import purge
from tests.postgres import Cluster
from tests.storage.helpers import FakeClock

SENDER, PAT = "doctor@clinic.test", "pat@patients.test"
RAW = b"Subject: Lab\r\n\r\nHbA1c 5.4%\r\n"
START = 1_700_000_000.0     # 2023-11-14 22:13:20 UTC: pickups expire on Nov 15 and Nov 16
AFTER = 1_700_265_600.0     # 2023-11-18 00:00 UTC: both epochs over, a day of slack after
EPOCH_KEYS = ["e20231115g0", "e20231116g0"]
# What a backup of the PostgreSQL database holds that the test reads back.
TABLES = ["pickups", "blob_chunks", "epoch_keys", "keys", "key_ring"]


def store_pickups(storage: Storage) -> list[str]:
    ids = []
    for expires_in in (DAY, DAY + 600, 1.5 * DAY):
        queue_id = storage.enqueue(SENDER, [Route(PAT, True, "pickup")], RAW)
        ids.append(storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + expires_in))
    return ids


def readable(storage: Storage, pickup_ids: list[str]) -> list[str]:
    """The pickups of PICKUP_IDS that STORAGE decrypts."""
    opened = []
    for pickup_id in pickup_ids:
        try:
            assert storage.open_pickup(pickup_id) == RAW
        except DecryptionError:
            continue
        opened.append(pickup_id)
    return opened


# -- SQLite: the data directory without keys/ -------------------------------------------------

def copy_without_keys(data: Path, to: Path) -> Path:
    shutil.copytree(data, to, ignore=shutil.ignore_patterns("keys"))
    return to


def with_keys(copy: Path, keys: Path) -> Path:
    shutil.copytree(keys, copy / "keys")
    return copy


@pytest.fixture
def sqlite_backup(tmp_path: Path) -> Iterator[tuple[Path, list[str], Path]]:
    """A data directory with pickups of two epochs, purged after both; a copy of it
    (without keys) taken before, and a copy of its keys taken then."""
    data, clock = tmp_path / "var", FakeClock(START)
    storage = open_store(data, clock)
    pickup_ids = store_pickups(storage)
    storage.close()  # a backup of a data directory at rest
    backup = copy_without_keys(data, tmp_path / "backup")
    keys_then = tmp_path / "keys-then"
    shutil.copytree(data / "keys", keys_then)
    clock.now = AFTER
    storage = open_store(data, clock)
    assert purge(storage) == (3, EPOCH_KEYS)
    storage.close()
    yield backup, pickup_ids, keys_then


def test_a_sqlite_copy_taken_before_expiry_decrypts_nothing_with_the_current_keys(
        sqlite_backup: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    backup, pickup_ids, _keys_then = sqlite_backup
    restored = open_store(with_keys(backup, tmp_path / "var" / "keys"), FakeClock(START))
    try:
        assert {p.key_id for p in restored.list_pickups()} == set(EPOCH_KEYS)
        assert readable(restored, pickup_ids) == []
    finally:
        restored.close()


def test_the_current_sqlite_keys_hold_no_key_the_copy_names(
        sqlite_backup: tuple[Path, list[str], Path], tmp_path: Path) -> None:
    names = {p.name for p in (tmp_path / "var" / "keys").iterdir()}
    assert not names & {f"kek-{k}.key" for k in EPOCH_KEYS}


def test_the_sqlite_copy_decrypts_with_the_keys_as_they_were_before_expiry(
        sqlite_backup: tuple[Path, list[str], Path]) -> None:
    backup, pickup_ids, keys_then = sqlite_backup
    restored = open_store(with_keys(backup, keys_then), FakeClock(START))
    try:
        assert readable(restored, pickup_ids) == pickup_ids
    finally:
        restored.close()


# -- PostgreSQL: the tables, dumped into a schema of their own -------------------------------

def copy_tables(cluster: Cluster, source: str, target: str) -> None:
    """TABLES of schema SOURCE into schema TARGET (made if new; rows replaced if not)."""
    with psycopg.connect(cluster.url(cluster.database), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target)))
        for table in TABLES:
            src, dst = sql.Identifier(source, table), sql.Identifier(target, table)
            exists = conn.execute("SELECT to_regclass(%s)", (f"{target}.{table}",)).fetchone()
            if exists is not None and exists[0] is not None:
                conn.execute(sql.SQL("DELETE FROM {}").format(dst))
                conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(dst, src))
            else:
                conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {}").format(dst, src))


def schema_of(url: str) -> str:
    return url.rsplit("%3D", 1)[1]


@pytest.fixture
def pg_backup(open_pg: Callable[..., PostgresStorage], postgres_url: str,
              postgres_cluster: Cluster, tmp_path: Path
              ) -> Iterator[tuple[Callable[[Path], PostgresStorage], list[str], Path]]:
    """Pickups of two epochs on PostgreSQL, purged after both; a dump of TABLES taken
    before, a copy of the node's keys taken then, and a way to restore the dump onto a
    fresh database opened with a keys directory."""
    clock = FakeClock(START)
    node = open_pg(keys_dir=tmp_path / "keys", clock=clock)
    pickup_ids = store_pickups(node)
    dump = postgres_cluster.create_schema()
    copy_tables(postgres_cluster, schema_of(postgres_url), dump)
    keys_then = tmp_path / "keys-then"
    shutil.copytree(tmp_path / "keys", keys_then)
    clock.now = AFTER
    assert purge(node) == (3, EPOCH_KEYS)
    node.vacuum()

    def restore(keys: Path) -> PostgresStorage:
        schema = postgres_cluster.create_schema()
        restored = open_pg(url=postgres_cluster.url(postgres_cluster.database, schema),
                           keys_dir=keys, clock=FakeClock(START))
        copy_tables(postgres_cluster, dump, schema)
        return restored

    yield restore, pickup_ids, keys_then


def test_a_postgres_dump_taken_before_expiry_decrypts_nothing_with_the_current_keys(
        pg_backup: tuple[Callable[[Path], PostgresStorage], list[str], Path],
        tmp_path: Path) -> None:
    restore, pickup_ids, _keys_then = pg_backup
    restored = restore(tmp_path / "keys")
    assert {p.key_id for p in restored.list_pickups()} == set(EPOCH_KEYS)
    assert readable(restored, pickup_ids) == []


def test_the_postgres_dump_decrypts_with_the_keys_as_they_were_before_expiry(
        pg_backup: tuple[Callable[[Path], PostgresStorage], list[str], Path]) -> None:
    restore, pickup_ids, keys_then = pg_backup
    assert readable(restore(keys_then), pickup_ids) == pickup_ids
