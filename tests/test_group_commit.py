"""Group commit: concurrent enqueues share commits; each one is durable when it returns, and
one unit's failure neither fails the others nor leaves a spool file behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage.store import Route, Store

MESSAGE = b"Subject: hi\r\n\r\n" + b"x" * 10_000 + b"\r\n"
SESSIONS, EACH = 10, 10


@pytest.fixture
def queue_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path)
    yield opened
    opened.close()


def queued_ids(store: Store) -> set[str]:
    return {r[0] for r in store.query("SELECT id FROM messages")}


def test_concurrent_enqueues_share_commits(queue_store: Store) -> None:
    def session() -> None:
        for _ in range(EACH):
            queue_store.enqueue("a@b.test", [Route("c@d.test")], MESSAGE)

    threads = [threading.Thread(target=session) for _ in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(queued_ids(queue_store)) == SESSIONS * EACH
    assert queue_store.committer.batches < SESSIONS * EACH


def test_enqueued_message_is_in_the_spool_and_queued_on_return(queue_store: Store) -> None:
    message_id = queue_store.enqueue("a@b.test", [Route("c@d.test")], MESSAGE)
    assert queue_store.read_spool(message_id) == MESSAGE and message_id in queued_ids(queue_store)


def test_failing_unit_fails_alone_and_leaves_no_spool_file(queue_store: Store) -> None:
    bad = queue_store.incoming_spool("0000000000BBBBBBBBBB")
    bad.add(MESSAGE)
    good = queue_store.incoming_spool("0000000000CCCCCCCCCC")
    good.add(MESSAGE)

    def broken(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO no_such_table VALUES (1)")

    failing = queue_store.committer.submit(bad, broken)
    fine = queue_store.submit_enqueue("a@b.test", [Route("c@d.test")], good)
    with pytest.raises(sqlite3.OperationalError):
        failing.result()
    assert fine.result() == "0000000000CCCCCCCCCC"
    assert not bad.final.exists() and not bad.tmp.exists()


def test_large_message_is_spilled_to_the_spool_before_it_is_queued(queue_store: Store) -> None:
    spool = queue_store.incoming_spool("0000000000DDDDDDDDDD")
    for _ in range(3):
        spool.add(b"y" * spool.memory_limit)
        if spool.needs_spill:
            spool.spill()
    assert spool.tmp.stat().st_size == 3 * spool.memory_limit
    message_id = queue_store.submit_enqueue("a@b.test", [Route("c@d.test")], spool).result()
    assert queue_store.spool_files.path(message_id).stat().st_size == 3 * spool.memory_limit
    assert not spool.tmp.exists()
