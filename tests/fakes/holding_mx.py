"""A receiving SMTP server that takes the message at DATA and then holds its reply until
the test releases it: the remote already has the data while the sender still waits, which
is the moment a stop or a second instance must not turn into a second copy."""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from types import TracebackType

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

MAX_HOLD = 60.0  # never hold a reply forever, even if a test forgets to release it


class _Holder:
    def __init__(self, mx: HoldingMX) -> None:
        self.mx = mx

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mx._record(list(envelope.rcpt_tos), bytes(envelope.original_content or b""))
        deadline = time.monotonic() + MAX_HOLD
        while not self.mx.release.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return "250 2.0.0 OK"


class _Controller(Controller):
    def __init__(self, mx: HoldingMX) -> None:
        super().__init__(_Holder(mx), hostname=mx.ip, port=mx.port, server_hostname=mx.name,
                         ready_timeout=5.0)
        self.mx = mx
        self.live: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def factory(self) -> SMTP:
        smtp = SMTP(self.handler, hostname=self.mx.name, decode_data=False,
                    enable_SMTPUTF8=True)
        self.live.add(smtp)
        return smtp

    async def abort_connections(self) -> None:
        for smtp in list(self.live):
            if smtp.transport is not None:
                smtp.transport.abort()
        for _ in range(3):
            await asyncio.sleep(0)


class HoldingMX:
    """`received` lists (recipients, content) in arrival order; `release` lets replies go."""

    def __init__(self, ip: str, port: int, name: str) -> None:
        self.ip, self.port, self.name = ip, port, name
        self.release = threading.Event()
        self._cond = threading.Condition()
        self._received: list[tuple[list[str], bytes]] = []
        self._controller: _Controller | None = None

    def start(self) -> None:
        self._controller = _Controller(self)
        self._controller.start()

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is None:
            return
        self.release.set()
        try:
            asyncio.run_coroutine_threadsafe(controller.abort_connections(),
                                             controller.loop).result(timeout=5)
        finally:
            controller.stop()

    def __enter__(self) -> HoldingMX:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def copies_for(self, rcpt: str) -> int:
        with self._cond:
            return sum(rcpt in rcpts for rcpts, _ in self._received)

    def wait_for_copy(self, rcpt: str, timeout: float = 30.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.copies_for(rcpt) > 0, timeout):
                raise AssertionError(f"{self.name} got no message for {rcpt} within {timeout}s")

    def _record(self, rcpts: list[str], content: bytes) -> None:
        with self._cond:
            self._received.append((rcpts, content))
            self._cond.notify_all()
