"""kill -9 in the middle of a load: nothing that got a 250 is lost."""

from __future__ import annotations

import email.policy
import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess

MESSAGES = 60
CONNECTIONS = 6


class Load:
    """Senders on several connections; records which recipients got a 250."""

    def __init__(self, gateway: GatewayProcess, rcpts: list[str]) -> None:
        self.gateway = gateway
        self.rcpts = rcpts
        self.acknowledged: list[str] = []
        self.lock = threading.Lock()

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def send_share(self, worker: int) -> None:
        for rcpt in self.rcpts[worker::CONNECTIONS]:
            message = make_message("doctor@clinic.test", rcpt, "Load", f"Body for {rcpt}")
            try:
                with smtplib.SMTP("127.0.0.1", self.gateway.smtp_port, timeout=30) as client:
                    client.sendmail("doctor@clinic.test", [rcpt],
                                    message.as_bytes(policy=email.policy.SMTP))
            except (OSError, smtplib.SMTPException):
                continue  # refused or cut by the kill: not acknowledged, may be lost
            with self.lock:
                self.acknowledged.append(rcpt)


def test_every_acknowledged_message_is_delivered_after_kill_9_during_load(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    own_gateway.start()
    load = Load(own_gateway, [f"{unique}-{n}@plain.test" for n in range(MESSAGES)])
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        futures = [pool.submit(load.send_share, worker) for worker in range(CONNECTIONS)]
        deadline = time.monotonic() + 60
        while load.count() < MESSAGES // 3:
            assert time.monotonic() < deadline, own_gateway.log_tail()
            time.sleep(0.01)
        own_gateway.kill_hard()
        for future in futures:
            future.result()
    assert load.acknowledged, "nothing was acknowledged before the kill"
    own_gateway.start()
    for rcpt in load.acknowledged:
        wait_for_mail(mx_hosts["plain"], rcpt, timeout=60)
