"""Contract: the sender's receipt links (SenderLinkStore) and the pickups of one message
they show; the capability built on them (gateway.vault.sender_links)."""

from __future__ import annotations

import pytest

from gateway.storage.protocols import SenderLink, Storage
from gateway.storage.store import Route
from gateway.vault.sender_links import (
    NoStoredMessage,
    find_sender_link,
    issue_sender_link,
    sender_link_url,
)
from tests.storage.helpers import FakeClock

SENDER = "doctor@clinic.test"
PAT, KIM = "pat@patients.test", "kim@patients.test"
DAY = 86400.0
RAW = b"From: doctor@clinic.test\r\nSubject: Lab\r\n\r\nresults 42\r\n"


def message_for(storage: Storage, *recipients: str, days: float = 1) -> str:
    """One queue message stored for pickup for each of RECIPIENTS; its queue id."""
    queue_id = storage.enqueue(SENDER, [Route(r, True, "pickup") for r in recipients], RAW)
    for n, rcpt in enumerate(recipients):
        storage.store_pickup(queue_id, SENDER, rcpt, storage.clock() + (days + n) * DAY)
    return queue_id


def link(storage: Storage, message_id: str = "q1", expires_in: float = DAY) -> SenderLink:
    now = storage.clock()
    return SenderLink("0123456789abcdef", "hash", message_id, SENDER, now, now + expires_in)


def test_a_stored_link_comes_back_by_its_id(storage: Storage) -> None:
    storage.put_sender_link(link(storage))
    assert storage.get_sender_link("0123456789abcdef") == link(storage)


def test_an_unknown_link_id_finds_nothing(storage: Storage) -> None:
    assert storage.get_sender_link("fedcba9876543210") is None


def test_a_link_stops_working_when_it_expires(storage: Storage, clock: FakeClock) -> None:
    storage.put_sender_link(link(storage, expires_in=60))
    clock.advance(60)
    assert storage.get_sender_link("0123456789abcdef") is None


def test_expired_links_are_forgotten_and_current_ones_kept(storage: Storage,
                                                          clock: FakeClock) -> None:
    storage.put_sender_link(link(storage, expires_in=60))
    storage.put_sender_link(SenderLink("1111111111111111", "h", "q2", SENDER, clock(),
                                       clock() + DAY))
    clock.advance(60)
    assert storage.forget_expired_sender_links() == 1
    clock.now -= 60  # the forgotten one is gone, not merely hidden by its expiry
    assert storage.get_sender_link("0123456789abcdef") is None
    assert storage.get_sender_link("1111111111111111") is not None


def test_revoking_through_a_link_records_the_first_time(storage: Storage,
                                                        clock: FakeClock) -> None:
    storage.put_sender_link(link(storage))
    storage.mark_sender_link_revoked("0123456789abcdef")
    first = clock()
    clock.advance(5)
    storage.mark_sender_link_revoked("0123456789abcdef")
    found = storage.get_sender_link("0123456789abcdef")
    assert found is not None and found.revoked_at == first


def test_message_pickups_are_every_recipient_of_that_message_only(storage: Storage) -> None:
    queue_id = message_for(storage, PAT, KIM)
    message_for(storage, PAT)
    pickups = storage.message_pickups(queue_id)
    assert [(p.recipient, p.message_id) for p in pickups] == [(KIM, queue_id), (PAT, queue_id)]


def test_message_pickups_leave_out_replies_and_destroyed_copies(storage: Storage) -> None:
    queue_id = message_for(storage, PAT, KIM)
    pat = next(p for p in storage.message_pickups(queue_id) if p.recipient == PAT)
    reply_id, size = storage.spool_stream(iter([b"Subject: Re\r\n\r\nthanks\r\n"]))
    storage.store_reply(pat.id, reply_id, PAT, SENDER, size)
    storage.destroy_pickup(pat.id)
    assert [p.recipient for p in storage.message_pickups(queue_id)] == [KIM]


def test_message_pickups_leave_out_expired_copies(storage: Storage, clock: FakeClock) -> None:
    queue_id = message_for(storage, PAT, KIM)  # PAT's expires after 1 day, KIM's after 2
    clock.advance(DAY)
    assert [p.recipient for p in storage.message_pickups(queue_id)] == [KIM]


# -- the capability over the store ---------------------------------------------------------


def test_an_issued_link_finds_its_message_and_sender(storage: Storage) -> None:
    queue_id = message_for(storage, PAT)
    found = find_sender_link(storage, issue_sender_link(storage, queue_id, SENDER))
    assert found is not None and (found.message_id, found.sender) == (queue_id, SENDER)


def test_a_link_carries_at_least_128_random_bits_and_stores_only_a_hash(
        storage: Storage) -> None:
    queue_id = message_for(storage, PAT)
    token = issue_sender_link(storage, queue_id, SENDER)
    link_id, secret = token.split(".")
    assert len(secret) >= 22  # base64url: 6 bits a character
    stored = storage.get_sender_link(link_id)
    assert stored is not None and secret not in stored.secret_hash
    assert issue_sender_link(storage, queue_id, SENDER) != token  # fresh each time


def test_a_link_with_a_changed_secret_finds_nothing(storage: Storage) -> None:
    token = issue_sender_link(storage, message_for(storage, PAT), SENDER)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert find_sender_link(storage, flipped) is None


@pytest.mark.parametrize("token", ["", "nonsense", "0123456789abcdef.", "../../etc/passwd"])
def test_a_malformed_token_finds_nothing(storage: Storage, token: str) -> None:
    assert find_sender_link(storage, token) is None


def test_a_link_expires_with_the_last_copy_of_the_message(storage: Storage,
                                                          clock: FakeClock) -> None:
    token = issue_sender_link(storage, message_for(storage, PAT, KIM), SENDER)
    clock.advance(DAY)  # PAT's copy expired, KIM's has a day left
    assert find_sender_link(storage, token) is not None
    clock.advance(DAY)
    assert find_sender_link(storage, token) is None


def test_no_link_for_a_message_nothing_is_stored_of(storage: Storage) -> None:
    with pytest.raises(NoStoredMessage):
        issue_sender_link(storage, "no-such-message", SENDER)


def test_no_link_for_someone_who_did_not_send_the_message(storage: Storage) -> None:
    with pytest.raises(NoStoredMessage):
        issue_sender_link(storage, message_for(storage, PAT), "mallory@clinic.test")


def test_the_sender_address_matches_whatever_its_case(storage: Storage) -> None:
    token = issue_sender_link(storage, message_for(storage, PAT), "Doctor@Clinic.TEST")
    found = find_sender_link(storage, token)
    assert found is not None and found.sender == SENDER


def test_the_url_is_under_the_portals_base_url(storage: Storage) -> None:
    url = sender_link_url(storage, "https://secure.clinic.test/", message_for(storage, PAT),
                          SENDER)
    assert url.startswith("https://secure.clinic.test/s/")
    assert find_sender_link(storage, url.rpartition("/")[2]) is not None
