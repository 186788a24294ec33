"""What deliveries teach the TLS cache: written when a host's TLS facts change, not again
for every message that finds them unchanged. Real deliveries (fake DNS, a FakeMX with
STARTTLS), a real store; the cache is read through TLSCache, not SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.delivery.deliverer import REQUIREMENT_FOR_MODE, Deliverer, DeliverySettings, Outcome
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.storage.store import Store
from gateway.tls.knowledge import TLSCache
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port

IP = "127.0.0.76"
DOMAIN, HOST = "learning.test", "mx.learning.test"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FakeMX, FakeDNS, TLSCache, Clock]]:
    clock = Clock()
    store = Store(tmp_path / "var", clock=clock)
    with FakeDNS() as dns, FakeMX(IP, free_port(IP), name=HOST,
                                  tls_cert=leaf(make_ca(), HOST)) as mx:
        dns.add(DOMAIN, "MX", f"10 {HOST}.")
        dns.add(HOST, "A", IP)
        try:
            yield mx, dns, TLSCache(store, ttl=3600), clock
        finally:
            store.close()


def deliver_twice(world: tuple[FakeMX, FakeDNS, TLSCache, Clock], new_connection: bool,
                  between: float) -> list[Outcome]:
    """Two deliveries to DOMAIN BETWEEN seconds apart (store clock), the second on a new
    connection when NEW_CONNECTION (so it sees what the host offers then)."""
    mx, dns, cache, clock = world

    async def run() -> list[Outcome]:
        deliverer = Deliverer(MXResolver(make_resolver([dns.nameserver], timeout=2.0)),
                              DeliverySettings(port=mx.port, timeout=10), tls_cache=cache)
        try:
            outcomes = []
            for index in range(2):
                result = await deliverer.deliver(DOMAIN, "s@clinic.test", [f"r{index}@{DOMAIN}"],
                                                 b"Subject: x\r\n\r\nhi\r\n",
                                                 REQUIREMENT_FOR_MODE["opportunistic"])
                outcomes.append(result.outcome)
                clock.now += between
                if new_connection:
                    await deliverer.pool.close_all()
                    mx.offer_starttls = False
            return outcomes
        finally:
            await deliverer.close()

    return asyncio.run(run())


def test_unchanged_tls_facts_are_not_rewritten_for_every_message(
        world: tuple[FakeMX, FakeDNS, TLSCache, Clock]) -> None:
    first_seen = world[3].now
    assert deliver_twice(world, new_connection=False, between=10) == [Outcome.DELIVERED] * 2
    known = world[2].fresh(DOMAIN)[HOST]
    assert known.starttls and known.seen == first_seen


def test_changed_tls_facts_are_written_at_once(
        world: tuple[FakeMX, FakeDNS, TLSCache, Clock]) -> None:
    second_seen = world[3].now + 10
    assert deliver_twice(world, new_connection=True, between=10) == [Outcome.DELIVERED] * 2
    known = world[2].fresh(DOMAIN)[HOST]
    assert not known.starttls and known.seen == second_seen
