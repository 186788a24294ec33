"""The command line contract of DESIGN.md: --config anywhere, paths relative to the config
file, and a fresh install that runs with no config file at all."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import parser
from gateway.config import load_config
from tests.fakes.ports import free_port

REPO = Path(__file__).resolve().parent.parent
EVERY_COMMAND = [
    ["serve"], ["probe", "example.org"], ["route", "--from", "a@b.test", "--to", "c@d.test"],
    ["policy", "check"], ["config", "check"], ["purge"], ["queue", "list"], ["queue", "show", "ID"],
    ["queue", "flush"], ["queue", "delete", "ID"], ["keys", "rotate"], ["keys", "list"],
    ["pickup", "list"], ["pickup", "revoke", "ID"], ["pickup", "audit", "ID"],
]


def sealgate(*args: str, cwd: Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SEALGATE_CONFIG"}
    environment["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=60, env={**environment, **(env or {})})


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_config_is_accepted_after_the_sub_command(command: list[str]) -> None:
    assert parser().parse_args([*command, "--config", "site.toml"]).config == "site.toml"


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_config_is_accepted_before_the_sub_command(command: list[str]) -> None:
    assert parser().parse_args(["--config", "site.toml", *command]).config == "site.toml"


def test_config_after_the_sub_command_is_used(tmp_path: Path) -> None:
    (tmp_path / "site.toml").write_text('[storage]\ndir = "data"\n')
    result = sealgate("queue", "list", "--config", str(tmp_path / "site.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data").is_dir()  # the storage was opened there


def test_relative_paths_are_relative_to_the_config_file_not_the_working_directory(
        tmp_path: Path) -> None:
    site, elsewhere = tmp_path / "etc", tmp_path / "cron"
    site.mkdir()
    elsewhere.mkdir()
    (site / "policies").mkdir()
    (site / "policies" / "p.toml").write_text('[default]\nmode = "pickup"\n')
    (site / "sealgate.toml").write_text('[storage]\ndir = "data"\n[policy]\ndir = "policies"\n')
    result = sealgate("--config", str(site / "sealgate.toml"), "purge", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert (site / "data").is_dir()  # the storage was opened there
    assert not list(elsewhere.iterdir())
    checked = sealgate("policy", "check", "--config", str(site / "sealgate.toml"), cwd=elsewhere)
    assert "default mode pickup" in checked.stdout


def test_every_path_key_resolves_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "sealgate.toml").write_text(
        '[smtp]\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n'
        '[delivery]\nca_file = "ca.pem"\n[pickup]\nlogo_file = "logo.png"\n'
        'templates_dir = "mine"\n[dkim]\nkey_file = "/etc/abs.key"\n')
    config = load_config(tmp_path / "sealgate.toml")
    assert config.smtp.tls_cert == str(tmp_path / "tls" / "cert.pem")
    assert config.smtp.tls_key == str(tmp_path / "tls" / "key.pem")
    assert config.delivery.ca_file == str(tmp_path / "ca.pem")
    assert config.pickup.logo_file == str(tmp_path / "logo.png")
    assert config.pickup.templates_dir == str(tmp_path / "mine")
    assert config.dkim.key_file == "/etc/abs.key"
    assert config.storage_dir == tmp_path / "var"


def test_without_any_config_file_the_defaults_and_the_packaged_policy_are_used(
        tmp_path: Path) -> None:
    result = sealgate("policy", "check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "00-default.toml" not in result.stderr and "OK (1 files" in result.stdout


def test_a_named_config_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    result = sealgate("queue", "list", "--config", "nowhere.toml", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "sealgate: nowhere.toml: config file not found"


def test_a_port_out_of_range_is_one_line_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "sealgate.toml").write_text('[smtp]\nlisten = "127.0.0.1:70000"\n')
    result = sealgate("serve", "--config", str(tmp_path / "sealgate.toml"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == "sealgate: smtp.listen: port 70000 is out of range (1-65535)"


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A config whose existing store lies on a filesystem mounted read-only (root ignores
    file modes, so only a read-only mount makes the database truly unwritable)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    try:
        config = mount / "sealgate.toml"
        config.write_text('[storage]\ndir = "var"\n')
        assert sealgate("purge", "--config", str(config), cwd=tmp_path).returncode == 0
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        yield config
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize("command", [["queue", "list"], ["purge"], ["serve"]], ids=" ".join)
def test_a_read_only_database_is_one_line_naming_the_path(
        read_only_store: Path, tmp_path: Path, command: list[str]) -> None:
    result = sealgate(*command, "--config", str(read_only_store), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("sealgate:")]
    assert str(read_only_store.parent / "var") in line and "storage.dir" in line
    assert "read-only file" in line.lower()


def test_config_check_accepts_a_good_file(tmp_path: Path) -> None:
    (tmp_path / "sealgate.toml").write_text('[storage]\ndir = "data"\n')
    result = sealgate("config", "check", "--config", str(tmp_path / "sealgate.toml"), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("sealgate.toml: OK")


def test_config_check_names_an_unknown_key_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "sealgate.toml").write_text('[smtp]\nlistne = "127.0.0.1:25"\n')
    result = sealgate("config", "check", "--json", "--config", str(tmp_path / "sealgate.toml"),
                      cwd=tmp_path)
    assert result.returncode == 1
    [error] = json.loads(result.stdout)["errors"]
    assert error.startswith("[smtp] unknown key 'listne'")


@pytest.mark.parametrize("key", ["smtp", "pickup"])
def test_a_port_in_use_is_one_line_naming_the_key(tmp_path: Path, key: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = {"smtp": free_port(), "pickup": free_port(), key: busy}
        (tmp_path / "sealgate.toml").write_text(
            f'[smtp]\nlisten = "127.0.0.1:{ports["smtp"]}"\n'
            f'[pickup]\nlisten = "127.0.0.1:{ports["pickup"]}"\n[storage]\ndir = "var"\n')
        result = sealgate("serve", "--config", str(tmp_path / "sealgate.toml"), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "sealgate ready" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"sealgate: {key}.listen: cannot listen on 127.0.0.1:{busy}: Address already in use")
