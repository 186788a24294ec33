"""Downgrade detection in real deliveries: a FakeMX that stops offering STARTTLS (or starts
presenting a certificate that does not verify) between two deliveries, the loopback DNS, a
real store (SQLite) on a clock the test moves, and alerts queued in that store's queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from prometheus_client import REGISTRY

from gateway.delivery.deliverer import (
    REQUIREMENT_FOR_MODE,
    Deliverer,
    DeliverySettings,
    DomainResult,
    Outcome,
)
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.storage.store import Store
from gateway.tls.downgrade import DowngradeGuard, DowngradeSettings
from gateway.tls.downgrade_alert import DowngradeMailer
from tests.fakes.certs import leaf, make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

IP = "127.0.0.77"
DOMAIN, HOST = "downgrade.test", "mx.downgrade.test"
ALERTS = "postmaster@org.test"
WINDOW, HOLD = 30 * 86400.0, 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    mx: FakeMX
    dns: FakeDNS
    store: Store
    clock: Clock
    ca_file: Path
    trusted: trustme.LeafCert
    untrusted: trustme.LeafCert

    def deliver(self, mode: str = "opportunistic", rcpt: str = f"r@{DOMAIN}") -> DomainResult:
        """One delivery on a new connection (so it sees what the host offers now)."""
        async def run() -> DomainResult:
            guard = DowngradeGuard(self.store, DowngradeSettings(WINDOW, HOLD),
                                   DowngradeMailer(self.store, to=ALERTS,
                                                   alert_from="sealgate@org.test",
                                                   gateway="gw.org.test"))
            deliverer = Deliverer(MXResolver(make_resolver([self.dns.nameserver], timeout=2.0)),
                                  DeliverySettings(port=self.mx.port, timeout=10,
                                                   ca_file=str(self.ca_file)),
                                  dane=False, downgrade=guard)
            try:
                return await deliverer.deliver(DOMAIN, "s@org.test", [rcpt],
                                               b"Subject: x\r\n\r\nhi\r\n",
                                               REQUIREMENT_FOR_MODE[mode])
            finally:
                await deliverer.close()

        return asyncio.run(run())

    def alerts(self) -> list[bytes]:
        return [self.store.read_spool(m.id) for m in self.store.messages_to(ALERTS)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    store = Store(tmp_path / "var", clock=clock)
    ca = make_ca()
    trusted, untrusted = leaf(ca, HOST), leaf(make_ca(), HOST)
    with FakeDNS() as dns, FakeMX(IP, free_port(IP), name=HOST, tls_cert=trusted) as mx:
        dns.add(DOMAIN, "MX", f"10 {HOST}.")
        dns.add(HOST, "A", IP)
        try:
            yield World(mx, dns, store, clock, write_ca_pem(ca, tmp_path / "ca.pem"), trusted,
                        untrusted)
        finally:
            store.close()


def test_ordinary_mail_waits_when_a_host_that_did_starttls_offers_none(world: World) -> None:
    assert world.deliver().outcome is Outcome.DELIVERED
    world.mx.offer_starttls = False
    world.clock.now += 600
    result = world.deliver()
    assert result.outcome is Outcome.TEMPORARY
    assert "TLS downgrade" in result.reply and "waits until" in result.reply
    assert len(world.mx.messages) == 1


def test_ordinary_mail_goes_in_plaintext_once_the_hold_is_over(world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    world.clock.now += 600
    assert world.deliver().outcome is Outcome.TEMPORARY
    world.clock.now += HOLD
    assert world.deliver().outcome is Outcome.DELIVERED
    assert not world.mx.messages[-1].tls


def test_the_hold_runs_from_the_first_downgraded_sighting(world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    world.deliver()
    world.clock.now += HOLD - 1
    assert world.deliver().outcome is Outcome.TEMPORARY
    world.clock.now += 1
    assert world.deliver().outcome is Outcome.DELIVERED


def test_confidential_mail_never_goes_to_a_host_whose_certificate_stopped_verifying(
        world: World) -> None:
    assert world.deliver("require-tls").outcome is Outcome.DELIVERED
    world.mx.tls_cert = world.untrusted
    world.clock.now += 86400
    result = world.deliver("require-tls")
    assert result.outcome is Outcome.TLS_UNAVAILABLE
    assert result.tls_reason == "cert-not-verified"
    assert "certificate that verified" in result.attempts[-1].reply
    assert len(world.mx.messages) == 1


def test_confidential_mail_still_avoids_the_host_after_the_hold(world: World) -> None:
    world.deliver("require-tls")
    world.mx.tls_cert = world.untrusted
    world.deliver("require-tls")
    world.clock.now += HOLD * 5
    assert world.deliver("require-tls").outcome is Outcome.TLS_UNAVAILABLE


def test_ordinary_mail_waits_when_the_certificate_stopped_verifying(world: World) -> None:
    world.deliver()
    world.mx.tls_cert = world.untrusted
    assert world.deliver().outcome is Outcome.TEMPORARY


def test_a_host_never_seen_with_starttls_gets_ordinary_mail_at_once(world: World) -> None:
    world.mx.offer_starttls = False
    assert world.deliver().outcome is Outcome.DELIVERED
    assert world.alerts() == []


def test_a_host_whose_certificate_never_verified_gets_mail_as_before(world: World) -> None:
    world.mx.tls_cert = world.untrusted
    assert world.deliver().outcome is Outcome.DELIVERED
    assert world.deliver("require-tls").outcome is Outcome.DELIVERED


def test_starttls_seen_longer_ago_than_the_window_is_no_longer_held_against_a_host(
        world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    world.clock.now += WINDOW + 1
    assert world.deliver().outcome is Outcome.DELIVERED


def test_a_host_offering_starttls_again_ends_the_downgrade(world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    world.deliver()
    world.mx.offer_starttls = True
    world.clock.now += 60
    assert world.deliver().outcome is Outcome.DELIVERED
    world.mx.offer_starttls = False
    world.clock.now += HOLD  # a new downgrade: its own hold, from now
    assert world.deliver().outcome is Outcome.TEMPORARY


def test_forgetting_a_host_lets_its_mail_go_at_once(world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    assert world.deliver().outcome is Outcome.TEMPORARY
    assert world.store.forget_host(HOST)
    assert world.deliver().outcome is Outcome.DELIVERED


def test_one_alert_is_queued_per_host_and_day(world: World) -> None:
    world.deliver()
    world.mx.offer_starttls = False
    for _ in range(3):
        world.deliver()
    [alert] = world.alerts()
    assert f"Subject: Sealgate: TLS downgrade at {HOST} (no-starttls)".encode() in alert
    assert f"sealgate tls forget {HOST}".encode() in alert
    world.clock.now += 86400
    world.deliver()
    assert len(world.alerts()) == 2


def test_an_alert_is_logged_and_counted(world: World, caplog: pytest.LogCaptureFixture) -> None:
    def count() -> float:
        return REGISTRY.get_sample_value("sealgate_tls_downgrades_total",
                                         {"kind": "no-starttls"}) or 0.0

    before = count()
    world.deliver()
    world.mx.offer_starttls = False
    with caplog.at_level(logging.WARNING, logger="sealgate.tls"):
        world.deliver()
        world.deliver()
    assert [r.getMessage() for r in caplog.records if "TLS downgrade" in r.getMessage()] == [
        caplog.records[0].getMessage()]
    assert HOST in caplog.records[0].getMessage()
    assert getattr(caplog.records[0], "event", None) == "tls-downgrade"
    assert count() == before + 1


def test_a_certificate_refused_by_a_verifying_session_is_a_downgrade_too(world: World) -> None:
    assert world.deliver("require-verified-tls").outcome is Outcome.DELIVERED
    world.mx.tls_cert = world.untrusted
    assert world.deliver("require-verified-tls").outcome is Outcome.TLS_UNAVAILABLE
    [alert] = world.alerts()
    assert f"TLS downgrade at {HOST} (certificate)".encode() in alert
    assert world.deliver().outcome is Outcome.TEMPORARY  # ordinary mail: held
