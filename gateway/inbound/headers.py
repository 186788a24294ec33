"""What the SMTP side writes into a message's header section: the Received trace field and
a rewritten Subject; and the split of a message into header section and body."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import re
import ssl
import time
from collections.abc import Callable

from aiosmtpd.smtp import Envelope, Session

from gateway.classify.policy import read_header_section


def protocol_name(session: Session, envelope: Envelope) -> str:
    """RFC 3848 / RFC 6531 with-protocol: ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS (SMTP for HELO)."""
    if not session.extended_smtp:
        return "SMTP"
    base = "UTF8SMTP" if envelope.smtp_utf8 else "ESMTP"
    return base + ("S" if session.ssl is not None else "")


def tls_comment(session: Session) -> str | None:
    info = session.ssl
    if not info:
        return None
    ssl_object = info.get("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return "using TLS"
    name, _proto, bits = ssl_object.cipher() or ("unknown", "", 0)
    return f"using {ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"


_date_of_second: tuple[int, str] = (-1, "")


def received_date(now: float | None = None) -> str:
    """The RFC 5322 date-time for a Received field, local time. Formatted once a second:
    email.utils' formatting cost more than the rest of the field at hundreds of messages a
    second, and the field has no finer resolution."""
    global _date_of_second
    second = int(time.time() if now is None else now)
    if _date_of_second[0] != second:
        _date_of_second = (second, email.utils.formatdate(second, localtime=True))
    return _date_of_second[1]


HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


def _address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received_header(*, helo: str, client_name: str | None, client_ip: str, hostname: str,
                    protocol: str, queue_id: str, rcpts: list[str], tls: str | None,
                    date: str) -> bytes:
    """RFC 5321 4.4 trace field, folded to stay within 78 octets per line where it can."""
    shown_helo = HELO_UNSAFE.sub("_", helo)[:100] or "unknown"  # the client chose it
    parts = [f"from {shown_helo} ({client_name or 'unknown'} {_address_literal(client_ip)})"]
    if tls:
        parts.append(f"({tls})")
    parts.append(f"by {hostname} (Sealgate) with {protocol} id {queue_id}")
    if len(rcpts) == 1:  # naming several would disclose every recipient to each
        parts.append(f"for <{rcpts[0]}>")
    parts[-1] += ";"
    parts.append(date)
    return ("Received: " + "\r\n\t".join(parts) + "\r\n").encode("utf-8")


def split_message(content: bytes) -> tuple[bytes, memoryview]:
    """The header section (ending in CRLF) and a view of the rest: no copy of a large body,
    which classification never needs to read."""
    if content.startswith(b"\r\n"):
        return b"", memoryview(content)
    end = content.find(b"\r\n\r\n")
    if end < 0:
        return content, memoryview(b"")
    return content[: end + 2], memoryview(content)[end + 2:]


def rewrite_subject(head: bytes, change: Callable[[str], str]) -> bytes:
    """The header section HEAD with each Subject (however it is written: also "Subject :"
    and after a colonless line) replaced by CHANGE(subject)."""
    out, position = [], 0
    for field in read_header_section(head).named("Subject"):
        new = email.message.EmailMessage(policy=email.policy.SMTP)
        new["Subject"] = change(field.value)
        out += [head[position:field.start], new.as_bytes()[:-2]]
        position = field.end
    return b"".join(out) + head[position:]
