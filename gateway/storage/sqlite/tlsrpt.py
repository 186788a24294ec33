"""TLS reporting state (tables tls_sessions, tls_reports_done, report_target_failures):
TLSReportStore of gateway/storage/protocols.py. Session counts reach the database through
the group-commit writer, in a commit shared with whatever else is waiting."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future

from gateway.storage.group_commit import GroupCommitter
from gateway.storage.protocols import ReportTargetFailure, TLSSessionCount
from gateway.storage.sqlite.base import SQLitePart

_ADD = ("INSERT INTO tls_sessions (day, policy_domain, policy_type, policy_string, mx_host,"
        " result_type, sending_ip, receiving_mx, receiving_ip, detail, count)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (day, policy_domain, policy_type,"
        " policy_string, mx_host, result_type, sending_ip, receiving_mx, receiving_ip)"
        " DO UPDATE SET count = count + excluded.count,"
        " detail = CASE WHEN excluded.detail = '' THEN detail ELSE excluded.detail END")

# A claim is a row with outcome 'sending' whose `at` is when it runs out.
_CLAIM = ("INSERT INTO tls_reports_done (policy_domain, day, outcome, at)"
          " VALUES (?, ?, 'sending', ?) ON CONFLICT (policy_domain, day) DO UPDATE SET"
          " outcome = 'sending', at = excluded.at"
          " WHERE tls_reports_done.outcome = 'sending' AND tls_reports_done.at <= ?"
          " RETURNING 1")


class SQLiteTLSReports(SQLitePart):
    committer: GroupCommitter

    def submit_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> Future[None]:
        rows = [_row(c) for c in counts]

        def add(db: sqlite3.Connection) -> None:
            db.executemany(_ADD, rows)

        return self.committer.submit(None, add)

    def add_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> None:
        self.submit_tls_sessions(counts).result()

    def tls_sessions(self, policy_domain: str, day: str) -> list[TLSSessionCount]:
        return [_count(r) for r in self.query(
            "SELECT * FROM tls_sessions WHERE policy_domain = ? AND day = ?"
            " ORDER BY policy_type, policy_string, mx_host, result_type, receiving_mx,"
            " receiving_ip", (policy_domain.lower(), day))]

    def unreported_tls_days(self, before_day: str) -> list[tuple[str, str]]:
        return [(r["policy_domain"], r["day"]) for r in self.query(
            "SELECT DISTINCT s.policy_domain, s.day FROM tls_sessions s"
            " LEFT JOIN tls_reports_done d ON d.policy_domain = s.policy_domain"
            " AND d.day = s.day WHERE s.day < ? AND (d.day IS NULL"
            " OR (d.outcome = 'sending' AND d.at <= ?))"
            " ORDER BY s.day, s.policy_domain", (before_day, self.clock()))]

    def claim_tls_report(self, policy_domain: str, day: str, until: float) -> bool:
        with self.transaction() as db:
            claimed = db.execute(_CLAIM, (policy_domain.lower(), day, until,
                                          self.clock())).fetchall()
        return bool(claimed)

    def release_tls_report(self, policy_domain: str, day: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM tls_reports_done WHERE policy_domain = ? AND day = ?"
                       " AND outcome = 'sending'", (policy_domain.lower(), day))

    def mark_tls_reported(self, policy_domain: str, day: str, outcome: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO tls_reports_done (policy_domain, day, outcome,"
                       " at) VALUES (?,?,?,?)", (policy_domain.lower(), day, outcome,
                                                 self.clock()))

    def prune_tls_sessions(self, before_day: str) -> int:
        with self.transaction() as db:
            pruned = db.execute("DELETE FROM tls_sessions WHERE day < ?", (before_day,)).rowcount
            db.execute("DELETE FROM tls_reports_done WHERE day < ?", (before_day,))
        return int(pruned)

    def report_target_failure(self, target: str) -> ReportTargetFailure | None:
        found = self.query("SELECT * FROM report_target_failures WHERE target = ?", (target,))
        return _failure(found[0]) if found else None

    def record_report_target_failure(self, target: str, retry_at: float,
                                     detail: str) -> ReportTargetFailure:
        with self.transaction() as db:
            db.execute("INSERT INTO report_target_failures (target, failures, retry_at, detail)"
                       " VALUES (?, 1, ?, ?) ON CONFLICT (target) DO UPDATE SET"
                       " failures = failures + 1, retry_at = excluded.retry_at,"
                       " detail = excluded.detail", (target, retry_at, detail))
            row = db.execute("SELECT * FROM report_target_failures WHERE target = ?",
                             (target,)).fetchone()
        return _failure(row)

    def clear_report_target_failure(self, target: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM report_target_failures WHERE target = ?", (target,))


def _row(c: TLSSessionCount) -> tuple[object, ...]:
    return (c.day, c.policy_domain.lower(), c.policy_type, "\n".join(c.policy_string),
            "\n".join(c.mx_host), c.result_type, c.sending_ip, c.receiving_mx.lower(),
            c.receiving_ip, c.detail, c.count)


def _lines(text: str) -> tuple[str, ...]:
    return tuple(text.split("\n")) if text else ()


def _count(r: sqlite3.Row) -> TLSSessionCount:
    return TLSSessionCount(r["day"], r["policy_domain"], r["policy_type"],
                           _lines(r["policy_string"]), _lines(r["mx_host"]), r["result_type"],
                           r["sending_ip"], r["receiving_mx"], r["receiving_ip"], r["detail"],
                           int(r["count"]))


def _failure(r: sqlite3.Row) -> ReportTargetFailure:
    return ReportTargetFailure(r["target"], int(r["failures"]), float(r["retry_at"]),
                               r["detail"])
