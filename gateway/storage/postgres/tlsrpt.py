"""TLS reporting state (tables tls_sessions, tls_reports_done, report_target_failures),
shared by every node: TLSReportStore of gateway/storage/protocols.py. Session counts go
through the queue's writer threads, one transaction for a whole batch of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from gateway.storage.postgres.connection import Cursor, PostgresPart, Row
from gateway.storage.protocols import ReportTargetFailure, TLSSessionCount

T = TypeVar("T")
_ADD = ("INSERT INTO tls_sessions (day, policy_domain, policy_type, policy_string, mx_host,"
        " result_type, sending_ip, receiving_mx, receiving_ip, detail, count)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (day, policy_domain,"
        " policy_type, policy_string, mx_host, result_type, sending_ip, receiving_mx,"
        " receiving_ip) DO UPDATE SET count = tls_sessions.count + excluded.count,"
        " detail = CASE WHEN excluded.detail = '' THEN tls_sessions.detail"
        " ELSE excluded.detail END")

# A claim is a row with outcome 'sending' whose `at` is when it runs out; the upsert is
# atomic, so of two nodes claiming at once one gets it.
_CLAIM = ("INSERT INTO tls_reports_done (policy_domain, day, outcome, at)"
          " VALUES (%s, %s, 'sending', %s) ON CONFLICT (policy_domain, day) DO UPDATE SET"
          " outcome = 'sending', at = excluded.at"
          " WHERE tls_reports_done.outcome = 'sending' AND tls_reports_done.at <= %s"
          " RETURNING 1")


class PostgresTLSReports(PostgresPart):
    submit: Callable[[Callable[[Cursor], Any]], Future[Any]]

    def submit_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> Future[None]:
        # Sorted by key: two nodes adding to the same rows lock them in one order.
        rows = sorted(_row(c) for c in counts)

        def add(cursor: Cursor) -> None:
            cursor.executemany(_ADD, rows)

        done: Future[None] = self.submit(add)
        return done

    def add_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> None:
        self.submit_tls_sessions(counts).result()

    def tls_sessions(self, policy_domain: str, day: str) -> list[TLSSessionCount]:
        return [_count(r) for r in self.db.query(
            "SELECT * FROM tls_sessions WHERE policy_domain = %s AND day = %s"
            " ORDER BY policy_type, policy_string, mx_host, result_type, receiving_mx,"
            " receiving_ip", (policy_domain.lower(), day))]

    def unreported_tls_days(self, before_day: str) -> list[tuple[str, str]]:
        return [(r["policy_domain"], r["day"]) for r in self.db.query(
            "SELECT DISTINCT s.policy_domain, s.day FROM tls_sessions s"
            " LEFT JOIN tls_reports_done d ON d.policy_domain = s.policy_domain"
            " AND d.day = s.day WHERE s.day < %s AND (d.day IS NULL"
            " OR (d.outcome = 'sending' AND d.at <= %s))"
            " ORDER BY s.day, s.policy_domain", (before_day, self.clock()))]

    def claim_tls_report(self, policy_domain: str, day: str, until: float) -> bool:
        with self.db.transaction() as cursor:
            cursor.execute(_CLAIM, (policy_domain.lower(), day, until, self.clock()))
            return cursor.fetchone() is not None

    def release_tls_report(self, policy_domain: str, day: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM tls_reports_done WHERE policy_domain = %s AND day = %s"
                           " AND outcome = 'sending'", (policy_domain.lower(), day))

    def mark_tls_reported(self, policy_domain: str, day: str, outcome: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO tls_reports_done (policy_domain, day, outcome, at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (policy_domain, day) DO UPDATE SET"
                " outcome = excluded.outcome, at = excluded.at",
                (policy_domain.lower(), day, outcome, self.clock()))

    def prune_tls_sessions(self, before_day: str) -> int:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM tls_sessions WHERE day < %s", (before_day,))
            pruned = cursor.rowcount
            cursor.execute("DELETE FROM tls_reports_done WHERE day < %s", (before_day,))
        return int(pruned)

    def report_target_failure(self, target: str) -> ReportTargetFailure | None:
        found = self.db.query("SELECT * FROM report_target_failures WHERE target = %s",
                              (target,))
        return _failure(found[0]) if found else None

    def record_report_target_failure(self, target: str, retry_at: float,
                                     detail: str) -> ReportTargetFailure:
        with self.db.transaction() as cursor:
            cursor.execute(
                "INSERT INTO report_target_failures (target, failures, retry_at, detail)"
                " VALUES (%s, 1, %s, %s) ON CONFLICT (target) DO UPDATE SET"
                " failures = report_target_failures.failures + 1,"
                " retry_at = excluded.retry_at, detail = excluded.detail RETURNING *",
                (target, retry_at, detail))
            row = cursor.fetchone()
        assert row is not None
        return _failure(row)

    def clear_report_target_failure(self, target: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM report_target_failures WHERE target = %s", (target,))


def _row(c: TLSSessionCount) -> tuple[str, str, str, str, str, str, str, str, str, str, int]:
    return (c.day, c.policy_domain.lower(), c.policy_type, "\n".join(c.policy_string),
            "\n".join(c.mx_host), c.result_type, c.sending_ip, c.receiving_mx.lower(),
            c.receiving_ip, c.detail, c.count)


def _lines(text: str) -> tuple[str, ...]:
    return tuple(text.split("\n")) if text else ()


def _count(r: Row) -> TLSSessionCount:
    return TLSSessionCount(r["day"], r["policy_domain"], r["policy_type"],
                           _lines(r["policy_string"]), _lines(r["mx_host"]), r["result_type"],
                           r["sending_ip"], r["receiving_mx"], r["receiving_ip"], r["detail"],
                           int(r["count"]))


def _failure(r: Row) -> ReportTargetFailure:
    return ReportTargetFailure(r["target"], int(r["failures"]), float(r["retry_at"]),
                               r["detail"])
