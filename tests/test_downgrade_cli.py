"""`sealgate tls forget HOST` and what `sealgate route` shows of a host's downgrade memory:
the real command line on a real store (SQLite), its memory written through KnowledgeStore
as deliveries write it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.storage.store import Store

HOST = "mx.forget.test"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sealgate.toml"
    path.write_text(f'[storage]\ndir = "{tmp_path / "var"}"\n'
                    '[delivery]\ndowngrade_hold = "2h"\n')
    return path


def sealgate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def remember_downgrade(config: Path) -> None:
    store = Store(config.parent / "var")
    try:
        store.record_host_tls("forget.test", HOST, False, False, "no-starttls")
        store.record_host_security(HOST, starttls=True, verified=True)
        store.mark_downgraded(HOST, "no-starttls")
    finally:
        store.close()


def test_forgetting_a_host_clears_its_downgrade(config_file: Path) -> None:
    remember_downgrade(config_file)
    done = sealgate(config_file, "tls", "forget", "MX.Forget.test.")
    assert done.returncode == 0, done.stderr
    assert f"forgot what deliveries learned about {HOST}'s TLS" in done.stdout
    store = Store(config_file.parent / "var")
    try:
        assert store.host_security(HOST) is None
        assert store.host_tls_since("forget.test", 0) == []
    finally:
        store.close()


def test_forgetting_a_host_nothing_is_known_about_says_so(config_file: Path) -> None:
    done = sealgate(config_file, "tls", "forget", "mx.unknown.test")
    assert done.returncode == 1
    assert "nothing is known about mx.unknown.test's TLS" in done.stderr
    assert "Traceback" not in done.stderr


def test_forget_refuses_what_is_not_a_host_name(config_file: Path) -> None:
    done = sealgate(config_file, "tls", "forget", "admin@forget.test")
    assert done.returncode == 1
    assert "is not an MX host name" in done.stderr and "Traceback" not in done.stderr


def test_route_shows_a_downgraded_host_with_its_hold(config_file: Path) -> None:
    remember_downgrade(config_file)
    done = sealgate(config_file, "route", "--from", "a@clinic.test", "--to", "b@forget.test",
                    "--no-dns")
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("downgrade:")]
    assert HOST in line and "ordinary mail held until" in line
    assert f"sealgate tls forget {HOST}" in line
    assert "TLS downgrade seen at mx.forget.test" in done.stdout.splitlines()[-1]


def test_route_json_has_the_downgrade_memory(config_file: Path) -> None:
    remember_downgrade(config_file)
    done = sealgate(config_file, "route", "--from", "a@clinic.test", "--to", "b@forget.test",
                    "--no-dns", "--json")
    [host] = json.loads(done.stdout)["domain"]["downgrade"]
    assert (host["host"], host["downgrade"], host["remembered"]) == (HOST, "no-starttls", True)
    assert host["held_until"] == host["downgraded_since"] + 7200


@pytest.mark.parametrize("key", ["downgrade_window", "downgrade_hold", "mta_sts_refresh"])
def test_config_check_names_a_bad_duration_of_the_downgrade_keys(tmp_path: Path,
                                                                 key: str) -> None:
    config = tmp_path / "sealgate.toml"
    config.write_text(f'[storage]\ndir = "{tmp_path / "var"}"\n[delivery]\n{key} = "soon"\n')
    done = sealgate(config, "config", "check")
    assert done.returncode == 1
    assert f"delivery.{key}" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
