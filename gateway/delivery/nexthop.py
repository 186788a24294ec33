"""Policy nexthops (`nexthop` in a `[[domain]]` rule): where mail for a domain goes instead
of its MX hosts, like a Postfix transport map entry.

The nexthop is looked up at delivery time from the policy files, so queued mail follows
the policy in force when it is delivered and no route row carries it. Each queue runner
reads the files itself (the supervisor checks them, SIGHUP or a change on disk): it reloads
when they change, at most once a second, and keeps the previous policy when they do not
load, as every other reader of the policy does.

What applies on the nexthop route (README, "Routing with nexthop"):
- the route's TLS requirement applies to the nexthop host(s);
- require-verified-tls checks the certificate for NextHop.name_checked(domain): the rule's
  tls_name, else the host as written, else (for an [address]) the recipient domain;
- DANE: TLSA records of each host found by name (the MX hosts of "host", or "[host]"),
  never for an [address];
- MTA-STS does not apply: RFC 8461 is about a domain's MX hosts, which are not used.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dns.exception
import dns.resolver

from gateway.classify.holder import PolicyHolder
from gateway.classify.policy import NextHop, nexthop_for
from gateway.delivery.mx import LookupStatus, MXHost, MXLookup, MXResolver

log = logging.getLogger("sealgate.delivery")

RECHECK_INTERVAL = 1.0  # seconds between looks at the policy files for a change


class PolicyNexthops:
    """domain -> its NextHop (or None) in the policy files of DIRECTORY, kept current."""

    def __init__(self, directory: Path) -> None:
        self.holder = PolicyHolder(directory)
        self._checked = time.monotonic()

    def __call__(self, domain: str) -> NextHop | None:
        now = time.monotonic()
        if now - self._checked >= RECHECK_INTERVAL:
            self._checked = now
            if self.holder.changed_on_disk():
                self.holder.reload()
        return nexthop_for(self.holder.current, domain)


async def nexthop_hosts(resolver: MXResolver, nexthop: NextHop, domain: str) -> MXLookup:
    """The hosts of NEXTHOP for mail to DOMAIN, each with the name its certificate must carry.
    Every failure is temporary: a nexthop that does not resolve is the admin's to fix, and
    the mail waits for that instead of bouncing."""
    tls_name = nexthop.name_checked(domain)
    if nexthop.is_address:
        return MXLookup(LookupStatus.OK, [MXHost(nexthop.host, 0, [nexthop.host], tls_name)])
    if nexthop.mx_lookup:
        found = await resolver.lookup(nexthop.host)
        if found.status is not LookupStatus.OK:
            return MXLookup(LookupStatus.TEMPORARY,
                            detail=f"nexthop {nexthop.text}: {found.detail}")
        return MXLookup(LookupStatus.OK, [MXHost(h.name, h.preference, h.addresses, tls_name,
                                                 h.dnssec)
                                          for h in found.hosts], dnssec=found.dnssec)
    try:
        addresses, validated = await resolver.address_records(nexthop.host)
    except (dns.exception.Timeout, dns.resolver.NoNameservers,
            dns.resolver.LifetimeTimeout) as exc:
        return MXLookup(LookupStatus.TEMPORARY,
                        detail=f"nexthop {nexthop.text}: DNS lookup failed: {exc}")
    if not addresses:
        return MXLookup(LookupStatus.TEMPORARY,
                        detail=f"nexthop {nexthop.text}: {nexthop.host} has no address")
    # The admin named the host: only its address records need validating for DANE.
    return MXLookup(LookupStatus.OK, [MXHost(nexthop.host, 0, addresses, tls_name, validated)],
                    dnssec=True)
