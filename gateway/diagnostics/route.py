"""What Sealgate currently knows about a recipient domain's TLS, for `sealgate route`:
the TLS cache from real deliveries, the cached MTA-STS policy, and a live DANE look-up."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gateway.classify.policy import NextHop, PolicyError, load_policy, rule_for_domain
from gateway.config import Config, parse_duration
from gateway.delivery.mx import LookupStatus, MXResolver, make_resolver
from gateway.delivery.nexthop import nexthop_hosts
from gateway.storage.protocols import KnowledgeStore
from gateway.tls.dane import lookup_tlsa
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import STSCache

if TYPE_CHECKING:
    from gateway.classify.policy import Decision


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def policy_nexthop(config: Config, domain: str) -> tuple[NextHop, str] | None:
    """The policy's nexthop for DOMAIN and the file:line of its rule; None when there is
    none, or when the policy files do not load (`policy check` tells why)."""
    try:
        rule = rule_for_domain(load_policy(config.policy_dir), domain)
    except (PolicyError, OSError):
        return None
    if rule is None or rule.nexthop is None:
        return None
    return rule.nexthop, str(rule.origin)


def nexthop_checks(nexthop: NextHop, domain: str, default_port: int) -> dict[str, Any]:
    """What delivery checks on a nexthop route, as `route` and `probe` show it."""
    port = nexthop.port or default_port
    if nexthop.is_address:
        dane = "not looked up for an address (TLSA needs a host name found by DNS)"
    elif nexthop.mx_lookup:
        dane = f"TLSA of each MX host of {nexthop.host} (port {port})"
    else:
        dane = f"TLSA of {nexthop.host} (_{port}._tcp.{nexthop.host})"
    return {
        **nexthop.as_dict(), "port": port,
        "hosts": (f"the MX hosts of {nexthop.host}" if nexthop.mx_lookup
                  else f"{nexthop.host} as is (no MX look-up)"),
        "certificate_name": nexthop.name_checked(domain),
        "dane": dane,
        "mta_sts": "not applied: MTA-STS (RFC 8461) covers delivery to the domain's MX hosts",
    }


def cached_knowledge(config: Config, store: KnowledgeStore, domain: str) -> dict[str, Any]:
    hosts = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl)).fresh(domain)
    policy = STSCache(store).get(domain)
    found = policy_nexthop(config, domain)
    nexthop = None
    if found is not None:
        nexthop = {**nexthop_checks(found[0], domain, config.delivery.port), "rule": found[1]}
    return {
        "tls_cache": [{"host": h.host, "starttls": h.starttls, "verified": h.verified,
                       "seen": _when(h.seen), "detail": h.detail} for h in hosts.values()],
        "mta_sts": policy.as_dict() if policy else None,
        "nexthop": nexthop,
    }


async def dane_status(config: Config, domain: str) -> list[dict[str, str]]:
    """TLSA status per MX host (per nexthop host on a nexthop route), asked live (a few DNS
    queries, no SMTP connection)."""
    resolver = make_resolver(config.dns.nameservers, min(parse_duration(config.dns.timeout), 5.0))
    found = policy_nexthop(config, domain)
    port = config.delivery.port
    if found is not None:
        nexthop = found[0]
        if nexthop.is_address:
            return []
        port = nexthop.port or port
        lookup = await nexthop_hosts(MXResolver(resolver), nexthop, domain)
    else:
        lookup = await MXResolver(resolver).lookup(domain)
    if lookup.status is not LookupStatus.OK:
        return [{"host": "-", "status": lookup.status.value, "detail": lookup.detail}]
    results = await asyncio.gather(*(lookup_tlsa(resolver, h.name, port)
                                     for h in lookup.hosts))
    return [{"host": h.name, "status": r.status.value, "detail": r.detail}
            for h, r in zip(lookup.hosts, results, strict=True)]


def describe(knowledge: dict[str, Any]) -> list[str]:
    lines = []
    nexthop = knowledge.get("nexthop")
    if nexthop:
        lines += [f"nexthop:      {nexthop['nexthop']} ({nexthop['rule']}): {nexthop['hosts']},"
                  f" port {nexthop['port']}",
                  f"              require-verified-tls checks the certificate for"
                  f" {nexthop['certificate_name']}",
                  f"              DANE: {nexthop['dane']}",
                  f"              MTA-STS: {nexthop['mta_sts']}"]
    for host in knowledge["tls_cache"] or []:
        tls = "STARTTLS" if host["starttls"] else "no STARTTLS"
        verified = ", verified" if host["verified"] else ""
        lines.append(f"tls cache:    {host['host']}: {tls}{verified} (seen {host['seen']})")
    if not knowledge["tls_cache"]:
        lines.append("tls cache:    nothing recent (no delivery to this domain within the TTL)")
    policy = knowledge["mta_sts"]
    if nexthop:
        policy = None  # not applied on a nexthop route
    lines.append(f"mta-sts:      {policy['mode']} (mx: {', '.join(policy['mx'])};"
                 f" id {policy['id']})"
                 if policy else "mta-sts:      not applied (nexthop route)" if nexthop
                 else "mta-sts:      no cached policy")
    for host in knowledge.get("dane", []):
        lines.append(f"dane:         {host['host']}: {host['status']}"
                     + (f" ({host['detail']})" if host["detail"] else ""))
    return lines


def with_requiretls(decision: Decision) -> Decision:
    """DECISION for a message sent with MAIL ... REQUIRETLS: confidential, at least
    require-verified-tls (as gateway/inbound/requiretls.py routes it)."""
    from dataclasses import replace

    from gateway.inbound.requiretls import REQUIRETLS_REASON, requiretls_mode

    return replace(decision, confidential=True, mode=requiretls_mode(decision.mode),
                   why=f"{REQUIRETLS_REASON}; {decision.why}")


def tls_required_note(decision: Decision, requiretls: bool, tls_required_no: bool
                      ) -> str | None:
    """What REQUIRETLS and a "TLS-Required: No" field do to this message, or None."""
    if requiretls:
        note = ("yes: relayed only to MX hosts found securely (DNSSEC or MTA-STS enforce),"
                " over verified TLS (PKIX or DANE), to a host offering REQUIRETLS;"
                " else stored for pickup")
        return note + ("; TLS-Required: No ignored and removed" if tls_required_no else "")
    if not tls_required_no:
        return None
    if decision.confidential:
        return "TLS-Required: No ignored: confidential mail (the field is removed before relay)"
    return "TLS-Required: No: the domain's MTA-STS and DANE are not applied to this message"


def predicted_outcome(decision: Decision, knowledge: dict[str, Any]) -> str:
    """One line: what will happen to the message, from the decision and what is known."""
    cached = knowledge.get("tls_cache") or []
    sts = knowledge.get("mta_sts") or {}
    dane_hosts = [h for h in knowledge.get("dane", []) if h.get("status") == "usable"]
    if decision.mode == "pickup":
        return ("stored encrypted for pickup; the recipient gets a notification"
                " (policy: always pickup)")
    if decision.mode == "internal":
        return "handed to internal.relay (the organization's own mail server)"
    nexthop = knowledge.get("nexthop")
    standards = []
    if sts.get("mode") == "enforce" and not nexthop:
        standards.append("MTA-STS enforce: verified TLS to the listed MX hosts only")
    if dane_hosts:
        standards.append("DANE: the certificate must match the TLSA records")
    extra = f" ({'; '.join(standards)})" if standards else ""
    where = f"nexthop {nexthop['nexthop']}" if nexthop else "an MX host"
    if not decision.confidential:
        if nexthop:
            return f"relayed to nexthop {nexthop['nexthop']}, TLS when offered{extra}"
        return f"relayed directly, TLS when offered{extra}"
    if cached and not any(h["starttls"] for h in cached):
        seen = f"nexthop {nexthop['nexthop']} was" if nexthop else "every MX host was"
        return f"stored encrypted for pickup: {seen} recently seen without STARTTLS{extra}"
    need = "verified TLS" if decision.mode == "require-verified-tls" else "TLS"
    if nexthop and decision.mode == "require-verified-tls":
        need += f" (certificate for {nexthop['certificate_name']})"
    return f"delivered directly if {where} completes {need}, else stored for pickup{extra}"
