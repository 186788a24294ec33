"""`[confidential] receipts = true`: confidential mail gets its sender a delivery receipt
for every recipient without NOTIFY=SUCCESS; NOTIFY=NEVER still means never, and mail that
is not confidential gets none unless asked."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.classify.policy import PolicyError, load_policy
from tests.conftest import TEST_POLICY, assert_no_mail, make_message, wait_for_mail
from tests.dsn_mail import (
    send_with_dsn,
    status_blocks,
    wait_until_settled_with_nothing_for,
)
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings


@pytest.fixture(scope="module")
def receipts_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    policies = tmp_path_factory.mktemp("receipt-policies")
    assert "strip_tags = true\n" in TEST_POLICY
    Path(policies / "policy.toml").write_text(
        TEST_POLICY.replace("strip_tags = true\n", "strip_tags = true\nreceipts = true\n"))
    process = GatewayProcess(tmp_path_factory.mktemp("receipts-gateway"),
                             dataclasses.replace(gateway_settings, policy_dir=policies))
    process.start()
    yield process
    process.stop()


def receipt_recipients(raw: bytes) -> dict[str, dict[str, str]]:
    return {b["Final-Recipient"].removeprefix("rfc822; "): b for b in status_blocks(raw)[1:]}


def test_confidential_mail_gets_a_receipt_without_notify_success(
        receipts_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@tls.test"
    send_with_dsn(receipts_gateway, make_message(sender, rcpt, "[secure] Results"), {rcpt: []})
    block = receipt_recipients(wait_for_mail(mx_hosts["relay"], sender).content)[rcpt]
    assert (block["Action"], block["Remote-MTA"]) == ("relayed", "dns; mx.tls.test")
    assert block["X-Sealgate-TLS-Version"].startswith("TLSv1.")


def test_confidential_mail_stored_for_pickup_gets_a_receipt(
        receipts_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@patients.test"
    send_with_dsn(receipts_gateway, make_message(sender, rcpt, "[secure] Scan"), {rcpt: []})
    block = receipt_recipients(wait_for_mail(mx_hosts["relay"], sender).content)[rcpt]
    assert block["X-Sealgate-Delivery"] == "pickup"


def test_notify_never_leaves_a_recipient_out_of_the_policys_receipt(
        receipts_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@relay.test"
    never, default = f"{unique}.a@tls.test", f"{unique}.b@tls.test"
    send_with_dsn(receipts_gateway, make_message(sender, never, "[secure] Results"),
                  {never: ["NOTIFY=NEVER"], default: []})
    receipt = wait_for_mail(mx_hosts["relay"], sender).content
    assert set(receipt_recipients(receipt)) == {default}


def test_mail_that_is_not_confidential_gets_no_receipt_unless_asked(
        receipts_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@tls.test"
    queue_id = send_with_dsn(receipts_gateway, make_message(sender, rcpt, "Lunch"), {rcpt: []})
    wait_for_mail(mx_hosts["tls"], rcpt)
    wait_until_settled_with_nothing_for(receipts_gateway, queue_id, sender)
    assert_no_mail(mx_hosts["relay"], sender)


def test_the_policy_reads_receipts(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[confidential]\nreceipts = true\n")
    assert load_policy(tmp_path).receipts is True


def test_receipts_that_is_not_true_or_false_is_an_error_naming_its_line(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[confidential]\nstrip_tags = true\nreceipts = 'yes'\n")
    with pytest.raises(PolicyError, match=r"policy.toml:3: receipts must be true or false"):
        load_policy(tmp_path)
