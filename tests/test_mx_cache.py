"""MX results are kept for the TTL of their records: a domain delivered to again within it
costs no DNS query, one whose records expired is looked up again, and a failed look-up is
never kept."""

from __future__ import annotations

import asyncio
import time

from gateway.delivery.mx import LookupStatus, MXResolver, make_resolver
from tests.fakes.dns_server import FakeDNS


def queries_for(fake_dns: FakeDNS, domain: str) -> int:
    return sum(1 for name, _ in fake_dns.queries if name.endswith(domain))


def lookup_twice(resolver: MXResolver, domain: str, pause: float = 0.0) -> list[LookupStatus]:
    async def both() -> list[LookupStatus]:
        first = await resolver.lookup(domain)
        await asyncio.sleep(pause)
        return [first.status, (await resolver.lookup(domain)).status]

    return asyncio.run(both())


def test_a_domain_looked_up_again_within_its_ttl_costs_no_query(
        fake_dns: FakeDNS, unique: str) -> None:
    domain = f"{unique}.cached.test"
    fake_dns.add(domain, "MX", f"10 mx.{domain}.")
    fake_dns.add(f"mx.{domain}", "A", "127.0.0.9")
    resolver = MXResolver(make_resolver([fake_dns.nameserver]))
    assert lookup_twice(resolver, domain) == [LookupStatus.OK, LookupStatus.OK]
    assert queries_for(fake_dns, domain) == 3  # MX, A, AAAA: once


def test_a_domain_whose_records_expired_is_looked_up_again(
        fake_dns: FakeDNS, unique: str) -> None:
    domain = f"{unique}.expiring.test"
    fake_dns.add(domain, "MX", f"10 mx.{domain}.", ttl=1)
    fake_dns.add(f"mx.{domain}", "A", "127.0.0.9")
    resolver = MXResolver(make_resolver([fake_dns.nameserver]))
    started = time.monotonic()
    assert lookup_twice(resolver, domain, pause=1.2) == [LookupStatus.OK, LookupStatus.OK]
    assert time.monotonic() - started >= 1.2
    assert (domain, "MX") in fake_dns.queries
    assert fake_dns.queries.count((domain, "MX")) == 2


def test_a_failed_lookup_is_asked_again(fake_dns: FakeDNS, unique: str) -> None:
    domain = f"{unique}.failing.test"
    fake_dns.set_rcode(domain, "SERVFAIL")
    resolver = MXResolver(make_resolver([fake_dns.nameserver], timeout=1.0))
    assert lookup_twice(resolver, domain) == [LookupStatus.TEMPORARY, LookupStatus.TEMPORARY]
    assert fake_dns.queries.count((domain, "MX")) >= 2
