"""Accepting on a listening socket that several listener processes share.

asyncio's own accept handler takes every pending connection (up to the backlog) each time
the socket turns readable, so a burst of connections from an organization's mail server
lands on whichever listener woke first and the others stay idle for the life of those
connections. This acceptor takes one connection per readiness event: every listener that
waits on the socket is woken, and a listener busy with its sessions comes back to it later
than an idle one. A listener that already holds more sessions than another also steps back
for a moment, once, so that the other takes the connection; if the other does not (busy,
or gone), the connection is taken on the next turn anyway.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("sealgate.smtp")

# The process is out of descriptors or memory: pause accepting instead of spinning on a
# socket that stays readable.
_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_PAUSE_WHEN_EXHAUSTED = 1.0
_STEP_BACK = 0.005  # long enough for an idle listener to accept, short for a client


class TurnTakingAcceptor:
    def __init__(self, listening: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol],
                 ahead_of_others: Callable[[], bool] = lambda: False) -> None:
        self.listening = listening
        self.protocol_factory = protocol_factory
        self.ahead_of_others = ahead_of_others
        self._stepped_back = False
        self.loop = asyncio.get_running_loop()
        self._opening: set[asyncio.Task[object]] = set()
        self._accepting = False
        self._closed = False

    def start(self, backlog: int = 1024) -> None:
        """Listen (the port answers from now on: the supervisor only bound it) and accept."""
        self.listening.setblocking(False)
        self.listening.listen(backlog)
        self._watch()

    def close(self) -> None:
        """Accept no more connections; the sessions already open go on."""
        self._closed = True
        self._unwatch()

    def _watch(self) -> None:
        if not self._accepting and not self._closed:
            self.loop.add_reader(self.listening.fileno(), self._accept_one)
            self._accepting = True

    def _unwatch(self) -> None:
        if self._accepting:
            self.loop.remove_reader(self.listening.fileno())
            self._accepting = False

    def _accept_one(self) -> None:
        if not self._stepped_back and self.ahead_of_others():
            self._stepped_back = True
            self._unwatch()
            self.loop.call_later(_STEP_BACK, self._watch)
            return
        self._stepped_back = False
        try:
            connection, _ = self.listening.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another listener took it
        except OSError as exc:
            if exc.errno not in _EXHAUSTED:
                raise
            log.error("cannot accept SMTP connections for now: %s", exc)
            self._unwatch()
            self.loop.call_later(_PAUSE_WHEN_EXHAUSTED, self._watch)
            return
        connection.setblocking(False)
        opening = self.loop.create_task(
            self.loop.connect_accepted_socket(self.protocol_factory, connection))
        self._opening.add(opening)
        opening.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[object]) -> None:
        self._opening.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("an SMTP connection could not be set up: %s", task.exception())
