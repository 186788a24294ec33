"""TLS facts per MX host (table tls_cache), cached MTA-STS policies (mta_sts_cache) and
failed fetches (mta_sts_failures), and each host's downgrade memory (host_security), shared
by every node: what one node learned about a host, the others use."""

from __future__ import annotations

from gateway.storage.backoff import next_sts_retry
from gateway.storage.postgres.connection import PostgresPart
from gateway.storage.protocols import CachedSTSPolicy, HostSecurity, HostTLS, STSFetchFailure


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

    def sts_policies_to_refresh(self, now: float, fraction: float) -> list[str]:
        return [r["domain"] for r in self.db.query(
            "SELECT domain FROM mta_sts_cache WHERE fetched + max_age > %s"
            " AND fetched + max_age * %s <= %s ORDER BY domain", (now, fraction, now))]

    def record_sts_failure(self, domain: str, policy_id: str, detail: str,
                           first_delay: float, max_delay: float) -> STSFetchFailure:
        domain = domain.lower()
        with self.db.transaction() as cursor:
            # The row lock makes failures in a row count once each, from any node.
            cursor.execute("INSERT INTO mta_sts_failures (domain, policy_id, failures, detail,"
                           " retry_at) VALUES (%s, %s, 0, '', 0) ON CONFLICT (domain) DO NOTHING",
                           (domain, policy_id))
            cursor.execute("SELECT policy_id, failures FROM mta_sts_failures WHERE domain = %s"
                           " FOR UPDATE", (domain,))
            row = cursor.fetchone()
            assert row is not None
            failures, retry_at = next_sts_retry((row["policy_id"], row["failures"]), policy_id,
                                                self.clock(), first_delay, max_delay)
            cursor.execute("UPDATE mta_sts_failures SET policy_id = %s, failures = %s,"
                           " detail = %s, retry_at = %s WHERE domain = %s",
                           (policy_id, failures, detail, retry_at, domain))
        return STSFetchFailure(domain, policy_id, failures, detail, retry_at)

    def sts_failure(self, domain: str) -> STSFetchFailure | None:
        found = self.db.query("SELECT * FROM mta_sts_failures WHERE domain = %s",
                              (domain.lower(),))
        if not found:
            return None
        row = found[0]
        return STSFetchFailure(row["domain"], row["policy_id"], int(row["failures"]),
                               row["detail"], float(row["retry_at"]))

    def clear_sts_failure(self, domain: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM mta_sts_failures WHERE domain = %s", (domain.lower(),))

    def record_host_security(self, host: str, starttls: bool, verified: bool) -> None:
        now = self.clock()
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO host_security (host, starttls_seen, verified_seen)"
                " VALUES (%s, %s, %s) ON CONFLICT (host) DO UPDATE SET"
                " starttls_seen = coalesce(excluded.starttls_seen, host_security.starttls_seen),"
                " verified_seen = coalesce(excluded.verified_seen, host_security.verified_seen),"
                " downgraded_since = NULL, downgrade_detail = ''",
                (host.lower(), now if starttls else None, now if verified else None))

    def mark_downgraded(self, host: str, detail: str) -> float:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO host_security (host, downgraded_since, downgrade_detail)"
                " VALUES (%s, %s, %s) ON CONFLICT (host) DO UPDATE SET downgraded_since ="
                " coalesce(host_security.downgraded_since, excluded.downgraded_since),"
                " downgrade_detail = excluded.downgrade_detail RETURNING downgraded_since",
                (host.lower(), self.clock(), detail))
            row = cursor.fetchone()
            assert row is not None
        return float(row["downgraded_since"])

    def host_security(self, host: str) -> HostSecurity | None:
        found = self.db.query("SELECT * FROM host_security WHERE host = %s", (host.lower(),))
        if not found:
            return None
        row = found[0]
        return HostSecurity(row["host"], row["starttls_seen"], row["verified_seen"],
                            row["downgraded_since"], row["downgrade_detail"], row["alerted_day"])

    def claim_downgrade_alert(self, host: str, day: str) -> bool:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE host_security SET alerted_day = %s"
                           " WHERE host = %s AND alerted_day <> %s", (day, host.lower(), day))
            return cursor.rowcount == 1

    def forget_stale_hosts(self, seen_before: float) -> int:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM tls_cache WHERE seen < %s", (seen_before,))
            gone = cursor.rowcount
            cursor.execute("DELETE FROM host_security WHERE coalesce(starttls_seen, 0) < %s"
                           " AND coalesce(verified_seen, 0) < %s", (seen_before, seen_before))
            gone += cursor.rowcount
        return gone

    def forget_host(self, host: str) -> bool:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM host_security WHERE host = %s", (host.lower(),))
            known = cursor.rowcount
            cursor.execute("DELETE FROM tls_cache WHERE host = %s", (host.lower(),))
            known += cursor.rowcount
        return bool(known)
