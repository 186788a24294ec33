"""TLS facts per MX host (table tls_cache), cached MTA-STS policies (mta_sts_cache) and
failed fetches (mta_sts_failures), and each host's downgrade memory (host_security)."""

from __future__ import annotations

from gateway.storage.backoff import next_sts_retry
from gateway.storage.protocols import CachedSTSPolicy, HostSecurity, HostTLS, STSFetchFailure
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

    def sts_policies_to_refresh(self, now: float, fraction: float) -> list[str]:
        return [r["domain"] for r in self.query(
            "SELECT domain FROM mta_sts_cache WHERE fetched + max_age > ?"
            " AND fetched + max_age * ? <= ? ORDER BY domain", (now, fraction, now))]

    def record_sts_failure(self, domain: str, policy_id: str, detail: str,
                           first_delay: float, max_delay: float) -> STSFetchFailure:
        domain = domain.lower()
        with self.transaction() as db:
            row = db.execute("SELECT policy_id, failures FROM mta_sts_failures WHERE domain = ?",
                             (domain,)).fetchone()
            failures, retry_at = next_sts_retry(
                (row["policy_id"], row["failures"]) if row else None, policy_id, self.clock(),
                first_delay, max_delay)
            db.execute("INSERT OR REPLACE INTO mta_sts_failures (domain, policy_id, failures,"
                       " detail, retry_at) VALUES (?,?,?,?,?)",
                       (domain, policy_id, failures, detail, retry_at))
        return STSFetchFailure(domain, policy_id, failures, detail, retry_at)

    def sts_failure(self, domain: str) -> STSFetchFailure | None:
        found = self.query("SELECT * FROM mta_sts_failures WHERE domain = ?", (domain.lower(),))
        if not found:
            return None
        row = found[0]
        return STSFetchFailure(row["domain"], row["policy_id"], int(row["failures"]),
                               row["detail"], float(row["retry_at"]))

    def clear_sts_failure(self, domain: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM mta_sts_failures WHERE domain = ?", (domain.lower(),))

    def record_host_security(self, host: str, starttls: bool, verified: bool) -> None:
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "INSERT INTO host_security (host, starttls_seen, verified_seen) VALUES (?,?,?)"
                " ON CONFLICT (host) DO UPDATE SET"
                " starttls_seen = coalesce(excluded.starttls_seen, starttls_seen),"
                " verified_seen = coalesce(excluded.verified_seen, verified_seen),"
                " downgraded_since = NULL, downgrade_detail = ''",
                (host.lower(), now if starttls else None, now if verified else None))

    def mark_downgraded(self, host: str, detail: str) -> float:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO host_security (host, downgraded_since, downgrade_detail)"
                " VALUES (?,?,?) ON CONFLICT (host) DO UPDATE SET"
                " downgraded_since = coalesce(downgraded_since, excluded.downgraded_since),"
                " downgrade_detail = excluded.downgrade_detail",
                (host.lower(), self.clock(), detail))
            row = db.execute("SELECT downgraded_since FROM host_security WHERE host = ?",
                             (host.lower(),)).fetchone()
        return float(row["downgraded_since"])

    def host_security(self, host: str) -> HostSecurity | None:
        found = self.query("SELECT * FROM host_security WHERE host = ?", (host.lower(),))
        if not found:
            return None
        row = found[0]
        return HostSecurity(row["host"], row["starttls_seen"], row["verified_seen"],
                            row["downgraded_since"], row["downgrade_detail"], row["alerted_day"])

    def claim_downgrade_alert(self, host: str, day: str) -> bool:
        with self.transaction() as db:
            return bool(db.execute("UPDATE host_security SET alerted_day = ?"
                                   " WHERE host = ? AND alerted_day <> ?",
                                   (day, host.lower(), day)).rowcount)

    def forget_stale_hosts(self, seen_before: float) -> int:
        with self.transaction() as db:
            gone = db.execute("DELETE FROM tls_cache WHERE seen < ?", (seen_before,)).rowcount
            gone += db.execute("DELETE FROM host_security WHERE coalesce(starttls_seen, 0) < ?"
                               " AND coalesce(verified_seen, 0) < ?",
                               (seen_before, seen_before)).rowcount
        return gone

    def forget_host(self, host: str) -> bool:
        with self.transaction() as db:
            known = db.execute("DELETE FROM host_security WHERE host = ?",
                               (host.lower(),)).rowcount
            known += db.execute("DELETE FROM tls_cache WHERE host = ?", (host.lower(),)).rowcount
        return bool(known)
