"""Logging of every Sealgate process: text (the default) or JSON, one object a line
(`[log] format = "json"`), with the facts of the event as fields: `event`, `queue_id`,
`message_id` (the header), `recipient`, TLS facts and `reason` where they apply.

Sites pass those facts with `extra=` (outcome() builds them for the queue runner's lines).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gateway.ops import metrics

if TYPE_CHECKING:
    from gateway.delivery.deliverer import DomainResult

TEXT_FORMAT = "%(asctime)s %(name)s{worker} %(levelname)s %(message)s"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

def outcome(event: str, queue_id: str, recipients: list[str], reason: str = "",
            **more: str) -> dict[str, Any]:
    """The `extra=` of a queue runner's outcome line: delivered, deferred, bounced, ..."""
    # One recipient is a string, as on every other site; several (one line) a list.
    recipient: str | list[str] = recipients[0] if len(recipients) == 1 else recipients
    fields: dict[str, Any] = {"event": event, "queue_id": queue_id, "recipient": recipient}
    if reason:
        fields["reason"] = reason
    return fields | more


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The event's facts: what the site passed with extra=."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JSONFormatter(logging.Formatter):
    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "process": self.process,
            "message": record.getMessage(),
        }
        entry.update(fields_of(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """logging's text format, with the date and time of a second formatted once: at hundreds
    of lines a second, localtime and strftime for each line were a visible part of a
    worker's time."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format,
                                                  self.converter(record.created)))
        return f"{self._second[1]},{int(record.msecs):03d}"


def _skip_unused_record_facts() -> None:
    """Neither format shows a record's source line, thread or process: not computing them
    (the logging HOWTO's "Optimization") saves a walk up the stack and three calls a line."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def configure(log_format: str = "text", process: str = "") -> None:
    """Root logging for this process: one handler on stderr in FORMAT. PROCESS names a
    worker ("smtp-1"); the supervisor and the command line have none."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JSONFormatter(process or "supervisor"))
    else:
        handler.setFormatter(TextFormatter(
            TEXT_FORMAT.format(worker=f"[{process}]" if process else "")))
    root = logging.getLogger()
    for old in list(root.handlers):  # basicConfig's (exactly a StreamHandler); others stay
        if type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    _skip_unused_record_facts()
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command
    logging.captureWarnings(True)  # a warning is a log line too, in the same format
    if log_format == "json":  # what Python itself prints to stderr becomes a line too
        sys.excepthook = _log_uncaught
        sys.unraisablehook = _log_unraisable


def _log_uncaught(kind: type[BaseException], value: BaseException,
                  trace: TracebackType | None) -> None:
    logging.getLogger("sealgate").critical("uncaught %s: %s", kind.__name__, value,
                                           exc_info=(kind, value, trace))


def _log_unraisable(unraisable: Any) -> None:
    exc = unraisable.exc_value
    logging.getLogger("sealgate").warning(
        "%s: %s: %s", unraisable.err_msg or "Exception ignored", type(exc).__name__, exc)


# -- events logged from here (their sites call one function) -----------------------------------

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(\S[^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_OUR_ID = re.compile(rb"^Received:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*?\(Sealgate\) with \S+ id"
                     rb" ([A-Za-z0-9]+)", re.MULTILINE)


def message_facts(content: bytes) -> dict[str, str]:
    """queue_id (from our Received field) and message_id (the header) of a message."""
    end = content.find(b"\r\n\r\n")
    head = content if end < 0 else content[:end + 2]
    facts = {}
    if found := _OUR_ID.search(head):
        facts["queue_id"] = found.group(1).decode("ascii")
    if found := _MESSAGE_ID.search(head):
        facts["message_id"] = found.group(1).decode("utf-8", errors="replace").strip()
    return facts


_delivery_log = logging.getLogger("sealgate.delivery")


def log_delivery(kind: str, call: dict[str, Any], result: DomainResult, seconds: float) -> None:
    """One line per delivery transaction, as Postfix's smtp line: where, how, TLS, reply."""
    destination = call.get("domain") or call.get("host") or ""
    last = result.attempts[-1] if result.attempts else None
    facts: dict[str, Any] = {
        "event": "delivery", "kind": kind, "outcome": result.outcome.value,
        "domain": destination, "recipient": list(call.get("rcpts") or []),
        "tls": metrics.tls_verdict(result), "delay": round(seconds, 3),
        "reason": result.reply,
        **message_facts(call.get("content") or b""),
    }
    if last is not None:
        facts.update(host=last.host, address=last.address, tls_version=last.tls_version,
                     cipher=last.cipher, verified=last.verified,
                     authentication=last.authentication.value)
    via = f" via {last.host}[{last.address}]" if last is not None and last.address else ""
    tls = f" {last.tls_version}" if last is not None and last.tls_version else ""
    _delivery_log.info("%s to %s%s%s: %s in %.2f s (%s)", facts.get("queue_id", "-"),
                       destination, via, tls, result.outcome.value, seconds, result.reply,
                       extra=facts)


_portal_log = logging.getLogger("sealgate.portal")


def portal_sign_in(address: str, client: str, method: str) -> None:
    metrics.sign_in(method)
    _portal_log.info("portal sign-in: %s from %s (%s)", address, client, method,
                     extra={"event": "portal-sign-in", "recipient": address, "client": client,
                            "method": method})


def portal_sign_in_failed(address: str, client: str, reason: str) -> None:
    metrics.sign_in_failed(reason)
    _portal_log.warning("portal sign-in refused: %s from %s (%s)", address, client, reason,
                        extra={"event": "portal-sign-in-failed", "recipient": address,
                               "client": client, "reason": reason})


_vault_log = logging.getLogger("sealgate.vault")


def notification_queued(recipient: str, link: str) -> None:
    """A pickup notification was written for RECIPIENT (it is queued with the pickup)."""
    metrics.notification_built()
    _vault_log.info("pickup notification for %s", recipient,
                    extra={"event": "notification", "recipient": recipient,
                           "pickup_id": link.rpartition("/")[2]})
