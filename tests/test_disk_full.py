"""A full disk is survived without a restart: SMTP answers 4xx instead of 250 while space
is short, background loops log the failure once and go on, and once space is back every
acknowledged message is delivered. Debris left by failed writes is cleaned up."""

from __future__ import annotations

import asyncio
import email.policy
import errno
import logging
import os
import smtplib
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.storage.store import Route, Store
from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import opened_storage, wait_until
from tests.portal_fixtures import clock, store

__all__ = ["clock", "store"]  # shared fixtures, used here by name

FULL_MX_IP = "127.0.0.15"
MESSAGE = b"From: doctor@clinic.test\r\nSubject: Debris\r\n\r\nBody\r\n"
log = logging.getLogger("tests.disk_full")


@pytest.fixture(scope="module")
def busy_mx(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    """MX of full.test; starts out answering 451 so that mail waits in the queue."""
    fake_dns.add("full.test", "MX", "10 mx.full.test.")
    fake_dns.add("mx.full.test", "A", FULL_MX_IP)
    with FakeMX(FULL_MX_IP, mx_port, name="mx.full.test") as host:
        yield host


@pytest.fixture
def small_disk_gateway(gateway_settings: GatewaySettings, tmp_path: Path
                       ) -> Iterator[GatewayProcess]:
    """A gateway whose storage dir is a 16 MiB tmpfs of its own (tests run as root)."""
    process = GatewayProcess(tmp_path / "gw", gateway_settings)
    process.storage_dir.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs",
                              str(process.storage_dir)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the tests run as root): {mounted.stderr.strip()}")
    try:
        yield process
    finally:
        process.stop()
        if subprocess.run(["umount", str(process.storage_dir)]).returncode != 0:
            subprocess.run(["umount", "-l", str(process.storage_dir)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def submit(gateway: GatewayProcess, rcpt: str) -> int:
    """Send a message to RCPT; the reply code of the first refusal, or 250 when queued."""
    message = make_message("doctor@clinic.test", rcpt, "Full disk", "Still here")
    with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=60) as client:
        client.ehlo("mail.clinic.test")
        for code, _ in (client.mail("doctor@clinic.test"), client.rcpt(rcpt)):
            if code != 250:
                return code
        return client.data(message.as_bytes(policy=email.policy.SMTP))[0]


def waiting_states(gateway: GatewayProcess) -> set[str]:
    with opened_storage(gateway.storage_dir) as storage:
        return {w.state for w in storage.waiting_recipients()}


def test_every_acknowledged_message_is_delivered_after_the_disk_was_full(
        small_disk_gateway: GatewayProcess, busy_mx: FakeMX, unique: str) -> None:
    gateway = small_disk_gateway
    busy_mx.rcpt_reply = "451 4.3.0 try again later"
    gateway.start()
    waiting = [f"{unique}-{n}@full.test" for n in range(3)]
    assert [submit(gateway, rcpt) for rcpt in waiting] == [250, 250, 250]
    wait_until("deferred", lambda: waiting_states(gateway) == {"deferred"}, gateway)

    filler = fill(gateway.storage_dir)
    while_full = {f"{unique}-full-{n}@full.test": submit(gateway, f"{unique}-full-{n}@full.test")
                  for n in range(2)}
    assert set(while_full.values()) <= {250, 452}, while_full
    assert 452 in while_full.values(), while_full
    wait_until("hit the full disk", lambda: "database or disk is full" in gateway.log_tail(),
               gateway)

    filler.unlink()
    busy_mx.rcpt_reply = None
    after = f"{unique}-after@full.test"
    assert submit(gateway, after) == 250
    acknowledged = waiting + [r for r, code in while_full.items() if code == 250] + [after]
    for rcpt in acknowledged:
        wait_for_mail(busy_mx, rcpt, timeout=60)
    assert gateway.process is not None and gateway.process.poll() is None  # no restart
    # Keyed by process too ("sealgate.queue[delivery-1]"): each worker logs its own failure.
    failures = Counter((line.split(" ERROR ", 1)[0].split(" ")[-1],
                        line.split(" ERROR ", 1)[1].split(" failed: ")[0])
                       for line in gateway.log_path.read_text().splitlines()
                       if "failed: OperationalError: database or disk is full" in line)
    assert failures and set(failures.values()) == {1}, failures  # once each, not per turn


def test_start_up_removes_unfinished_writes_and_orphaned_spool_files(
        own_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX]) -> None:
    own_gateway.start()
    own_gateway.stop()
    spool = own_gateway.storage_dir / "spool"
    debris = [spool / "1A2330EE1B373415F49C5.eml.tmp", spool / "1A2330EE1B373415F49C6.eml"]
    for path in debris:
        path.write_bytes(MESSAGE)
        os.utime(path, (time.time() - 120, time.time() - 120))
    own_gateway.start()
    assert [p for p in debris if p.exists()] == []


def test_recent_spool_file_without_rows_is_left_for_the_accept_in_progress(store: Store) -> None:
    fresh, _ = store.spool_stream([MESSAGE])  # no rows yet, as in the middle of an accept
    assert store.clean_spool_debris() == 0
    assert store.read_spool(fresh) == MESSAGE


def test_spool_file_of_a_waiting_message_is_kept(store: Store) -> None:
    message_id = store.enqueue("doctor@clinic.test", [Route("a@full.test")], MESSAGE)
    assert store.clean_spool_debris(min_age=0) == 0  # however old: a recipient needs it
    assert store.read_spool(message_id) == MESSAGE


def test_repeated_identical_error_is_logged_once_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    errors = RepeatedErrors(log, interval=300, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="tests.disk_full"):
        for _ in range(100):
            errors.failed("claiming due mail", OSError(28, "No space left on device"))
            now[0] += 1
        lines_before_interval = len(caplog.records)
        now[0] = 301
        errors.failed("claiming due mail", OSError(28, "No space left on device"))
    assert lines_before_interval == 1
    assert len(caplog.records) == 2 and "100 more times" in caplog.records[1].getMessage()


def test_background_loop_goes_on_after_a_turn_fails(caplog: pytest.LogCaptureFixture) -> None:
    turns: list[int] = []

    async def turn() -> None:
        turns.append(len(turns))
        if len(turns) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        if len(turns) == 3:
            raise asyncio.CancelledError  # ends the test's loop

    with caplog.at_level(logging.INFO, logger="tests.disk_full"), \
            pytest.raises(asyncio.CancelledError):
        asyncio.run(keep_running("retention expiry", turn, 0, RepeatedErrors(log)))
    assert len(turns) == 3
    assert "retention expiry works again" in caplog.text
