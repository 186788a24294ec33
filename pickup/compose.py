"""A portal reply as an ordinary RFC 5322 message: text plus attachments, threaded with
In-Reply-To and References so it lands in the sender's conversation.

The message is written to the spool piece by piece: attachments of up to 100 MB are
base64-encoded from their temporary files in blocks, never held in memory whole.
"""

from __future__ import annotations

import base64
import email.policy
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, formataddr, make_msgid
from typing import BinaryIO

from gateway.storage.protocols import QueueStore

POLICY = email.policy.SMTP  # CRLF line ends, as the SMTP side spools mail
MAX_REFERENCES = 20  # enough to thread; a runaway References header helps no one
_BLOCK = 57 * 1024  # base64 of 57 bytes is one 76-character line
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str
    size: int
    file: BinaryIO


@dataclass(frozen=True)
class Reply:
    author_name: str
    author: str  # the portal user's address
    to: str  # the original sender
    subject: str
    in_reply_to: str
    references: list[str]
    text: str
    message_id_domain: str


def reply_subject(subject: str) -> str:
    subject = subject.strip()
    return subject if re.match(r"(?i)re\s*:", subject) else f"Re: {subject}".strip()


def safe_filename(name: str, number: int) -> str:
    """A file name for the MIME header: no path, no control characters."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")[:200]
    return name or f"attachment-{number}"


def safe_content_type(value: str) -> str:
    value = value.split(";", 1)[0].strip().lower()
    return value if _CONTENT_TYPE.match(value) else "application/octet-stream"


def _headers(part: MIMEPart) -> bytes:
    return b"".join(POLICY.fold_binary(name, value) for name, value in part.items())


def _top(reply: Reply, now: float) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = formataddr((reply.author_name, reply.author))
    message["To"] = reply.to
    message["Subject"] = reply_subject(reply.subject)
    message["Date"] = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    message["Message-ID"] = make_msgid(domain=reply.message_id_domain or None)
    if reply.in_reply_to:
        message["In-Reply-To"] = reply.in_reply_to
    references = list(dict.fromkeys(reply.references))[-MAX_REFERENCES:]
    if references:
        message["References"] = " ".join(references)
    return message


def _text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip() + "\n"


def reply_message(reply: Reply, uploads: list[Upload], now: float) -> Iterator[bytes]:
    """The reply's bytes, in pieces."""
    message = _top(reply, now)
    if not uploads:
        message.set_content(_text(reply.text))
        yield message.as_bytes()
        return
    boundary = f"=_sealgate_{secrets.token_hex(16)}"
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'
    yield _headers(message) + b"\r\nThis is a message with attachments in MIME format.\r\n"
    body = MIMEPart(policy=POLICY)
    body.set_content(_text(reply.text))
    yield f"\r\n--{boundary}\r\n".encode() + body.as_bytes()
    for number, upload in enumerate(uploads, start=1):
        part = MIMEPart(policy=POLICY)
        part["Content-Type"] = safe_content_type(upload.content_type)
        part.add_header("Content-Disposition", "attachment",
                        filename=safe_filename(upload.filename, number))
        part["Content-Transfer-Encoding"] = "base64"
        yield f"\r\n--{boundary}\r\n".encode() + _headers(part) + b"\r\n"
        yield from _base64(upload.file)
    yield f"\r\n--{boundary}--\r\n".encode()


def _base64(file: BinaryIO) -> Iterator[bytes]:
    file.seek(0)
    while block := file.read(_BLOCK):
        yield base64.encodebytes(block).replace(b"\n", b"\r\n")


def spool(store: QueueStore, chunks: Iterable[bytes]) -> tuple[str, int]:
    """Write CHUNKS durably to the spool under a new queue id, streaming; returns the id and
    size."""
    return store.spool_stream(chunks)
