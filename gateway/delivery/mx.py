"""MX resolution for delivery: preference order, implicit MX, null MX (RFC 7505).

Outcomes are verdicts (an enum), not exceptions, so the delivery stage can map each
to retry, bounce or deliver without guessing.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from gateway.config import parse_hostport


class LookupStatus(enum.Enum):
    OK = "ok"
    NULL_MX = "null-mx"        # domain accepts no mail: permanent
    NO_SUCH_DOMAIN = "nxdomain"  # permanent
    NO_MAIL_HOSTS = "no-hosts"   # no MX and no address records: permanent
    TEMPORARY = "tempfail"       # SERVFAIL, timeout: retry later


@dataclass(frozen=True)
class MXHost:
    name: str
    preference: int
    addresses: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MXLookup:
    status: LookupStatus
    hosts: list[MXHost] = field(default_factory=list)
    detail: str = ""


def make_resolver(nameservers: list[str], timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """A resolver using NAMESERVERS ("ip" or "ip:port"), or the system's when empty."""
    if not nameservers:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_hostport(ns, "dns.nameservers", 53))
            for ns in nameservers
        ]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    resolver.cache = dns.resolver.Cache()  # MX, A and _mta-sts answers, for their TTLs
    return resolver


class MXResolver:
    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver

    async def addresses(self, name: str) -> list[str]:
        """IPv4 then IPv6 addresses of NAME; empty when it has none."""
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(name, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            found += [r.to_text() for r in answer]
        return found

    async def lookup(self, domain: str) -> MXLookup:
        try:
            return await self._lookup(domain)
        except dns.resolver.NXDOMAIN:
            return MXLookup(LookupStatus.NO_SUCH_DOMAIN, detail=f"{domain}: no such domain")
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout) as exc:
            return MXLookup(LookupStatus.TEMPORARY, detail=f"{domain}: DNS lookup failed: {exc}")

    async def _lookup(self, domain: str) -> MXLookup:
        try:
            answer = await self.resolver.resolve(domain, "MX")
            records = [(r.preference, r.exchange.to_text().rstrip(".")) for r in answer]
        except dns.resolver.NoAnswer:
            return await self._implicit_mx(domain)
        if any(name in ("", ".") for _, name in records) or records == [(0, "")]:
            return MXLookup(LookupStatus.NULL_MX, detail=f"{domain} publishes a null MX: no mail")
        hosts = [MXHost(name, pref, await self._addresses_or_none(name))
                 for pref, name in _ordered(records)]
        hosts = [h for h in hosts if h.addresses]
        if not hosts:
            return MXLookup(LookupStatus.TEMPORARY, detail=f"{domain}: no MX host has an address")
        return MXLookup(LookupStatus.OK, hosts)

    async def _addresses_or_none(self, name: str) -> list[str]:
        try:
            return await self.addresses(name)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
            return []

    async def _implicit_mx(self, domain: str) -> MXLookup:
        addresses = await self.addresses(domain)
        if not addresses:
            return MXLookup(LookupStatus.NO_MAIL_HOSTS, detail=f"{domain} has no MX or address records")
        return MXLookup(LookupStatus.OK, [MXHost(domain, 0, addresses)])


def _ordered(records: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Preference order, random among equal preferences (RFC 5321 5.1)."""
    shuffled = random.sample(records, len(records))
    return sorted(shuffled, key=lambda record: record[0])
