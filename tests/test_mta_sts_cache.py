"""The MTA-STS negative cache and the proactive refresh, over real sockets: TXT records in
the loopback DNS, policies from the loopback HTTPS server, a real store (SQLite) and the
resolver driven by a clock the test moves. What the HTTPS server was asked is the proof."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dns.asyncresolver
import pytest
import trustme

from gateway.delivery.mx import make_resolver
from gateway.storage.store import Store
from gateway.tls.mta_sts import MTASTSResolver, STSCache, STSLookup, STSMode, STSStatus
from tests.fakes.certs import make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.ports import free_port

HTTPS_IP = "127.0.0.81"
DOMAIN = "negative.test"
POLICY_HOST = f"mta-sts.{DOMAIN}"
FIRST, LONGEST = 300.0, 1200.0


def policy(max_age: int = 1000) -> str:
    return f"version: STSv1\nmode: enforce\nmx: mx.{DOMAIN}\nmax_age: {max_age}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class World:
    def __init__(self, zone: FakeDNS, https: FakeHTTPS, store: Store, clock: Clock,
                 ca_file: str) -> None:
        self.zone, self.https, self.store, self.clock = zone, https, store, clock
        resolver: dns.asyncresolver.Resolver = make_resolver([zone.nameserver], timeout=2.0)
        resolver.cache = None  # the tests change records within their TTL
        self.resolver = MTASTSResolver(resolver, STSCache(store, clock=clock),
                                       https_port=https.port, ca_file=ca_file, clock=clock,
                                       timeout=5, retry_first=FIRST, retry_max=LONGEST)

    def publish(self, text: str | None, policy_id: str = "id1", status: int = 200) -> None:
        self.zone.clear()
        self.zone.add(f"_mta-sts.{DOMAIN}", "TXT", f'"v=STSv1; id={policy_id};"')
        self.zone.add(POLICY_HOST, "A", HTTPS_IP)
        self.https.serve_policy(DOMAIN, text or "broken\n", status=status)

    def lookup(self) -> STSLookup:
        return asyncio.run(self.resolver.lookup(DOMAIN))

    def refresh(self) -> int:
        return asyncio.run(self.resolver.refresh_due())

    @property
    def fetches(self) -> int:
        return len(self.https.requests_for(POLICY_HOST))


@pytest.fixture(scope="module")
def sts_ca() -> trustme.CA:
    return make_ca()


@pytest.fixture(scope="module")
def https(sts_ca: trustme.CA) -> Iterator[FakeHTTPS]:
    with FakeHTTPS(HTTPS_IP, free_port(HTTPS_IP), sts_ca) as server:
        yield server


@pytest.fixture
def world(https: FakeHTTPS, sts_ca: trustme.CA, tmp_path: Path) -> Iterator[World]:
    clock = Clock()
    store = Store(tmp_path / "var", clock=clock)
    https.clear_log()
    with FakeDNS() as zone:
        try:
            yield World(zone, https, store, clock,
                        str(write_ca_pem(sts_ca, tmp_path / "ca.pem")))
        finally:
            store.close()


def test_a_failed_fetch_is_not_repeated_for_every_delivery(world: World) -> None:
    world.publish(None, status=500)
    results = [world.lookup() for _ in range(4)]
    assert world.fetches == 1
    assert {r.status for r in results} == {STSStatus.FETCH_FAILED}
    assert "not fetched again before" in results[-1].detail
    assert "HTTP 500" in results[-1].detail


def test_failed_fetches_are_retried_with_a_growing_back_off_up_to_its_limit(
        world: World) -> None:
    world.publish(None, status=500)
    world.lookup()
    fetched_at = []
    for _ in range(10):
        world.clock.now += FIRST
        world.lookup()
        fetched_at.append(world.fetches)
    # retries after 300, 600, 1200 and then every 1200 s: at steps 1, 3, 7 and 11
    assert fetched_at == [2, 2, 3, 3, 3, 3, 4, 4, 4, 4]


def test_a_fetch_that_works_again_clears_the_negative_cache(world: World) -> None:
    world.publish(None, status=500)
    world.lookup()
    world.publish(policy())
    world.clock.now += FIRST
    found = world.lookup()
    assert found.status is STSStatus.FOUND and found.policy is not None
    assert world.store.sts_failure(DOMAIN) is None


def test_a_new_policy_id_is_fetched_at_once_despite_failed_fetches(world: World) -> None:
    world.publish(None, status=500)
    world.lookup()
    world.publish(policy(), policy_id="id2")
    assert world.lookup().status is STSStatus.FOUND
    assert world.fetches == 2


def test_a_cached_policy_keeps_applying_while_its_successor_cannot_be_fetched(
        world: World) -> None:
    world.publish(policy(86400))
    world.lookup()
    world.publish(None, policy_id="id2", status=503)
    results = [world.lookup() for _ in range(3)]
    assert world.fetches == 2
    assert all(r.policy is not None and r.policy.mode is STSMode.ENFORCE for r in results)


def test_a_policy_is_refreshed_once_three_quarters_of_its_max_age_have_passed(
        world: World) -> None:
    world.publish(policy(1000))
    world.lookup()
    world.clock.now += 700
    assert world.refresh() == 0 and world.fetches == 1
    world.clock.now += 50
    assert world.refresh() == 1 and world.fetches == 2
    cached = world.store.get_sts_policy(DOMAIN)
    assert cached is not None and cached.fetched == world.clock.now


def test_a_refreshed_policy_outlives_the_first_fetch_without_a_delivery_fetching_it(
        world: World) -> None:
    world.publish(policy(1000))
    world.lookup()
    world.clock.now += 800
    world.refresh()
    world.clock.now += 400  # past the first fetch's expiry
    found = world.lookup()
    assert found.detail == "cached policy id id1" and world.fetches == 2


def test_a_refresh_picks_up_a_changed_policy(world: World) -> None:
    world.publish(policy(1000))
    world.lookup()
    world.publish(policy(2000), policy_id="id2")
    world.clock.now += 800
    world.refresh()
    cached = world.store.get_sts_policy(DOMAIN)
    assert cached is not None and (cached.policy_id, cached.max_age) == ("id2", 2000)


def test_a_refresh_that_fails_keeps_the_cached_policy_and_backs_off(world: World) -> None:
    world.publish(policy(1000))
    world.lookup()
    world.publish(None, status=500)
    world.clock.now += 800
    assert world.refresh() == 0
    assert world.refresh() == 0
    assert world.fetches == 2
    cached = world.store.get_sts_policy(DOMAIN)
    assert cached is not None and cached.policy_id == "id1"


def test_a_policy_whose_txt_record_is_gone_is_not_refreshed(world: World) -> None:
    world.publish(policy(1000))
    world.lookup()
    world.zone.set_rcode(f"_mta-sts.{DOMAIN}", "NXDOMAIN")
    world.clock.now += 800
    assert world.refresh() == 0 and world.fetches == 1
    assert world.store.get_sts_policy(DOMAIN) is not None
