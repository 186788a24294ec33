"""A wheel carries everything it needs: built, installed into a fresh virtualenv, and run
from an empty directory, it takes a confidential message through to the pickup portal."""

from __future__ import annotations

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
from tests.fakes.mx_host import FakeMX
from tests.fakes.ports import free_port
from tests.gateway_process import GatewaySettings

REPO = Path(__file__).resolve().parent.parent


def run(*command: str | Path, cwd: Path) -> None:
    result = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel (and its dependencies) installed; its bin/."""
    work = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", work / "dist", REPO,
        cwd=work)
    [wheel] = (work / "dist").glob("sealgate-*.whl")
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv" / "bin" / "pip", "install", "-q", wheel, cwd=work)
    return work / "venv" / "bin"


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def served(installed: Path, gateway_settings: GatewaySettings,
           tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """`sealgate serve` of the installed wheel, run from an empty directory with a config
    that names its data directory relatively and leaves the policy to the packaged default."""
    site, empty = tmp_path / "site", tmp_path / "empty"
    site.mkdir()
    empty.mkdir()
    smtp_port, portal_port = free_port(), free_port()
    (site / "sealgate.toml").write_text(f"""\
[smtp]
listen = "127.0.0.1:{smtp_port}"
hostname = "gateway.sealgate.test"
[delivery]
port = {gateway_settings.mx_port}
ca_file = "{gateway_settings.ca_file}"
connect_timeout = "5s"
poll_interval = "0.2s"
mta_sts = false
[dns]
nameservers = ["{gateway_settings.nameserver}"]
timeout = "3s"
[storage]
dir = "data"
[pickup]
listen = "127.0.0.1:{portal_port}"
base_url = "http://127.0.0.1:{portal_port}"
[notify]
from = "secure-mail@clinic.test"
""")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SEALGATE_CONFIG")}
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [installed / "sealgate", "serve", "--config", "../site/sealgate.toml"],
        cwd=empty, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 40
    while not (listening(smtp_port) and listening(portal_port)):
        assert process.poll() is None and time.monotonic() < deadline, (
            (tmp_path / "serve.log").read_text())
        time.sleep(0.1)
    yield smtp_port, portal_port, empty
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log.close()


def test_the_installed_wheel_serves_one_pickup_from_an_empty_directory(
        served: tuple[int, int, Path], mx_hosts: dict[str, FakeMX], unique: str,
        tmp_path: Path) -> None:
    smtp_port, portal_port, empty = served
    rcpt = f"{unique}@plain.test"  # no STARTTLS there: require-tls of the default policy
    with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
        client.send_message(make_message("doctor@clinic.test", rcpt, "[secure] Results"))
    notification = wait_for_mail(mx_hosts["plain"], rcpt).content.replace(b"=\r\n", b"")
    link = re.search(rb"http://127\.0\.0\.1:\d+/m/[\w-]+", notification)
    assert link, notification
    start = httpx.get(link.group(0).decode(), timeout=30)
    assert start.status_code == 200 and rcpt in start.text
    stylesheet = re.search(r'href="(/static/[^"]+\.css)"', start.text)
    assert stylesheet and httpx.get(f"http://127.0.0.1:{portal_port}{stylesheet.group(1)}",
                                    timeout=30).status_code == 200
    assert not list(empty.iterdir()), "serve wrote into the directory it was started from"
    assert (tmp_path / "site" / "data" / "sealgate.db").exists()


def test_the_installed_wheel_carries_the_password_list_and_example_config(installed: Path) -> None:
    check = ("from pickup.passwords import common_passwords; "
             "from gateway.resources import EXAMPLE_CONFIG, DEFAULT_POLICY_DIR; "
             "assert len(common_passwords()) > 1000; assert EXAMPLE_CONFIG.is_file(); "
             "assert list(DEFAULT_POLICY_DIR.glob('*.toml')); print(EXAMPLE_CONFIG)")
    result = subprocess.run([installed / "python", "-c", check], capture_output=True, text=True,
                            cwd="/", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "site-packages" in result.stdout
