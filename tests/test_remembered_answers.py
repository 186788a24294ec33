"""The resolver remembers what its cache holds: a name asked for again while dnspython's
cache keeps its answer (or its "no such name") costs no query and gives the same result;
an expired answer is asked for again; a resolver without a cache asks every time; and a
copy with other flags (the DNSSEC resolver) never answers from the original's memory."""

from __future__ import annotations

import asyncio
import copy
import time

import dns.asyncresolver
import dns.resolver
import pytest

from gateway.delivery.mx import make_resolver
from tests.fakes.dns_server import FakeDNS


def asked(fake_dns: FakeDNS, name: str) -> int:
    return sum(1 for queried, _ in fake_dns.queries if queried == name)


def texts(resolver: dns.asyncresolver.Resolver, name: str) -> list[bytes]:
    answer = asyncio.run(resolver.resolve(name, "TXT"))
    return [b"".join(r.strings) for r in answer]


def test_an_answer_asked_for_again_within_its_ttl_costs_no_query(
        fake_dns: FakeDNS, unique: str) -> None:
    name = f"{unique}.remembered.test"
    fake_dns.add(name, "TXT", '"v=STSv1; id=1"')
    resolver = make_resolver([fake_dns.nameserver])
    assert texts(resolver, name) == texts(resolver, name) == [b"v=STSv1; id=1"]
    assert asked(fake_dns, name) == 1


def test_no_such_name_asked_for_again_is_still_no_such_name_without_a_query(
        fake_dns: FakeDNS, unique: str) -> None:
    name = f"_mta-sts.{unique}.absent.test"
    resolver = make_resolver([fake_dns.nameserver])
    for _ in range(2):
        with pytest.raises(dns.resolver.NXDOMAIN):
            texts(resolver, name)
    assert asked(fake_dns, name) == 1


def test_an_answer_whose_ttl_ran_out_is_asked_for_again(
        fake_dns: FakeDNS, unique: str) -> None:
    name = f"{unique}.short.test"
    fake_dns.add(name, "TXT", '"first"', ttl=1)
    resolver = make_resolver([fake_dns.nameserver])
    texts(resolver, name)
    time.sleep(1.2)
    texts(resolver, name)
    assert asked(fake_dns, name) == 2


def test_a_resolver_without_a_cache_asks_every_time(fake_dns: FakeDNS, unique: str) -> None:
    name = f"{unique}.uncached.test"
    fake_dns.add(name, "TXT", '"x"')
    resolver = make_resolver([fake_dns.nameserver])
    resolver.cache = None
    texts(resolver, name)
    texts(resolver, name)
    assert asked(fake_dns, name) == 2


def test_a_copy_of_the_resolver_does_not_answer_from_the_originals_memory(
        fake_dns: FakeDNS, unique: str) -> None:
    name = f"{unique}.copied.test"
    fake_dns.add(name, "TXT", '"x"')
    original = make_resolver([fake_dns.nameserver])
    texts(original, name)
    twin = copy.copy(original)
    twin.cache = dns.resolver.Cache()
    texts(twin, name)
    assert asked(fake_dns, name) == 2
