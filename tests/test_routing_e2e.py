"""End to end over real sockets: the gateway routes by confidentiality and the recipient
domain's TLS, and confidential mail never travels in plaintext."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import opened_storage, stored_pickups, text_of


def test_ordinary_message_reaches_a_host_without_tls_in_plaintext(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Lunch on Friday?"))
    received = wait_for_mail(mx_hosts["plain"], rcpt)
    assert not received.tls
    assert b"Lunch on Friday?" in received.content


def test_ordinary_message_uses_starttls_when_offered(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Opportunistic"))
    assert wait_for_mail(mx_hosts["tls"], rcpt).tls


def test_secure_message_to_a_tls_domain_arrives_over_tls_with_the_tag_stripped(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Lab results",
                              "Your HbA1c is 5.4%."))
    received = wait_for_mail(mx_hosts["tls"], rcpt)
    assert received.tls and received.tls_version in ("TLSv1.2", "TLSv1.3")
    delivered = message_from_bytes(received.content, policy=policy.default)
    assert delivered["Subject"] == "Lab results"
    assert "HbA1c" in text_of(received.content)


def test_confidential_header_also_requires_tls(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "Referral", Sensitivity="Private"))
    stored_pickups(gateway, rcpt)
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    assert b"Referral" not in notification.content


def test_secure_message_to_a_domain_without_tls_goes_to_pickup_never_plaintext(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    body = "Biopsy result: benign. Marker-" + unique
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Biopsy", body))
    pickups = stored_pickups(gateway, rcpt)
    notification = wait_for_mail(mx_hosts["plain"], rcpt)
    assert notification.mail_from == "secure-mail@clinic.test"
    text = text_of(notification.content)
    assert f"{gateway.portal_url}/m/{pickups[0].id}" in text
    assert "Marker-" + unique not in text and "Biopsy" not in text
    assert len(mx_hosts["plain"].messages) and all(
        ("Marker-" + unique).encode() not in m.content for m in mx_hosts["plain"].messages)
    blob = gateway.sealed_copy(pickups[0].id)  # as stored: sealed
    assert blob is not None and b"Biopsy" not in blob and ("Marker-" + unique).encode() not in blob


def test_spool_copy_is_removed_once_stored_for_pickup(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Spool"))
    message_id = stored_pickups(gateway, rcpt)[0].message_id
    wait_for_mail(mx_hosts["plain"], rcpt)
    with opened_storage(gateway.storage_dir) as storage, pytest.raises(FileNotFoundError):
        storage.read_spool(message_id)


def test_require_verified_tls_to_a_host_with_a_bad_certificate_goes_to_pickup(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@bad-cert.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Statement", "Balance: 1,234"))
    stored_pickups(gateway, rcpt)
    notification = wait_for_mail(mx_hosts["bad-cert"], rcpt)
    assert b"Balance" not in notification.content
    assert [m for m in mx_hosts["bad-cert"].messages if rcpt in m.rcpt_tos] == [notification]


def test_require_verified_tls_delivers_when_the_certificate_verifies(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@verified.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Verified", "Secret"))
    received = wait_for_mail(mx_hosts["tls"], rcpt)
    assert received.tls and b"Secret" in received.content


def test_pickup_mode_stores_even_when_the_domain_has_tls(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@patients.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Appointment", "Tuesday 9am"))
    stored_pickups(gateway, rcpt)
    notification = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"Tuesday" not in notification.content


def test_recipients_of_one_message_are_routed_each_by_their_domain(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    tls_rcpt, plain_rcpt = f"{unique}@tls.test", f"{unique}@plain.test"
    message = make_message("doctor@clinic.test", tls_rcpt, "[secure] Both", "Shared secret")
    gateway.send(message, recipients=[tls_rcpt, plain_rcpt])
    assert b"Shared secret" in wait_for_mail(mx_hosts["tls"], tls_rcpt).content
    stored_pickups(gateway, plain_rcpt)
    assert b"Shared secret" not in wait_for_mail(mx_hosts["plain"], plain_rcpt).content
