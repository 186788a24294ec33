"""Idle outbound SMTP connections kept briefly for the next message to the same host.

A connection is reused only for the same host name, address, port and TLS requirement,
so a message never rides a connection secured to a lower standard than its route needs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import aiosmtplib


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

    async def take(self, key: Hashable) -> IdleConnection | None:
        """The most recently used live connection for KEY, after a NOOP proves it still works."""
        stack = self._idle.get(key, [])
        while stack:
            idle = stack.pop()
            if self.clock() - idle.since > self.idle_timeout or not idle.client.is_connected:
                await close_quietly(idle.client)
                continue
            try:
                await idle.client.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await close_quietly(idle.client)
                continue
            return idle
        return None

    async def give(self, key: Hashable, client: aiosmtplib.SMTP, tls: dict[str, Any]) -> None:
        stack = self._idle[key]
        if len(stack) >= self.max_idle_per_key or not client.is_connected:
            await close_quietly(client)
            return
        stack.append(IdleConnection(client, tls, self.clock()))

    async def close_idle(self) -> None:
        """Close connections idle past the timeout (called from the runner's loop)."""
        now = self.clock()
        for key, stack in list(self._idle.items()):
            keep = [c for c in stack if now - c.since <= self.idle_timeout]
            for idle in stack:
                if idle not in keep:
                    await close_quietly(idle.client)
            self._idle[key] = keep

    async def close_all(self) -> None:
        for stack in self._idle.values():
            for idle in stack:
                await close_quietly(idle.client)
        self._idle.clear()


async def close_quietly(client: aiosmtplib.SMTP) -> None:
    if not client.is_connected:
        return
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()
