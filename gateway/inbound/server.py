"""Inbound SMTP: aiosmtpd is the protocol engine; relay policy lives in thin hooks.

A 250 to DATA is sent only after the message is fsync'ed in the spool and its queue rows
are committed, so an accepted message survives a crash.
"""

from __future__ import annotations

import asyncio
import collections
import email.message
import email.parser
import email.policy
import email.utils
import errno
import ipaddress
import logging
import re
import shutil
import sqlite3
import ssl
from collections.abc import Callable
from typing import Any, AnyStr

import dns.exception
import dns.reversename
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.inbound import codes
from gateway.config import Config, parse_duration
from gateway.delivery.mx import make_resolver
from gateway.classify.internal import route_for
from gateway.classify.policy import Policy, decide, read_header_section, strip_subject_tags
from gateway.storage.store import Route, Store, new_queue_id

log = logging.getLogger("sealgate.smtp")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")
_BARE_LINE_END = re.compile(rb"(?<!\r)\n|\r(?!\n)|\x00")
_LONG_LINE = re.compile(rb"[^\r\n]{999}")  # RFC 5321 4.5.3.1.6: at most 998 octets + CRLF

# RFC 5321 4.1.2 paths, with RFC 6531's UTF-8 in atext, qtext and labels. One character
# class per repetition keeps matching linear.
_U = "\u0080-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~{_U}-]+"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LABEL = rf"[A-Za-z0-9{_U}](?:[A-Za-z0-9{_U}-]*[A-Za-z0-9{_U}])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"  # a dot: relaying needs a fully qualified domain
_LITERAL = r"\[[A-Za-z0-9.:-]+\]"
_MAILBOX = rf"(?:{_ATOM}(?:\.{_ATOM})*|{_QUOTED})@(?:{_DOMAIN}|{_LITERAL})"
# A source route (@a,@b:) is ignored, as RFC 5321 3.6.1 and appendix C say a server SHOULD:
# the mail goes to the final mailbox, which passes every check on its own.
_PATH = re.compile(rf"<(?:@{_DOMAIN}(?:,@{_DOMAIN})*:)?({_MAILBOX})>(?: |$)")
_MAX_MAILBOX = 254  # RFC 5321 4.5.3.1.3: a path of 256 octets with its angle brackets


def path_is_valid(arg: str, keyword: str, null_allowed: bool) -> bool:
    """Is ARG ("FROM:<path> params" or "TO:<path> params") a valid RFC 5321 path?"""
    if arg[:len(keyword)].upper() != keyword:
        return True  # not ours to judge: aiosmtpd answers the syntax error
    path = arg[len(keyword):].lstrip(" ")
    if null_allowed and re.match(r"<>(?: |$)", path):
        return True
    match = _PATH.match(path)
    return match is not None and len(match.group(1).encode()) <= _MAX_MAILBOX


def _has_undecodable_bytes(text: str) -> bool:
    """aiosmtpd decodes arguments as UTF-8 with surrogateescape: surrogates are raw bytes."""
    return re.search("[\udc80-\udcff]", text) is not None


