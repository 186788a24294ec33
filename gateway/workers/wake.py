"""Waking queue runners across processes when mail is queued.

One datagram socket pair, made by the supervisor and inherited by every worker: SMTP
listeners and the portal send a byte on one end, runners wait for the other end to become
readable. A full buffer means the runners have plenty of wake-ups pending, so a send that
would block is dropped. The runners' poll interval stays the fallback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


def wake_pair() -> tuple[socket.socket, socket.socket]:
    """(receive end, send end), both non-blocking and inheritable."""
    rx, tx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for end in (rx, tx):
        end.setblocking(False)
        end.set_inheritable(True)
    return rx, tx


class Waker:
    """The send end: `wake()` is cheap and never blocks or raises."""

    def __init__(self, fd: int) -> None:
        self.socket = socket.socket(fileno=fd)
        self.socket.setblocking(False)

    def wake(self) -> None:
        try:
            self.socket.send(b"!")
        except OSError:  # buffer full (runners have wake-ups pending) or runners gone
            pass


def listen_for_wakes(loop: asyncio.AbstractEventLoop, fd: int,
                     wake: Callable[[], None]) -> socket.socket:
    """Call WAKE whenever bytes arrive on the receive end FD (several in a row: once)."""
    receiver = socket.socket(fileno=fd)
    receiver.setblocking(False)

    def drain() -> None:
        woken = False
        while True:
            try:
                receiver.recv(64)
            except OSError:  # empty (another runner took it) or closed
                break
            woken = True
        if woken:
            wake()

    loop.add_reader(receiver.fileno(), drain)
    return receiver
