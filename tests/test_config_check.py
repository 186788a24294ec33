"""`sealgate config check [--json]`: validates a config without starting anything; exit 0
when it can be used, 1 with every problem named by its key otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trustme

from tests.gateway_process import REPO


def check(config: Path, *options: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "SEALGATE_CONFIG"}
    return subprocess.run([sys.executable, "-m", "gateway.cli", "config", "check", *options,
                           "--config", str(config)], cwd=config.parent, text=True,
                          capture_output=True, timeout=60,
                          env={**environment, "PYTHONPATH": str(REPO)})


def check_json(config: Path) -> tuple[int, dict[str, Any]]:
    result = check(config, "--json")
    return result.returncode, json.loads(result.stdout)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.toml").write_text('[default]\nmode = "require-tls"\n')
    return tmp_path


def write(site: Path, text: str) -> Path:
    path = site / "sealgate.toml"
    path.write_text('[storage]\ndir = "data"\n[policy]\ndir = "policies"\n' + text)
    return path


def test_a_good_config_is_ok_and_exits_0(site: Path) -> None:
    result = check(write(site, '[metrics]\nlisten = "127.0.0.1:9125"\n[log]\nformat = "json"\n'))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{site / 'sealgate.toml'}: OK"


def test_checking_starts_nothing_and_creates_no_storage(site: Path) -> None:
    result = check(write(site, ""))
    assert result.returncode == 0
    assert not (site / "data").exists()
    assert "storage.dir" in result.stderr and "first start" in result.stderr


def test_every_unknown_key_is_named_not_only_the_first(site: Path) -> None:
    code, report = check_json(write(site, '[smtp]\nlistne = "x"\n[pickup]\nbase = "y"\n'))
    assert code == 1 and report["ok"] is False
    assert [e.split(" (known")[0] for e in report["errors"]] == [
        "[smtp] unknown key 'listne'", "[pickup] unknown key 'base'"]


def test_a_value_of_the_wrong_type_names_its_key(site: Path) -> None:
    code, report = check_json(write(site, "[smtp]\nmax_connections = \"many\"\n"))
    assert code == 1
    assert report["errors"] == ["smtp.max_connections: expected int, got 'many'"]


def test_an_unknown_section_is_an_error(site: Path) -> None:
    code, report = check_json(write(site, "[metric]\nlisten = \"\"\n"))
    assert code == 1 and report["errors"][0].startswith("unknown section [metric]")


def test_a_listen_address_that_does_not_parse_names_its_key(site: Path) -> None:
    code, report = check_json(write(site, '[metrics]\nlisten = "127.0.0.1"\n'))
    assert code == 1
    assert report["errors"] == ["metrics.listen: '127.0.0.1' needs a port (host:port)"]


def test_an_unknown_log_format_is_an_error(site: Path) -> None:
    code, report = check_json(write(site, '[log]\nformat = "xml"\n'))
    assert code == 1 and report["errors"][0].startswith("log.format: 'xml'")


def test_a_missing_certificate_file_names_its_key(site: Path) -> None:
    code, report = check_json(write(site, '[smtp]\ntls_cert = "tls/cert.pem"\n'
                                          'tls_key = "tls/key.pem"\n'))
    assert code == 1
    assert report["errors"] == [f"smtp.tls_cert: {site / 'tls' / 'cert.pem'} does not exist",
                                f"smtp.tls_key: {site / 'tls' / 'key.pem'} does not exist"]


def test_a_certificate_that_is_not_one_is_an_error(site: Path) -> None:
    (site / "cert.pem").write_text("not a certificate\n")
    (site / "key.pem").write_text("not a key\n")
    code, report = check_json(write(site, '[smtp]\ntls_cert = "cert.pem"\n'
                                          'tls_key = "key.pem"\n'))
    assert code == 1
    assert report["errors"][0].startswith("smtp.tls_cert/smtp.tls_key:")


def test_a_real_certificate_passes(site: Path) -> None:
    leaf = trustme.CA().issue_cert("gateway.example.org")
    leaf.cert_chain_pems[0].write_to_path(str(site / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(site / "key.pem"))
    code, report = check_json(write(site, '[smtp]\ntls_cert = "cert.pem"\n'
                                          'tls_key = "key.pem"\n'))
    assert (code, report["errors"]) == (0, [])


def test_a_broken_policy_is_reported_with_file_and_line(site: Path) -> None:
    (site / "policies" / "p.toml").write_text('[default]\nmode = "sometimes"\n')
    code, report = check_json(write(site, ""))
    assert code == 1
    [error] = report["errors"]
    assert error.startswith("policy.dir: ") and "p.toml:2" in error


def test_a_dkim_key_that_is_not_a_key_is_an_error(site: Path) -> None:
    (site / "dkim.key").write_text("nonsense\n")
    code, report = check_json(write(site, '[dkim]\ndomain = "example.org"\nselector = "s1"\n'
                                          'key_file = "dkim.key"\n'))
    assert code == 1 and report["errors"][0].startswith("dkim.key_file:")


def test_a_toml_syntax_error_is_one_line_and_exit_1(site: Path) -> None:
    (site / "sealgate.toml").write_text("[smtp\n")
    result = check(site / "sealgate.toml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {site / 'sealgate.toml'}:")


def test_the_json_form_lists_errors_and_warnings(site: Path) -> None:
    code, report = check_json(write(site, ""))
    assert code == 0
    assert report == {"ok": True, "file": str(site / "sealgate.toml"), "errors": [],
                      "warnings": [f"storage.dir: {site / 'data'} does not exist yet;"
                                   " the first start makes it"]}
