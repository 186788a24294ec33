"""Contract: messages stored encrypted for pickup and the replies in their threads
(PickupStore), on top of the queue's spool."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.storage.protocols import Storage
from gateway.storage.store import Route
from tests.storage.helpers import FakeClock

SENDER = "doctor@clinic.test"
PAT = "pat@patients.test"
DAY = 86400.0
RAW = b"From: doctor@clinic.test\r\nTo: pat@patients.test\r\nSubject: Lab\r\n\r\nresults 42\r\n"


def stored(storage: Storage, to: str = PAT, raw: bytes = RAW, days: float = 1) -> str:
    queue_id = storage.enqueue(SENDER, [Route(to, True, "pickup")], raw)
    return storage.store_pickup(queue_id, SENDER, to, storage.clock() + days * DAY)


def reply_to(storage: Storage, root_id: str, text: bytes = b"Subject: Re\r\n\r\nthanks\r\n"
             ) -> str:
    queue_id, size = storage.spool_stream(iter([text]))
    return storage.store_reply(root_id, queue_id, PAT, SENDER, size)


def test_a_stored_pickup_opens_to_the_original_message(storage: Storage) -> None:
    pickup_id = stored(storage)
    assert storage.open_pickup(pickup_id) == RAW


def test_a_stored_pickup_has_its_metadata(storage: Storage, clock: FakeClock) -> None:
    pickup = storage.get_pickup(stored(storage, to="Pat@Patients.test"))
    assert pickup is not None
    assert (pickup.sender, pickup.recipient, pickup.kind, pickup.state) == (
        SENDER, PAT, "message", "unread")
    assert pickup.created == clock.now and pickup.expires == clock.now + DAY


def test_marking_read_keeps_the_first_time(storage: Storage, clock: FakeClock) -> None:
    pickup_id = stored(storage)
    storage.mark_pickup_read(pickup_id)
    first = clock.now
    clock.advance(5)
    storage.mark_pickup_read(pickup_id)
    pickup = storage.get_pickup(pickup_id)
    assert pickup is not None and pickup.read_at == first and pickup.state == "read"


def test_an_expired_pickup_is_gone_for_readers_and_listed_for_expiry(
        storage: Storage, clock: FakeClock) -> None:
    pickup_id = stored(storage, days=1)
    clock.advance(DAY)
    assert storage.get_pickup(pickup_id) is None and storage.inbox(PAT) == []
    with pytest.raises(KeyError):
        storage.open_pickup(pickup_id)
    assert storage.expired_pickups() == [pickup_id]


def test_destroying_a_pickup_removes_it_for_good(storage: Storage) -> None:
    pickup_id = stored(storage)
    assert storage.destroy_pickup(pickup_id) is True
    assert storage.get_pickup(pickup_id) is None and storage.list_pickups() == []
    assert storage.destroy_pickup(pickup_id) is False


def test_the_inbox_holds_current_messages_newest_first(storage: Storage,
                                                       clock: FakeClock) -> None:
    older = stored(storage)
    clock.advance(1)
    newer = stored(storage)
    stored(storage, to="someone@else.test")
    assert [p.id for p in storage.inbox(PAT)] == [newer, older]


def test_a_reply_lives_in_its_thread_not_in_the_inbox(storage: Storage) -> None:
    root_id = stored(storage)
    reply_id = reply_to(storage, root_id)
    assert [p.id for p in storage.inbox(PAT)] == [root_id]
    [reply] = storage.thread_replies(root_id, PAT)
    assert (reply.id, reply.kind, reply.thread_id, reply.sender) == (reply_id, "reply",
                                                                      root_id, PAT)
    root = storage.get_pickup(root_id)
    assert root is not None and root.replied_at is not None and root.state == "replied"


def test_a_reply_is_queued_for_the_internal_relay(storage: Storage) -> None:
    root_id = stored(storage)
    before = storage.message_count()
    reply_to(storage, root_id)
    [waiting] = [w for w in storage.waiting_recipients() if w.rcpt == SENDER]
    assert waiting.mode == "internal" and waiting.sender == PAT
    assert storage.message_count() == before + 1


def test_a_reply_is_stored_encrypted_and_opens(storage: Storage) -> None:
    reply_id = reply_to(storage, stored(storage), b"Subject: Re\r\n\r\nsee you\r\n")
    assert storage.open_pickup(reply_id).endswith(b"see you\r\n")


def test_thread_replies_are_only_the_owners(storage: Storage) -> None:
    root_id = stored(storage)
    reply_to(storage, root_id)
    assert storage.thread_replies(root_id, "someone@else.test") == []


def test_a_reply_to_a_gone_message_is_refused(storage: Storage) -> None:
    queue_id, size = storage.spool_stream(iter([b"x"]))
    with pytest.raises(KeyError):
        storage.store_reply("no-such-pickup", queue_id, PAT, SENDER, size)


def test_destroying_a_conversation_takes_its_replies(storage: Storage) -> None:
    root_id = stored(storage)
    reply_to(storage, root_id)
    assert storage.destroy_conversation(root_id) == 2
    assert storage.list_pickups() == []


def test_list_pickups_filters_by_recipient(storage: Storage) -> None:
    mine = stored(storage)
    stored(storage, to="someone@else.test")
    assert [p.id for p in storage.list_pickups(PAT)] == [mine]
    assert len(storage.list_pickups()) == 2


def test_spool_stream_writes_every_chunk_and_counts_them(storage: Storage) -> None:
    queue_id, size = storage.spool_stream(iter([b"a" * 10, b"b" * 5]))
    assert size == 15 and storage.read_spool(queue_id) == b"a" * 10 + b"b" * 5


def test_pickups_survive_reopening(storage: Storage, reopen: Callable[[], Storage]) -> None:
    pickup_id = stored(storage)
    assert reopen().open_pickup(pickup_id) == RAW
