"""What Sealgate currently knows about a recipient domain's TLS, for `sealgate route`:
the TLS cache from real deliveries, each known host's downgrade memory, the cached MTA-STS
policy (its age, expiry and failed fetches), and a live DANE look-up."""

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
from gateway.tls.mta_sts import STSCache, cache_status

if TYPE_CHECKING:
    from gateway.classify.policy import Decision


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def span(seconds: float) -> str:
    """3d 4h, 2h 5m, 40s: how long, to the two largest units."""
    seconds = max(0, round(seconds))
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"),
             (seconds % 3600 // 60, "m"), (seconds % 60, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:2]) or "0s"


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
        "mta_sts_cache": cache_status(store, domain, store.clock()),
        "downgrade": downgrade_memory(config, store, _hosts_within_window(config, store, domain)),
        "nexthop": nexthop,
    }


def _hosts_within_window(config: Config, store: KnowledgeStore, domain: str) -> list[str]:
    """DOMAIN's hosts that deliveries or probes reached within the downgrade window (the TLS
    cache's rows outlive its TTL; the memory is kept that long)."""
    since = store.clock() - parse_duration(config.delivery.downgrade_window)
    return [h.host for h in store.host_tls_since(domain, since)]


def downgrade_memory(config: Config, store: KnowledgeStore, hosts: list[str]
                     ) -> list[dict[str, Any]]:
    """What downgrade detection remembers of HOSTS (those with TLS facts for the domain)."""
    window = parse_duration(config.delivery.downgrade_window)
    hold = parse_duration(config.delivery.downgrade_hold)
    now = store.clock()
    found = []
    for host in hosts:
        known = store.host_security(host)
        if known is None:
            continue
        since = known.downgraded_since
        found.append({
            "host": known.host,
            "starttls_seen": known.starttls_seen, "verified_seen": known.verified_seen,
            "remembered": bool(known.starttls_seen and known.starttls_seen > now - window),
            "downgraded_since": since, "downgrade": known.downgrade_detail or None,
            "held_until": since + hold if since is not None else None,
        })
    return found


def _describe_sts_cache(status: dict[str, Any], now: float) -> list[str]:
    lines = []
    cached = status.get("cached")
    if cached:
        state = "expired" if cached["expired"] else f"expires in {span(cached['expires'] - now)}"
        lines.append(f"mta-sts cache: fetched {_when(cached['fetched'])}"
                     f" ({span(cached['age_seconds'])} ago), {state},"
                     f" refetched from {_when(cached['refresh_after'])}")
    failed = status.get("failed_fetches")
    if failed:
        lines.append(f"mta-sts fetch: failed {failed['failures']}x in a row ({failed['detail']});"
                     f" next try after {_when(failed['retry_at'])}")
    return lines


def _describe_downgrades(memory: list[dict[str, Any]], now: float) -> list[str]:
    lines = []
    for host in memory:
        if host["downgraded_since"] is not None:
            held = (f", ordinary mail held until {_when(host['held_until'])}"
                    if host["held_until"] > now else ", hold over")
            lines.append(f"downgrade:    {host['host']}: {host['downgrade']} since"
                         f" {_when(host['downgraded_since'])}{held}; `sealgate tls forget"
                         f" {host['host']}` if the change was legitimate")
        elif host["starttls_seen"]:
            lines.append(f"downgrade:    {host['host']}: protected, STARTTLS last seen"
                         f" {_when(host['starttls_seen'])}")
    return lines


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
    now = datetime.now(timezone.utc).timestamp()
    if not nexthop:
        lines += _describe_sts_cache(knowledge.get("mta_sts_cache") or {}, now)
    lines += _describe_downgrades(knowledge.get("downgrade") or [], now)
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
    downgraded = [h["host"] for h in knowledge.get("downgrade") or []
                  if h["downgraded_since"] is not None and h["remembered"]]
    if downgraded:
        standards.append(f"TLS downgrade seen at {', '.join(downgraded)}: confidential mail"
                         " avoids it, other mail waits out the hold")
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
