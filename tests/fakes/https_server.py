"""A fake HTTPS server on a loopback IP, standing in for mta-sts.<domain> policy hosts.

MTA-STS fetches must verify the certificate for mta-sts.<domain> and follow none of the
usual HTTP conveniences (redirects, other content types), so the fake serves real TLS
with a per-host certificate chosen by SNI and a per-host response chosen by the Host
header, and logs every request so tests can see what was (not) fetched.

One server can play many policy hosts: point several mta-sts.* names at its IP.
It runs http.server in threads, independent of the test's event loop.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import trustme

__all__ = ["FakeHTTPS", "PolicyRequest", "Reply"]

POLICY_PATH = "/.well-known/mta-sts.txt"
_HANDSHAKE_TIMEOUT = 5.0


@dataclass
class Reply:
    """What one host answers for one path."""

    body: bytes
    status: int = 200
    content_type: str = "text/plain"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicyRequest:
    sni: str | None
    host: str       # Host header, without port
    method: str
    path: str
    content_type: str = ""  # of a POST's body (TLS-RPT reports)
    body: bytes = b""


class _Server(http.server.ThreadingHTTPServer):
    # Non-daemon, so server_close() joins the handler threads: nothing outlives stop().
    daemon_threads = False
    fake: FakeHTTPS

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake runs here, in the request's thread: done in accept() it
        would let one stalled client block the whole server."""
        try:
            request.settimeout(_HANDSHAKE_TIMEOUT)
            request.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            self.fake._note_error(f"handshake: {exc}")
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # http.server prints tracebacks to stderr; clients hanging up mid-reply (e.g. on
        # an oversized policy) are expected here, so just remember them.
        self.fake._note_error("request handler error")


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        sni = getattr(self.connection, "sni", None)
        self.server.fake._log(PolicyRequest(sni, host, "GET", self.path))
        self._answer(host)

    def do_POST(self) -> None:  # noqa: N802 - a TLS-RPT endpoint (RFC 8460 5.2) takes reports
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        sni = getattr(self.connection, "sni", None)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.fake._log(PolicyRequest(sni, host, "POST", self.path,
                                            self.headers.get("Content-Type", ""), body))
        self._answer(host)

    def _answer(self, host: str) -> None:
        reply = self.server.fake._reply_for(host, self.path)
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(reply.body)
        except OSError:
            pass  # a client refusing an oversized body may hang up early
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the request log above replaces stderr noise


class FakeHTTPS:
    """HTTPS on ip:port. `serve_policy(domain, text)` makes it answer for
    mta-sts.<domain> with a certificate from `ca` (or the one given)."""

    def __init__(self, ip: str, port: int, ca: trustme.CA) -> None:
        self.ip = ip
        self.port = port
        self.ca = ca
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._replies: dict[tuple[str, str], Reply] = {}
        self._requests: list[PolicyRequest] = []
        self._errors: list[str] = []
        self._default_cert = ca.issue_cert("default.https.invalid")
        self._default_context = self._server_context(self._default_cert)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ setup

    def add_host(self, host: str, cert: trustme.LeafCert | None = None) -> None:
        """Present CERT (default: one from the CA for HOST) when a client asks for HOST by SNI."""
        context = self._server_context(cert or self.ca.issue_cert(host))
        with self._lock:
            self._contexts[host.lower()] = context

    def serve(self, host: str, reply: Reply, path: str = POLICY_PATH) -> None:
        with self._lock:
            known = host.lower() in self._contexts
        if not known:
            self.add_host(host)
        with self._lock:
            self._replies[(host.lower(), path)] = reply

    def serve_policy(self, domain: str, text: str | bytes, *, content_type: str = "text/plain",
                     status: int = 200, headers: dict[str, str] | None = None,
                     cert: trustme.LeafCert | None = None) -> str:
        """Serve TEXT as mta-sts.<domain>'s policy; returns the host name."""
        host = f"mta-sts.{domain}"
        if cert is not None:
            self.add_host(host, cert)
        body = text.encode() if isinstance(text, str) else text
        self.serve(host, Reply(body, status, content_type, dict(headers or {})))
        return host

    @property
    def requests(self) -> list[PolicyRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def errors(self) -> list[str]:
        with self._lock:
            return list(self._errors)

    def requests_for(self, host: str) -> list[PolicyRequest]:
        return [r for r in self.requests if r.host == host.lower()]

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()
            self._errors.clear()

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("FakeHTTPS already running")
        server = _Server((self.ip, self.port), _Handler, bind_and_activate=False)
        server.fake = self
        try:
            server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.server_bind()
            server.server_activate()
            server.socket = self._listen_context().wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False)
        except BaseException:
            server.server_close()
            raise
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeHTTPS:{self.ip}:{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def __enter__(self) -> FakeHTTPS:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -------------------------------------------------------------- internals

    @staticmethod
    def _server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context

    def _listen_context(self) -> ssl.SSLContext:
        """The listening context only routes by SNI: it swaps in the host's context so
        the certificate matches the name asked for, or the default one for unknown names."""
        listen = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._default_cert.configure_cert(listen)

        def choose(sslobj: ssl.SSLObject | ssl.SSLSocket, name: str | None,
                   _ctx: ssl.SSLContext) -> None:
            with self._lock:
                context = self._contexts.get((name or "").lower(), self._default_context)
            sslobj.context = context
            sslobj.sni = name  # type: ignore[union-attr]  # read back by the handler's log

        listen.sni_callback = choose
        return listen

    def _reply_for(self, host: str, path: str) -> Reply:
        with self._lock:
            reply = self._replies.get((host, path))
        return reply or Reply(b"not found\n", 404)

    def _log(self, request: PolicyRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _note_error(self, text: str) -> None:
        with self._lock:
            self._errors.append(text)
