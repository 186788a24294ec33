"""Downgrade detection end to end: a real `sealgate serve` (SQLite and PostgreSQL), fake MX
hosts that stop offering STARTTLS, or start presenting a certificate no CA vouches for,
between two deliveries, and the alert arriving at the admins' own fake MX."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import trustme

from tests.conftest import assert_no_mail, make_message, wait_for_mail
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import opened_storage, queued_status, stored_pickups

ALERTS_IP = "127.0.0.83"
ALERTS_TO = "postmaster@alerts-e2e.test"
HOLD = 6.0


@pytest.fixture(scope="module")
def alerts_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    fake_dns.add("alerts-e2e.test", "MX", "10 mx.alerts-e2e.test.")
    fake_dns.add("mx.alerts-e2e.test", "A", ALERTS_IP)
    with FakeMX(ALERTS_IP, mx_port, name="mx.alerts-e2e.test") as host:
        yield host


@pytest.fixture
def alerts_mx(alerts_host: FakeMX) -> FakeMX:
    """The admins' MX, with no alert of an earlier test (or back-end) in it."""
    alerts_host.clear()
    return alerts_host


@pytest.fixture(scope="module")
def guarded_gateway(gateway_settings: GatewaySettings, alerts_host: FakeMX,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    extra = {**gateway_settings.extra,
             "delivery": {**gateway_settings.extra.get("delivery", {}),
                          "downgrade_hold": f"{HOLD:g}s"},
             "alerts": {"to": ALERTS_TO}}
    process = GatewayProcess(tmp_path_factory.mktemp("guarded"),
                             dataclasses.replace(gateway_settings, extra=extra))
    process.start()
    yield process
    process.stop()


def host_for(fake_dns: FakeDNS, mx_port: int, ca: trustme.CA, ip: str, scenario: str) -> FakeMX:
    """A fresh MX host with a certificate the gateway trusts, for SCENARIO.test."""
    name = f"mx.{scenario}.test"
    fake_dns.add(f"{scenario}.test", "MX", f"10 {name}.")
    fake_dns.add(name, "A", ip)
    return FakeMX(ip, mx_port, name=name, tls_cert=leaf(ca, name))


def restart(mx: FakeMX, **changes: object) -> None:
    """Drop every connection (the gateway's pooled ones too) and come back changed."""
    mx.stop()
    for key, value in changes.items():
        setattr(mx, key, value)
    mx.start()


def alerts_about(alerts_mx: FakeMX, host: str) -> list[bytes]:
    subject = f"Subject: Sealgate: TLS downgrade at {host} ".encode()
    return [m.content for m in alerts_mx.messages if subject in m.content]


def wait_for_alert(alerts_mx: FakeMX, host: str, timeout: float = 30.0) -> bytes:
    deadline = time.monotonic() + timeout
    while not (found := alerts_about(alerts_mx, host)):
        assert time.monotonic() < deadline, f"no downgrade alert about {host}"
        time.sleep(0.05)
    return found[0]


def deferred_reply(gateway: GatewayProcess, rcpt: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    with opened_storage(gateway.storage_dir) as storage:
        while time.monotonic() < deadline:
            found = queued_status(storage, rcpt)
            if found is not None and found.state == "deferred":
                return found.last_reply
            time.sleep(0.05)
    raise AssertionError(f"{rcpt} never deferred:\n{gateway.log_tail()}")


def test_ordinary_mail_waits_out_the_hold_then_goes_in_plaintext_with_one_alert(
        guarded_gateway: GatewayProcess, alerts_mx: FakeMX, fake_dns: FakeDNS, mx_port: int,
        ca: trustme.CA, unique: str) -> None:
    with host_for(fake_dns, mx_port, ca, "127.0.0.82", "stripped-e2e") as mx:
        first, second, third = (f"{unique}-{n}@stripped-e2e.test" for n in range(3))
        guarded_gateway.send(make_message("doctor@clinic.test", first, "Before"))
        assert wait_for_mail(mx, first).tls
        restart(mx, offer_starttls=False)
        held_from = time.monotonic()
        guarded_gateway.send(make_message("doctor@clinic.test", second, "After"))
        guarded_gateway.send(make_message("doctor@clinic.test", third, "After, too"))
        assert "TLS downgrade" in deferred_reply(guarded_gateway, second)
        assert_no_mail(mx, second)
        alert = wait_for_alert(alerts_mx, mx.name)
        assert b"sealgate tls forget mx.stripped-e2e.test" in alert
        received = wait_for_mail(mx, second, timeout=HOLD + 30)
        assert not received.tls and time.monotonic() - held_from >= HOLD - 1
        wait_for_mail(mx, third, timeout=30)
        assert len(alerts_about(alerts_mx, mx.name)) == 1


def test_confidential_mail_to_a_host_that_dropped_starttls_goes_to_pickup(
        guarded_gateway: GatewayProcess, fake_dns: FakeDNS, mx_port: int, ca: trustme.CA,
        unique: str) -> None:
    with host_for(fake_dns, mx_port, ca, "127.0.0.84", "dropped-e2e") as mx:
        before, after = f"{unique}-a@dropped-e2e.test", f"{unique}-b@dropped-e2e.test"
        guarded_gateway.send(make_message("doctor@clinic.test", before, "Ordinary"))
        assert wait_for_mail(mx, before).tls
        restart(mx, offer_starttls=False)
        guarded_gateway.send(make_message("doctor@clinic.test", after, "[secure] Results",
                                          "Secret"))
        stored_pickups(guarded_gateway, after)
        assert_no_mail(mx, after)


def test_confidential_mail_to_a_host_whose_certificate_stopped_verifying_goes_to_pickup(
        guarded_gateway: GatewayProcess, alerts_mx: FakeMX, fake_dns: FakeDNS, mx_port: int,
        ca: trustme.CA, unique: str) -> None:
    with host_for(fake_dns, mx_port, ca, "127.0.0.85", "recert-e2e") as mx:
        before, after = f"{unique}-a@recert-e2e.test", f"{unique}-b@recert-e2e.test"
        guarded_gateway.send(make_message("doctor@clinic.test", before, "[secure] One", "x"))
        assert wait_for_mail(mx, before).tls
        restart(mx, tls_cert=leaf(make_ca(), mx.name))
        guarded_gateway.send(make_message("doctor@clinic.test", after, "[secure] Two", "y"))
        stored_pickups(guarded_gateway, after)
        assert_no_mail(mx, after)
        assert b"(certificate)" in wait_for_alert(alerts_mx, mx.name)
