"""`[log] format = "json"`: a real `sealgate serve` taking mail through delivery, deferral,
bounce and pickup, and a recipient through the portal, writes nothing but JSON objects,
one a line, from the supervisor and every worker, with the facts of each event as fields."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import post_form, register, stored_pickups


def entries(log: Path) -> list[dict[str, Any]]:
    """Every line of LOG as JSON (a line that is not fails the test, naming it)."""
    found = []
    for number, line in enumerate(log.read_text().splitlines(), start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} of the log is not JSON: {line!r}") from None
        assert isinstance(entry, dict), f"line {number} is not an object: {line!r}"
        found.append(entry)
    return found


def events(log: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [e for e in entries(log) if e.get("event") == event
            and all(e.get(k) == v for k, v in fields.items())]


def wait_for_event(gateway: GatewayProcess, event: str, **fields: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while not (found := events(gateway.log_path, event, **fields)):
        assert time.monotonic() < deadline, \
            f"no {event} {fields} logged:\n{gateway.log_tail()}"
        time.sleep(0.1)
    return found[0]


@pytest.fixture(scope="module")
def json_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                 fake_dns: FakeDNS, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[GatewayProcess]:
    fake_dns.add("nomail.test", "MX", "0 .")
    fake_dns.add("down.test", "MX", "10 mx.down.test.")
    fake_dns.add("mx.down.test", "A", "127.0.0.31")  # nothing listens there
    extra = {**gateway_settings.extra, "log": {"format": "json"}}
    process = GatewayProcess(tmp_path_factory.mktemp("json-logs"),
                             dataclasses.replace(gateway_settings, extra=extra))
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def mail_flowed(json_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX]) -> dict[str, str]:
    """One message of each outcome, and a recipient who registers, signs out, and fails
    to sign in once; then the gateway stops, so the log is complete."""
    rcpts = {"delivered": "json-delivered@tls.test", "deferred": "json-deferred@down.test",
             "bounced": "json-bounced@nomail.test", "pickup": "json-pickup@plain.test"}
    for outcome, rcpt in rcpts.items():
        subject = "[secure] Results" if outcome == "pickup" else "Hello"
        json_gateway.send(make_message("doctor@clinic.test", rcpt, subject,
                                       Message_ID=f"<{outcome}@clinic.test>"))
    wait_for_mail(mx_hosts["tls"], rcpts["delivered"])
    pickup_id = stored_pickups(json_gateway, rcpts["pickup"])[0].id
    wait_for_mail(mx_hosts["plain"], rcpts["pickup"])
    link = f"{json_gateway.portal_url}/m/{pickup_id}"
    with httpx.Client(base_url=json_gateway.portal_url) as client:
        page = register(client, link, mx_hosts["plain"], rcpts["pickup"])
        signed_out = post_form(client, page, "/logout")
        post_form(client, signed_out, f"{link}/login", password="not the password")
    wait_for_event(json_gateway, "deferred", recipient=rcpts["deferred"])
    wait_for_event(json_gateway, "bounced", recipient=rcpts["bounced"])
    json_gateway.stop()
    return rcpts


def test_every_line_of_the_log_is_a_json_object(json_gateway: GatewayProcess,
                                                mail_flowed: dict[str, str]) -> None:
    lines = entries(json_gateway.log_path)
    assert len(lines) > 10
    assert {e["process"] for e in lines} >= {"supervisor", "smtp-1", "delivery-1"}
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in lines)


def test_an_accepted_message_names_its_queue_id_and_message_id(
        json_gateway: GatewayProcess, mail_flowed: dict[str, str]) -> None:
    [accepted] = events(json_gateway.log_path, "accepted", message_id="<delivered@clinic.test>")
    assert accepted["recipient"] == [mail_flowed["delivered"]]
    assert accepted["queue_id"] and accepted["client"] == "127.0.0.1"


def test_a_delivery_carries_its_tls_facts(json_gateway: GatewayProcess,
                                          mail_flowed: dict[str, str]) -> None:
    [accepted] = events(json_gateway.log_path, "accepted", message_id="<delivered@clinic.test>")
    [delivery] = events(json_gateway.log_path, "delivery", queue_id=accepted["queue_id"])
    assert delivery["outcome"] == "delivered"
    assert delivery["message_id"] == "<delivered@clinic.test>"
    assert delivery["recipient"] == [mail_flowed["delivered"]]
    assert delivery["tls_version"].startswith("TLSv1.") and delivery["cipher"]
    assert delivery["host"] == "mx.tls.test"
    [settled] = events(json_gateway.log_path, "delivered", queue_id=accepted["queue_id"])
    assert settled["recipient"] == mail_flowed["delivered"]


def test_deferred_and_bounced_recipients_have_a_reason(json_gateway: GatewayProcess,
                                                       mail_flowed: dict[str, str]) -> None:
    deferred = events(json_gateway.log_path, "deferred", recipient=mail_flowed["deferred"])
    bounced = events(json_gateway.log_path, "bounced", recipient=mail_flowed["bounced"])
    assert deferred and deferred[0]["queue_id"] and deferred[0]["reason"]
    assert bounced and "5.1.10" in bounced[0]["reason"]


def test_a_pickup_logs_its_storage_and_notification(json_gateway: GatewayProcess,
                                                   mail_flowed: dict[str, str]) -> None:
    rcpt = mail_flowed["pickup"]
    [stored] = events(json_gateway.log_path, "stored-for-pickup", recipient=rcpt)
    assert stored["queue_id"] and stored["reason"]
    assert events(json_gateway.log_path, "notification", recipient=rcpt)


def test_portal_sign_ins_and_failures_are_logged(json_gateway: GatewayProcess,
                                                 mail_flowed: dict[str, str]) -> None:
    rcpt = mail_flowed["pickup"]
    [signed_in] = events(json_gateway.log_path, "portal-sign-in", recipient=rcpt)
    assert signed_in["method"] == "code" and signed_in["client"] == "127.0.0.1"
    [failed] = events(json_gateway.log_path, "portal-sign-in-failed", recipient=rcpt)
    assert failed["reason"] == "wrong-password" and failed["level"] == "warning"
