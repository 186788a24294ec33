"""Getting a report to one rua target (RFC 8460 5): by mail, queued like every mail
Sealgate writes (so DKIM-signed by the queue runner when [dkim] is set, and retried like
any other), or by HTTPS POST of the gzipped JSON.

A report mail carries `TLS-Required: No` (RFC 8689 5): it must still go out when TLS to the
domain is what is broken, which is what the report is about.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import ipaddress
import ssl
import urllib.parse
from collections.abc import Iterable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import dns.asyncresolver
import dns.exception

from gateway.classify.internal import report_route
from gateway.delivery.mx import MXResolver
from gateway.queue.model import Mode
from gateway.storage.protocols import QueueStore, Route
from gateway.tlsrpt.report import TLSReport

MEDIA_TYPE = "application/tlsrpt+gzip"
POST_TIMEOUT = 30.0
REPORT_REASON = "TLS report (RFC 8460)"


class ReportSendError(Exception):
    """A target did not take the report; the message says why."""


def report_mail(report: TLSReport, *, sender: str, to: str, submitter: str) -> bytes:
    """The multipart/report (report-type=tlsrpt) of RFC 8460 5.3, with the gzipped JSON."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = (f"Report Domain: {report.policy_domain} Submitter: {submitter}"
                          f" Report-ID: <{report.report_id}>")
    message["Date"] = format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = make_msgid(domain=submitter or None)
    message["TLS-Report-Domain"] = report.policy_domain
    message["TLS-Report-Submitter"] = submitter
    message["TLS-Required"] = "No"
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"This is an aggregate TLS report (RFC 8460) from {submitter} for"
                        f" {report.policy_domain}, {report.day} (UTC).\n")
    message.add_attachment(report.gzipped(), maintype="application", subtype="tlsrpt+gzip",
                           filename=report.filename(submitter))
    message.set_type("multipart/report")
    message.set_param("report-type", "tlsrpt")
    return message.as_bytes(policy=email.policy.SMTP)


def mail_address(target: str) -> str:
    return urllib.parse.unquote(target.partition(":")[2]).strip()


def queue_report_mail(store: QueueStore, report: TLSReport, target: str, *, sender: str,
                      submitter: str, internal_domains: Iterable[str] = ()) -> str:
    """Queue the report for the mailto: TARGET; its queue id."""
    to = mail_address(target)
    content = report_mail(report, sender=sender, to=to, submitter=submitter)
    route = report_route(to, REPORT_REASON, internal_domains)
    if route.mode != Mode.INTERNAL:  # TLS-Required: No, honoured by our own delivery too
        route = Route(route.rcpt, False, Mode.TLS_OPTIONAL, route.reason)
    return store.enqueue(sender, [route], content)


async def post_report(report: TLSReport, url: str, resolver: dns.asyncresolver.Resolver,
                      ca_file: str = "", timeout: float = POST_TIMEOUT) -> int:
    """POST the gzipped report to URL (RFC 8460 5.2); the HTTP status (2xx), or
    ReportSendError. The host is looked up with Sealgate's own resolver ([dns]), like the
    MX hosts; its certificate is verified (system store and delivery.ca_file). A redirect
    is an answer, not a place to send the report again."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or 443
    except ValueError:
        raise ReportSendError("bad port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    body = report.gzipped()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {MEDIA_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nUser-Agent: Sealgate TLS-RPT\r\n"
            "Connection: close\r\n\r\n").encode()
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    errors = []
    for address in await _addresses(host, resolver):
        try:
            async with asyncio.timeout(timeout):
                status = await _exchange(address, port, host, head + body, context)
        except TimeoutError:
            errors.append(f"[{address}] timed out after {timeout:g}s")
            continue
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            errors.append(f"[{address}] {exc or type(exc).__name__}")
            continue
        if not 200 <= status < 300:
            raise ReportSendError(f"HTTP {status}")
        return status
    raise ReportSendError("; ".join(errors))


async def _addresses(host: str, resolver: dns.asyncresolver.Resolver) -> list[str]:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    try:
        found = await MXResolver(resolver).addresses(host)
    except dns.exception.DNSException as exc:
        raise ReportSendError(f"address lookup for {host} failed: {exc}") from None
    if not found:
        raise ReportSendError(f"{host} has no address records")
    return found


async def _exchange(address: str, port: int, host: str, request: bytes,
                    context: ssl.SSLContext) -> int:
    """Send REQUEST, read the status line; the status."""
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=host)
    try:
        writer.write(request)
        await writer.drain()
        line = (await reader.readline()).decode("latin-1").split()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if len(line) < 2 or not line[0].startswith("HTTP/") or not line[1].isdigit():
        raise ValueError(f"not an HTTP response: {' '.join(line)[:80]!r}")
    return int(line[1])
