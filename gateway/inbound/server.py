"""Inbound SMTP: aiosmtpd is the protocol engine for commands; DATA is streamed (see
data_stream.py) and relay policy lives in thin hooks (handler.py).

A 250 to DATA is sent only after the message is fsync'ed in the spool and its queue rows
are committed, so an accepted message survives a crash.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import ssl
from collections.abc import Callable
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, syntax

from gateway.config import Config, parse_duration
from gateway.inbound import codes
from gateway.inbound.data_stream import ContentCheck, read_data
from gateway.inbound.esmtp_params import (
    MAIL_PARAMS,
    RCPT_PARAMS,
    GatewayEnvelope,
    ParamError,
    RecipientDSN,
    mail_dsn,
    rcpt_dsn,
    take_params,
)
from gateway.inbound.handler import RelayHandler
from gateway.inbound.headers import received_header, rewrite_subject, split_message
from gateway.inbound.limits import ConnectionLimits
from gateway.inbound.requiretls import KEYWORD as REQUIRETLS
from gateway.inbound.requiretls import split_requiretls
from gateway.mailbox import PLAIN_MAILBOX

__all__ = ["ConnectionLimits", "GatewaySMTP", "RelayHandler", "path_is_valid",
           "received_header", "rewrite_subject", "smtp_factory", "split_message"]

log = logging.getLogger("sealgate.smtp")
_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\b")

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
# The everyday path, nothing for the header parser to unquote or drop: its address is the
# text between the brackets.
_PLAIN_PATH = re.compile(rf"<({PLAIN_MAILBOX})>(?= |$)")


def path_is_valid(arg: str, keyword: str, null_allowed: bool) -> bool:
    """Is ARG ("FROM:<path> params" or "TO:<path> params") a valid RFC 5321 path?"""
    if arg[:len(keyword)].upper() != keyword:
        return True  # not ours to judge: aiosmtpd answers the syntax error
    path = arg[len(keyword):].lstrip(" ")
    if null_allowed and re.match(r"<>(?: |$)", path):
        return True
    match = _PATH.match(path)
    return match is not None and len(match.group(1).encode()) <= _MAX_MAILBOX


def path_end(arg: str, keyword: str) -> int | None:
    """Where the path of ARG ("FROM:<path> params") ends, or None when it is not a valid
    path (then aiosmtpd or path_is_valid answers)."""
    if arg[:len(keyword)].upper() != keyword:
        return None
    start = len(arg) - len(arg[len(keyword):].lstrip(" "))
    path = arg[start:]
    match = re.match(r"<>(?= |$)", path) or _PATH.match(path)
    return None if match is None else start + len(match.group(0).rstrip(" "))


def _has_undecodable_bytes(text: str) -> bool:
    """aiosmtpd decodes arguments as UTF-8 with surrogateescape: surrogates are raw bytes."""
    return re.search("[\udc80-\udcff]", text) is not None


def _peer_ip(peer: Any) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


class GatewaySMTP(SMTP):
    """aiosmtpd with RFC 3463 enhanced codes on the replies it composes itself, an idle
    timeout that counts silence (not transfer time), connection caps, and only the
    extensions we implement advertised."""

    # aiosmtpd sizes the connection's StreamReader by this, and uses it for nothing else that
    # we do not override (our DATA reader checks line lengths itself, command lines are
    # checked against command_size_limits). At aiosmtpd's 1001 octets, a 10 KB message came
    # in ten pieces, each a pause and resume of reading (two epoll_ctl calls) and a pass
    # through the content checks, the spool and the scanner; a reader holds at most twice this.
    line_length_limit = 32 * 1024

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
        self._set_rset_state()  # type: ignore[no-untyped-call]
        assert self.session is not None
        self.session.extended_smtp = True
        self.session.host_name = hostname
        # Room on MAIL for " SIZE=<20 digits>" (RFC 1870), " SMTPUTF8" (RFC 6531),
        # " REQUIRETLS" (RFC 8689) and the 110 characters RFC 3461 adds for RET and ENVID;
        # on RCPT its 500 for NOTIFY and ORCPT.
        self.command_size_limits["MAIL"] = self.command_size_limit + 26 + 10 + 11 + 110
        self.command_size_limits["RCPT"] = self.command_size_limit + 500
        lines = [self.hostname, f"SIZE {self.data_size_limit}", "8BITMIME", "SMTPUTF8",
                 "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
        if self.tls_context and not self._tls_protocol:
            lines.append("STARTTLS")
        if self.tls_context and self._tls_protocol:  # RFC 8689 4.1: only after STARTTLS
            lines.append(REQUIRETLS)
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
            try:
                arg = self._take_mail_params(arg)
            except ParamError as exc:
                await self.push(str(exc))
                return
            arg, requiretls = self._take_requiretls(arg)
            if requiretls is not None and self.envelope is not None \
                    and self.envelope.mail_from is None:
                await self._mail_with_requiretls(arg, requiretls)
                return
        await super().smtp_MAIL(arg)

    def _create_envelope(self) -> GatewayEnvelope:
        return GatewayEnvelope()

    def _take_mail_params(self, arg: str) -> str:
        """ARG without RET and ENVID, which go on the envelope unless a MAIL was taken."""
        end = path_end(arg, "FROM:")
        if end is None or self.session is None or not self.session.extended_smtp:
            return arg  # aiosmtpd refuses parameters after HELO, and bad paths
        taken = take_params(arg, end, MAIL_PARAMS)
        dsn = mail_dsn(taken.ours)
        envelope = self.envelope
        if isinstance(envelope, GatewayEnvelope) and envelope.mail_from is None:
            envelope.dsn = dsn
        return taken.rest

    def _take_requiretls(self, arg: str) -> tuple[str, str | None]:
        """ARG without its REQUIRETLS parameter (aiosmtpd refuses parameters it does not
        know), and how that was written."""
        stripped = self._strip_command_keyword("FROM:", arg)
        if stripped is None:
            return arg, None
        _, params = self._getaddr(stripped)
        return split_requiretls(arg, params or "")

    async def _mail_with_requiretls(self, arg: str, written: str) -> None:
        """MAIL with REQUIRETLS: refused off TLS (RFC 8689 4.1), else recorded among the
        envelope's MAIL options once the MAIL was taken."""
        if written.upper() != REQUIRETLS:
            await self.push(codes.REQUIRETLS_TAKES_NO_VALUE)
            return
        if not self._tls_protocol:
            await self.push(codes.REQUIRETLS_NEEDS_TLS)
            return
        await super().smtp_MAIL(arg)
        if self.envelope is not None and self.envelope.mail_from is not None:
            self.envelope.mail_options.append(REQUIRETLS)

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg and self.session is not None and self.session.host_name and \
                self.envelope is not None and self.envelope.mail_from is not None:
            if _has_undecodable_bytes(arg):
                await self.push(codes.RECIPIENT_NOT_UTF8)
                return
            if not path_is_valid(arg, "TO:", null_allowed=False):
                await self.push(codes.BAD_RECIPIENT_SYNTAX)
                return
            try:
                arg, dsn = self._take_rcpt_params(arg)
            except ParamError as exc:
                await self.push(str(exc))
                return
            envelope = self.envelope
            before = len(envelope.rcpt_tos)
            await super().smtp_RCPT(arg)
            if isinstance(envelope, GatewayEnvelope) and len(envelope.rcpt_tos) > before:
                envelope.rcpt_dsn.append(dsn)  # the recipient was taken: its NOTIFY, ORCPT
            return
        await super().smtp_RCPT(arg)

    def _take_rcpt_params(self, arg: str) -> tuple[str, RecipientDSN]:
        end = path_end(arg, "TO:")
        if end is None or self.session is None or not self.session.extended_smtp:
            return arg, RecipientDSN()
        taken = take_params(arg, end, RCPT_PARAMS)
        return taken.rest, rcpt_dsn(taken.ours)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd parses every path with the email header parser (a tenth of a
        listener's time); a plain path needs only the match."""
        plain = _PLAIN_PATH.match(arg)
        if plain is None or (self.local_part_limit and
                             len(plain.group(1).rpartition("@")[0]) > self.local_part_limit):
            return super()._getaddr(arg)
        return plain.group(1), arg[plain.end():].lstrip()

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, streamed: the content goes to the handler's acceptance in large
        pieces as it arrives, checked on the way (data_stream.py)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        acceptance = self.event_handler.begin_data(self, self.session, self.envelope)
        check = ContentCheck(self.data_size_limit)
        try:
            await read_data(self._reader, check, self._working(acceptance.add))
            reply = await self._working(acceptance.finish)(check.problem)
        except BaseException:
            acceptance.abort()  # the client went away (or we stop): nothing was answered
            raise
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(reply)

    def _working(self, step: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """STEP with the idle timer held: our own work is not the client's silence."""
        async def held(value: Any) -> Any:
            self.busy += 1
            try:
                return await step(value)
            finally:
                self.busy -= 1
                self.last_activity = self.loop.time()
        return held


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
