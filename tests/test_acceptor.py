"""The turn-taking acceptor on its own: it greets every client even when it is always
ahead of the other listeners (it steps back once, then takes its turn), and a closed
acceptor accepts nobody."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.inbound.acceptor import TurnTakingAcceptor

GREETING = b"220 hello\r\n"


class Greeter(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(GREETING)  # type: ignore[attr-defined]


async def first_line(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await asyncio.wait_for(reader.readline(), 2)
    finally:
        writer.close()


async def greetings(count: int, ahead: bool, closed: bool) -> list[bytes]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    acceptor = TurnTakingAcceptor(sock, Greeter, ahead_of_others=lambda: ahead)
    acceptor.start()
    if closed:
        acceptor.close()
    try:
        return [await first_line(sock.getsockname()[1]) for _ in range(count)]
    finally:
        acceptor.close()
        sock.close()


def test_a_listener_always_ahead_of_the_others_still_greets_every_client() -> None:
    assert asyncio.run(greetings(3, ahead=True, closed=False)) == [GREETING] * 3


def test_a_listener_not_ahead_greets_at_once() -> None:
    assert asyncio.run(greetings(3, ahead=False, closed=False)) == [GREETING] * 3


def test_a_closed_acceptor_greets_nobody() -> None:
    with pytest.raises(TimeoutError):
        asyncio.run(greetings(1, ahead=False, closed=True))
