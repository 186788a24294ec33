"""End to end over SMTP: a real gateway whose policy has a body rule and an attachment rule
decides at the end of data, before the 250, from what the body scan found."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_POLICY, make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings

CORPUS = Path(__file__).parent / "corpus"
RULES = """
[[rule]]
name = "ssn"
detect = ["us-ssn"]
confidential = true
mode = "pickup"

[[rule]]
name = "pdf"
attachment_type = "application/pdf"
confidential = true
mode = "pickup"
"""


@pytest.fixture(scope="module")
def rules_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    policies = tmp_path_factory.mktemp("rules-policy")
    (policies / "policy.toml").write_text(TEST_POLICY + RULES)
    settings = dataclasses.replace(gateway_settings, policy_dir=policies)
    process = GatewayProcess(tmp_path_factory.mktemp("rules-gateway"), settings)
    process.start()
    yield process
    process.stop()


def accepted_line(gateway: GatewayProcess, queue_id: str) -> str:
    return next(line for line in gateway.log_path.read_text().splitlines()
                if f"{queue_id} accepted" in line)


def queue_id_of(reply: str) -> str:
    return reply.split()[-1]


def test_number_in_the_body_sends_mail_to_pickup(
        rules_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    mail = make_message("doctor@clinic.test", rcpt, "follow-up",
                        body="Patient SSN 536-22-1234, see you Monday.")
    reply = rules_gateway.send(mail)
    notification = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"536-22-1234" not in notification.content
    assert b"see you Monday" not in notification.content
    assert f"{rcpt} (pickup)" in accepted_line(rules_gateway, queue_id_of(reply))


def test_renamed_pdf_attachment_sends_mail_to_pickup(
        rules_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    mail = make_message("doctor@clinic.test", rcpt, "notes", body="notes attached",
                        attachment=("notes.txt", b"%PDF-1.4\nsynthetic\n%%EOF\n"))
    del mail.get_payload()[1]["Content-Type"]
    mail.get_payload()[1]["Content-Type"] = 'text/plain; name="notes.txt"'
    reply = rules_gateway.send(mail)
    notification = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"notes attached" not in notification.content
    assert f"{rcpt} (pickup)" in accepted_line(rules_gateway, queue_id_of(reply))


def test_mail_without_sensitive_content_is_relayed(
        rules_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    rcpt = f"{unique}@tls.test"
    reply = rules_gateway.send(make_message("doctor@clinic.test", rcpt, "lunch",
                                            body="Room 536, ext 22-1234 at noon"))
    delivered = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"Room 536" in delivered.content
    assert f"{rcpt} (opportunistic)" in accepted_line(rules_gateway, queue_id_of(reply))


def test_policy_test_over_the_corpus_meets_its_expectations(
        rules_gateway: GatewayProcess) -> None:
    result = rules_gateway.cli("policy", "test", str(CORPUS / "messages"), "--policy",
                               str(CORPUS / "policy"), "--expect", str(CORPUS / "expect.csv"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "16 file(s), 11 confidential, 0 mismatch(es), 0 error(s)" in result.stdout


def test_policy_test_reports_a_mismatch_and_exits_1(
        rules_gateway: GatewayProcess, tmp_path: Path) -> None:
    expect = tmp_path / "expect.csv"
    expect.write_text("file,confidential,rule\n02-ssn-plain.eml,no,\n"
                      "03-ssn-invalid.eml,no,\n04-card-base64.eml,yes,iban\n")
    result = rules_gateway.cli("policy", "test", str(CORPUS / "messages" / "02-ssn-plain.eml"),
                               str(CORPUS / "messages" / "04-card-base64.eml"), "--policy",
                               str(CORPUS / "policy"), "--expect", str(expect))
    assert result.returncode == 1
    assert (f"mismatch: 02-ssn-plain.eml: expected not confidential ({expect}:2), got"
            " confidential") in result.stdout
    assert (f"mismatch: 04-card-base64.eml: expected rule 'iban' ({expect}:4), got"
            " 'payment-card'") in result.stdout
    assert f"mismatch: 03-ssn-invalid.eml: expected ({expect}:3) but not tested" in result.stdout


def test_policy_test_json_names_rule_and_place_never_the_text(
        rules_gateway: GatewayProcess) -> None:
    result = rules_gateway.cli("policy", "test", str(CORPUS / "messages" / "02-ssn-plain.eml"),
                               "--policy", str(CORPUS / "policy"), "--json")
    report = json.loads(result.stdout)
    [entry] = report["files"]
    assert entry["confidential"] and entry["rule"] == "us-ssn"
    assert entry["recipients"][0]["where"] == ["us-ssn x1 in part 1 (text/plain)"]
    assert "536-22" not in result.stdout


def test_policy_check_names_the_line_of_a_dangerous_regex(
        rules_gateway: GatewayProcess, tmp_path: Path) -> None:
    (tmp_path / "r.toml").write_text('[[rule]]\nname = "x"\nbody_regex = "(\\\\w+\\\\s?)+$"\n'
                                     'confidential = true\n\n[[rule]]\ndetect = ["ssn"]\n'
                                     "confidential = true\n")
    result = rules_gateway.cli("policy", "check", str(tmp_path))
    assert result.returncode == 1
    assert f"error: {tmp_path}/r.toml:3: body_regex" in result.stderr
    assert f"error: {tmp_path}/r.toml:7: unknown detector 'ssn'" in result.stderr


def test_route_with_a_message_names_the_rule_and_the_part(
        rules_gateway: GatewayProcess, tmp_path: Path) -> None:
    result = rules_gateway.cli("route", "--from", "doctor@clinic.test", "--to", "p@tls.test",
                               "--message", str(CORPUS / "messages" / "02-ssn-plain.eml"),
                               "--no-dns", "--json")
    decision = json.loads(result.stdout)
    assert decision["confidential"] and decision["content_rule"] == "ssn"
    assert decision["where"] == ["us-ssn x1 in part 1 (text/plain)"]
    assert decision["mode"] == "pickup"


def test_number_at_the_end_of_a_large_text_part_is_found(
        rules_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    """600 KB of text (scanned off the event loop, in pieces): the number in its last line
    still decides."""
    rcpt = f"{unique}@tls.test"
    body = ("nothing sensitive in this line of the report, just words and 42\n" * 9000
            + "Patient SSN 536-22-1234\n")
    reply = rules_gateway.send(make_message("doctor@clinic.test", rcpt, "report", body=body))
    notification = wait_for_mail(mx_hosts["tls"], rcpt)
    assert b"nothing sensitive" not in notification.content
    assert f"{rcpt} (pickup)" in accepted_line(rules_gateway, queue_id_of(reply))