def _peer_ip(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class ConnectionLimits:
    """Open sessions in total and per client address, shared by every session."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open: collections.Counter[str] = collections.Counter()

    def admit(self, ip: str) -> str | None:
        """None, and the session counts, or the 421 reply refusing it."""
        if sum(self.open.values()) >= self.total:
            return codes.TOO_MANY_CONNECTIONS
        if self.open[ip] >= self.per_client:
            return codes.TOO_MANY_FROM_CLIENT
        self.open[ip] += 1
        return None

    def release(self, ip: str) -> None:
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class GatewaySMTP(SMTP):
    """aiosmtpd with RFC 3463 enhanced codes on the replies it composes itself, an idle
    timeout that counts silence (not transfer time), connection caps, and only the
    extensions we implement advertised."""

    def __init__(self, handler: RelayHandler, limits: ConnectionLimits, **options: Any) -> None:
        # aiosmtpd keeps these limits on the class and grows them on every EHLO: ours are
        # per session and set once per EHLO.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(handler, auth_exclude_mechanism=["LOGIN", "PLAIN"], **options)
        self.limits = limits
        self.client_ip: str | None = None
        self.refused = False
        self.last_activity = self.loop.time()
        self.busy = 0

    # -- connection caps and the idle timeout ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # a new connection, not the STARTTLS layer
            ip = _peer_ip(transport.get_extra_info("peername"))
            refusal = self.limits.admit(ip)
            if refusal is not None:
                log.warning("%s refused: %s", ip, refusal)
                self.refused = True
                transport.write(refusal.encode() + b"\r\n")  # type: ignore[attr-defined]
                transport.close()
                return
            self.client_ip = ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return
        if self.client_ip is not None:
            self.limits.release(self.client_ip)
            self.client_ip = None
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        self.last_activity = self.loop.time()
        super().data_received(data)

    def eof_received(self) -> bool | None:
        if self.refused:
            return False
        return super().eof_received()

    def _timeout_cb(self) -> None:
        idle = self.loop.time() - self.last_activity
        if self.busy or idle < self._timeout_duration:  # data arrived, or we are working
            wait = self._timeout_duration - idle if not self.busy else self._timeout_duration
            self._timeout_handle = self.loop.call_later(max(wait, 0.05), self._timeout_cb)
            return
        log.info("%s idle for %.0fs: closing", self.client_ip, idle)
        transport: Any = self.transport
        if transport is not None:
            transport.write(codes.IDLE_TIMEOUT.encode() + b"\r\n")
            transport.close()

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        self.busy += 1  # storing a large message must not count as the client's silence
        try:
            return await super()._call_handler_hook(command, *args)
        finally:
            self.busy -= 1
            self.last_activity = self.loop.time()

    # -- replies -----------------------------------------------------------------------

    async def push(self, status: AnyStr) -> None:
        text = status.decode(errors="replace") if isinstance(status, bytes) else status
        if text.startswith("500 Line too long"):
            text = codes.LINE_TOO_LONG
        code, sep, rest = text[:3], text[3:4], text[4:]
        enhanced = codes.ENHANCED_FOR_BASIC.get(code)
        if sep == " " and enhanced and not _ENHANCED.match(rest):
            text = f"{code} {enhanced} {rest}"
        elif text == "250 OK":
            text = "250 2.0.0 OK"
        # A reply may echo client input with undecodable bytes: never fail on encoding it.
        await super().push(text.encode("utf-8", errors="replace"))

    async def handle_exception(self, error: Exception) -> str:
        # One line for the admin, a clean temporary failure for the client: no traceback.
        log.error("%s: unexpected %s in the SMTP session: %s", self.client_ip,
                  type(error).__name__, error)
        return codes.INTERNAL_ERROR

    # -- commands ----------------------------------------------------------------------

    async def smtp_EHLO(self, hostname: str) -> None:
        """Advertise what we implement and nothing else (no AUTH: we do not offer it)."""
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        # Room on MAIL for " SIZE=<20 digits>" (RFC 1870) and " SMTPUTF8" (RFC 6531).
        self.command_size_limits["MAIL"] = self.command_size_limit + 26 + 10
        lines = [self.hostname, f"SIZE {self.data_size_limit}", "8BITMIME", "SMTPUTF8",
                 "PIPELINING", "ENHANCEDSTATUSCODES"]
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        lines.append("HELP")
        for line in lines[:-1]:
            await self.push(f"250-{line}")
        await self.push(f"250 {lines[-1]}")

    async def smtp_AUTH(self, arg: str) -> None:
        await self.push(codes.AUTH_NOT_OFFERED)

    async def smtp_MAIL(self, arg: str | None) -> None:
        if arg and self.session is not None and self.session.host_name:
            if not self.event_handler.may_relay(self.session):
                await self.push(codes.RELAY_DENIED)
                return
            if _has_undecodable_bytes(arg):
                await self.push(codes.SENDER_NOT_UTF8)
                return
            if not path_is_valid(arg, "FROM:", null_allowed=True):
                await self.push(codes.BAD_SENDER_SYNTAX)
                return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg and self.session is not None and self.session.host_name and \
                self.envelope is not None and self.envelope.mail_from is not None:
            if _has_undecodable_bytes(arg):
                await self.push(codes.RECIPIENT_NOT_UTF8)
                return
            if not path_is_valid(arg, "TO:", null_allowed=False):
                await self.push(codes.BAD_RECIPIENT_SYNTAX)
                return
        await super().smtp_RCPT(arg)


class RelayHandler:
    def __init__(self, config: Config, store: Store, policy: Callable[[], Policy],
                 on_queued: Callable[[], None]) -> None:
        self.config = config
        self.store = store
        self.policy = policy
        self.on_queued = on_queued
        self.networks = config.smtp.networks()
        self.resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
        self.resolver.cache = None  # a client's name is looked up afresh for each message

    def may_relay(self, session: Session) -> bool:
        try:
            peer = ipaddress.ip_address(session.peer[0])
        except (TypeError, ValueError, IndexError):
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)

    def storage_is_short(self, mail_options: list[str]) -> bool:
        """Less free space in the storage dir than the declared SIZE plus the reserve."""
        declared = next((int(o[5:]) for o in mail_options
                         if o.startswith("SIZE=") and o[5:].isdigit()), 0)
        free = shutil.disk_usage(self.store.directory).free
        return free < declared + self.config.smtp.min_free_space

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not self.may_relay(session):
            return codes.RELAY_DENIED
        if address == "<>":  # aiosmtpd's spelling of the null reverse-path (bounces)
            address = ""
        if not address.isascii() and not envelope.smtp_utf8:
            return codes.NEEDS_SMTPUTF8
        if await asyncio.to_thread(self.storage_is_short, mail_options):
            log.warning("refusing mail from %s: storage is short", session.peer[0])
            return codes.INSUFFICIENT_STORAGE
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.OK_SENDER

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.may_relay(session):
            return codes.RELAY_DENIED
        local, _, domain = address.rpartition("@")
        if not address.isascii() and not envelope.smtp_utf8:
            return codes.NEEDS_SMTPUTF8
        if domain.startswith("["):
            return codes.ADDRESS_LITERAL
        if "%" in local or "!" in local:
            return codes.ROUTING_LOCAL_PART
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return codes.TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return codes.OK_RECIPIENT

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        if _BARE_LINE_END.search(content):
            return codes.BARE_LINE_ENDING
        if _LONG_LINE.search(content):
            return codes.LINE_TOO_LONG
        head, body = split_message(content)
        section = read_header_section(head)
        if not section.fields:
            return codes.NO_HEADERS
        policy = self.policy()
        decisions = [decide(policy, section, rcpt) for rcpt in envelope.rcpt_tos]
        if policy.strip_tags and any(d.confidential for d in decisions):
            head = rewrite_subject(head, lambda s: strip_subject_tags(policy, s))
        queue_id = new_queue_id()
        head = await self.received_header(server, session, envelope, queue_id) + head
        routes = [route_for(d.recipient, d, self.config.internal.domains) for d in decisions]
        reply = await self.enqueue(session, envelope, queue_id, routes, [head, body])
        if reply is not None:
            return reply
        log.info("%s accepted from %s: %s -> %s", queue_id, session.peer[0], envelope.mail_from,
                 ", ".join(f"{d.recipient} ({d.mode})" for d in decisions))
        self.on_queued()
        return codes.QUEUED.format(queue_id=queue_id)

    async def enqueue(self, session: Session, envelope: Envelope, queue_id: str,
                      routes: list[Route], chunks: list[bytes | memoryview]) -> str | None:
        """None once queued, else the reply: 452 when the disk is full, 451 otherwise."""
        try:
            await asyncio.to_thread(self.store.enqueue, envelope.mail_from or "", routes, chunks,
                                    session.peer[0], message_id=queue_id,
                                    smtputf8=envelope.smtp_utf8)
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean SMTP answer
            if _is_disk_full(exc):
                log.warning("could not queue a message from %s: storage is full (%s)",
                            session.peer[0], exc)
                return codes.INSUFFICIENT_STORAGE
            log.error("could not queue a message from %s: %s: %s", session.peer[0],
                      type(exc).__name__, exc)
            return codes.STORE_FAILED
        return None

    async def client_name(self, ip: str) -> str | None:
        """The client's forward-confirmed reverse DNS name, or None."""
        try:
            answer = await self.resolver.resolve(dns.reversename.from_address(ip), "PTR")
            name = str(answer[0].target).rstrip(".")
            kind = "AAAA" if ":" in ip else "A"
            forward = await self.resolver.resolve(name, kind)
        except (dns.exception.DNSException, ValueError, IndexError):
            return None
        if ip not in {r.address for r in forward}:
            return None
        return _HELO_UNSAFE.sub("_", name)[:255]

    async def received_header(self, server: SMTP, session: Session, envelope: Envelope,
                              queue_id: str) -> bytes:
        ip = _peer_ip(session.peer)
        tls = _tls_comment(session)
        return received_header(
            helo=session.host_name or "", client_name=await self.client_name(ip), client_ip=ip,
            hostname=self.config.smtp.hostname, protocol=_protocol(session, envelope),
            queue_id=queue_id, rcpts=envelope.rcpt_tos, tls=tls,
            date=email.utils.formatdate(localtime=True))


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                or "database or disk is full" in str(exc))
    return False


