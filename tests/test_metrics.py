"""`[metrics] listen` of a real `sealgate serve` (two SMTP listeners, two queue runners):
/metrics adds up the counters of every worker process and moves as mail flows; /healthz
and /readyz answer; the readiness follows the queue runners; a bad address is one clear
error."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port
from tests.gateway_process import REPO, GatewayProcess, GatewaySettings
from tests.journey import stored_pickups
from tests.process_tree import wait_for_workers, wait_until_gone, workers

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


class MeteredGateway(GatewayProcess):
    def __init__(self, directory: Path, settings: GatewaySettings) -> None:
        self.metrics_port = free_port()
        extra = {**settings.extra, "metrics": {"listen": f"127.0.0.1:{self.metrics_port}"}}
        super().__init__(directory, dataclasses.replace(settings, extra=extra))

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=10)

    def scrape(self) -> dict[str, float]:
        """Every sample of /metrics: 'name{labels}' (labels sorted as printed) -> value."""
        page = self.get("/metrics")
        assert page.status_code == 200, page.text
        samples = {}
        for line in page.text.splitlines():
            if line and not line.startswith("#"):
                match = _SAMPLE.match(line)
                assert match, f"not a Prometheus sample: {line!r}"
                samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return samples

    def value(self, series: str) -> float:
        return self.scrape().get(series, 0.0)

    def wait_for(self, series: str, at_least: float, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while (found := self.value(series)) < at_least:
            assert time.monotonic() < deadline, \
                f"{series} stayed at {found}, wanted {at_least}:\n{self.log_tail()}"
            time.sleep(0.1)
        return found


@pytest.fixture(scope="module")
def metered(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX], fake_dns: FakeDNS,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[MeteredGateway]:
    fake_dns.add("nomail.test", "MX", "0 .")
    process = MeteredGateway(tmp_path_factory.mktemp("metered"), gateway_settings)
    process.start()
    yield process
    process.stop()


def test_healthz_answers_ok(metered: MeteredGateway) -> None:
    page = metered.get("/healthz")
    assert (page.status_code, page.text) == (200, "ok\n")


def test_readyz_is_ready_once_every_runner_turns(metered: MeteredGateway) -> None:
    deadline = time.monotonic() + 20
    while (page := metered.get("/readyz")).status_code != 200:
        assert time.monotonic() < deadline, page.text
        time.sleep(0.2)
    assert page.json() == {"ready": True, "problems": []}


def test_accepted_messages_of_every_listener_add_up(metered: MeteredGateway,
                                                    mx_hosts: dict[str, FakeMX],
                                                    unique: str) -> None:
    before = metered.value("sealgate_messages_accepted_total")
    for n in range(8):  # one connection each: the two listeners take turns
        metered.send(make_message("doctor@clinic.test", f"{unique}{n}@tls.test", "Hello"))
    assert metered.value("sealgate_messages_accepted_total") == before + 8


def test_a_delivery_over_tls_moves_its_counters(metered: MeteredGateway,
                                                mx_hosts: dict[str, FakeMX],
                                                unique: str) -> None:
    series = 'sealgate_deliveries_total{kind="mx",outcome="delivered",tls="encrypted"}'
    delivered, tls13 = metered.value(series), metered.value(
        'sealgate_tls_sessions_total{version="TLSv1.3"}')
    timed = metered.value('sealgate_delivery_seconds_count{kind="mx"}')
    metered.send(make_message("doctor@clinic.test", f"{unique}@tls.test", "Hello"))
    wait_for_mail(mx_hosts["tls"], f"{unique}@tls.test")
    metered.wait_for(series, delivered + 1)
    samples = metered.scrape()
    assert samples['sealgate_tls_sessions_total{version="TLSv1.3"}'] >= tls13 + 1
    assert samples['sealgate_delivery_seconds_count{kind="mx"}'] >= timed + 1
    assert samples['sealgate_recipients_accepted_total{mode="opportunistic"}'] >= 1


def test_a_refused_recipient_is_counted_by_reason(metered: MeteredGateway) -> None:
    series = 'sealgate_smtp_refused_total{reason="address_literal",stage="rcpt"}'
    before = metered.value(series)
    with smtplib.SMTP("127.0.0.1", metered.smtp_port, timeout=30) as client:
        client.ehlo("mail.clinic.test")
        client.mail("doctor@clinic.test")
        assert client.rcpt("someone@[192.0.2.1]")[0] == 550
    assert metered.value(series) == before + 1


def test_a_pickup_counts_its_notification_and_shows_in_the_stored_gauge(
        metered: MeteredGateway, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    notified = metered.value("sealgate_pickup_notifications_total")
    stored = metered.value("sealgate_pickups_stored_by_runners_total")
    rcpt = f"{unique}@plain.test"
    metered.send(make_message("doctor@clinic.test", rcpt, "[secure] Results"))
    stored_pickups(metered, rcpt)
    metered.wait_for("sealgate_pickup_notifications_total", notified + 1)
    metered.wait_for("sealgate_pickups_stored_by_runners_total", stored + 1)
    metered.wait_for('sealgate_pickups_stored{state="unread"}', 1)
    metered.wait_for('sealgate_deliveries_total{kind="mx",outcome="tls-unavailable",'
                     'tls="no-starttls"}', 1)


def test_a_bounce_counts_a_dsn(metered: MeteredGateway, unique: str) -> None:
    before = metered.value('sealgate_dsns_total{kind="failure"}')
    metered.send(make_message("doctor@clinic.test", f"{unique}@nomail.test", "Hello"))
    metered.wait_for('sealgate_dsns_total{kind="failure"}', before + 1)
    metered.wait_for('sealgate_deliveries_total{kind="mx",outcome="permanent",tls="none"}', 1)


def test_queue_depth_is_read_at_scrape_time(metered: MeteredGateway, fake_dns: FakeDNS,
                                            unique: str) -> None:
    fake_dns.add("down.test", "MX", "10 mx.down.test.")
    fake_dns.add("mx.down.test", "A", "127.0.0.31")  # nothing listens: deferred, again
    metered.send(make_message("doctor@clinic.test", f"{unique}@down.test", "Hello"))
    metered.wait_for('sealgate_queue_recipients{state="deferred"}', 1)
    time.sleep(1.2)
    assert metered.value('sealgate_queue_oldest_age_seconds{state="deferred"}') >= 1


def test_counts_of_a_killed_runner_stay_counted(metered: MeteredGateway,
                                                mx_hosts: dict[str, FakeMX],
                                                unique: str) -> None:
    series = 'sealgate_deliveries_total{kind="mx",outcome="delivered",tls="encrypted"}'
    metered.send(make_message("doctor@clinic.test", f"{unique}@tls.test", "Hello"))
    wait_for_mail(mx_hosts["tls"], f"{unique}@tls.test")
    counted = metered.wait_for(series, 1)
    assert metered.process is not None
    killed = workers(metered.process.pid, "delivery")
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    # Until the kernel has reaped them, the killed pids still look like serving workers.
    wait_until_gone(killed)
    wait_for_workers(metered.process.pid, "delivery", 2)
    assert metered.value(series) >= counted


def test_readyz_fails_while_a_runner_does_not_turn(metered: MeteredGateway) -> None:
    assert metered.process is not None
    runner = wait_for_workers(metered.process.pid, "delivery", 2)[0]
    os.kill(runner, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 30
        while (page := metered.get("/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "still ready with a stopped runner"
            time.sleep(0.5)
        assert page.status_code == 503
        assert "is not turning" in " ".join(page.json()["problems"])
    finally:
        os.kill(runner, signal.SIGCONT)
    deadline = time.monotonic() + 20
    while metered.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready again after the runner went on"
        time.sleep(0.2)


def test_a_metrics_address_in_use_is_one_clear_error(gateway_settings: GatewaySettings,
                                                     tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = GatewayProcess(tmp_path, dataclasses.replace(
            gateway_settings, extra={**gateway_settings.extra,
                                     "metrics": {"listen": f"127.0.0.1:{port}"}}))
        result = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--config", str(process.config)],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"metrics.listen: cannot listen on 127.0.0.1:{port}" in result.stderr
