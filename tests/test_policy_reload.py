"""A running gateway picks up policy edits; a broken edit keeps the old policy active."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_POLICY, make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import stored_pickups

PICKUP_TLS_TEST = '\n[[domain]]\nmatch = "tls.test"\nmode = "pickup"\n'


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    path = directory / "policy.toml"
    path.write_text(TEST_POLICY)
    return path


@pytest.fixture
def reloading_gateway(gateway_settings: GatewaySettings, policy_file: Path,
                      tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess(tmp_path / "gw",
                             dataclasses.replace(gateway_settings, policy_dir=policy_file.parent))
    process.start()
    yield process
    process.stop()


def wait_for_log(gateway: GatewayProcess, text: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in gateway.log_path.read_text():
        assert time.monotonic() < deadline, f"log never said {text!r}:\n{gateway.log_tail()}"
        time.sleep(0.05)


def test_edited_policy_file_is_applied_without_a_restart(
        reloading_gateway: GatewayProcess, policy_file: Path, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    policy_file.write_text(TEST_POLICY + PICKUP_TLS_TEST)
    wait_for_log(reloading_gateway, "policy reloaded")
    rcpt = f"{unique}@tls.test"
    reloading_gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Now pickup"))
    stored_pickups(reloading_gateway, rcpt)


def test_broken_edit_keeps_the_old_policy_and_logs_file_and_line(
        reloading_gateway: GatewayProcess, policy_file: Path, mx_hosts: dict[str, FakeMX],
        unique: str) -> None:
    broken = TEST_POLICY + '\n[[domain]]\nmatch = "tls.test"\nmode = "sometimes"\n'
    policy_file.write_text(broken)
    wait_for_log(reloading_gateway, "keeping the previous policy")
    line = broken.splitlines().index('mode = "sometimes"') + 1
    assert f"{policy_file}:{line}: mode 'sometimes'" in reloading_gateway.log_path.read_text()
    rcpt = f"{unique}@tls.test"
    reloading_gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Still direct",
                                        "Body"))
    assert wait_for_mail(mx_hosts["tls"], rcpt).tls


def test_sighup_reloads_the_policy(
        reloading_gateway: GatewayProcess, policy_file: Path, mx_hosts: dict[str, FakeMX]) -> None:
    assert reloading_gateway.process is not None
    reloading_gateway.process.send_signal(signal.SIGHUP)
    wait_for_log(reloading_gateway, "policy reloaded")
