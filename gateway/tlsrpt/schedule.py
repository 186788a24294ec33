"""Which reports are due and sending them: every domain with counted sessions on a UTC day
that has ended gets that day's report, once, at each rua target its `_smtp._tls` record
names (RFC 8460 4.1: a report covers a whole UTC day). `serve` runs this every
CHECK_INTERVAL (so reports leave shortly after midnight UTC); `sealgate tlsrpt send` runs it
once. A day is marked done when a target took its report, when the domain takes no
reports, or when GIVE_UP_AFTER has passed without any target taking it.

Back-off: a target that failed (an HTTPS POST refused, timed out, answered non-2xx) is not
tried again before 1 h, doubling with each failure in a row up to a day; the failures are
kept in the database, so every node and `tlsrpt send` see them. A mailto: target counts as
having taken the report once the mail is queued (the queue retries it like any mail); it
fails when the last report mailed to it bounced, and is then backed off the same way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver

from gateway.config import Config
from gateway.queue.model import State
from gateway.storage.protocols import RecipientStatus, ReportTargetFailure, Storage
from gateway.tlsrpt.report import ReportHeader, TLSReport, build_report, day_start
from gateway.tlsrpt.results import utc_day
from gateway.tlsrpt.rua import RUAStatus, lookup_rua
from gateway.tlsrpt.send import (
    REPORT_REASON,
    ReportSendError,
    mail_address,
    post_report,
    queue_report_mail,
)

log = logging.getLogger("sealgate.tlsrpt")
CHECK_INTERVAL = 3600.0        # seconds between looks for due reports in `serve`
FIRST_BACKOFF = 3600.0         # a failed target waits this long, doubled per failure
MAX_BACKOFF = 86400.0
GIVE_UP_AFTER = 3 * 86400.0    # after the day's end: stop trying to send its report
KEEP_DAYS = 30                 # counted sessions are kept this many days
CLAIM_FOR = 600.0              # seconds one process holds the sending of one report


@dataclass
class TargetOutcome:
    target: str
    result: str   # "queued" (mail), "posted" (HTTPS), "failed", "backing-off"
    detail: str = ""


@dataclass
class ReportOutcome:
    domain: str
    day: str
    outcome: str  # "sent", "no-rua", "retry-later", "gave-up", "claimed" (by another)
    detail: str = ""
    report_id: str = ""
    targets: list[TargetOutcome] = field(default_factory=list)
    report: dict[str, Any] | None = None  # the JSON sent, for `tlsrpt send --json`

    def as_dict(self) -> dict[str, Any]:
        return {"domain": self.domain, "day": self.day, "outcome": self.outcome,
                "detail": self.detail, "report_id": self.report_id,
                "targets": [vars(t) for t in self.targets], "report": self.report}


def backoff(failures: int) -> float:
    return float(min(FIRST_BACKOFF * 2 ** max(failures - 1, 0), MAX_BACKOFF))


class TLSReporter:
    def __init__(self, config: Config, store: Storage,
                 resolver: dns.asyncresolver.Resolver) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        tlsrpt = config.tlsrpt
        self.sender = tlsrpt.sender(config)
        self.submitter = tlsrpt.submitter_domain(config)
        self.header = ReportHeader(tlsrpt.organization or config.smtp.hostname,
                                   tlsrpt.contact or self.sender, self.submitter)

    async def send_due(self) -> list[ReportOutcome]:
        """Send every report due now; what happened to each."""
        now = self.store.clock()
        pending = await asyncio.to_thread(self.store.unreported_tls_days, utc_day(now))
        outcomes = [await self.send_report(domain, day) for domain, day in pending]
        await asyncio.to_thread(self.store.prune_tls_sessions,
                                utc_day(now - KEEP_DAYS * 86400.0))
        return outcomes

    async def send_report(self, domain: str, day: str) -> ReportOutcome:
        """DOMAIN's report for DAY, under a claim: two nodes (or a node and `tlsrpt send`)
        never send the same report."""
        until = self.store.clock() + CLAIM_FOR
        if not await asyncio.to_thread(self.store.claim_tls_report, domain, day, until):
            return ReportOutcome(domain, day, "claimed", "being sent by another process")
        try:
            outcome = await self._send_claimed(domain, day)
        except BaseException:
            await asyncio.to_thread(self.store.release_tls_report, domain, day)
            raise
        if outcome.outcome == "retry-later":
            await asyncio.to_thread(self.store.release_tls_report, domain, day)
        return outcome

    async def _send_claimed(self, domain: str, day: str) -> ReportOutcome:
        rua = await lookup_rua(domain, self.resolver)
        if rua.status is RUAStatus.TEMPFAIL:
            return self._not_sent(domain, day, rua.detail)
        if rua.status is RUAStatus.NONE:
            await asyncio.to_thread(self.store.mark_tls_reported, domain, day, "no-rua")
            return ReportOutcome(domain, day, "no-rua", rua.detail)
        sessions = await asyncio.to_thread(self.store.tls_sessions, domain, day)
        report = build_report(self.header, domain, day, sessions)
        outcome = ReportOutcome(domain, day, "sent", "", report.report_id,
                                report=report.document)
        for target in rua.targets:
            outcome.targets.append(await self._deliver(report, target))
        if any(t.result in ("queued", "posted") for t in outcome.targets):
            await asyncio.to_thread(self.store.mark_tls_reported, domain, day, "sent")
            log.info("TLS report %s for %s (%s) sent", report.report_id, domain, day)
            return outcome
        failed = self._not_sent(domain, day, "; ".join(
            f"{t.target}: {t.detail}" for t in outcome.targets))
        failed.targets, failed.report_id = outcome.targets, report.report_id
        return failed

    def _not_sent(self, domain: str, day: str, why: str) -> ReportOutcome:
        """Tried again at the next run, unless the day ended too long ago."""
        if self.store.clock() - day_start(day).timestamp() - 86400.0 > GIVE_UP_AFTER:
            self.store.mark_tls_reported(domain, day, "gave-up")
            log.warning("TLS report for %s (%s) given up: %s", domain, day, why)
            return ReportOutcome(domain, day, "gave-up", why)
        log.warning("TLS report for %s (%s) not sent yet: %s", domain, day, why)
        return ReportOutcome(domain, day, "retry-later", why)

    async def _deliver(self, report: TLSReport, target: str) -> TargetOutcome:
        failure = await asyncio.to_thread(self.store.report_target_failure, target)
        if target.lower().startswith("mailto:"):
            failure = await asyncio.to_thread(self._note_bounce, target, failure)
        if failure is not None and failure.retry_at > self.store.clock():
            return TargetOutcome(target, "backing-off",
                                 f"{failure.failures} failures in a row, last: {failure.detail}")
        try:
            result = await self._send(report, target)
        except ReportSendError as exc:
            failures = failure.failures + 1 if failure is not None else 1
            retry_at = self.store.clock() + backoff(failures)
            await asyncio.to_thread(self.store.record_report_target_failure, target,
                                    retry_at, str(exc))
            return TargetOutcome(target, "failed", str(exc))
        if failure is not None and result.result == "posted":  # mail: once delivered
            await asyncio.to_thread(self.store.clear_report_target_failure, target)
        return result

    def _note_bounce(self, target: str,
                     failure: ReportTargetFailure | None) -> ReportTargetFailure | None:
        """A mailto: target fails when the last report mailed to it bounced: that bounce is
        counted as a failure once (the queue itself retried the mail before it bounced)."""
        last = last_report_mail(self.store, mail_address(target))
        if last is not None and last.state == State.DELIVERED and failure is not None:
            self.store.clear_report_target_failure(target)  # it takes reports again
            return None
        if last is None or last.state != State.BOUNCED:
            return failure
        noted = failure.retry_at - backoff(failure.failures) if failure else float("-inf")
        if last.updated <= noted:
            return failure
        failures = failure.failures + 1 if failure is not None else 1
        return self.store.record_report_target_failure(
            target, self.store.clock() + backoff(failures), f"bounced: {last.last_reply}")

    async def _send(self, report: TLSReport, target: str) -> TargetOutcome:
        if target.lower().startswith("mailto:"):
            queue_id = await asyncio.to_thread(
                queue_report_mail, self.store, report, target, sender=self.sender,
                submitter=self.submitter, internal_domains=self.config.internal.domains)
            return TargetOutcome(target, "queued", queue_id)
        status = await post_report(report, target, self.resolver, self.config.delivery.ca_file)
        return TargetOutcome(target, "posted", f"HTTP {status}")


def last_report_mail(store: Storage, address: str) -> RecipientStatus | None:
    """The newest report mail queued to ADDRESS, as the queue knows it now."""
    rows = [r for m in store.messages_to(address) for r in m.recipients
            if r.rcpt == address and r.reason == REPORT_REASON]
    return max(rows, key=lambda r: r.updated, default=None)


async def report_forever(config: Config, store: Storage,
                         resolver: dns.asyncresolver.Resolver,
                         interval: float = CHECK_INTERVAL) -> None:
    """`serve`'s schedule: look for due reports now and every INTERVAL; never raises."""
    reporter = TLSReporter(config, store, resolver)
    while True:
        try:
            await reporter.send_due()
        except Exception as exc:  # noqa: BLE001 - a bad turn is logged; the next one runs
            log.error("sending TLS reports failed: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval)


def start_reporting(config: Config, store: Storage) -> list[asyncio.Task[None]]:
    """The schedule's task when [tlsrpt] enabled (none otherwise), for the supervisor."""
    if not config.tlsrpt.enabled:
        return []
    from gateway.config import parse_duration
    from gateway.delivery.mx import make_resolver

    resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
    return [asyncio.create_task(report_forever(config, store, resolver))]
