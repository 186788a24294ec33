"""TLS session resumption for outbound connections.

asyncio's loop.start_tls() (which aiosmtplib's STARTTLS uses) takes no session argument, and
aiosmtplib offers none either; both build the TLS object with SSLContext.wrap_bio(), which
does take one. So a client context that remembers the last session per server name and
hands it to wrap_bio() makes every later handshake with that server an abbreviated one
(TLS 1.3 PSK or a TLS 1.2 ticket/session id), with asyncio and uvloop alike. A server that
no longer knows the session simply does a full handshake.

A resumed session carries the peer certificate of the full handshake it came from, which
the same context verified then; it carries no chain, so DANE (which may need the chain
for DANE-TA) must not use resumption: see gateway.delivery.deliverer.tls_context.
"""

from __future__ import annotations

import ssl
from collections import OrderedDict
from typing import Any, Self

__all__ = ["ResumingContext"]

_MAX_SESSIONS = 1000  # server names remembered; the least recently used is forgotten


class ResumingContext(ssl.SSLContext):
    """A client SSLContext that offers each server name the session it last got from it."""

    sessions: OrderedDict[str, ssl.SSLSession]

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.sessions = OrderedDict()
        return context

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if session is None and not server_side and isinstance(server_hostname, str):
            session = self.sessions.get(server_hostname)
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def remember(self, server_hostname: str, ssl_object: ssl.SSLObject | None) -> None:
        """Keep SSL_OBJECT's session for the next handshake with SERVER_HOSTNAME. Call it
        after application data was read: TLS 1.3 tickets arrive after the handshake."""
        session = ssl_object.session if ssl_object is not None else None
        if session is None:
            return
        self.sessions[server_hostname] = session
        self.sessions.move_to_end(server_hostname)
        while len(self.sessions) > _MAX_SESSIONS:
            self.sessions.popitem(last=False)
