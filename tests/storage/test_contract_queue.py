"""Contract: the mail queue (QueueStore). Content goes in and out in chunks; due recipients
are claimed under a lease by one owner at a time; only the owner holding a lease settles;
content is kept while a recipient needs it. Two storages opened on the same data with
different owners are two runner processes."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from gateway.storage.protocols import (
    Attempt,
    AttemptRecord,
    RecipientStatus,
    Report,
    Route,
    Settlement,
    StagedPickup,
    Storage,
)
from tests.storage.helpers import FakeClock

Reopen = Callable[..., Storage]
SENDER = "doctor@clinic.test"
MESSAGE = b"From: doctor@clinic.test\r\nSubject: Queue\r\n\r\nBody\r\n"
LEASE = 600.0  # delivery.lease's default, which the fixtures' storages use
MIB = 1 << 20


def queued(storage: Storage, *rcpts: str, content: bytes = MESSAGE) -> str:
    return storage.enqueue(SENDER, [Route(r) for r in rcpts], content, client="192.0.2.7")


def status(storage: Storage, message_id: str, rcpt: str) -> RecipientStatus:
    message = storage.queued_message(message_id)
    assert message is not None, f"{message_id} is not queued"
    [found] = [r for r in message.recipients if r.rcpt == rcpt]
    return found


def held_by(storage: Storage, message_id: str, rcpt: str) -> tuple[str, str]:
    found = status(storage, message_id, rcpt)
    return found.state, found.claimed_by


def attempt(rcpt: str, at: float, reply: str = "451 4.3.0 busy") -> Attempt:
    return Attempt(rcpt, at, "mx.plain.test", "192.0.2.25", reply, None, None, "", "", False, "")


def chunks_of(size: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """SIZE octets of a message in CHUNK pieces, made as they are asked for."""
    yield b"From: doctor@clinic.test\r\nSubject: Big\r\n\r\n"
    line = b"0123456789abcdef" * 4 + b"\r\n"
    rest = line * (chunk // len(line))
    for n in range(size // len(rest)):
        yield b"%08d" % n + rest[8:]  # a new object each time, as a socket read gives


def digest(chunks: Iterator[bytes] | list[bytes]) -> tuple[str, int]:
    hashed, size = hashlib.sha256(), 0
    for chunk in chunks:
        hashed.update(chunk)
        size += len(chunk)
    return hashed.hexdigest(), size


# -- content ----------------------------------------------------------------------------------


def test_enqueued_content_reads_back_whole_in_chunks_and_as_headers(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test")
    assert storage.read_spool(message_id) == MESSAGE
    assert b"".join(storage.read_spool_chunks(message_id)) == MESSAGE
    assert storage.read_spool_headers(message_id) == (
        b"From: doctor@clinic.test\r\nSubject: Queue\r\n")


def test_content_enqueued_in_chunks_is_their_concatenation(storage: Storage) -> None:
    message_id = storage.enqueue(SENDER, [Route("a@one.test")], [b"From: a\r\n", b"\r\n", b"x"])
    assert storage.read_spool(message_id) == b"From: a\r\n\r\nx"


def test_a_large_message_is_queued_and_read_without_being_whole_in_memory(
        storage: Storage) -> None:
    size = 24 * MIB
    expected = digest(chunks_of(size))
    tracemalloc.start()
    try:
        message_id = storage.enqueue(SENDER, [Route("a@one.test")], chunks_of(size))
        read_back = digest(storage.read_spool_chunks(message_id))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_back == expected
    assert peak < size // 4, f"{peak} octets held at once for a {size}-octet message"


def test_a_streamed_spool_keeps_its_content_under_a_new_id(storage: Storage) -> None:
    message_id, size = storage.spool_stream(iter([b"Subject: Re\r\n", b"\r\n", b"thanks\r\n"]))
    assert size == len(b"Subject: Re\r\n\r\nthanks\r\n")
    assert storage.read_spool(message_id) == b"Subject: Re\r\n\r\nthanks\r\n"
    assert storage.queued_message(message_id) is None  # content only: not queued


def test_content_of_an_unknown_message_is_not_found(storage: Storage) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_spool("0000000000000NOSUCH")
    with pytest.raises(FileNotFoundError):
        storage.read_spool_chunks("0000000000000NOSUCH")


def test_a_refused_incoming_message_leaves_nothing(storage: Storage) -> None:
    spool = storage.incoming_spool("0000000000000REFUSE")
    spool.add(MESSAGE)
    spool.discard()
    with pytest.raises(FileNotFoundError):
        storage.read_spool("0000000000000REFUSE")
    assert storage.message_count() == 0


def test_a_submitted_incoming_message_is_queued_under_its_id(storage: Storage) -> None:
    spool = storage.incoming_spool("0000000000000INCOME")
    spool.add(MESSAGE[:10])
    spool.add(MESSAGE[10:])
    message_id = storage.submit_enqueue(SENDER, [Route("a@one.test")], spool, "192.0.2.7",
                                        smtputf8=True).result()
    message = storage.queued_message(message_id)
    assert message_id == "0000000000000INCOME" and storage.read_spool(message_id) == MESSAGE
    assert message is not None and (message.size, message.client, message.smtputf8) == (
        len(MESSAGE), "192.0.2.7", True)


def test_queued_messages_survive_reopening(storage: Storage, reopen: Reopen) -> None:
    message_id = queued(storage, "a@one.test")
    again = reopen()
    assert [w.message_id for w in again.waiting_recipients()] == [message_id]
    assert again.read_spool(message_id) == MESSAGE


# -- claims -----------------------------------------------------------------------------------


def test_claim_due_returns_due_recipients_with_their_message(
        storage: Storage, clock: FakeClock) -> None:
    message_id = storage.enqueue(SENDER, [Route("a@one.test", True, "require-tls", "tag")],
                                 MESSAGE, client="192.0.2.7", smtputf8=True)
    [claimed] = storage.claim_due()
    assert (claimed.message_id, claimed.sender, claimed.rcpt, claimed.domain) == (
        message_id, SENDER, "a@one.test", "one.test")
    assert (claimed.confidential, claimed.mode, claimed.reason, claimed.attempts) == (
        True, "require-tls", "tag", 0)
    assert (claimed.received, claimed.client, claimed.smtputf8) == (clock.now, "192.0.2.7", True)


def test_a_claim_gives_back_the_requiretls_flag_of_its_message(storage: Storage) -> None:
    storage.enqueue(SENDER, [Route("a@one.test", True, "require-verified-tls")], MESSAGE,
                    requiretls=True)
    [claimed] = storage.claim_due()
    assert (claimed.requiretls, claimed.tls_optional) == (True, False)


def test_a_claim_gives_back_a_honoured_tls_required_no(storage: Storage) -> None:
    spool = storage.incoming_spool("0000000000000OPTION")
    spool.add(MESSAGE)
    storage.submit_enqueue(SENDER, [Route("a@one.test")], spool, tls_optional=True).result()
    [claimed] = storage.claim_due()
    assert (claimed.requiretls, claimed.tls_optional) == (False, True)


def test_the_queue_view_of_a_message_shows_its_tls_flags(storage: Storage) -> None:
    message_id = storage.enqueue(SENDER, [Route("a@one.test")], MESSAGE, requiretls=True,
                                 tls_optional=True)
    message = storage.queued_message(message_id)
    assert message is not None and (message.requiretls, message.tls_optional) == (True, True)


def test_mail_is_queued_without_tls_flags_unless_asked(storage: Storage) -> None:
    queued(storage, "a@one.test")
    [claimed] = storage.claim_due()
    assert (claimed.requiretls, claimed.tls_optional) == (False, False)


def test_a_claim_holds_the_recipient_for_its_owner(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    assert held_by(storage, message_id, "a@one.test") == ("delivering", storage.owner)
    assert storage.still_claimed(message_id, ["a@one.test", "b@one.test"]) == ["a@one.test"]


def test_a_claimed_recipient_is_not_claimed_again(storage: Storage) -> None:
    queued(storage, "a@one.test")
    storage.claim_due()
    assert storage.claim_due() == []


def test_a_second_owner_cannot_claim_a_leased_recipient(
        storage: Storage, reopen: Reopen) -> None:
    queued(storage, "a@one.test")
    storage.claim_due()
    assert reopen().claim_due() == []


def test_an_expired_lease_is_taken_over_by_another_owner(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(LEASE + 1)
    other = reopen()
    assert [i.rcpt for i in other.claim_due()] == ["a@one.test"]
    assert held_by(storage, message_id, "a@one.test") == ("delivering", other.owner)
    assert storage.still_claimed(message_id, ["a@one.test"]) == []


def test_an_owner_does_not_take_over_its_own_expired_lease(
        storage: Storage, clock: FakeClock) -> None:
    queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(LEASE + 1)  # it may still be delivering: no second delivery from it
    assert storage.claim_due() == []


def test_renewing_extends_the_lease_beyond_its_first_end(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(LEASE - 1)
    assert storage.renew_leases() == 1
    clock.advance(LEASE - 1)
    assert reopen().claim_due() == []


def test_a_renewal_submitted_to_the_writer_extends_the_lease(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    queued(storage, "a@one.test")
    storage.submit_claim().result()
    clock.advance(LEASE - 1)
    assert storage.submit_renew_leases().result() == 1
    clock.advance(LEASE - 1)
    assert reopen().submit_claim().result() == []


def test_renewing_leaves_other_owners_claims_alone(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    queued(storage, "a@one.test")
    storage.claim_due()
    assert reopen().renew_leases() == 0


def test_per_domain_cap_counts_the_claims_of_every_owner(
        storage: Storage, reopen: Reopen) -> None:
    for n in range(3):
        queued(storage, f"r{n}@one.test")
    assert len(storage.claim_due(per_domain=2)) == 2
    assert reopen().claim_due(per_domain=2) == []


def test_per_domain_cap_frees_a_slot_when_a_delivery_settles(
        storage: Storage, reopen: Reopen) -> None:
    ids = [queued(storage, f"r{n}@one.test") for n in range(3)]
    first, _ = storage.claim_due(per_domain=2)
    storage.settle(first.message_id, {first.rcpt: "250 ok"}, "delivered")
    [taken] = reopen().claim_due(per_domain=2)
    assert taken.message_id == sorted(ids)[2]


def test_per_domain_cap_leaves_other_domains_free(storage: Storage, reopen: Reopen) -> None:
    queued(storage, "a@one.test")
    queued(storage, "b@two.test")
    storage.claim_due(limit=1, per_domain=1)
    assert len(reopen().claim_due(per_domain=1)) == 1


def test_recipients_of_one_message_and_domain_are_claimed_together(storage: Storage) -> None:
    queued(storage, "a@one.test", "b@one.test", "c@two.test")
    assert sorted(i.rcpt for i in storage.claim_due(limit=1)) == ["a@one.test", "b@one.test"]


def test_a_claim_takes_no_more_groups_than_its_limit(storage: Storage) -> None:
    for n in range(5):
        queued(storage, f"r{n}@d{n}.test")
    assert len(storage.claim_due(limit=3)) == 3


def test_released_claims_are_due_again_with_attempts_unchanged(
        storage: Storage, reopen: Reopen) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    storage.release_claims(message_id, ["a@one.test"])
    assert held_by(storage, message_id, "a@one.test") == ("queued", "")
    [claimed] = reopen().claim_due()
    assert claimed.attempts == 0


def test_another_owner_cannot_release_a_claim(storage: Storage, reopen: Reopen) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    reopen().release_claims(message_id, ["a@one.test"])
    assert held_by(storage, message_id, "a@one.test") == ("delivering", storage.owner)


def test_expiring_a_dead_owners_leases_lets_others_take_over_at_once(
        storage: Storage, reopen: Reopen) -> None:
    worker = reopen("host:1:abcd/delivery-1")
    queued(worker, "a@one.test")
    worker.claim_due()
    assert storage.claim_due() == []
    assert storage.expire_leases("host:1:abcd") == 1  # the supervisor: its workers too
    assert [i.rcpt for i in storage.claim_due()] == ["a@one.test"]


def test_expiring_leases_leaves_an_owner_with_a_longer_name_alone(
        storage: Storage, reopen: Reopen) -> None:
    worker = reopen("host:1:abcdef/delivery-1")
    queued(worker, "a@one.test")
    worker.claim_due()
    assert storage.expire_leases("host:1:abcd") == 0


# -- outcomes ---------------------------------------------------------------------------------


def test_settling_records_state_reply_and_one_more_attempt(
        storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(5)
    assert storage.settle(message_id, {"a@one.test": "250 2.0.0 ok"}, "delivered") == [
        "a@one.test"]
    found = status(storage, message_id, "a@one.test")
    assert (found.state, found.last_reply, found.attempts, found.updated, found.claimed_by) == (
        "delivered", "250 2.0.0 ok", 1, clock.now, "")


def test_a_recipient_not_claimed_is_not_settled(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test")
    assert storage.settle(message_id, {"a@one.test": "250 ok"}, "delivered") == []
    assert held_by(storage, message_id, "a@one.test") == ("queued", "")


def test_a_stale_owners_settlement_changes_nothing(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(LEASE + 1)
    other = reopen()
    other.claim_due()
    assert storage.settle(message_id, {"a@one.test": "451 4.3.0 late"}, "deferred") == []
    assert held_by(storage, message_id, "a@one.test") == ("delivering", other.owner)
    assert other.settle(message_id, {"a@one.test": "250 ok"}, "delivered") == ["a@one.test"]


def test_a_deferred_recipient_is_not_due_before_its_next_attempt(
        storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    storage.settle(message_id, {"a@one.test": "451 busy"}, "deferred", clock.now + 300)
    clock.advance(299)
    assert storage.claim_due() == []
    clock.advance(1)
    [again] = storage.claim_due()
    assert (again.rcpt, again.attempts) == ("a@one.test", 1)


def test_next_due_time_is_the_earliest_waiting_recipient(
        storage: Storage, clock: FakeClock) -> None:
    assert storage.next_due_time() is None
    message_id = queued(storage, "a@one.test")
    queued_at = clock.now
    clock.advance(10)
    later = queued(storage, "b@two.test")
    assert storage.next_due_time() == queued_at
    storage.claim_due()
    storage.settle(message_id, {"a@one.test": "451"}, "deferred", clock.now + 900)
    storage.settle(later, {"b@two.test": "451"}, "deferred", clock.now + 300)
    assert storage.next_due_time() == clock.now + 300


def test_flush_makes_every_waiting_recipient_due_now(storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    storage.settle(message_id, {"a@one.test": "451"}, "deferred", clock.now + 3600)
    assert storage.flush() == 1
    assert [i.rcpt for i in storage.claim_due()] == ["a@one.test"]


def test_a_bounce_with_a_report_queues_the_report_message(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    report = Report("", Route(SENDER, reason="delivery status notification"),
                    b"Subject: Undelivered\r\n\r\nsorry\r\n")
    assert storage.settle(message_id, {"a@one.test": "550 no such user"}, "bounced",
                          report=report) == ["a@one.test"]
    [waiting] = storage.waiting_recipients()
    assert (waiting.rcpt, waiting.sender, waiting.state) == (SENDER, "", "queued")
    assert storage.read_spool(waiting.message_id) == report.content


def test_a_stale_settlement_queues_no_report(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    clock.advance(LEASE + 1)
    reopen().claim_due()
    report = Report("", Route(SENDER), b"Subject: dsn\r\n\r\nx\r\n")
    assert storage.settle(message_id, {"a@one.test": "550 no"}, "bounced", report=report) == []
    assert [w.rcpt for w in storage.waiting_recipients()] == ["a@one.test"]
    assert storage.message_count() == 1


def test_settlements_submitted_together_each_settle(storage: Storage, clock: FakeClock) -> None:
    first = queued(storage, "a@one.test")
    second = queued(storage, "b@two.test")
    storage.claim_due()
    settled = storage.submit_settlements([
        Settlement(first, {"a@one.test": "250 ok"}, "delivered"),
        Settlement(second, {"b@two.test": "451 later"}, "deferred", clock.now + 300),
    ]).result()
    assert settled == [["a@one.test"], ["b@two.test"]]
    assert held_by(storage, first, "a@one.test") == ("delivered", "")
    assert held_by(storage, second, "b@two.test") == ("deferred", "")


def test_attempts_submitted_with_a_settlement_show_in_the_message(
        storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.claim_due()
    storage.submit_settlements(
        [Settlement(message_id, {"a@one.test": "451 busy"}, "deferred", clock.now + 60)],
        [AttemptRecord(message_id, attempt("a@one.test", clock.now))]).result()
    history = status(storage, message_id, "a@one.test").attempt_history
    assert [(a.host, a.reply, a.at) for a in history] == [
        ("mx.plain.test", "451 4.3.0 busy", clock.now)]


def test_recorded_attempts_show_in_the_message_oldest_first(
        storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test")
    storage.record_attempts(message_id, [attempt("a@one.test", clock.now, "451 first")])
    storage.submit_attempts(
        [AttemptRecord(message_id, attempt("a@one.test", clock.now + 1, "451 second"))]).result()
    history = status(storage, message_id, "a@one.test").attempt_history
    assert [a.reply for a in history] == ["451 first", "451 second"]


def test_content_stays_while_another_domain_of_the_message_is_pending(
        storage: Storage) -> None:
    message_id = queued(storage, "a@one.test", "b@two.test")
    storage.claim_due()
    storage.settle(message_id, {"a@one.test": "250 ok"}, "delivered")
    assert storage.read_spool(message_id) == MESSAGE


def test_content_is_removed_once_no_recipient_needs_it(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test", "b@two.test")
    storage.claim_due()
    storage.submit_settlements([
        Settlement(message_id, {"a@one.test": "250 ok"}, "delivered"),
        Settlement(message_id, {"b@two.test": "550 no"}, "bounced")]).result()
    with pytest.raises(FileNotFoundError):
        storage.read_spool(message_id)
    assert storage.queued_message(message_id) is not None  # its history stays


def test_deleting_a_message_removes_it_and_its_content(storage: Storage) -> None:
    message_id = queued(storage, "a@one.test")
    assert storage.delete_message(message_id) is True
    assert storage.queued_message(message_id) is None and storage.claim_due() == []
    with pytest.raises(FileNotFoundError):
        storage.read_spool(message_id)
    assert storage.delete_message(message_id) is False


def test_content_no_recipient_needs_is_cleaned_up_as_debris(storage: Storage) -> None:
    orphan, _ = storage.spool_stream(iter([MESSAGE]))
    kept = queued(storage, "a@one.test")
    assert storage.clean_spool_debris(min_age=0) == 1
    with pytest.raises(FileNotFoundError):
        storage.read_spool(orphan)
    assert storage.read_spool(kept) == MESSAGE


def test_young_content_is_not_debris(storage: Storage) -> None:
    orphan, _ = storage.spool_stream(iter([MESSAGE]))  # may be a message being accepted now
    assert storage.clean_spool_debris(min_age=3600) == 0
    assert storage.read_spool(orphan) == MESSAGE


def test_messages_to_a_recipient_are_listed_oldest_first(
        storage: Storage, clock: FakeClock) -> None:
    first = queued(storage, "a@one.test")
    clock.advance(1)
    second = queued(storage, "b@two.test", "a@one.test")
    queued(storage, "c@three.test")
    assert [m.id for m in storage.messages_to("a@one.test")] == [first, second]
    assert storage.messages_to("nobody@one.test") == []


# -- the pickup stage -------------------------------------------------------------------------


def staged(message_id: str, rcpt: str, pickup_id: str, expires: float) -> StagedPickup:
    notification = Report("secure-mail@clinic.test", Route(rcpt, reason="pickup notification"),
                          b"Subject: A message is waiting\r\n\r\nlink\r\n")
    return StagedPickup(message_id, SENDER, rcpt, expires, pickup_id, "stored for pickup: policy",
                        notification)


def test_staging_a_pickup_stores_it_settles_the_recipient_and_queues_the_notification(
        storage: Storage, clock: FakeClock) -> None:
    message_id = storage.enqueue(SENDER, [Route("p@patients.test", True, "pickup")], MESSAGE)
    storage.claim_due()
    pickup_id = storage.stage_pickup(staged(message_id, "p@patients.test", "pickup-one",
                                            clock.now + 86400))
    assert pickup_id == "pickup-one" and storage.open_pickup(pickup_id) == MESSAGE
    assert held_by(storage, message_id, "p@patients.test") == ("pickup", "")
    [notification] = storage.waiting_recipients()
    assert (notification.rcpt, notification.sender) == ("p@patients.test",
                                                        "secure-mail@clinic.test")
    assert storage.read_spool(notification.message_id).startswith(b"Subject: A message")
    with pytest.raises(FileNotFoundError):  # stored encrypted: the plaintext copy is gone
        storage.read_spool(message_id)


def test_staging_a_pickup_after_the_lease_was_lost_leaves_nothing_behind(
        storage: Storage, reopen: Reopen, clock: FakeClock) -> None:
    message_id = storage.enqueue(SENDER, [Route("p@patients.test", True, "pickup")], MESSAGE)
    storage.claim_due()
    clock.advance(LEASE + 1)
    other = reopen()
    other.claim_due()
    assert storage.stage_pickup(staged(message_id, "p@patients.test", "pickup-two",
                                       clock.now + 86400)) is None
    assert storage.list_pickups() == [] and storage.get_pickup("pickup-two") is None
    assert storage.message_count() == 1  # no notification queued
    assert held_by(storage, message_id, "p@patients.test") == ("delivering", other.owner)
    assert storage.read_spool(message_id) == MESSAGE  # the new owner still needs it


# -- forgetting settled history --

DAY = 86400.0


def delivered(storage: Storage, *rcpts: str) -> str:
    message_id = queued(storage, *rcpts)
    storage.claim_due()
    storage.settle(message_id, dict.fromkeys(rcpts, "250 2.0.0 OK"), "delivered")
    return message_id


def test_settled_history_older_than_the_cutoff_is_forgotten(storage: Storage,
                                                            clock: FakeClock) -> None:
    message_id = delivered(storage, "a@one.test")
    storage.record_attempts(message_id, [attempt("a@one.test", clock(), "250 2.0.0 OK")])
    clock.advance(31 * DAY)
    assert storage.prune_history(clock() - 30 * DAY) == 1
    assert storage.queued_message(message_id) is None


def test_settled_history_younger_than_the_cutoff_is_kept(storage: Storage,
                                                         clock: FakeClock) -> None:
    message_id = delivered(storage, "a@one.test")
    clock.advance(29 * DAY)
    assert storage.prune_history(clock() - 30 * DAY) == 0
    assert storage.queued_message(message_id) is not None


def test_a_message_with_a_recipient_still_pending_is_never_forgotten(
        storage: Storage, clock: FakeClock) -> None:
    message_id = queued(storage, "a@one.test", "b@one.test")
    storage.claim_due()
    storage.settle(message_id, {"a@one.test": "250 2.0.0 OK"}, "delivered")
    storage.settle(message_id, {"b@one.test": "451 4.3.0 busy"}, "deferred",
                   next_attempt=clock() + 60)
    clock.advance(31 * DAY)
    assert storage.prune_history(clock() - 30 * DAY) == 0
    assert status(storage, message_id, "b@one.test").state == "deferred"


def test_forgotten_history_is_gone_for_the_next_process_too(
        storage: Storage, clock: FakeClock, reopen: Reopen) -> None:
    message_id = delivered(storage, "a@one.test")
    clock.advance(31 * DAY)
    storage.prune_history(clock() - 30 * DAY)
    assert reopen().queued_message(message_id) is None
