"""What real deliveries (and probes) learned about each MX host's TLS, kept for a TTL.

It lets a confidential message to a domain whose every MX host was just seen without
STARTTLS go to pickup at once, instead of knocking on every door again."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.store import Store


@dataclass(frozen=True)
class HostTLS:
    host: str
    starttls: bool
    verified: bool
    seen: float
    detail: str


class TLSCache:
    def __init__(self, store: Store, ttl: float) -> None:
        self.store = store
        self.ttl = ttl

    def record(self, domain: str, host: str, starttls: bool, verified: bool, detail: str) -> None:
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO tls_cache (domain, host, starttls, verified, seen, detail)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (domain, host) DO UPDATE SET"
                " starttls=excluded.starttls, verified=excluded.verified, seen=excluded.seen,"
                " detail=excluded.detail",
                (domain.lower(), host.lower(), int(starttls), int(verified), self.store.clock(), detail),
            )

    def fresh(self, domain: str) -> dict[str, HostTLS]:
        rows = self.store.query("SELECT * FROM tls_cache WHERE domain=? AND seen > ?",
                                (domain.lower(), self.store.clock() - self.ttl))
        return {r["host"]: HostTLS(r["host"], bool(r["starttls"]), bool(r["verified"]), r["seen"],
                                   r["detail"]) for r in rows}

    def none_offer_starttls(self, domain: str, hosts: list[str]) -> bool:
        """True when every one of HOSTS was seen without STARTTLS within the TTL."""
        known = self.fresh(domain)
        return bool(hosts) and all(h.lower() in known and not known[h.lower()].starttls for h in hosts)
