"""What Sealgate currently knows about a recipient domain's TLS, for `sealgate route`:
the TLS cache from real deliveries, the cached MTA-STS policy, and a live DANE look-up."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from gateway.config import Config, parse_duration
from gateway.delivery.mx import LookupStatus, MXResolver, make_resolver
from gateway.storage.protocols import KnowledgeStore
from gateway.tls.dane import lookup_tlsa
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import STSCache

if TYPE_CHECKING:
    from gateway.classify.policy import Decision


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cached_knowledge(config: Config, store: KnowledgeStore, domain: str) -> dict[str, Any]:
    hosts = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl)).fresh(domain)
    policy = STSCache(store).get(domain)
    return {
        "tls_cache": [{"host": h.host, "starttls": h.starttls, "verified": h.verified,
                       "seen": _when(h.seen), "detail": h.detail} for h in hosts.values()],
        "mta_sts": policy.as_dict() if policy else None,
    }


async def dane_status(config: Config, domain: str) -> list[dict[str, str]]:
    """TLSA status per MX host, asked live (a few DNS queries, no SMTP connection)."""
    resolver = make_resolver(config.dns.nameservers, min(parse_duration(config.dns.timeout), 5.0))
    lookup = await MXResolver(resolver).lookup(domain)
    if lookup.status is not LookupStatus.OK:
        return [{"host": "-", "status": lookup.status.value, "detail": lookup.detail}]
    results = await asyncio.gather(*(lookup_tlsa(resolver, h.name, config.delivery.port)
                                     for h in lookup.hosts))
    return [{"host": h.name, "status": r.status.value, "detail": r.detail}
            for h, r in zip(lookup.hosts, results, strict=True)]


def describe(knowledge: dict[str, Any]) -> list[str]:
    lines = []
    for host in knowledge["tls_cache"] or []:
        tls = "STARTTLS" if host["starttls"] else "no STARTTLS"
        verified = ", verified" if host["verified"] else ""
        lines.append(f"tls cache:    {host['host']}: {tls}{verified} (seen {host['seen']})")
    if not knowledge["tls_cache"]:
        lines.append("tls cache:    nothing recent (no delivery to this domain within the TTL)")
    policy = knowledge["mta_sts"]
    lines.append(f"mta-sts:      {policy['mode']} (mx: {', '.join(policy['mx'])};"
                 f" id {policy['id']})"
                 if policy else "mta-sts:      no cached policy")
    for host in knowledge.get("dane", []):
        lines.append(f"dane:         {host['host']}: {host['status']}"
                     + (f" ({host['detail']})" if host["detail"] else ""))
    return lines


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
    standards = []
    if sts.get("mode") == "enforce":
        standards.append("MTA-STS enforce: verified TLS to the listed MX hosts only")
    if dane_hosts:
        standards.append("DANE: the certificate must match the TLSA records")
    extra = f" ({'; '.join(standards)})" if standards else ""
    if not decision.confidential:
        return f"relayed directly, TLS when offered{extra}"
    if cached and not any(h["starttls"] for h in cached):
        return ("stored encrypted for pickup: every MX host was recently seen without STARTTLS"
                f"{extra}")
    need = "verified TLS" if decision.mode == "require-verified-tls" else "TLS"
    return f"delivered directly if an MX host completes {need}, else stored for pickup{extra}"
