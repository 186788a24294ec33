"""Getting a report to one rua target (RFC 8460 5): by mail, queued like every mail
Sealgate writes (so DKIM-signed by the queue runner when [dkim] is set, and retried like
any other), or by HTTPS POST of the gzipped JSON.

A report mail carries `TLS-Required: No` (RFC 8689 5): it must still go out when TLS to the
domain is what is broken, which is what the report is about.
"""

from __future__ import annotations

import asyncio
import email.policy
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from gateway.classify.internal import report_route
from gateway.storage.protocols import QueueStore
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
    return store.enqueue(sender, [route], content)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a place to send the report again."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_report(report: TLSReport, url: str, ca_file: str = "",
                timeout: float = POST_TIMEOUT) -> int:
    """POST the gzipped report to URL (blocking: call from a worker thread); the HTTP
    status (2xx), or ReportSendError."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                         _NoRedirects())
    request = urllib.request.Request(url, data=report.gzipped(), method="POST",
                                     headers={"Content-Type": MEDIA_TYPE,
                                              "User-Agent": "Sealgate TLS-RPT"})
    try:
        with opener.open(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise ReportSendError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ReportSendError(f"{url}: {reason}") from None
    if not 200 <= status < 300:
        raise ReportSendError(f"{url}: HTTP {status}")
    return status


async def post_report_async(report: TLSReport, url: str, ca_file: str = "",
                            timeout: float = POST_TIMEOUT) -> int:
    return await asyncio.to_thread(post_report, report, url, ca_file, timeout)
