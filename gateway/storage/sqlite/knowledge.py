"""TLS facts per MX host (table tls_cache) and cached MTA-STS policies (mta_sts_cache)."""

from __future__ import annotations

from gateway.storage.protocols import CachedSTSPolicy, HostTLS
from gateway.storage.sqlite.base import SQLitePart


class SQLiteKnowledge(SQLitePart):
    def record_host_tls(self, domain: str, host: str, starttls: bool, verified: bool,
                        detail: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO tls_cache (domain, host, starttls, verified, seen, detail)"
                " VALUES (?,?,?,?,?,?) ON CONFLICT (domain, host) DO UPDATE SET"
                " starttls=excluded.starttls, verified=excluded.verified, seen=excluded.seen,"
                " detail=excluded.detail",
                (domain.lower(), host.lower(), int(starttls), int(verified), self.clock(), detail))

    def host_tls_since(self, domain: str, since: float) -> list[HostTLS]:
        return [HostTLS(r["host"], bool(r["starttls"]), bool(r["verified"]), r["seen"],
                        r["detail"])
                for r in self.query("SELECT * FROM tls_cache WHERE domain=? AND seen > ?"
                                    " ORDER BY host", (domain.lower(), since))]

    def get_sts_policy(self, domain: str) -> CachedSTSPolicy | None:
        found = self.query("SELECT policy_id, mode, mx, max_age, fetched FROM mta_sts_cache"
                           " WHERE domain = ?", (domain.lower(),))
        if not found:
            return None
        row = found[0]
        return CachedSTSPolicy(row["policy_id"], row["mode"],
                               tuple(m for m in row["mx"].split("\n") if m), int(row["max_age"]),
                               float(row["fetched"]))

    def put_sts_policy(self, domain: str, policy: CachedSTSPolicy) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO mta_sts_cache (domain, policy_id, mode, mx,"
                       " max_age, fetched) VALUES (?,?,?,?,?,?)",
                       (domain.lower(), policy.policy_id, policy.mode,
                        "\n".join(policy.mx_patterns), policy.max_age, policy.fetched))

    def delete_sts_policy(self, domain: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM mta_sts_cache WHERE domain = ?", (domain.lower(),))
