"""MX resolution for delivery: preference order, implicit MX, null MX (RFC 7505).

Outcomes are verdicts (an enum), not exceptions, so the delivery stage can map each
to retry, bounce or deliver without guessing.
"""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdataclass
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
    # The name a certificate must carry under require-verified-tls when it is not NAME
    # (a policy nexthop: gateway/delivery/nexthop.py); "" for NAME itself.
    tls_name: str = ""
    # The MX answer naming this host and its address answers all came DNSSEC-validated (AD
    # bit): RFC 7672 2.2.1's precondition for DANE, and RFC 8689's "MX found securely".
    dnssec: bool = False


@dataclass(frozen=True)
class MXLookup:
    status: LookupStatus
    hosts: list[MXHost] = field(default_factory=list)
    detail: str = ""
    dnssec: bool = False  # the MX answer (or its denial, for an implicit MX) was validated


MAX_REMEMBERED_ANSWERS = 10_000
EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation of signed answers
_Remembered = tuple[float, "dns.resolver.Answer | dns.resolver.NXDOMAIN | dns.resolver.NoAnswer"]


class RememberingResolver(dns.asyncresolver.Resolver):
    """dnspython's resolver, with what its cache holds remembered in front of it: a cached
    answer (or "no such name", "no such record") costs a dict look-up instead of a
    resolution (about 140 µs each; every delivery asks for _mta-sts TXT and TLSA). An
    answer is remembered exactly as long as dnspython's cache keeps it, and only when the
    resolver caches at all (cache = None turns both off)."""

    def __init__(self, configure: bool = True) -> None:
        super().__init__(configure=configure)
        self._remembered: dict[tuple[str, int], _Remembered] = {}

    def __copy__(self) -> RememberingResolver:
        # A copy may be given other flags (DNSSEC): its answers are not this one's.
        twin = type(self).__new__(type(self))
        twin.__dict__.update(self.__dict__)
        twin._remembered = {}
        return twin

    async def resolve(self, qname: dns.name.Name | str,
                      rdtype: dns.rdatatype.RdataType | str = dns.rdatatype.A,
                      *args: Any, **kwargs: Any) -> dns.resolver.Answer:
        if args or kwargs or self.cache is None:
            return await super().resolve(qname, rdtype, *args, **kwargs)
        key = (str(qname).lower().rstrip("."), dns.rdatatype.RdataType.make(rdtype))
        remembered = self._remembered.get(key)
        if remembered is not None and remembered[0] > time.time():
            if isinstance(remembered[1], dns.resolver.Answer):
                return remembered[1]
            raise remembered[1].with_traceback(None)
        try:
            answer = await super().resolve(qname, rdtype)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
            cached = self._cached_negative(key, exc)
            if cached is not None:
                self._remember(key, cached.expiration, exc)
            raise
        self._remember(key, answer.expiration, answer)
        return answer

    def _cached_negative(self, key: tuple[str, int], exc: dns.exception.DNSException
                         ) -> dns.resolver.Answer | None:
        """dnspython's cache entry for this negative answer, if it made one."""
        assert self.cache is not None
        rdtype = dns.rdatatype.ANY if isinstance(exc, dns.resolver.NXDOMAIN) else key[1]
        entry = self.cache.get((dns.name.from_text(key[0]), rdtype, dns.rdataclass.IN))
        return entry if isinstance(entry, dns.resolver.Answer) else None

    def _remember(self, key: tuple[str, int], until: float, what: Any) -> None:
        if len(self._remembered) >= MAX_REMEMBERED_ANSWERS:
            self._remembered.clear()
        self._remembered[key] = (until, what)


def make_resolver(nameservers: list[str], timeout: float = 5.0) -> dns.asyncresolver.Resolver:
    """A resolver using NAMESERVERS ("ip" or "ip:port"), or the system's when empty."""
    if not nameservers:
        resolver = RememberingResolver()
    else:
        resolver = RememberingResolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_hostport(ns, "dns.nameservers", 53))
            for ns in nameservers
        ]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    # AD in the query (RFC 6840 5.7) asks a validating resolver to say whether it validated
    # the answer, DO because some set AD only then: DANE and REQUIRETLS need to know for the
    # MX and address answers (RFC 7672 2.2.1), not only for TLSA.
    resolver.use_edns(0, dns.flags.DO, EDNS_PAYLOAD)
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.cache = dns.resolver.Cache()  # MX, A and _mta-sts answers, for their TTLs
    return resolver


MAX_CACHED_DOMAINS = 10_000  # whole MX results kept (each until its first record expires)


