"""Schema migrations: named steps, each in its own transaction, upgrading old databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from gateway.storage import schema
from gateway.storage.schema import MigrationError
from gateway.storage.store import Store

V5_DUMP = Path(__file__).parent / "data" / "schema_v5.sql"


def recorded(db_path: Path) -> list[str]:
    with sqlite3.connect(db_path) as db:
        return [r[0] for r in db.execute("SELECT name FROM schema_migrations ORDER BY rowid")]


def columns(db_path: Path, table: str) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}


def tables(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def half_done_then_broken(db: Database) -> None:
    db["half_done"].create({"id": int}, pk="id")
    db["recipients"].add_column("half_done_column", str)
    raise ValueError("simulated failure in the middle of a step")


def half_done_then_broken_fixed(db: Database) -> None:
    db["half_done"].create({"id": int}, pk="id")


@pytest.fixture
def broken_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, half_done_then_broken])


def test_fresh_database_records_every_step_by_name(tmp_path: Path) -> None:
    Store(tmp_path).close()
    assert recorded(tmp_path / "sealgate.db") == [m.__name__ for m in schema.MIGRATIONS]


def test_failing_step_leaves_the_database_as_it_was(tmp_path: Path, broken_step: None) -> None:
    with pytest.raises(MigrationError, match="half_done_then_broken.*unchanged: simulated"):
        Store(tmp_path)
    db_path = tmp_path / "sealgate.db"
    assert "half_done" not in tables(db_path)
    assert "half_done_column" not in columns(db_path, "recipients")
    assert "half_done_then_broken" not in recorded(db_path)
    assert "recipient_claim_leases" in recorded(db_path)  # the steps before it stay applied


def test_start_up_succeeds_once_the_failing_step_is_fixed(
        tmp_path: Path, broken_step: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MigrationError):
        Store(tmp_path)
    half_done_then_broken_fixed.__name__ = "half_done_then_broken"
    fixed = [*schema.MIGRATIONS[:-1], half_done_then_broken_fixed]
    monkeypatch.setattr(schema, "MIGRATIONS", fixed)
    Store(tmp_path).close()
    assert "half_done" in tables(tmp_path / "sealgate.db")
    assert recorded(tmp_path / "sealgate.db")[-1] == "half_done_then_broken"


def test_database_that_recorded_numbers_1_to_5_is_upgraded_by_name(tmp_path: Path) -> None:
    db_path = tmp_path / "sealgate.db"
    with sqlite3.connect(db_path) as db:
        db.executescript(V5_DUMP.read_text())
    Store(tmp_path).close()
    assert recorded(db_path) == [m.__name__ for m in schema.MIGRATIONS]
    assert {"claimed_by", "lease_until"} <= columns(db_path, "recipients")


def test_upgraded_database_keeps_its_queue_and_requeues_its_interrupted_delivery(
        tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "sealgate.db") as db:
        db.executescript(V5_DUMP.read_text())
    store = Store(tmp_path)
    try:
        claimed = sorted(i.rcpt for i in store.claim_due())
        assert claimed == ["interrupted@later.test", "waiting@later.test"]
    finally:
        store.close()
