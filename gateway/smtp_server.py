"""Inbound SMTP: aiosmtpd is the protocol engine; relay policy lives in thin hooks.

A 250 to DATA is sent only after the message is fsync'ed in the spool and its queue rows
are committed, so an accepted message survives a crash.
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway import codes
from gateway.config import Config
from gateway.policy import Policy, decide, strip_subject_tags
from gateway.store import Route, Store

log = logging.getLogger("sealgate.smtp")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"\\]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$|^[^@\s]+@\[[0-9a-fA-F.:]+\]$")
_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)|\x00")


class GatewaySMTP(SMTP):
    """aiosmtpd with RFC 3463 enhanced codes on the replies it composes itself."""

    async def push(self, status: AnyStr) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        code, sep, rest = text[:3], text[3:4], text[4:]
        enhanced = codes.ENHANCED_FOR_BASIC.get(code)
        if sep == " " and enhanced and not _ENHANCED.match(rest):
            text = f"{code} {enhanced} {rest}"
        elif text == "250 OK":
            text = "250 2.0.0 OK"
        await super().push(text)


class RelayHandler:
    def __init__(self, config: Config, store: Store, policy: Callable[[], Policy],
                 on_queued: Callable[[], None]) -> None:
        self.config = config
        self.store = store
        self.policy = policy
        self.on_queued = on_queued
        self.networks = config.smtp.networks()

    def _may_relay(self, session: Session) -> bool:
        try:
            peer = ipaddress.ip_address(session.peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not self._may_relay(session):
            return codes.RELAY_DENIED
        if address == "<>":  # aiosmtpd's spelling of the null reverse-path (bounces)
            address = ""
        if address and not _ADDRESS.match(address):
            return codes.BAD_SENDER_SYNTAX
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.OK_SENDER

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self._may_relay(session):
            return codes.RELAY_DENIED
        if not _ADDRESS.match(address):
            return codes.BAD_RECIPIENT_SYNTAX
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return codes.TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return codes.OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if _BARE_LINE_END.search(content):
            return codes.BARE_LINE_ENDING
        head, body = split_message(content)
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(head)
        if not headers.keys():
            return codes.NO_HEADERS
        policy = self.policy()
        decisions = [decide(policy, headers, rcpt) for rcpt in envelope.rcpt_tos]
        if policy.strip_tags and any(d.confidential for d in decisions):
            head = rewrite_subject(head, lambda s: strip_subject_tags(policy, s))
        routes = [Route(d.recipient, d.confidential, d.mode, d.why) for d in decisions]
        try:
            queue_id = await asyncio.to_thread(self.store.enqueue, envelope.mail_from or "",
                                               routes, [head, body], session.peer[0])
        except Exception:
            log.exception("could not queue a message from %s", session.peer)
            return codes.STORE_FAILED
        log.info("%s accepted from %s: %s -> %s", queue_id, session.peer[0], envelope.mail_from,
                 ", ".join(f"{d.recipient} ({d.mode})" for d in decisions))
        self.on_queued()
        return codes.QUEUED.format(queue_id=queue_id)


_SUBJECT = re.compile(rb"^Subject:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*\r\n", re.IGNORECASE | re.MULTILINE)


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
    """The header section HEAD with its Subject replaced by CHANGE(subject)."""
    match = _SUBJECT.search(head)
    if match is None:
        return head
    parsed = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(match.group(0))
    new = email.message.EmailMessage(policy=email.policy.SMTP)
    new["Subject"] = change(str(parsed["Subject"]))
    return head[: match.start()] + new.as_bytes()[: -2] + head[match.end():]


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.smtp.tls_cert, config.smtp.tls_key)
    return context


def smtp_factory(config: Config, handler: RelayHandler) -> Callable[[], GatewaySMTP]:
    tls = server_tls_context(config)
    options: dict[str, Any] = {
        "hostname": config.smtp.hostname,
        "data_size_limit": config.smtp.max_message_size,
        "decode_data": False,
        "enable_SMTPUTF8": True,
        "ident": "Sealgate ESMTP",
        "tls_context": tls,
        "require_starttls": False,
    }
    return lambda: GatewaySMTP(handler, **options)
