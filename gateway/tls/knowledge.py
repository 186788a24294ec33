"""What real deliveries (and probes) learned about each MX host's TLS, kept for a TTL.

It lets a confidential message to a domain whose every MX host was just seen without
STARTTLS go to pickup at once, instead of knocking on every door again."""

from __future__ import annotations

from gateway.storage.protocols import HostTLS, KnowledgeStore

__all__ = ["HostTLS", "TLSCache"]


class TLSCache:
    def __init__(self, store: KnowledgeStore, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    def record(self, domain: str, host: str, starttls: bool, verified: bool, detail: str) -> None:
        self.store.record_host_tls(domain, host, starttls, verified, detail)

    def fresh(self, domain: str) -> dict[str, HostTLS]:
        hosts = self.store.host_tls_since(domain, self.store.clock() - self.ttl)
        return {h.host: h for h in hosts}

    def none_offer_starttls(self, domain: str, hosts: list[str]) -> bool:
        """True when every one of HOSTS was seen without STARTTLS within the TTL."""
        known = self.fresh(domain)
        return bool(hosts) and all(h.lower() in known and not known[h.lower()].starttls
                                   for h in hosts)
