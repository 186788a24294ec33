"""Contract: the audit trail (AuditStore) and the admin's read-only view of the queue
(QueueInspection)."""

from __future__ import annotations

from gateway.storage.protocols import Attempt, Storage
from gateway.storage.store import Route
from tests.storage.helpers import FakeClock

SENDER = "doctor@clinic.test"


def attempt(rcpt: str, at: float, reply: str = "250 ok") -> Attempt:
    return Attempt(rcpt, at, "mx.tls.test", "127.0.0.2", reply, "TLSv1.3", "TLS_AES_128_GCM_SHA256",
                   "CN=mx.tls.test", "CN=Test CA", True, "")


def test_audit_events_come_back_oldest_first(storage: Storage, clock: FakeClock) -> None:
    storage.audit("p1", "open", "203.0.113.5", "Firefox")
    clock.advance(1)
    storage.audit("p1", "download", "203.0.113.5", "report.pdf")
    storage.audit("p2", "open")
    events = storage.audit_events("p1")
    assert [(e.event, e.client, e.detail) for e in events] == [
        ("open", "203.0.113.5", "Firefox"), ("download", "203.0.113.5", "report.pdf")]
    assert events[0].at == clock.now - 1 and events[0].pickup_id == "p1"


def test_no_audit_events_for_an_unknown_id(storage: Storage) -> None:
    assert storage.audit_events("nothing") == []


def test_waiting_recipients_are_those_still_to_deliver(storage: Storage) -> None:
    queue_id = storage.enqueue(SENDER, [Route("a@plain.test"), Route("b@plain.test")], b"x\r\n")
    waiting = storage.waiting_recipients()
    assert [(w.message_id, w.rcpt, w.state, w.attempts) for w in waiting] == [
        (queue_id, "a@plain.test", "queued", 0), (queue_id, "b@plain.test", "queued", 0)]
    assert waiting[0].sender == SENDER


def test_deleted_messages_are_not_waiting(storage: Storage) -> None:
    queue_id = storage.enqueue(SENDER, [Route("a@plain.test")], b"x\r\n")
    storage.delete_message(queue_id)
    assert storage.waiting_recipients() == [] and storage.queued_message(queue_id) is None


def test_queued_message_shows_each_recipient_with_its_attempts(
        storage: Storage, clock: FakeClock) -> None:
    queue_id = storage.enqueue(SENDER, [Route("a@tls.test", True, "require-tls", "tag"),
                                        Route("b@tls.test")], b"x\r\n", client="192.0.2.1")
    storage.record_attempts(queue_id, [attempt("a@tls.test", clock.now),
                                       attempt("a@tls.test", clock.now + 1, "451 later")])
    status = storage.queued_message(queue_id)
    assert status is not None
    assert (status.id, status.sender, status.size, status.client) == (queue_id, SENDER, 3,
                                                                      "192.0.2.1")
    first, second = status.recipients
    assert (first.rcpt, first.confidential, first.mode, first.reason) == (
        "a@tls.test", True, "require-tls", "tag")
    assert [a.reply for a in first.attempt_history] == ["250 ok", "451 later"]
    assert first.attempt_history[0] == attempt("a@tls.test", clock.now)
    assert second.attempt_history == ()


def test_unknown_queue_id_has_no_status(storage: Storage) -> None:
    assert storage.queued_message("NOSUCHID") is None


def test_message_count_counts_queued_messages(storage: Storage) -> None:
    assert storage.message_count() == 0
    storage.enqueue(SENDER, [Route("a@plain.test")], b"x\r\n")
    assert storage.message_count() == 1