def _protocol(session: Session, envelope: Envelope) -> str:
    """RFC 3848 / RFC 6531 with-protocol: ESMTP, ESMTPS, UTF8SMTP, UTF8SMTPS (SMTP for HELO)."""
    if not session.extended_smtp:
        return "SMTP"
    base = "UTF8SMTP" if envelope.smtp_utf8 else "ESMTP"
    return base + ("S" if session.ssl is not None else "")


def _tls_comment(session: Session) -> str | None:
    info = session.ssl
    if not info:
        return None
    ssl_object = info.get("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return "using TLS"
    name, _proto, bits = ssl_object.cipher() or ("unknown", "", 0)
    return f"using {ssl_object.version()} with cipher {name} ({bits}/{bits} bits)"


_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


def _address_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def received_header(*, helo: str, client_name: str | None, client_ip: str, hostname: str,
                    protocol: str, queue_id: str, rcpts: list[str], tls: str | None,
                    date: str) -> bytes:
    """RFC 5321 4.4 trace field, folded to stay within 78 octets per line where it can."""
    shown_helo = _HELO_UNSAFE.sub("_", helo)[:100] or "unknown"  # the client chose it
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


def server_tls_context(config: Config) -> ssl.SSLContext | None:
    if not config.smtp.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.smtp.tls_cert, config.smtp.tls_key)
    return context


def smtp_factory(config: Config, handler: RelayHandler,
                 limits: ConnectionLimits | None = None) -> Callable[[], GatewaySMTP]:
    """LIMITS: caps shared with other listener processes; default: this process's own."""
    tls = server_tls_context(config)
    limits = limits or ConnectionLimits(config.smtp.max_connections,
                                        config.smtp.max_connections_per_client)
    options: dict[str, Any] = {
        "hostname": config.smtp.hostname,
        "data_size_limit": config.smtp.max_message_size,
        "decode_data": False,
        "enable_SMTPUTF8": True,
        "ident": "Sealgate ESMTP",
        "tls_context": tls,
        "require_starttls": False,
        "timeout": parse_duration(config.smtp.idle_timeout, "smtp.idle_timeout"),
    }
    return lambda: GatewaySMTP(handler, limits, **options)

