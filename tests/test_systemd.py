"""conf/sealgate.service: systemd accepts it (systemd-analyze verify), it is Type=notify
with the hardening the README promises, and `sealgate serve` speaks sd_notify: READY=1
once it serves, STOPPING=1 when a stop begins."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.gateway_process import REPO, GatewayProcess, GatewaySettings

UNIT = REPO / "conf" / "sealgate.service"
INSTALLED_AT = "/opt/sealgate/bin/sealgate"


def directives(unit: Path) -> dict[str, list[str]]:
    """"Section.Key" -> every value given, in order."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        found.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return found


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's program exists: point it at this checkout's sealgate.
    sealgate = Path(sys.executable).parent / "sealgate"
    assert sealgate.exists(), "the sealgate entry point is not installed beside python"
    unit = tmp_path / "sealgate.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, str(sealgate)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60)
    # A bad value is only a warning with exit 0: silence is the pass.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_unit_is_type_notify_with_reload_by_sighup() -> None:
    unit = directives(UNIT)
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Service.ExecStart"][0].startswith(f"{INSTALLED_AT} serve")


def test_the_unit_runs_as_its_own_user_with_only_the_port_25_capability() -> None:
    unit = directives(UNIT)
    assert unit["Service.User"] == ["sealgate"]
    assert unit["Service.StateDirectory"] == ["sealgate"]
    assert unit["Service.ProtectSystem"] == ["strict"]
    assert unit["Service.NoNewPrivileges"] == ["true"]
    assert unit["Service.PrivateTmp"] == ["true"]
    assert unit["Service.CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert unit["Service.AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


def test_serve_sends_ready_then_stopping_to_the_notify_socket(
        gateway_settings: GatewaySettings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        address = tmp_path / "notify"
        manager.bind(str(address))
        manager.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", str(address))
        gateway = GatewayProcess(tmp_path / "gw", gateway_settings)
        try:
            gateway.start()
            assert manager.recv(4096) == b"READY=1"
            with socket.create_connection(("127.0.0.1", gateway.smtp_port), timeout=10) as smtp:
                assert smtp.recv(512).startswith(b"220 ")  # ready means serving
            assert gateway.process is not None
            gateway.process.terminate()
            assert manager.recv(4096) == b"STOPPING=1"
            assert gateway.process.wait(timeout=60) == 0
        finally:
            gateway.stop()


def test_an_abstract_notify_socket_is_reached(gateway_settings: GatewaySettings,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"sealgate-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        gateway = GatewayProcess(tmp_path / "gw", gateway_settings)
        try:
            gateway.start()
            assert manager.recv(4096) == b"READY=1"
        finally:
            gateway.stop()
