"""End to end (issue 14, "Senders"): when the notification of a stored message bounces, or
is still deferred at delivery.delay_warning, the original sender gets one report saying
the message is stored but the recipient has not been told; a delivered notification is
written down as notified. Real gateway processes, fake MX hosts, both storage back-ends."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from tests.conftest import POLICY_HTTPS_IP, assert_no_mail, make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings

REFUSING_IP, DEFERRING_IP = "127.0.0.86", "127.0.0.87"
DELAY_WARNING = 3.0  # seconds, for the gateway whose notifications are deferred


@pytest.fixture(scope="module")
def refusing_mx(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    """No STARTTLS (confidential mail is stored for pickup), and every recipient unknown."""
    fake_dns.add("unknown-users.test", "MX", "10 mx.unknown-users.test.")
    fake_dns.add("mx.unknown-users.test", "A", REFUSING_IP)
    with FakeMX(REFUSING_IP, mx_port, name="mx.unknown-users.test", offer_starttls=False,
                rcpt_reply="550 5.1.1 <nobody> no such user") as host:
        yield host


@pytest.fixture(scope="module")
def deferring_mx(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    """No STARTTLS, and every recipient asked to come back later."""
    fake_dns.add("busy-users.test", "MX", "10 mx.busy-users.test.")
    fake_dns.add("mx.busy-users.test", "A", DEFERRING_IP)
    with FakeMX(DEFERRING_IP, mx_port, name="mx.busy-users.test", offer_starttls=False,
                rcpt_reply="451 4.7.5 come back later") as host:
        yield host


@pytest.fixture(scope="module")
def strict_sts_domain(fake_dns: FakeDNS, policy_https: FakeHTTPS) -> str:
    """A domain enforcing an MTA-STS policy its own MX fails: its certificate is for another
    name. Confidential mail to it is stored; its notification cannot be sent either."""
    domain = "sts-unnotified.test"
    fake_dns.add(domain, "MX", "10 mx.bad-cert.test.")
    fake_dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20261202;"')
    fake_dns.add(f"mta-sts.{domain}", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy(domain, "version: STSv1\nmode: enforce\nmx: mx.bad-cert.test\n"
                                      "max_age: 86400\n")
    return domain


@pytest.fixture(scope="module")
def warning_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway that warns about deferred mail after DELAY_WARNING seconds."""
    delivery = {**gateway_settings.extra.get("delivery", {}),
                "delay_warning": f"{DELAY_WARNING:.0f}s"}
    settings = dataclasses.replace(gateway_settings,
                                   extra={**gateway_settings.extra, "delivery": delivery})
    process = GatewayProcess(tmp_path_factory.mktemp("warning-gateway"), settings)
    process.start()
    yield process
    process.stop()


def confidential(sender: str, rcpt: str) -> EmailMessage:
    return make_message(sender, rcpt, "[secure] Lab results", "Hemoglobin 14.2, confidential")


def delivery_status(raw: bytes) -> dict[str, str]:
    report = email.message_from_bytes(raw, policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    fields: dict[str, str] = {}
    for block in status.get_payload():
        fields.update({k: str(v) for k, v in block.items()})
    return fields


def audit_events(gateway: GatewayProcess, rcpt: str, event: str,
                 timeout: float = 30.0) -> list[dict[str, str]]:
    """The audit events EVENT of RCPT's stored copy, once there is one."""
    deadline = time.monotonic() + timeout
    while True:
        listed = json.loads(gateway.cli("pickup", "list", "--recipient", rcpt, "--json").stdout)
        if listed:
            shown = gateway.cli("pickup", "audit", listed[0]["id"], "--json").stdout
            found = [e for e in json.loads(shown or "[]") if e["event"] == event]
            if found:
                return found
        assert time.monotonic() < deadline, f"no {event} for {rcpt}: {gateway.log_tail()}"
        time.sleep(0.2)


def reports_to(mx: FakeMX, sender: str) -> list[bytes]:
    return [m.content for m in mx.messages if sender in m.rcpt_tos]


def test_a_bounced_notification_tells_the_sender_the_message_is_stored(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_mx: FakeMX,
        storage_backend: str, unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@unknown-users.test"
    gateway.send(confidential(sender, rcpt))
    report = wait_for_mail(mx_hosts["relay"], sender)
    assert report.mail_from == "<>"
    fields = delivery_status(report.content)
    assert fields["Final-Recipient"] == f"rfc822; {rcpt}"
    assert (fields["Action"], fields["Status"]) == ("failed", "5.1.1")
    assert b"stored securely for pickup" in report.content
    assert b"has NOT been told" in report.content


def test_the_report_carries_nothing_of_the_confidential_message(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_mx: FakeMX,
        storage_backend: str, unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@unknown-users.test"
    gateway.send(confidential(sender, rcpt))
    report = wait_for_mail(mx_hosts["relay"], sender).content
    assert b"Hemoglobin" not in report and b"Lab results" not in report


def test_a_bounced_notification_is_in_the_copys_audit_trail(
        gateway: GatewayProcess, refusing_mx: FakeMX, storage_backend: str,
        unique: str) -> None:
    rcpt = f"{unique}@unknown-users.test"
    gateway.send(confidential(f"{unique}@relay.test", rcpt))
    [event] = audit_events(gateway, rcpt, "notification-failed")
    assert "5.1.1" in event["detail"]


def test_a_delivered_notification_is_recorded_and_the_sender_hears_nothing(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], storage_backend: str,
        unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@plain.test"  # no STARTTLS: stored
    gateway.send(confidential(sender, rcpt))
    wait_for_mail(mx_hosts["plain"], rcpt)  # the notification
    audit_events(gateway, rcpt, "notified")
    time.sleep(2)  # a report, had one been queued with the outcome, would have arrived by now
    assert_no_mail(mx_hosts["relay"], sender)


def test_a_notification_deferred_past_the_delay_warning_tells_the_sender_once(
        warning_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], deferring_mx: FakeMX,
        storage_backend: str, unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@busy-users.test"
    warning_gateway.send(confidential(sender, rcpt))
    report = wait_for_mail(mx_hosts["relay"], sender, timeout=DELAY_WARNING + 30)
    fields = delivery_status(report.content)
    assert (fields["Action"], fields["Status"]) == ("delayed", "4.7.5")
    assert b"is still being retried" in report.content
    time.sleep(3 * DELAY_WARNING)  # more attempts, each deferred again (retry_max is 2 s)
    assert len(reports_to(mx_hosts["relay"], sender)) == 1
    assert len(audit_events(warning_gateway, rcpt, "notification-delayed")) == 1


def test_a_notification_held_back_by_the_recipients_mta_sts_policy_tells_the_sender(
        warning_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], strict_sts_domain: str,
        storage_backend: str, unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@{strict_sts_domain}"
    warning_gateway.send(confidential(sender, rcpt))
    report = wait_for_mail(mx_hosts["relay"], sender, timeout=DELAY_WARNING + 30)
    fields = delivery_status(report.content)
    assert fields["Final-Recipient"] == f"rfc822; {rcpt}" and fields["Action"] == "delayed"
    assert b"has NOT been told" in report.content
    assert_no_mail(mx_hosts["bad-cert"], rcpt)  # neither the message nor its notification
