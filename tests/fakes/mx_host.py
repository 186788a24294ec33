"""A fake receiving mail server ("MX host") on a loopback IP, built on aiosmtpd.

End-to-end tests need to see what the gateway actually put on the wire: which host
it picked, whether it negotiated STARTTLS (and which protocol/cipher), and how it
reacts to temporary and permanent refusals. Each FakeMX runs aiosmtpd in its own
thread and event loop, so it is independent of the loop the test itself uses.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["FakeMX", "ReceivedMessage"]

_READY_TIMEOUT = 5.0
_STOP_TIMEOUT = 5.0


@dataclass
class ReceivedMessage:
    """One accepted message plus the transport facts tests assert on."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    peer_ip: str
    tls: bool
    tls_version: str | None
    cipher: str | None
    helo: str | None = None
    peer_port: int = 0  # tells connections apart: reused connections share it
    pipelined: bool = False  # RCPT TO and DATA had arrived already when MAIL FROM was read
    tls_resumed: bool = False  # the TLS handshake resumed an earlier session
    # DSN parameters (RFC 3461) as sent, case kept: of MAIL, and of each RCPT by address.
    mail_params: list[str] = field(default_factory=list)
    rcpt_params: dict[str, list[str]] = field(default_factory=dict)
    mail_options: tuple[str, ...] = ()  # the MAIL FROM parameters, as received (upper case)


