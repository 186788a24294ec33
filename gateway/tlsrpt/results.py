"""What one delivery to a domain showed, as RFC 8460 counts it: per MX host session, the
policy it was checked against (MTA-STS, the host's TLSA records, or none) and its result
type; and the recorder that adds those up in memory and hands them to the store in batches
(a delivery never waits for a database write of its own).

Result types (RFC 8460 4.3) from Sealgate's verdicts (gateway/tls/verdict.py):
  no-starttls                        -> starttls-not-supported
  cert-not-verified / mta-sts-mismatch with a certificate problem
                                     -> certificate-expired, certificate-host-mismatch or
                                        certificate-not-trusted, by what OpenSSL or the name
                                        check said
  mta-sts-mismatch, host not listed  -> validation-failure (RFC 8460 has no narrower type)
  dane-mismatch                      -> tlsa-invalid (no record of the RRset matched)
  TLSA look-up failed                -> dnssec-invalid
  tls-handshake-failed               -> validation-failure
  MTA-STS policy fetch failed        -> sts-policy-fetch-error, sts-webpki-invalid (the
                                        policy host's certificate) or sts-policy-invalid
`dane-required` is never produced: Sealgate has no setting that demands DANE of a domain.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from gateway.storage.protocols import TLSReportStore, TLSSessionCount
from gateway.tls.dane import TLSARecord
from gateway.tls.mta_sts import STSMode, STSPolicy

log = logging.getLogger("sealgate.tlsrpt")
FLUSH_INTERVAL = 5.0     # seconds between batches of counts handed to the store
MAX_PENDING_KEYS = 50_000  # distinct counts kept in memory while the store refuses them


class ResultType(enum.StrEnum):
    SUCCESS = "success"
    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    CERTIFICATE_EXPIRED = "certificate-expired"
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    VALIDATION_FAILURE = "validation-failure"
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    STS_POLICY_INVALID = "sts-policy-invalid"
    STS_WEBPKI_INVALID = "sts-webpki-invalid"
    TLSA_INVALID = "tlsa-invalid"
    DNSSEC_INVALID = "dnssec-invalid"
    DANE_REQUIRED = "dane-required"


class PolicyType(enum.StrEnum):
    STS = "sts"
    TLSA = "tlsa"
    NONE = "no-policy-found"


@dataclass(frozen=True)
class ReportedPolicy:
    """A policy as a report names it (RFC 8460 4.3: policy-type, policy-string, mx-host)."""

    type: PolicyType
    strings: tuple[str, ...] = ()
    mx_host: tuple[str, ...] = ()


NO_POLICY = ReportedPolicy(PolicyType.NONE)


def sts_policy(policy: STSPolicy) -> ReportedPolicy:
    """The policy's lines as published (RFC 8461 3.2), its mx patterns as mx-host."""
    lines = ("version: STSv1", f"mode: {policy.mode.value}",
             *(f"mx: {p}" for p in policy.mx_patterns), f"max_age: {policy.max_age}")
    return ReportedPolicy(PolicyType.STS, lines, tuple(policy.mx_patterns))


def tlsa_policy(host: str, records: Sequence[TLSARecord]) -> ReportedPolicy:
    """The host's TLSA records in presentation form ("3 1 1 <hex>")."""
    lines = tuple(f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}" for r in records)
    return ReportedPolicy(PolicyType.TLSA, lines, (host.lower(),))


class SessionFacts(Protocol):
    """What the deliverer knows of one host attempt (delivery.deliverer.HostAttempt)."""

    host: str
    address: str
    reply: str
    tls_version: str | None
    tls_failure: str | None
    starttls_offered: bool | None
    tlsa: tuple[TLSARecord, ...]
    tlsa_failed: bool
    local_address: str


@dataclass(frozen=True)
class Session:
    """One session's line in a report."""

    policy: ReportedPolicy
    result: ResultType
    receiving_mx: str = ""
    receiving_ip: str = ""
    sending_ip: str = ""
    detail: str = ""


def certificate_result(detail: str) -> ResultType:
    """Which certificate failure DETAIL (OpenSSL's or the name check's words) describes."""
    text = detail.lower()
    if "expired" in text or "not yet valid" in text:
        return ResultType.CERTIFICATE_EXPIRED
    if "name does not match" in text or "hostname mismatch" in text:
        return ResultType.CERTIFICATE_HOST_MISMATCH
    return ResultType.CERTIFICATE_NOT_TRUSTED


def failure_result(failure: str, detail: str) -> ResultType:
    """The result type of a host attempt that failed its requirement with FAILURE (a
    TLSFailureReason value)."""
    if failure == "no-starttls":
        return ResultType.STARTTLS_NOT_SUPPORTED
    if failure == "dane-mismatch":
        return ResultType.TLSA_INVALID
    if failure == "cert-not-verified":
        return certificate_result(detail)
    if failure == "mta-sts-mismatch" and "certificate" in detail.lower():
        return certificate_result(detail)
    return ResultType.VALIDATION_FAILURE


def sts_fetch_result(detail: str) -> ResultType:
    """Why a domain's MTA-STS policy could not be had (mta_sts.fetch_policy_body's words)."""
    text = detail.lower()
    if "certificate" in text:
        return ResultType.STS_WEBPKI_INVALID
    if "invalid policy" in text or "content-type" in text or "not utf-8" in text:
        return ResultType.STS_POLICY_INVALID
    return ResultType.STS_POLICY_FETCH_ERROR


