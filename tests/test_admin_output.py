"""What admins read: queue show's attempt history, route's predicted outcome, policy check's
full report, the audit trail of admin actions, and pickup list's labels."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.conftest import make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess


def queue_id_of(reply: str) -> str:
    match = re.search(r"queued as (\w+)", reply)
    assert match, reply
    return match.group(1)


def wait_for_attempts(gateway: GatewayProcess, queue_id: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = gateway.cli("queue", "show", queue_id, "--json")
        if shown.returncode == 0 and any(r["attempt_history"]
                                         for r in json.loads(shown.stdout)["recipients"]):
            return
        time.sleep(0.1)
    raise AssertionError(f"no attempt recorded for {queue_id}")


def test_queue_show_prints_each_attempt_with_its_tls_facts(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    queue_id = queue_id_of(gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] x")))
    wait_for_mail(mx_hosts["tls"], rcpt)
    wait_for_attempts(gateway, queue_id)
    result = gateway.cli("queue", "show", queue_id)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"message {queue_id}" in text and f"to {rcpt}: delivered" in text
    assert "mx.tls.test [127.0.0.2]" in text
    assert re.search(r"tls\s+TLSv1\.[23] \S+, not verified", text), text
    assert "cert      " in text and "mx.tls.test" in text
    assert "reply     mx.tls.test[127.0.0.2] said: 250" in text
    assert not text.lstrip().startswith("{")


def test_queue_show_json_holds_the_attempt_history(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@plain.test"
    queue_id = queue_id_of(gateway.send(make_message("doctor@clinic.test", rcpt, "Lunch")))
    wait_for_mail(mx_hosts["plain"], rcpt)
    wait_for_attempts(gateway, queue_id)
    shown = json.loads(gateway.cli("queue", "show", queue_id, "--json").stdout)
    assert shown["message"]["id"] == queue_id
    [recipient] = shown["recipients"]
    [attempt] = recipient["attempt_history"]
    assert attempt["host"] == "mx.plain.test" and attempt["address"] == "127.0.0.3"
    assert attempt["tls_version"] is None and "said: 250" in attempt["reply"]
    for key in ("at", "cipher", "cert_subject", "cert_issuer", "verified", "reason"):
        assert key in attempt


def test_queue_show_of_an_unknown_id_says_so(gateway: GatewayProcess) -> None:
    result = gateway.cli("queue", "show", "NOSUCHID")
    assert result.returncode == 1 and result.stderr.strip() == "no such message: NOSUCHID"


def test_route_ends_with_the_predicted_outcome(gateway: GatewayProcess) -> None:
    result = gateway.cli("route", "--from", "a@clinic.test", "--to", "pat@patients.test",
                         "--subject", "[secure] x", "--no-dns")
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("outcome:") and "stored encrypted for pickup" in last


def test_route_json_has_the_outcome(gateway: GatewayProcess) -> None:
    result = gateway.cli("route", "--from", "a@clinic.test", "--to", "b@tls.test", "--json",
                         "--no-dns")
    assert json.loads(result.stdout)["outcome"].startswith("relayed directly")


def test_policy_check_reports_every_error(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[default]\nmode = "sometimes"\n')
    (tmp_path / "b.toml").write_text('[[domain]]\nmatch = "x.test"\nmode = "pickup"\n\n'
                                     '[[domain]]\nmatch = "not a domain"\nmode = "pickup"\n\n'
                                     '[[domain]]\nmatch = "y.test"\nmode = "never"\n')
    result = gateway.cli("policy", "check", str(tmp_path))
    assert result.returncode == 1
    assert f"{tmp_path}/a.toml:2: mode 'sometimes'" in result.stderr
    assert f"{tmp_path}/b.toml:5: match 'not a domain'" in result.stderr
    assert f"{tmp_path}/b.toml:11: mode 'never'" in result.stderr


def test_policy_check_json(gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[default]\nmode = "sometimes"\n')
    result = gateway.cli("policy", "check", str(tmp_path), "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False
    assert report["errors"] == [f"{tmp_path}/a.toml:2: mode 'sometimes' is not one of"
                                " require-tls, require-verified-tls, pickup"]


def test_policy_check_warns_when_a_later_file_overrides_the_default(
        gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "00-default.toml").write_text('[default]\nmode = "require-tls"\n')
    (tmp_path / "50-strict.toml").write_text('\n[default]\nmode = "pickup"\n')
    result = gateway.cli("policy", "check", str(tmp_path))
    assert result.returncode == 0
    assert (f"warning: {tmp_path}/50-strict.toml:3: [default] mode = 'pickup' overrides mode ="
            f" 'require-tls' at {tmp_path}/00-default.toml:2") in result.stderr
    assert "default mode pickup" in result.stdout


def test_queue_delete_is_in_the_audit_trail(gateway: GatewayProcess, unique: str) -> None:
    queue_id = queue_id_of(gateway.send(make_message("doctor@clinic.test", f"{unique}@nowhere.test",
                                                     "to delete")))
    assert gateway.cli("queue", "delete", queue_id).returncode == 0
    audit = json.loads(gateway.cli("pickup", "audit", queue_id, "--json").stdout)
    [event] = audit
    assert event["event"] == "queue-deleted" and event["client"].startswith("admin:")
    assert abs(event["at"] - time.time()) < 120


def test_pickup_revoke_is_in_the_audit_trail(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@patients.test"
    gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] revoke me"))
    wait_for_mail(mx_hosts["tls"], rcpt)
    [stored] = json.loads(gateway.cli("pickup", "list", "--recipient", rcpt, "--json").stdout)
    assert gateway.cli("pickup", "revoke", stored["id"]).returncode == 0
    events = [e["event"] for e in json.loads(gateway.cli("pickup", "audit", stored["id"],
                                                         "--json").stdout)]
    assert events[-1] == "revoked"


def test_pickup_list_says_when_there_is_nothing(gateway: GatewayProcess) -> None:
    result = gateway.cli("pickup", "list", "--recipient", "nobody@nowhere.test")
    assert result.returncode == 0
    assert result.stdout.strip() == "no stored messages for nobody@nowhere.test"


def test_queue_list_says_when_it_is_empty_or_counts(gateway: GatewayProcess) -> None:
    lines = gateway.cli("queue", "list").stdout.strip().splitlines()
    assert lines[-1] == "the queue is empty" or lines[-1].endswith("recipients waiting")