def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    """Server-side context; CLIENT_AUTH purpose leaves verify_mode=CERT_NONE and
    check_hostname off, which is what aiosmtpd expects (it warns otherwise)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    return ctx


def _tls_facts(session: Session) -> tuple[bool, str | None, str | None]:
    """aiosmtpd stores the SSLProtocol's extra-info dict in `session.ssl` once the
    STARTTLS handshake completes (keys: sslcontext, peercert, cipher, compression,
    ssl_object); it stays None for plaintext sessions."""
    info: dict[str, Any] | None = session.ssl
    if info is None:
        return False, None, None
    ssl_object = info.get("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return True, None, None
    cipher = ssl_object.cipher()
    return True, ssl_object.version(), cipher[0] if cipher else None


def _resumed(session: Session) -> bool:
    info: dict[str, Any] | None = session.ssl
    ssl_object = info.get("ssl_object") if info else None
    return isinstance(ssl_object, ssl.SSLObject) and ssl_object.session_reused


class _Handler:
    """aiosmtpd hook object; reads the FakeMX's reply overrides at command time so a
    test can flip them between delivery attempts."""

    def __init__(self, mx: FakeMX) -> None:
        self._mx = mx
        self._pipelined: weakref.WeakKeyDictionary[Envelope, bool] = weakref.WeakKeyDictionary()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # defining the hook makes this ours too
        if self._mx.pipelining:  # RFC 2920; aiosmtpd itself reads commands one by one anyway
            responses.insert(len(responses) - 1, "250-PIPELINING")
        if self._mx.dsn:  # RFC 3461
            responses.insert(len(responses) - 1, "250-DSN")
        if self._mx.requiretls and session.ssl is not None:  # RFC 8689: after STARTTLS only
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        # What the client sent after MAIL without waiting for its reply is still buffered.
        if self._mx.drop_next_mail:  # like a server whose idle timer fired just now
            self._mx.drop_next_mail = False
            if server.transport is not None:
                server.transport.close()
            return "421 4.4.2 closing connection"
        waiting = bytes(getattr(server._reader, "_buffer", b""))
        self._pipelined[envelope] = b"RCPT TO:" in waiting.upper() and b"DATA\r\n" in waiting
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._mx.rcpt_replies.get(address) or self._mx.rcpt_reply
        if reply:
            return reply
        # Defining handle_RCPT makes us responsible for recording the recipient.
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._mx.data_reply
        if reply:
            return reply
        tls, version, cipher = _tls_facts(session)
        peer = session.peer
        peer_ip = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        content = envelope.original_content or b""
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            content=bytes(content),
            peer_ip=peer_ip,
            peer_port=int(peer[1]) if isinstance(peer, tuple) else 0,
            tls=tls,
            tls_version=version,
            cipher=cipher,
            helo=session.host_name,
            pipelined=self._pipelined.get(envelope, False),
            tls_resumed=_resumed(session),
            mail_params=list(getattr(server, "dsn_mail", [])),
            rcpt_params=dict(getattr(server, "dsn_rcpt", {})),
            mail_options=tuple(envelope.mail_options),
        )
        count = self._mx._record(message)
        return f"250 2.0.0 OK queued as {self._mx.name}-{count}"


_DSN_PARAMS = ("RET=", "ENVID=", "NOTIFY=", "ORCPT=")


class _FakeSMTP(SMTP):
    """aiosmtpd, which refuses parameters it does not know, taught what the FakeMX offers:
    with `dsn`, the DSN parameters are taken out of MAIL and RCPT first and kept as sent,
    for tests to read; with `requiretls`, REQUIRETLS is taken on a TLS session (530 5.7.10
    otherwise, as RFC 8689 4.1 says)."""

    def __init__(self, mx: FakeMX, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mx = mx
        self.dsn_mail: list[str] = []
        self.dsn_rcpt: dict[str, list[str]] = {}

    def _take(self, arg: str | None) -> tuple[str | None, list[str]]:
        if arg is None or not self._mx.dsn:
            return arg, []
        words = arg.split(" ")
        ours = [w for w in words if w.upper().startswith(_DSN_PARAMS)]
        return " ".join(w for w in words if w not in ours), ours

    async def smtp_MAIL(self, arg: str | None) -> None:
        arg, self.dsn_mail = self._take(arg)
        self.dsn_rcpt = {}
        if self._mx.requiretls and arg and "REQUIRETLS" in arg.upper().split()[1:]:
            if self.session is not None and self.session.ssl is None:
                await self.push("530 5.7.10 REQUIRETLS needs TLS")
                return
            self._requiretls_mail = True
        try:
            await super().smtp_MAIL(arg)
        finally:
            self._requiretls_mail = False

    async def smtp_RCPT(self, arg: str | None) -> None:
        arg, ours = self._take(arg)
        if arg is not None and ours:
            self.dsn_rcpt[arg.partition("<")[2].partition(">")[0]] = ours
        await super().smtp_RCPT(arg)

    def _getparams(self, params: Any) -> Any:
        found = super()._getparams(params)
        if found is not None and getattr(self, "_requiretls_mail", False):
            found.pop("REQUIRETLS", None)
        return found


class _MXController(Controller):
    """Builds a fresh SMTP protocol per connection (aiosmtpd calls factory() for
    each one), so `offer_starttls` can be changed between connections, and keeps
    weak references to them so stop() can drop connections the client left open."""

    def __init__(self, mx: FakeMX, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(
            _Handler(mx),
            hostname=mx.ip,
            port=mx.port,
            loop=loop,
            ready_timeout=_READY_TIMEOUT,
            server_hostname=mx.name,
        )
        self._mx = mx
        self._live: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = _FakeSMTP(
            self._mx,
            self.handler,
            hostname=self._mx.name,
            tls_context=self._mx._tls_context(),
            require_starttls=False,
            decode_data=False,
            auth_require_tls=False,
            enable_SMTPUTF8=self._mx.smtputf8,
        )
        self._live.add(smtp)
        return smtp

    async def abort_connections(self) -> None:
        """Abort leftover client connections so no transport outlives the loop
        (which would surface as a ResourceWarning under -W error)."""
        for smtp in list(self._live):
            transport = smtp.transport
            if transport is not None:
                transport.abort()
        # Let the scheduled connection_lost callbacks run before the loop stops.
        for _ in range(3):
            await asyncio.sleep(0)


class FakeMX:
    """A receiving SMTP server bound to `ip:port`, named `name` in its banner/EHLO.

    `rcpt_reply` / `data_reply`, when set, are sent verbatim instead of accepting
    (e.g. "451 4.3.0 try later"); `rcpt_replies` does the same per recipient address;
    `offer_starttls` controls whether a host that has a certificate advertises STARTTLS,
    `pipelining` whether it advertises PIPELINING (RFC 2920), as real MTAs do;
    `drop_next_mail` closes the connection at the next MAIL FROM, unanswered; `dsn` whether
    it advertises DSN (RFC 3461) and takes its parameters (recorded per message);
    `requiretls` whether it offers REQUIRETLS (RFC 8689) after STARTTLS. These and
    `tls_cert` may be changed while running; TLS settings apply from the next connection on.
    """

    def __init__(
        self,
        ip: str,
        port: int,
        *,
        name: str,
        tls_cert: trustme.LeafCert | None = None,
        rcpt_reply: str | None = None,
        data_reply: str | None = None,
        offer_starttls: bool = True,
        smtputf8: bool = True,
        pipelining: bool = True,
        rcpt_replies: dict[str, str] | None = None,
        dsn: bool = False,
        requiretls: bool = False,
    ) -> None:
        self.ip = ip
        self.port = port
        self.name = name
        self.tls_cert = tls_cert
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.offer_starttls = offer_starttls
        self.smtputf8 = smtputf8  # advertise SMTPUTF8 (RFC 6531)
        self.pipelining = pipelining
        self.dsn = dsn
        self.requiretls = requiretls  # offer REQUIRETLS after STARTTLS (RFC 8689)
        self.drop_next_mail = False  # one shot: close the connection at the next MAIL FROM
        self.rcpt_replies = dict(rcpt_replies or {})
        self._ssl_cache: tuple[trustme.LeafCert, ssl.SSLContext] | None = None
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._controller: _MXController | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Bind and wait until aiosmtpd answers; the event loop is created here, not
        in __init__, so an unstarted FakeMX leaks nothing."""
        if self._controller is not None:
            raise RuntimeError(f"FakeMX {self.name} already running")
        loop = asyncio.new_event_loop()
        controller = _MXController(self, loop)
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            loop.close()
            raise
        self._controller = controller

    def stop(self) -> None:
        """Drop open connections, stop the loop thread; aiosmtpd closes the loop."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(
                controller.abort_connections(), controller.loop
            ).result(timeout=_STOP_TIMEOUT)
        finally:
            controller.stop()
            controller.loop.close()

    def __enter__(self) -> FakeMX:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- inspection

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Snapshot of accepted messages in arrival order."""
        with self._cond:
            return list(self._messages)

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least `count` messages arrived; the gateway delivers
        asynchronously, so tests must wait rather than poll-and-sleep."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout):
                raise AssertionError(
                    f"FakeMX {self.name} ({self.ip}:{self.port}) expected at least "
                    f"{count} message(s) within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages (reply overrides are left as they are)."""
        with self._cond:
            self._messages.clear()

    # ------------------------------------------------------------------ internals

    def _tls_context(self) -> ssl.SSLContext | None:
        """Context for the next connection; cached per cert object so swapping
        `tls_cert` between attempts takes effect without rebuilding every time."""
        cert = self.tls_cert
        if cert is None or not self.offer_starttls:
            return None
        if self._ssl_cache is None or self._ssl_cache[0] is not cert:
            self._ssl_cache = (cert, _server_context(cert))
        return self._ssl_cache[1]

    def _record(self, message: ReceivedMessage) -> int:
        with self._cond:
            self._messages.append(message)
            self._cond.notify_all()
            return len(self._messages)
