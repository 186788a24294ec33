"""Every Prometheus metric of Sealgate, defined here and only here, with the one-line hooks
the flow calls where events happen.

`sealgate serve` runs prometheus-client in multiprocess mode: the supervisor makes a private
directory (PROMETHEUS_MULTIPROC_DIR) before it starts a worker, each process writes its
counters to its own files there, and a scrape adds them up (gateway/ops/http.py). Queue depth
and ages are read at scrape time through the storage Protocols; they are not counters.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prometheus_client import Counter, Histogram, values
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import mark_process_dead

if TYPE_CHECKING:
    from gateway.delivery.deliverer import DomainResult
    from gateway.tls.dane import TLSALookup
    from gateway.tls.mta_sts import STSPolicy

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "sealgate_"

MESSAGES_ACCEPTED = Counter(
    "sealgate_messages_accepted", "Messages accepted over SMTP (250 to DATA)")
RECIPIENTS_ACCEPTED = Counter(
    "sealgate_recipients_accepted", "Recipients of accepted messages, by route mode", ["mode"])
SMTP_REFUSED = Counter(
    "sealgate_smtp_refused", "SMTP commands refused, by stage (mail, rcpt, data) and reason",
    ["stage", "reason"])
DELIVERIES = Counter(
    "sealgate_deliveries",
    "Delivery transactions that ended, by outcome and TLS verdict of the last host tried",
    ["kind", "outcome", "tls"])
DELIVERY_SECONDS = Histogram(
    "sealgate_delivery_seconds", "Time a delivery transaction took (MX look-up to the reply)",
    ["kind"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
TLS_SESSIONS = Counter(
    "sealgate_tls_sessions", "Host attempts by TLS version seen (\"none\": plaintext)",
    ["version"])
MTA_STS_POLICIES = Counter(
    "sealgate_mta_sts_policies", "MTA-STS policy look-ups by mode (\"absent\": none published)",
    ["mode"])
MTA_STS_VERDICTS = Counter(
    "sealgate_mta_sts_verdicts", "Hosts authenticated by MTA-STS (\"mta-sts\"), or refused by it",
    ["verdict"])
DANE_LOOKUPS = Counter(
    "sealgate_dane_lookups", "TLSA look-ups by status (usable, unusable, insecure, none, tempfail)",
    ["status"])
DANE_VERDICTS = Counter(
    "sealgate_dane_verdicts", "Hosts authenticated by DANE (dane-ee, dane-ta), or mismatched",
    ["verdict"])
PICKUPS_STORED_TOTAL = Counter(
    "sealgate_pickups_stored_by_runners", "Messages stored encrypted for pickup by the queue"
    " runners (recipients whose servers could not take them securely)")
NOTIFICATIONS = Counter(
    "sealgate_pickup_notifications", "Pickup notifications queued for their recipients")
DSNS = Counter(
    "sealgate_dsns", "Delivery status notifications queued, by kind", ["kind"])
PORTAL_SIGN_INS = Counter(
    "sealgate_portal_sign_ins", "Portal sign-ins, by method (password, code)", ["method"])
PORTAL_SIGN_IN_FAILURES = Counter(
    "sealgate_portal_sign_in_failures", "Portal sign-ins refused, by reason", ["reason"])
PURGED = Counter(
    "sealgate_purged",
    "Items destroyed by retention expiry (pickups, keys, spool debris, queue history, host"
    " TLS facts)", ["what"])
TLS_DOWNGRADES = Counter(
    "sealgate_tls_downgrades", "MX hosts seen downgraded (once per host and day), by kind"
    " (no-starttls, certificate)", ["kind"])

# Gauges read at scrape time (gateway/ops/http.py); named here with the rest.
QUEUE_RECIPIENTS = "sealgate_queue_recipients"
QUEUE_OLDEST_AGE = "sealgate_queue_oldest_age_seconds"
PICKUPS_STORED = "sealgate_pickups_stored"
RUNNER_HEARTBEAT_AGE = "sealgate_runner_heartbeat_age_seconds"
SCRAPE_GAUGES = (QUEUE_RECIPIENTS, QUEUE_OLDEST_AGE, PICKUPS_STORED, RUNNER_HEARTBEAT_AGE)

ALL: tuple[MetricWrapperBase, ...] = (
    MESSAGES_ACCEPTED, RECIPIENTS_ACCEPTED, SMTP_REFUSED, DELIVERIES, DELIVERY_SECONDS,
    TLS_SESSIONS, MTA_STS_POLICIES, MTA_STS_VERDICTS, DANE_LOOKUPS, DANE_VERDICTS,
    PICKUPS_STORED_TOTAL, NOTIFICATIONS, DSNS, PORTAL_SIGN_INS, PORTAL_SIGN_IN_FAILURES, PURGED,
    TLS_DOWNGRADES)


def metric_names() -> set[str]:
    """Every series name a scrape can show (counters with _total, histograms' parts)."""
    names = set(SCRAPE_GAUGES)
    for metric in ALL:
        base = metric._name  # noqa: SLF001 - prometheus-client keeps the name there
        if isinstance(metric, Counter):
            names |= {base + "_total", base + "_created"}
        elif isinstance(metric, Histogram):
            names |= {base + s for s in ("_bucket", "_count", "_sum", "_created")}
        else:
            names.add(base)
    return names


# -- multiprocess set-up -----------------------------------------------------------------------

def start_multiprocess(directory: Path) -> None:
    """In the supervisor, before any worker starts: a fresh private directory for every
    process's files, named in the environment the workers inherit. The metrics this process
    created at import switch to files there too (nothing was counted yet)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(mode=0o700, parents=True)
    for metric in ALL:  # labelled children are made again, in files, on their first use
        if metric._labelnames:  # noqa: SLF001
            metric.clear()  # (before the switch: clear() is for one process only)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    for metric in ALL:
        if not metric._labelnames:  # noqa: SLF001
            metric._metric_init()  # type: ignore[no-untyped-call]  # noqa: SLF001


def process_dead(pid: int) -> None:
    """A worker was reaped: its live gauges go (its counters stay counted)."""
    if directory := os.environ.get(MULTIPROC_ENV):
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


# -- hooks -------------------------------------------------------------------------------------

@functools.cache
def _reply_names() -> dict[str, str]:
    """The refusals of gateway/inbound/codes.py by text: RELAY_DENIED -> "relay_denied"."""
    from gateway.inbound import codes
    return {value: name.lower() for name, value in vars(codes).items()
            if name.isupper() and isinstance(value, str)}


def refused(reply: str, stage: str) -> str:
    """Count REPLY (an SMTP refusal) at STAGE; returns REPLY, so a site stays one line."""
    reason = _reply_names().get(reply) or reply[:9].strip() or "unknown"
    SMTP_REFUSED.labels(stage, reason).inc()
    return reply


def accepted(modes: list[str]) -> None:
    MESSAGES_ACCEPTED.inc()
    for mode in modes:
        RECIPIENTS_ACCEPTED.labels(mode).inc()


def tls_verdict(result: DomainResult) -> str:
    """The TLS of the last host tried: its failure, how it was authenticated, "encrypted"
    (TLS, nobody authenticated), "plaintext", or "none" (no host was tried)."""
    if not result.attempts:
        return "none"
    last = result.attempts[-1]
    if last.tls_failure:
        return last.tls_failure
    if last.tls_version:
        auth = last.authentication.value
        return "encrypted" if auth == "none" else auth
    return "plaintext" if last.address else "none"


def delivery_ended(kind: str, result: DomainResult, seconds: float) -> None:
    DELIVERIES.labels(kind, result.outcome.value, tls_verdict(result)).inc()
    DELIVERY_SECONDS.labels(kind).observe(seconds)
    for attempt in result.attempts:
        if attempt.address:
            TLS_SESSIONS.labels(attempt.tls_version or "none").inc()
        auth = attempt.authentication.value
        if auth == "mta-sts" or attempt.tls_failure == "mta-sts-mismatch":
            MTA_STS_VERDICTS.labels(attempt.tls_failure or auth).inc()
        if auth.startswith("dane") or attempt.tls_failure == "dane-mismatch":
            DANE_VERDICTS.labels(attempt.tls_failure or auth).inc()


def sts_policy_seen(policy: STSPolicy | None) -> None:
    MTA_STS_POLICIES.labels(policy.mode.value if policy is not None else "absent").inc()


def tls_downgrade(kind: str) -> None:
    TLS_DOWNGRADES.labels(kind).inc()


def tlsa_looked_up(lookup: TLSALookup | None) -> TLSALookup | None:
    if lookup is not None:
        DANE_LOOKUPS.labels(lookup.status.value).inc()
    return lookup


P = ParamSpec("P")
R = TypeVar("R")


def timed_delivery(kind: str) -> Callable[[Callable[P, Awaitable[R]]],
                                          Callable[P, Awaitable[R]]]:
    """Decorates a Deliverer method returning a DomainResult: counts and times it, and logs
    the outcome with its recipients and TLS facts (gateway/ops/logs.py)."""
    def wrap(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.monotonic()
            result = await method(*args, **kwargs)
            seconds = time.monotonic() - started
            try:
                from gateway.ops.logs import log_delivery
                call = signature.bind(*args, **kwargs).arguments
                delivery_ended(kind, result, seconds)  # type: ignore[arg-type]
                log_delivery(kind, call, result, seconds)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - counting must never fail a delivery
                logging.getLogger("sealgate.ops").exception("counting a delivery failed")
            return result
        return timed
    return wrap


def pickup_stored() -> None:
    PICKUPS_STORED_TOTAL.inc()


def notification_built() -> None:
    NOTIFICATIONS.inc()


def dsn_built(delayed: bool, double_bounce: bool) -> None:
    DSNS.labels("double-bounce" if double_bounce else "delay" if delayed else "failure").inc()


def receipt_built() -> None:
    """A success DSN (delivered, relayed, stored for pickup): a receipt for the sender."""
    DSNS.labels("success").inc()


def purged(what: str, count: int = 1) -> None:
    PURGED.labels(what).inc(count)


def sign_in(method: str) -> None:
    PORTAL_SIGN_INS.labels(method).inc()


def sign_in_failed(reason: str) -> None:
    PORTAL_SIGN_IN_FAILURES.labels(reason).inc()


def describe_all() -> dict[str, Any]:
    """Name -> help text of every metric (the README table and the dashboard test)."""
    return {m._name: m._documentation for m in ALL}  # noqa: SLF001
