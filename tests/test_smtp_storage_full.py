"""Short on disk space: MAIL and DATA get 452 4.3.1 (never a 250 at MAIL, never 451 4.3.0),
and the gateway accepts mail again as soon as space is free."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.inbound import codes
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.smtp_talk import RawSMTP

RESERVE = 256 * 1024  # smtp.min_free_space of this gateway
MESSAGE = b"From: a@clinic.test\r\nTo: b@plain.test\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def small_disk_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway whose storage dir is a 4 MB tmpfs (the tests run as root)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (the tests run as root)")
    smtp = {**gateway_settings.extra["smtp"], "min_free_space": RESERVE,
            "max_message_size": 64 * 1024 * 1024}
    settings = dataclasses.replace(gateway_settings, extra={**gateway_settings.extra, "smtp": smtp})
    process = GatewayProcess(tmp_path_factory.mktemp("small-disk"), settings)
    process.storage_dir.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                    str(process.storage_dir)], check=True)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        subprocess.run(["umount", "-l", str(process.storage_dir)], check=False)


def fill(filler: Path) -> None:
    """Grow FILLER until its filesystem has no byte left."""
    with filler.open("ab") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.fixture
def filled(small_disk_gateway: GatewayProcess) -> Iterator[Path]:
    """The storage filesystem full to the last byte; freed again afterwards."""
    filler = small_disk_gateway.storage_dir / "filler"
    fill(filler)
    yield filler
    filler.unlink(missing_ok=True)


def start(smtp: RawSMTP, size: int | None = None) -> str:
    smtp.command("EHLO client.clinic.test")
    return smtp.command("MAIL FROM:<doctor@clinic.test>" + (f" SIZE={size}" if size else ""))


def test_declared_size_over_the_free_space_gets_452_at_mail(
        small_disk_gateway: GatewayProcess) -> None:
    with RawSMTP(small_disk_gateway.smtp_port) as smtp:
        assert start(smtp, size=8 * 1024 * 1024) == codes.INSUFFICIENT_STORAGE
        assert smtp.command("RSET").startswith("250")
        assert start(smtp, size=1024) == codes.OK_SENDER


def test_full_disk_gets_452_at_mail_and_mail_is_accepted_once_freed(
        small_disk_gateway: GatewayProcess, filled: Path) -> None:
    with RawSMTP(small_disk_gateway.smtp_port) as smtp:
        assert start(smtp) == codes.INSUFFICIENT_STORAGE
    filled.unlink()
    with RawSMTP(small_disk_gateway.smtp_port) as smtp:
        assert start(smtp) == codes.OK_SENDER


def test_disk_filling_up_before_data_gets_452_at_data(
        small_disk_gateway: GatewayProcess, filled: Path) -> None:
    filled.unlink()
    with RawSMTP(small_disk_gateway.smtp_port) as smtp:
        assert start(smtp) == codes.OK_SENDER
        assert smtp.command("RCPT TO:<someone@plain.test>") == codes.OK_RECIPIENT
        assert smtp.command("DATA").startswith("354")
        fill(filled)  # again, now that MAIL was accepted
        assert smtp.send_raw(MESSAGE + b"y" * 500 + b"\r\n.\r\n") == codes.INSUFFICIENT_STORAGE
    spool = small_disk_gateway.storage_dir / "spool"
    assert not [p.name for p in spool.iterdir()], "a refused message left spool files behind"
    filled.unlink()
    with RawSMTP(small_disk_gateway.smtp_port) as smtp:
        start(smtp)
        smtp.command("RCPT TO:<someone@plain.test>")
        smtp.command("DATA")
        assert smtp.send_raw(MESSAGE + b".\r\n").startswith("250 2.0.0")
