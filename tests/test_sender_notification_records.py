"""What the queue runner writes down about a pickup notification, and the report it owes the
original sender (gateway.vault.unnotified), over a real SQLite store."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage.store import Route, Store
from gateway.vault.notify import build_notification
from gateway.vault.unnotified import (
    PICKUP_HEADER,
    Unnotified,
    build_unnotified_report,
    pickup_of_notification,
    record_outcome,
)

SENDER, PAT = "doctor@clinic.test", "pat@patients.test"
BOUNCE, LATER = "550 5.1.1 no such user", "451 4.7.5 come back later"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "var")
    yield opened
    opened.close()


@pytest.fixture
def pickup_id(store: Store) -> str:
    queue_id = store.enqueue(SENDER, [Route(PAT, True, "pickup")], b"Subject: x\r\n\r\nbody\r\n")
    return store.store_pickup(queue_id, SENDER, PAT, store.clock() + 86400)


def events(store: Store, pickup_id: str) -> list[str]:
    return [e.event for e in store.audit_events(pickup_id)]


def test_a_delivered_notification_is_recorded_as_notified(store: Store, pickup_id: str) -> None:
    assert record_outcome(store, pickup_id, "delivered", "250 ok", False) is None
    assert events(store, pickup_id) == ["notified"]


def test_a_deferral_before_the_delay_warning_owes_nothing(store: Store, pickup_id: str) -> None:
    assert record_outcome(store, pickup_id, "deferred", LATER, False) is None
    assert events(store, pickup_id) == []


def test_a_deferral_at_the_delay_warning_owes_the_sender_a_delayed_report(
        store: Store, pickup_id: str) -> None:
    owed = record_outcome(store, pickup_id, "deferred", LATER, True)
    assert owed is not None and owed.delayed and owed.pickup.sender == SENDER
    assert events(store, pickup_id) == ["notification-delayed"]


def test_a_bounce_owes_the_sender_a_failed_report(store: Store, pickup_id: str) -> None:
    owed = record_outcome(store, pickup_id, "bounced", BOUNCE, False)
    assert owed is not None and not owed.delayed and owed.reply == BOUNCE
    assert events(store, pickup_id) == ["notification-failed"]


def test_a_bounce_after_the_delayed_report_owes_no_second_one(store: Store,
                                                             pickup_id: str) -> None:
    record_outcome(store, pickup_id, "deferred", LATER, True)
    assert record_outcome(store, pickup_id, "bounced", BOUNCE, False) is None
    assert events(store, pickup_id) == ["notification-delayed", "notification-failed"]


def test_nothing_is_owed_for_a_copy_already_destroyed(store: Store, pickup_id: str) -> None:
    store.destroy_pickup(pickup_id)
    assert record_outcome(store, pickup_id, "bounced", BOUNCE, False) is None


def test_a_notification_names_the_copy_it_announces() -> None:
    raw = build_notification(notify_from="n@clinic.test", sender=SENDER, recipient=PAT,
                             link="https://p.clinic.test/m/abcdefghijklmnop", expires=2e9,
                             organization="Clinic", pickup_id="abcdefghijklmnop")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert pickup_of_notification(head) == "abcdefghijklmnop"


@pytest.mark.parametrize("header", [b"", b"X-Sealgate-Pickup: ../../x\r\n",
                                    b"X-Sealgate-Pickup: short\r\n"])
def test_a_missing_or_malformed_pickup_header_names_nothing(header: bytes) -> None:
    assert pickup_of_notification(b"Subject: hi\r\n" + header) is None


def test_the_report_is_a_delivery_status_report_to_the_sender(store: Store,
                                                             pickup_id: str) -> None:
    pickup = store.get_pickup(pickup_id)
    assert pickup is not None
    raw = build_unnotified_report(reporting_mta="gw.clinic.test", expires_text="9 Dec 2026",
                                  report=Unnotified(pickup, BOUNCE, delayed=False))
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert str(report["To"]) == SENDER and "MAILER-DAEMON@" in str(report["From"])
    assert PICKUP_HEADER not in raw.decode()
    text = raw.decode()
    assert "Action: failed" in text and "Status: 5.1.1" in text and "9 Dec 2026" in text
