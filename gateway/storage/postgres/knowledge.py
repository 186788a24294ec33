"""TLS facts per MX host (table tls_cache) and cached MTA-STS policies (mta_sts_cache),
shared by every node: what one node learned about a host, the others use."""

from __future__ import annotations

from gateway.storage.postgres.connection import PostgresPart
from gateway.storage.protocols import CachedSTSPolicy, HostTLS


class PostgresKnowledge(PostgresPart):
    def record_host_tls(self, domain: str, host: str, starttls: bool, verified: bool,
                        detail: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO tls_cache (domain, host, starttls, verified, seen, detail)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (domain, host) DO UPDATE SET"
                " starttls = excluded.starttls, verified = excluded.verified,"
                " seen = excluded.seen, detail = excluded.detail",
                (domain.lower(), host.lower(), starttls, verified, self.clock(), detail))

    def host_tls_since(self, domain: str, since: float) -> list[HostTLS]:
        return [HostTLS(r["host"], r["starttls"], r["verified"], r["seen"], r["detail"])
                for r in self.db.query("SELECT * FROM tls_cache WHERE domain = %s"
                                       " AND seen > %s ORDER BY host", (domain.lower(), since))]

    def get_sts_policy(self, domain: str) -> CachedSTSPolicy | None:
        found = self.db.query("SELECT policy_id, mode, mx, max_age, fetched FROM mta_sts_cache"
                              " WHERE domain = %s", (domain.lower(),))
        if not found:
            return None
        row = found[0]
        return CachedSTSPolicy(row["policy_id"], row["mode"],
                               tuple(m for m in row["mx"].split("\n") if m), int(row["max_age"]),
                               float(row["fetched"]))

    def put_sts_policy(self, domain: str, policy: CachedSTSPolicy) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO mta_sts_cache (domain, policy_id, mode, mx, max_age, fetched)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (domain) DO UPDATE SET"
                " policy_id = excluded.policy_id, mode = excluded.mode, mx = excluded.mx,"
                " max_age = excluded.max_age, fetched = excluded.fetched",
                (domain.lower(), policy.policy_id, policy.mode, "\n".join(policy.mx_patterns),
                 policy.max_age, policy.fetched))

    def delete_sts_policy(self, domain: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM mta_sts_cache WHERE domain = %s", (domain.lower(),))
