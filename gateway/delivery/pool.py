"""Idle outbound SMTP connections kept briefly for the next message to the same host.

A connection is reused only for the same host name, address, port and TLS requirement,
so a message never rides a connection secured to a lower standard than its route needs.

Ownership is exclusive: a connection is either idle in the pool or owned by exactly one
delivery (or by the pool's closer). Every method takes a connection out of the pool
*before* it awaits anything, so no interleaving of deliveries and idle-closing can hand
one connection to two deliveries at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, cast

import aiosmtplib

_CLOSE_GRACE = 2.0  # seconds a peer gets to finish the TLS shutdown after QUIT


@dataclass
class IdleConnection:
    client: aiosmtplib.SMTP
    tls: dict[str, Any]  # the TLS facts of the session, copied onto each attempt that reuses it
    since: float


class ConnectionPool:
    def __init__(self, idle_timeout: float = 5.0, max_idle_per_key: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_timeout = idle_timeout
        self.max_idle_per_key = max_idle_per_key
        self.clock = clock
        self._idle: dict[Hashable, list[IdleConnection]] = defaultdict(list)

    def idle_count(self, key: Hashable | None = None) -> int:
        """Connections idle in the pool (for KEY, or in all)."""
        if key is not None:
            return len(self._idle.get(key, []))
        return sum(len(stack) for stack in self._idle.values())

    async def take(self, key: Hashable, verify: bool = True) -> IdleConnection | None:
        """The most recently used live connection for KEY, after a NOOP proves it still works
        (VERIFY off: the caller finds out itself, e.g. from its pipelined first commands).
        The connection is the caller's from the moment it leaves the stack."""
        while idle := self._pop(key):
            if self._expired(idle) or not idle.client.is_connected:
                await close_quietly(idle.client)
                continue
            if not verify:
                return idle
            try:
                await idle.client.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await close_quietly(idle.client)
                continue
            return idle
        return None

    async def give(self, key: Hashable, client: aiosmtplib.SMTP, tls: dict[str, Any]) -> None:
        """Put a connection the caller owns back for reuse (or close it when there is no room)."""
        stack = self._idle[key]
        if len(stack) >= self.max_idle_per_key or not client.is_connected:
            await close_quietly(client)
            return
        stack.append(IdleConnection(client, tls, self.clock()))

    async def close_idle(self) -> None:
        """Close connections idle past the timeout (called from the runner's loop)."""
        now = self.clock()
        expired: list[IdleConnection] = []
        for stack in self._idle.values():
            # In place and before any await: a concurrent take() or give() sees the same list.
            expired += [idle for idle in stack if self._expired(idle, now)]
            stack[:] = [idle for idle in stack if not self._expired(idle, now)]
        for key in [k for k, stack in self._idle.items() if not stack]:
            del self._idle[key]
        for idle in expired:
            await close_quietly(idle.client)

    async def close_all(self) -> None:
        """Close every idle connection and wait until their sockets are really closed: this
        runs at shutdown, and a TLS socket still closing when the loop ends is leaked."""
        stacks, self._idle = list(self._idle.values()), defaultdict(list)
        await asyncio.gather(*(close_quietly(idle.client, wait=True)
                               for stack in stacks for idle in stack))

    def _pop(self, key: Hashable) -> IdleConnection | None:
        stack = self._idle.get(key)
        return stack.pop() if stack else None

    def _expired(self, idle: IdleConnection, now: float | None = None) -> bool:
        return (self.clock() if now is None else now) - idle.since > self.idle_timeout


async def close_quietly(client: aiosmtplib.SMTP, wait: bool = False) -> None:
    """QUIT (or just close) CLIENT; with WAIT, until the socket under it is closed too.

    Closing a TLS transport only starts the close_notify exchange; the socket closes when
    the peer answers, which the protocol learns in connection_lost (it then drops its
    transport). A peer that never answers gets the connection aborted after a grace time."""
    protocol = client.protocol
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
    if not wait or protocol is None:
        return
    transport = protocol.transport
    deadline = time.monotonic() + _CLOSE_GRACE
    while protocol.transport is not None and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    if protocol.transport is not None and transport is not None:
        cast(asyncio.Transport, transport).abort()  # uvloop's are not asyncio.Transport
    for _ in range(2):  # let the transport's scheduled connection_lost close the socket
        await asyncio.sleep(0)