class MXResolver:
    """MX look-ups; a domain's whole result (MX, then A and AAAA of each host) is kept until
    the first of its answers expires, as the resolver's cache would keep each of them (when
    it caches at all): a hit costs a dict look-up instead of one resolver call per record
    (about a fifth of a delivery's work when every message paid for them)."""

    def __init__(self, resolver: dns.asyncresolver.Resolver) -> None:
        self.resolver = resolver
        self._results: dict[str, tuple[float, MXLookup]] = {}

    async def addresses(self, name: str, expiries: list[float] | None = None) -> list[str]:
        """IPv4 then IPv6 addresses of NAME; empty when it has none. EXPIRIES: gets the
        expiry time of every answer used."""
        found, _ = await self.address_records(name, expiries)
        return found

    async def address_records(self, name: str, expiries: list[float] | None = None
                              ) -> tuple[list[str], bool]:
        """addresses(), and whether every answer (or denial) for them was DNSSEC-validated."""
        found: list[str] = []
        validated = True
        for rdtype in ("A", "AAAA"):
            try:
                answer = await self.resolver.resolve(name, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
                if expiries is not None:
                    expiries.append(_negative_expiry(exc))
                validated = validated and _denial_validated(exc)
                continue
            if expiries is not None:
                expiries.append(answer.expiration)
            validated = validated and _validated(answer.response)
            found += [r.to_text() for r in answer]
        return found, validated

    async def lookup(self, domain: str) -> MXLookup:
        key = domain.rstrip(".").lower()
        cached = self._results.get(key)
        if cached is not None:
            if cached[0] > time.time():
                return _reshuffled(cached[1])
            del self._results[key]
        expiries: list[float] = []
        found = await self._lookup_uncached(domain, expiries)
        if found.status is LookupStatus.OK and expiries and self.resolver.cache is not None:
            if len(self._results) >= MAX_CACHED_DOMAINS:
                self._results.clear()
            self._results[key] = (min(expiries), found)
        return found

    async def _lookup_uncached(self, domain: str, expiries: list[float]) -> MXLookup:
        try:
            return await self._lookup(domain, expiries)
        except dns.resolver.NXDOMAIN:
            return MXLookup(LookupStatus.NO_SUCH_DOMAIN, detail=f"{domain}: no such domain")
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.LifetimeTimeout) as exc:
            return MXLookup(LookupStatus.TEMPORARY, detail=f"{domain}: DNS lookup failed: {exc}")

    async def _lookup(self, domain: str, expiries: list[float]) -> MXLookup:
        try:
            answer = await self.resolver.resolve(domain, "MX")
            records = [(r.preference, r.exchange.to_text().rstrip(".")) for r in answer]
        except dns.resolver.NoAnswer as exc:
            expiries.append(_negative_expiry(exc))
            return await self._implicit_mx(domain, expiries, _denial_validated(exc))
        expiries.append(answer.expiration)
        if any(name in ("", ".") for _, name in records) or records == [(0, "")]:
            return MXLookup(LookupStatus.NULL_MX, detail=f"{domain} publishes a null MX: no mail")
        mx_validated = _validated(answer.response)
        hosts = [await self._host(name, pref, mx_validated, expiries)
                 for pref, name in _ordered(records)]
        hosts = [h for h in hosts if h.addresses]
        if not hosts:
            return MXLookup(LookupStatus.TEMPORARY, detail=f"{domain}: no MX host has an address")
        return MXLookup(LookupStatus.OK, hosts, dnssec=mx_validated)

    async def _host(self, name: str, preference: int, mx_validated: bool,
                    expiries: list[float]) -> MXHost:
        """The MX host NAME with its addresses (none when they could not be resolved)."""
        try:
            addresses, validated = await self.address_records(name, expiries)
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
            expiries.append(0.0)  # a host we could not resolve: keep nothing of this result
            return MXHost(name, preference)
        return MXHost(name, preference, addresses, dnssec=mx_validated and validated)

    async def _implicit_mx(self, domain: str, expiries: list[float],
                           denial_validated: bool) -> MXLookup:
        addresses, validated = await self.address_records(domain, expiries)
        if not addresses:
            return MXLookup(LookupStatus.NO_MAIL_HOSTS,
                            detail=f"{domain} has no MX or address records")
        secure = denial_validated and validated
        return MXLookup(LookupStatus.OK, [MXHost(domain, 0, addresses, dnssec=secure)],
                        dnssec=denial_validated)


def _validated(response: dns.message.Message | None) -> bool:
    """The resolver vouched for RESPONSE (AD bit): as trustworthy as the path to it."""
    return response is not None and bool(response.flags & dns.flags.AD)


def _denial_validated(exc: dns.exception.DNSException) -> bool:
    """A validated "no such name" or "no such record" (its response had AD set)."""
    responses = exc.kwargs.get("responses") if isinstance(exc, dns.resolver.NXDOMAIN) else None
    if responses:
        return all(_validated(r) for r in responses.values())
    return _validated(exc.kwargs.get("response"))


def _negative_expiry(exc: dns.exception.DNSException) -> float:
    """Until when the resolver caches a "no such record" answer (RFC 2308: the SOA's TTL);
    now, when the answer carries no response to tell."""
    response = exc.kwargs.get("response") if isinstance(exc, dns.resolver.NoAnswer) else None
    if response is None:
        return 0.0
    try:
        ttl = response.resolve_chaining().minimum_ttl
    except dns.exception.DNSException:
        return 0.0
    return time.time() + float(ttl)


def _reshuffled(found: MXLookup) -> MXLookup:
    """A cached result with hosts of equal preference in a fresh random order (RFC 5321
    5.1), as a new look-up would give them."""
    hosts = random.sample(found.hosts, len(found.hosts))
    return replace(found, hosts=sorted(hosts, key=lambda host: host.preference))


def _ordered(records: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Preference order, random among equal preferences (RFC 5321 5.1)."""
    shuffled = random.sample(records, len(records))
    return sorted(shuffled, key=lambda record: record[0])