def sessions_of(domain: str, attempts: Sequence[SessionFacts], sts: STSPolicy | None,
                sts_failure: str = "") -> list[Session]:
    """The report lines of one delivery to DOMAIN: a line per host session that reached
    TLS negotiation (or was refused by policy before connecting), and one for an MTA-STS
    policy that could not be fetched (STS_FAILURE: why)."""
    sessions = []
    if sts_failure:
        sessions.append(Session(ReportedPolicy(PolicyType.STS), sts_fetch_result(sts_failure),
                                f"mta-sts.{domain}", detail=sts_failure[:300]))
    for attempt in attempts:
        session = _session(attempt, sts)
        if session is not None:
            sessions.append(session)
    return sessions


def _policy_for(attempt: SessionFacts, sts: STSPolicy | None) -> ReportedPolicy:
    if attempt.tlsa or attempt.tlsa_failed:
        return tlsa_policy(attempt.host, attempt.tlsa)
    if sts is not None and sts.mode is not STSMode.NONE:
        return sts_policy(sts)
    return NO_POLICY


def _session(attempt: SessionFacts, sts: STSPolicy | None) -> Session | None:
    policy = _policy_for(attempt, sts)
    where = {"receiving_mx": attempt.host.lower(), "receiving_ip": attempt.address,
             "sending_ip": attempt.local_address}
    if attempt.tlsa_failed:
        return Session(policy, ResultType.DNSSEC_INVALID, detail=attempt.reply[:300], **where)
    failure = attempt.tls_failure
    if not attempt.address and failure != "mta-sts-mismatch":
        return None  # never connected (an answer from the TLS cache): no session to count
    if failure:
        if failure == "policy":
            return None
        return Session(policy, failure_result(failure, attempt.reply),
                       detail=attempt.reply[:300], **where)
    if attempt.tls_version:
        return Session(policy, ResultType.SUCCESS)
    if attempt.starttls_offered is False:  # opportunistic mail went in plaintext
        return Session(policy, ResultType.STARTTLS_NOT_SUPPORTED,
                       detail=f"{attempt.host}: no STARTTLS", **where)
    return None  # no TLS negotiation took place (connection refused, timed out)


def utc_day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d")


_Key = tuple[str, str, ReportedPolicy, ResultType, str, str, str]


class SessionRecorder:
    """Adds up sessions in memory and hands them to the store at most every
    FLUSH_INTERVAL seconds, as one unit of work (the store's writer shares its commit with
    the queue's). Counts the store refuses are kept and offered again with the next batch.
    Thread-safe: flush() may run from any thread."""

    def __init__(self, store: TLSReportStore, clock: Callable[[], float] | None = None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.clock = clock or store.clock
        self.flush_interval = flush_interval
        self._counts: dict[_Key, int] = {}
        self._details: dict[_Key, str] = {}
        self._lock = threading.Lock()
        self._flushed = time.monotonic()

    def record(self, domain: str, sessions: Sequence[Session]) -> None:
        day = utc_day(self.clock())
        with self._lock:
            for s in sessions:
                key: _Key = (day, domain.lower(), s.policy, s.result, s.sending_ip,
                             s.receiving_mx, s.receiving_ip)
                if key not in self._counts and len(self._counts) >= MAX_PENDING_KEYS:
                    continue  # the store has refused counts for long: keep what we have
                self._counts[key] = self._counts.get(key, 0) + 1
                if s.detail:
                    self._details[key] = s.detail
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """flush() when FLUSH_INTERVAL has passed since the last one."""
        if time.monotonic() - self._flushed >= self.flush_interval:
            self.flush()

    def flush(self) -> Future[None] | None:
        """Hand what was counted to the store now; the future of that write, or None."""
        with self._lock:
            counts, self._counts = self._counts, {}
            details, self._details = self._details, {}
            self._flushed = time.monotonic()
        if not counts:
            return None
        rows = [_row(key, count, details.get(key, "")) for key, count in counts.items()]
        try:
            done = self.store.submit_tls_sessions(rows)
        except Exception as exc:  # noqa: BLE001 - a closed store: keep the counts
            self._give_back(rows, exc)
            return None
        done.add_done_callback(lambda f: self._after(f, rows))
        return done

    def _after(self, done: Future[None], rows: list[TLSSessionCount]) -> None:
        exc = done.exception()
        if exc is not None:
            self._give_back(rows, exc)

    def _give_back(self, rows: list[TLSSessionCount], exc: BaseException) -> None:
        log.warning("TLS report counts not recorded yet (%s: %s); kept for the next batch",
                    type(exc).__name__, exc)
        with self._lock:
            for row in rows:
                key = _key_of(row)
                self._counts[key] = self._counts.get(key, 0) + row.count
                if row.detail:
                    self._details.setdefault(key, row.detail)


def _row(key: _Key, count: int, detail: str) -> TLSSessionCount:
    day, domain, policy, result, sending_ip, mx, ip = key
    return TLSSessionCount(day, domain, policy.type.value, policy.strings, policy.mx_host,
                           result.value, sending_ip, mx, ip, detail, count)


def _key_of(row: TLSSessionCount) -> _Key:
    policy = ReportedPolicy(PolicyType(row.policy_type), row.policy_string, row.mx_host)
    return (row.day, row.policy_domain, policy, ResultType(row.result_type), row.sending_ip,
            row.receiving_mx, row.receiving_ip)


__all__ = ["NO_POLICY", "PolicyType", "ReportedPolicy", "ResultType", "Session",
           "SessionRecorder", "certificate_result", "failure_result",
           "sessions_of", "sts_fetch_result", "sts_policy", "tlsa_policy", "utc_day"]
