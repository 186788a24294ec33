"""Mail load against a gateway from several client connections, recording which recipients
got a 250 (those must be delivered whatever happens to the gateway afterwards)."""

from __future__ import annotations

import email.policy
import smtplib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import make_message
from tests.gateway_process import GatewayProcess


class Load:
    """Senders on several connections; records which recipients got a 250."""

    def __init__(self, gateway: GatewayProcess, rcpts: list[str], connections: int) -> None:
        self.gateway = gateway
        self.rcpts = rcpts
        self.connections = connections
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def send_share(self, worker: int) -> None:
        for rcpt in self.rcpts[worker::self.connections]:
            message = make_message("doctor@clinic.test", rcpt, "Load", f"Body for {rcpt}")
            try:
                with smtplib.SMTP("127.0.0.1", self.gateway.smtp_port, timeout=30) as client:
                    client.sendmail("doctor@clinic.test", [rcpt],
                                    message.as_bytes(policy=email.policy.SMTP))
            except (OSError, smtplib.SMTPException):
                continue  # refused or cut by the kill: not acknowledged, may be lost
            with self.lock:
                self.acknowledged.append(rcpt)

    def run_with(self, fault: Callable[[], None], after: int) -> None:
        """Send everything; call FAULT once AFTER messages were acknowledged."""
        with ThreadPoolExecutor(self.connections) as pool:
            futures = [pool.submit(self.send_share, n) for n in range(self.connections)]
            deadline = time.monotonic() + 60
            while self.count() < after:
                assert time.monotonic() < deadline, self.gateway.log_tail()
                time.sleep(0.01)
            fault()
            for future in futures:
                future.result()
        assert self.acknowledged, "nothing was acknowledged before the fault"
