"""Admin commands against a running gateway's store and the loopback test hosts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import make_message
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess
from tests.journey import stored_pickups


def test_route_explains_confidentiality_mode_and_rule(gateway: GatewayProcess) -> None:
    result = gateway.cli("route", "--from", "doctor@clinic.test", "--to", "pat@bad-cert.test",
                         "--subject", "[secure] results", "--no-dns")
    assert result.returncode == 0, result.stderr
    assert "confidential: yes (subject tag '[secure]'" in result.stdout
    assert "mode:         require-verified-tls" in result.stdout
    assert "[[domain]] match = 'bad-cert.test' at " in result.stdout


def test_route_shows_what_the_tls_cache_learned_from_deliveries(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Learn"))
    stored_pickups(gateway, rcpt)
    result = gateway.cli("route", "--from", "doctor@clinic.test", "--to", rcpt, "--json")
    decision = json.loads(result.stdout)
    assert decision["mode"] == "opportunistic" and not decision["confidential"]
    [host] = decision["domain"]["tls_cache"]
    assert host["host"] == "mx.plain.test" and host["starttls"] is False
    [dane] = decision["domain"]["dane"]
    assert dane["host"] == "mx.plain.test" and dane["status"] == "none"


def test_probe_reports_starttls_and_routes_per_mode(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX]) -> None:
    result = gateway.cli("probe", "plain.test", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    [host] = report["hosts"]
    assert host["name"] == "mx.plain.test" and host["starttls_offered"] is False
    assert report["routes"]["require-tls"]["action"] == "pickup"
    assert report["routes"]["not-confidential"]["action"] == "deliver-opportunistic"
    text = gateway.cli("probe", "tls.test").stdout
    assert "mx.tls.test" in text and "TLSv1." in text
    known = json.loads(gateway.cli("route", "--from", "a@clinic.test", "--to", "b@tls.test",
                                   "--json", "--no-dns").stdout)["domain"]["tls_cache"]
    assert ([(h["host"], h["starttls"], h["verified"]) for h in known]
            == [("mx.tls.test", True, True)])


def test_probe_rejects_a_malformed_domain_clearly(gateway: GatewayProcess) -> None:
    result = gateway.cli("probe", "no..dots")
    assert result.returncode == 1 and "not a valid domain name" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_check_reports_file_and_line_and_exits_1(gateway: GatewayProcess,
                                                        tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text('[default]\nmode = "sometimes"\n')
    result = gateway.cli("policy", "check", str(tmp_path))
    assert result.returncode == 1 and f"{tmp_path}/bad.toml:2: mode 'sometimes'" in result.stderr
