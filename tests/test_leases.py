"""Leases around the SQLite back-end and the pickup stage. The lease rules themselves (one
owner at a time, take-over, renewal, the per-domain cap, settling by the holder only) are
the queue's contract: tests/storage/test_contract_queue.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.config import Config
from gateway.storage.store import DEFAULT_LEASE, Route, Store
from gateway.vault.stage import PickupStage
from tests.portal_fixtures import FakeClock, clock, config, store

__all__ = ["clock", "config", "store"]  # shared fixtures, used here by name

MESSAGE = b"From: doctor@clinic.test\r\nSubject: Leases\r\n\r\nBody\r\n"


@pytest.fixture
def other(store: Store) -> Iterator[Store]:
    """A second runner on the same database, with its own connection and owner id."""
    opened = Store(store.directory, store.clock)
    yield opened
    opened.close()


def states_of(store: Store, rcpt: str) -> dict[str, tuple[str, str]]:
    """Per message to RCPT: its state and the owner holding it."""
    return {m.id: (r.state, r.claimed_by) for m in store.messages_to(rcpt)
            for r in m.recipients if r.rcpt == rcpt}


def test_a_delivering_row_from_before_leases_is_claimed(store: Store) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    with store.transaction() as db:  # as a version without owners left it
        db.execute("UPDATE recipients SET state='delivering', claimed_by=NULL, lease_until=NULL")
    assert [i.rcpt for i in store.claim_due()] == ["a@one.test"]


def test_a_runner_whose_lease_was_taken_over_stores_no_pickup(
        store: Store, other: Store, clock: FakeClock, config: Config) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test", True, "pickup")],
                               MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE + 1)
    other.claim_due()
    stored = PickupStage(config, store).store_for_pickup(
        message_id, "doctor@clinic.test", "a@one.test", clock(), "policy")
    assert stored is None
    assert store.list_pickups() == []
    assert states_of(store, "a@one.test") == {message_id: ("delivering", other.owner)}


def test_the_runner_holding_the_lease_stores_the_pickup_and_its_notification(
        store: Store, config: Config) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test", True, "pickup")],
                               MESSAGE)
    store.claim_due()
    stored = PickupStage(config, store).store_for_pickup(
        message_id, "doctor@clinic.test", "a@one.test", store.clock(), "policy")
    assert [p.id for p in store.list_pickups()] == [stored]
    states = {(queue_id == message_id, state)
              for queue_id, (state, _) in states_of(store, "a@one.test").items()}
    assert states == {(True, "pickup"), (False, "queued")}  # the original; its notification
    [notification] = [m for m in store.messages_to("a@one.test") if m.id != message_id]
    assert f"/m/{stored}".encode() in store.read_spool(notification.id)
