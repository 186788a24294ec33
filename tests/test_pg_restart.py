"""A gateway on PostgreSQL whose database restarts under load: while the server is down the
gateway cannot commit, so it answers 451 (the client keeps the message and retries); once
the server is back it reconnects by itself, without a restart, and every message it
answered 250 to is delivered."""

from __future__ import annotations

import email.policy
import smtplib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.postgres import Cluster

# Longer than the back-end's pool timeout (15 s): a message that arrives while the server
# is down waits that long for a connection, then gets its 451.
OUTAGE = 17.0
BEFORE = AFTER = 10  # messages acknowledged before the restart, and after it


class Sender:
    """One message after another, each on a connection of its own, from a thread; records
    which recipients got a 250 and which replies refused the others."""

    def __init__(self, gateway: GatewayProcess, prefix: str) -> None:
        self.gateway = gateway
        self.prefix = prefix
        self.acknowledged: list[str] = []
        self.refusals: list[int] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            rcpt = f"{self.prefix}-{n}@tls.test"
            n += 1
            message = make_message("doctor@clinic.test", rcpt, "Restart", f"Body {n}")
            try:
                with smtplib.SMTP("127.0.0.1", self.gateway.smtp_port, timeout=30) as client:
                    client.sendmail("doctor@clinic.test", [rcpt],
                                    message.as_bytes(policy=email.policy.SMTP))
            except smtplib.SMTPResponseException as exc:
                with self.lock:
                    self.refusals.append(exc.smtp_code)
                continue
            except smtplib.SMTPRecipientsRefused as exc:
                with self.lock:
                    self.refusals.extend(code for code, _ in exc.recipients.values())
                continue
            with self.lock:
                self.acknowledged.append(rcpt)
            time.sleep(0.05)

    def wait_for(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.count() < count:
            assert time.monotonic() < deadline, (
                f"{self.count()} acknowledged, wanted {count}; refusals"
                f" {self.refusals[-5:]}\n{self.gateway.log_tail()}")
            time.sleep(0.05)


@pytest.fixture
def pg_gateway(gateway_settings: GatewaySettings, postgres_cluster: Cluster,
               tmp_path: Path) -> Iterator[GatewayProcess]:
    url = postgres_cluster.config_url(tmp_path / "pgpass", postgres_cluster.database,
                                      postgres_cluster.create_schema())
    gateway = GatewayProcess(tmp_path / "gw", gateway_settings, url)
    gateway.start()
    yield gateway
    gateway.stop()


def test_a_database_restart_under_load_gets_451s_and_loses_no_acknowledged_message(
        pg_gateway: GatewayProcess, postgres_cluster: Cluster, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    sender = Sender(pg_gateway, unique)
    sender.thread.start()
    try:
        sender.wait_for(BEFORE)
        postgres_cluster.stop()
        try:
            time.sleep(OUTAGE)
        finally:
            postgres_cluster.start(postgres_cluster.port)
        during = list(sender.refusals)
        sender.wait_for(sender.count() + AFTER)  # reconnected: 250s again
    finally:
        sender.stop.set()
        sender.thread.join(timeout=40)
    assert 451 in during, f"no 451 while the database was down: {during}"
    assert set(sender.refusals) <= {451}, sender.refusals
    for rcpt in sender.acknowledged:
        wait_for_mail(mx_hosts["tls"], rcpt, timeout=60)
