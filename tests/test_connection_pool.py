"""The outbound connection pool never hands one connection to two deliveries.

The interleavings are forced, not timed: the SMTP server (aiosmtpd in the test's own loop)
holds its QUIT reply until the test releases it, so the pool's idle-closer is provably
suspended in the middle of closing while deliveries take and give connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP

from gateway.delivery.pool import ConnectionPool
from tests.fakes.ports import free_port

HOST = "127.0.0.13"
KEY = ("mx.pool.test", HOST, 25, None)


class HeldQuit:
    """aiosmtpd hooks: QUIT is answered only once `release` is set."""

    def __init__(self) -> None:
        self.quit_started = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_QUIT(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.quit_started.set()
        await self.release.wait()
        return "221 2.0.0 Bye"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def smtp_server(handler: HeldQuit) -> AsyncIterator[Callable[[], Awaitable[aiosmtplib.SMTP]]]:
    """A loopback SMTP server and a connect() for clients that are all closed at the end."""
    port = free_port(HOST)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler, hostname="mx.pool.test"), HOST, port)
    clients: list[aiosmtplib.SMTP] = []

    async def connect() -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=False, timeout=30)
        await client.connect()
        await client.ehlo()
        clients.append(client)
        return client

    try:
        yield connect
    finally:
        handler.release.set()
        for client in clients:
            client.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)  # let the closed transports finish before the loop goes


def test_connection_taken_while_idle_ones_are_closed_is_not_handed_out_again() -> None:
    async def scenario() -> None:
        handler, clock = HeldQuit(), Clock()
        pool = ConnectionPool(idle_timeout=5.0, clock=clock)
        async with smtp_server(handler) as connect:
            stale, fresh = await connect(), await connect()
            await pool.give(KEY, stale, {})
            clock.now += 10
            await pool.give(KEY, fresh, {})
            closer = asyncio.create_task(pool.close_idle())
            await asyncio.wait_for(handler.quit_started.wait(), 30)  # closer holds `stale`
            first = await pool.take(KEY)
            handler.release.set()
            await closer
            second = await pool.take(KEY)
            assert first is not None and first.client is fresh
            assert second is None, "the connection a delivery owns was handed out again"
    asyncio.run(scenario())


def test_connection_given_back_while_idle_ones_are_closed_stays_in_the_pool() -> None:
    async def scenario() -> None:
        handler, clock = HeldQuit(), Clock()
        pool = ConnectionPool(idle_timeout=5.0, clock=clock)
        async with smtp_server(handler) as connect:
            stale, returned = await connect(), await connect()
            await pool.give(KEY, stale, {})
            clock.now += 10
            closer = asyncio.create_task(pool.close_idle())
            await asyncio.wait_for(handler.quit_started.wait(), 30)
            await pool.give(KEY, returned, {})
            handler.release.set()
            await closer
            reused = await pool.take(KEY)
            assert reused is not None and reused.client is returned
    asyncio.run(scenario())
