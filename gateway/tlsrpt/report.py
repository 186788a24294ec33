"""The aggregate report of RFC 8460 4.4 for one policy domain and one UTC day, built from
the counted sessions: a `policies` entry per policy the sessions were checked against,
with its summary and the failure details, one per (result, sending address, receiving
host, receiving address)."""

from __future__ import annotations

import gzip
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.storage.protocols import TLSSessionCount

SUCCESS = "success"


@dataclass(frozen=True)
class ReportHeader:
    """Who reports: organization-name, contact-info and the submitter's domain."""

    organization: str
    contact: str
    submitter: str


@dataclass(frozen=True)
class TLSReport:
    policy_domain: str
    day: str
    report_id: str
    document: dict[str, Any]

    @property
    def start(self) -> datetime:
        return day_start(self.day)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    def json_bytes(self) -> bytes:
        return json.dumps(self.document, indent=1, sort_keys=False).encode()

    def gzipped(self) -> bytes:
        # mtime=0: the same report compresses to the same bytes (no time in the header).
        return gzip.compress(self.json_bytes(), mtime=0)

    def filename(self, submitter: str) -> str:
        """RFC 8460 5.3: submitter!policy-domain!begin!end!unique-id.json.gz"""
        begin, end = int(self.start.timestamp()), int(self.end.timestamp())
        unique = self.report_id.rpartition("@")[0].rpartition("-")[2]
        return f"{submitter}!{self.policy_domain}!{begin}!{end}!{unique}.json.gz"


def day_start(day: str) -> datetime:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc)


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def new_report_id(day: str, policy_domain: str, submitter: str) -> str:
    return f"{day}T00:00:00Z-{policy_domain}-{secrets.token_hex(6)}@{submitter}"


def build_report(header: ReportHeader, policy_domain: str, day: str,
                 sessions: Sequence[TLSSessionCount], report_id: str = "") -> TLSReport:
    report_id = report_id or new_report_id(day, policy_domain, header.submitter)
    start = day_start(day)
    document: dict[str, Any] = {
        "organization-name": header.organization,
        "date-range": {"start-datetime": _rfc3339(start),
                       "end-datetime": _rfc3339(start + timedelta(days=1) -
                                                timedelta(seconds=1))},
        "contact-info": header.contact,
        "report-id": report_id,
        "policies": _policies(policy_domain, sessions),
    }
    return TLSReport(policy_domain, day, report_id, document)


_PolicyKey = tuple[str, tuple[str, ...], tuple[str, ...]]


def _policies(policy_domain: str, sessions: Sequence[TLSSessionCount]) -> list[dict[str, Any]]:
    grouped: dict[_PolicyKey, list[TLSSessionCount]] = {}
    for s in sessions:
        grouped.setdefault((s.policy_type, s.policy_string, s.mx_host), []).append(s)
    return [_policy_entry(policy_domain, key, rows) for key, rows in sorted(grouped.items())]


def _policy_entry(policy_domain: str, key: _PolicyKey,
                  rows: list[TLSSessionCount]) -> dict[str, Any]:
    policy_type, strings, mx_host = key
    policy: dict[str, Any] = {"policy-type": policy_type}
    if strings:
        policy["policy-string"] = list(strings)
    policy["policy-domain"] = policy_domain
    if mx_host:
        policy["mx-host"] = list(mx_host)
    failures = [r for r in rows if r.result_type != SUCCESS]
    entry: dict[str, Any] = {
        "policy": policy,
        "summary": {
            "total-successful-session-count": sum(r.count for r in rows
                                                  if r.result_type == SUCCESS),
            "total-failure-session-count": sum(r.count for r in failures),
        },
    }
    if failures:
        entry["failure-details"] = [_failure(r) for r in failures]
    return entry


def _failure(row: TLSSessionCount) -> dict[str, Any]:
    detail: dict[str, Any] = {"result-type": row.result_type}
    if row.sending_ip:
        detail["sending-mta-ip"] = row.sending_ip
    if row.receiving_mx:
        detail["receiving-mx-hostname"] = row.receiving_mx
    if row.receiving_ip:
        detail["receiving-ip"] = row.receiving_ip
    detail["failed-session-count"] = row.count
    if row.detail:
        detail["failure-reason-code"] = row.detail
    return detail
