"""Claims are leases: one atomic statement takes due work for one owner; a live owner's lease
is never taken, an expired one is; settling checks the owner; the per-domain cap holds across
runners. Several runners are several Store objects (connections) on one database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.config import Config
from gateway.storage.store import DEFAULT_LEASE, Report, Route, Settlement, Store
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


def owner_of(store: Store, rcpt: str) -> tuple[str, str]:
    [row] = store.query("SELECT state, coalesce(claimed_by, '') AS owner FROM recipients"
                        " WHERE rcpt=?", (rcpt,))
    return row["state"], row["owner"]


def test_a_claim_marks_the_recipient_delivering_for_its_owner(store: Store) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    [claimed] = store.claim_due()
    assert claimed.rcpt == "a@one.test"
    assert owner_of(store, "a@one.test") == ("delivering", store.owner)


def test_a_live_lease_is_not_claimed_by_another_runner(store: Store, other: Store) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    assert other.claim_due() == []


def test_an_expired_lease_is_taken_over_by_another_runner(
        store: Store, other: Store, clock: FakeClock) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE + 1)
    assert [i.rcpt for i in other.claim_due()] == ["a@one.test"]
    assert owner_of(store, "a@one.test") == ("delivering", other.owner)


def test_a_renewed_lease_is_not_taken_over(store: Store, other: Store, clock: FakeClock) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE - 1)
    assert store.renew_leases() == 1
    clock.advance(DEFAULT_LEASE - 1)
    assert other.claim_due() == []


def test_a_runner_whose_lease_was_taken_over_cannot_settle(
        store: Store, other: Store, clock: FakeClock) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE + 1)
    other.claim_due()
    assert store.settle(message_id, {"a@one.test": "451 4.3.0 late"}, "deferred") == []
    assert owner_of(store, "a@one.test") == ("delivering", other.owner)
    assert other.settle(message_id, {"a@one.test": "250 ok"}, "delivered") == ["a@one.test"]


def test_leases_of_a_dead_supervisor_and_its_workers_are_taken_over_at_once(
        store: Store) -> None:
    worker = Store(store.directory, store.clock, owner="host:1:abcd/delivery-1")
    try:
        worker.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
        worker.claim_due()
    finally:
        worker.close()
    assert store.claim_due() == []
    assert store.expire_leases("host:1:abcd") == 1
    assert [i.rcpt for i in store.claim_due()] == ["a@one.test"]


def test_expiring_leases_leaves_an_owner_with_a_longer_name_alone(store: Store) -> None:
    worker = Store(store.directory, store.clock, owner="host:1:abcdef/delivery-1")
    try:
        worker.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
        worker.claim_due()
    finally:
        worker.close()
    assert store.expire_leases("host:1:abcd") == 0


def test_a_runner_does_not_take_over_its_own_expired_lease(
        store: Store, clock: FakeClock) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE + 1)  # it is still working on it: no second delivery from it
    assert store.claim_due() == []


def test_per_domain_cap_counts_the_live_leases_of_every_runner(
        store: Store, other: Store) -> None:
    for n in range(3):
        store.enqueue("doctor@clinic.test", [Route(f"r{n}@one.test")], MESSAGE)
    assert len(store.claim_due(per_domain=2)) == 2
    assert other.claim_due(per_domain=2) == []


def test_per_domain_cap_frees_a_slot_when_a_delivery_settles(
        store: Store, other: Store) -> None:
    ids = [store.enqueue("doctor@clinic.test", [Route(f"r{n}@one.test")], MESSAGE)
           for n in range(3)]
    first, _ = store.claim_due(per_domain=2)
    store.settle(first.message_id, {first.rcpt: "250 ok"}, "delivered")
    [taken] = other.claim_due(per_domain=2)
    assert taken.message_id == sorted(ids)[2]


def test_per_domain_cap_leaves_other_domains_free(store: Store, other: Store) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.enqueue("doctor@clinic.test", [Route("b@two.test")], MESSAGE)
    store.claim_due(limit=1, per_domain=1)
    assert len(other.claim_due(per_domain=1)) == 1


def test_recipients_of_one_message_and_domain_are_claimed_together(store: Store) -> None:
    store.enqueue("doctor@clinic.test", [Route("a@one.test"), Route("b@one.test"),
                                         Route("c@two.test")], MESSAGE)
    claimed = store.claim_due(limit=1)
    assert sorted(i.rcpt for i in claimed) == ["a@one.test", "b@one.test"]


def test_claim_takes_no_more_groups_than_its_limit(store: Store) -> None:
    for n in range(5):
        store.enqueue("doctor@clinic.test", [Route(f"r{n}@d{n}.test")], MESSAGE)
    assert len(store.claim_due(limit=3)) == 3


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
    assert owner_of(store, "a@one.test") == ("delivering", other.owner)


def test_the_runner_holding_the_lease_stores_the_pickup_and_its_notification(
        store: Store, config: Config) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test", True, "pickup")],
                               MESSAGE)
    store.claim_due()
    stored = PickupStage(config, store).store_for_pickup(
        message_id, "doctor@clinic.test", "a@one.test", store.clock(), "policy")
    assert [p.id for p in store.list_pickups()] == [stored]
    states = {(r["message_id"] == message_id, r["state"]) for r in store.query(
        "SELECT message_id, state FROM recipients WHERE rcpt='a@one.test'")}
    assert states == {(True, "pickup"), (False, "queued")}  # the original; its notification


def test_settlements_submitted_together_are_recorded_in_one_commit(store: Store) -> None:
    first = store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    second = store.enqueue("doctor@clinic.test", [Route("b@two.test")], MESSAGE)
    store.claim_due()
    settled = store.submit_settlements([
        Settlement(first, {"a@one.test": "250 ok"}, "delivered"),
        Settlement(second, {"b@two.test": "451 later"}, "deferred", store.clock() + 300),
    ]).result()
    assert settled == [["a@one.test"], ["b@two.test"]]
    assert owner_of(store, "a@one.test") == ("delivered", "")
    assert owner_of(store, "b@two.test") == ("deferred", "")


def test_a_settled_message_has_its_spool_file_removed_by_the_commit(store: Store) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    store.submit_settlements([Settlement(message_id, {"a@one.test": "250 ok"}, "delivered")],
                             ).result()
    assert not store.spool_path(message_id).exists()


def test_a_settlement_for_a_lost_lease_leaves_no_report_behind(
        store: Store, other: Store, clock: FakeClock) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@one.test")], MESSAGE)
    store.claim_due()
    clock.advance(DEFAULT_LEASE + 1)
    other.claim_due()
    report = Report("", Route("doctor@clinic.test"), b"Subject: dsn\r\n\r\nx\r\n")
    [settlement] = store.spool_reports([Settlement(message_id, {"a@one.test": "550 no"},
                                                   "bounced", report=report)])
    assert settlement.report_id is not None
    assert store.submit_settlements([settlement]).result() == [[]]
    assert not store.spool_path(settlement.report_id).exists()
    assert owner_of(store, "a@one.test") == ("delivering", other.owner)
