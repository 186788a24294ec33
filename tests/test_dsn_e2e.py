"""The DSN extension end to end (RFC 3461, RFC 3464): the sender's parameters go on to a
next hop that offers DSN and not to one that does not; success receipts say how each copy
left (delivered or relayed, host, TLS, authentication; or stored for pickup); failure
reports honour NOTIFY, ENVID, ORCPT and RET, and never return confidential content."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
import trustme

from tests.conftest import assert_no_mail, make_message, wait_for_mail
from tests.dsn_mail import (
    readable_text,
    returned_part,
    send_with_dsn,
    status_blocks,
    wait_until_settled_with_nothing_for,
)
from tests.fakes.certs import leaf
from tests.fakes.dns_server import FakeDNS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess

DSN_MX_IP, REFUSING_MX_IP, SERIAL_MX_IP = "127.0.0.90", "127.0.0.91", "127.0.0.94"


@pytest.fixture(scope="module")
def dsn_host(fake_dns: FakeDNS, mx_port: int, ca: trustme.CA) -> Iterator[FakeMX]:
    """MX of dsn.verified.test (require-verified-tls): TLS for its name, offers DSN."""
    fake_dns.add("dsn.verified.test", "MX", "10 mx.dsn.verified.test.")
    fake_dns.add("mx.dsn.verified.test", "A", DSN_MX_IP)
    with FakeMX(DSN_MX_IP, mx_port, name="mx.dsn.verified.test", dsn=True,
                tls_cert=leaf(ca, "mx.dsn.verified.test")) as host:
        yield host


@pytest.fixture(scope="module")
def serial_dsn_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[FakeMX]:
    """MX of dsn-serial.test: offers DSN but not PIPELINING (one command at a time)."""
    fake_dns.add("dsn-serial.test", "MX", "10 mx.dsn-serial.test.")
    fake_dns.add("mx.dsn-serial.test", "A", SERIAL_MX_IP)
    with FakeMX(SERIAL_MX_IP, mx_port, name="mx.dsn-serial.test", dsn=True,
                pipelining=False) as host:
        yield host


@pytest.fixture(scope="module")
def refusing_host(fake_dns: FakeDNS, mx_port: int, ca: trustme.CA) -> Iterator[FakeMX]:
    """MX of refusing.test: TLS (so confidential mail is tried), refuses every recipient."""
    fake_dns.add("refusing.test", "MX", "10 mx.refusing.test.")
    fake_dns.add("mx.refusing.test", "A", REFUSING_MX_IP)
    with FakeMX(REFUSING_MX_IP, mx_port, name="mx.refusing.test",
                tls_cert=leaf(ca, "mx.refusing.test"),
                rcpt_reply="550 5.1.1 no such user here") as host:
        yield host


def per_recipient(raw: bytes) -> dict[str, dict[str, str]]:
    return {block["Final-Recipient"].removeprefix("rfc822; "): block
            for block in status_blocks(raw)[1:]}


# -- passing the request on ----------------------------------------------------------------


def test_dsn_parameters_go_on_as_xtext_to_a_next_hop_that_offers_dsn(
        gateway: GatewayProcess, dsn_host: FakeMX, unique: str, storage_backend: str) -> None:
    rcpt = f"{unique}@dsn.verified.test"
    send_with_dsn(gateway, make_message(f"{unique}@relay.test", rcpt, "Hello"),
                  {rcpt: ["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;Orig+2B{unique}@x.test"]},
                  ["RET=HDRS", "ENVID=Env+2B1"])
    got = wait_for_mail(dsn_host, rcpt)
    assert got.mail_params == ["RET=HDRS", "ENVID=Env+2B1"]
    assert got.rcpt_params[rcpt] == ["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;Orig+2B{unique}@x.test"]


def test_dsn_parameters_go_on_to_a_next_hop_without_pipelining_too(
        gateway: GatewayProcess, serial_dsn_host: FakeMX, unique: str,
        storage_backend: str) -> None:
    rcpt = f"{unique}@dsn-serial.test"
    send_with_dsn(gateway, make_message(f"{unique}@relay.test", rcpt, "Hello"),
                  {rcpt: ["NOTIFY=SUCCESS", "ORCPT=rfc822;x+2By@clinic.test"]}, ["ENVID=s1"])
    got = wait_for_mail(serial_dsn_host, rcpt)
    assert not got.pipelined
    assert (got.mail_params, got.rcpt_params[rcpt]) == (
        ["ENVID=s1"], ["NOTIFY=SUCCESS", "ORCPT=rfc822;x+2By@clinic.test"])


def test_ret_full_goes_on_as_hdrs_for_confidential_mail(
        gateway: GatewayProcess, dsn_host: FakeMX, unique: str, storage_backend: str) -> None:
    rcpt = f"{unique}@dsn.verified.test"
    send_with_dsn(gateway, make_message(f"{unique}@relay.test", rcpt, "[secure] Results"),
                  {rcpt: []}, ["RET=FULL"])
    assert wait_for_mail(dsn_host, rcpt).mail_params == ["RET=HDRS"]


def test_a_next_hop_without_dsn_gets_no_dsn_parameters(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    rcpt = f"{unique}@tls.test"  # mx.tls.test does not offer DSN: it would refuse them (555)
    send_with_dsn(gateway, make_message(f"{unique}@relay.test", rcpt, "Hello"),
                  {rcpt: ["NOTIFY=FAILURE", "ORCPT=rfc822;a@b.test"]}, ["ENVID=e1"])
    got = wait_for_mail(mx_hosts["tls"], rcpt)
    assert (got.mail_params, got.rcpt_params) == ([], {})


# -- success receipts -----------------------------------------------------------------------


def test_a_success_receipt_says_delivered_with_host_tls_and_authentication(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], dsn_host: FakeMX, unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@dsn.verified.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "[secure] Lab results",
                                        "Confidential body text"),
                  {rcpt: ["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{rcpt}"]}, ["ENVID=lab-42"])
    receipt = wait_for_mail(mx_hosts["relay"], sender)
    assert receipt.mail_from == "<>"
    message_block, block = status_blocks(receipt.content)[0], per_recipient(receipt.content)[rcpt]
    assert message_block["Original-Envelope-Id"] == "lab-42"
    assert (block["Action"], block["Status"]) == ("delivered", "2.0.0")
    assert block["Original-Recipient"] == f"rfc822; {rcpt}"
    assert block["Remote-MTA"] == "dns; mx.dsn.verified.test"
    assert block["X-Sealgate-Delivery"] == "smtp"
    assert block["X-Sealgate-TLS-Version"] == wait_for_mail(dsn_host, rcpt).tls_version
    assert block["X-Sealgate-TLS-Cipher"] == wait_for_mail(dsn_host, rcpt).cipher
    assert block["X-Sealgate-TLS-Authentication"] == "pkix"
    text = readable_text(receipt.content)
    assert f"<{rcpt}>: delivered to mx.dsn.verified.test [{DSN_MX_IP}]" in text
    assert "The server was authenticated by PKIX" in text
    assert block["Diagnostic-Code"].startswith("smtp; 250 2.0.0")
    assert b"Confidential body text" not in receipt.content
    assert returned_part(receipt.content).get_content_type() == "text/rfc822-headers"


def test_a_success_receipt_for_a_next_hop_without_dsn_says_relayed(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@tls.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "Hello"), {rcpt: ["NOTIFY=SUCCESS"]})
    receipt = wait_for_mail(mx_hosts["relay"], sender)
    block = per_recipient(receipt.content)[rcpt]
    assert (block["Action"], block["Remote-MTA"]) == ("relayed", "dns; mx.tls.test")
    assert block["X-Sealgate-TLS-Version"].startswith("TLSv1.")
    text = readable_text(receipt.content)
    assert "does not send delivery notifications" in text
    assert "The server was not authenticated" in text  # require-tls: any certificate


def test_a_success_receipt_names_only_the_recipients_that_asked_for_one(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender = f"{unique}@relay.test"
    asked, silent = f"{unique}.a@tls.test", f"{unique}.b@tls.test"
    send_with_dsn(gateway, make_message(sender, asked, "Hello"),
                  {asked: ["NOTIFY=SUCCESS"], silent: ["NOTIFY=FAILURE"]})
    assert set(per_recipient(wait_for_mail(mx_hosts["relay"], sender).content)) == {asked}


def test_a_plaintext_delivery_is_reported_as_without_encryption(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@plain.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "Hello"), {rcpt: ["NOTIFY=SUCCESS"]})
    receipt = wait_for_mail(mx_hosts["relay"], sender)
    block = per_recipient(receipt.content)[rcpt]
    assert (block["X-Sealgate-TLS-Version"], block["X-Sealgate-TLS-Authentication"]) == (
        "none", "none")
    assert "WITHOUT encryption" in readable_text(receipt.content)


def test_a_receipt_for_a_copy_stored_for_pickup_says_so_with_its_expiry(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@patients.test"  # policy: always pickup
    send_with_dsn(gateway, make_message(sender, rcpt, "[secure] Scan", "Confidential body"),
                  {rcpt: ["NOTIFY=SUCCESS"]})
    receipt = wait_for_mail(mx_hosts["relay"], sender)
    block = per_recipient(receipt.content)[rcpt]
    assert (block["Action"], block["X-Sealgate-Delivery"]) == ("delivered", "pickup")
    assert block["X-Sealgate-Pickup-Notification"] == "queued"
    assert block["X-Sealgate-Pickup-Expires"]
    text = readable_text(receipt.content)
    assert "stored encrypted (AES-256-GCM) for pickup" in text and "will be destroyed on" in text
    assert "A notification is on its way to the recipient" in text
    assert b"Confidential body" not in receipt.content


def test_a_pickup_receipt_links_to_the_senders_status_page(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@patients.test"  # policy: always pickup
    send_with_dsn(gateway, make_message(sender, rcpt, "[secure] Scan", "Confidential body"),
                  {rcpt: ["NOTIFY=SUCCESS"]})
    text = readable_text(wait_for_mail(mx_hosts["relay"], sender).content)
    found = re.search(re.escape(gateway.portal_url) + r"/s/[0-9a-f]{16}\.[A-Za-z0-9_-]{43}", text)
    assert found, text
    page = httpx.get(found.group(0), timeout=10)
    assert page.status_code == 200
    assert rcpt in page.text


def test_no_receipt_without_notify_success(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], unique: str,
        storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@tls.test"
    queue_id = send_with_dsn(gateway, make_message(sender, rcpt, "Hello"), {rcpt: []})
    wait_for_mail(mx_hosts["tls"], rcpt)
    wait_until_settled_with_nothing_for(gateway, queue_id, sender)
    assert_no_mail(mx_hosts["relay"], sender)


# -- failure reports ------------------------------------------------------------------------


def test_notify_never_leaves_a_recipient_out_of_the_failure_report(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_host: FakeMX,
        unique: str, storage_backend: str) -> None:
    sender = f"{unique}@relay.test"
    never, default = f"{unique}.a@refusing.test", f"{unique}.b@refusing.test"
    send_with_dsn(gateway, make_message(sender, never, "Hello"),
                  {never: ["NOTIFY=NEVER"], default: []})
    assert set(per_recipient(wait_for_mail(mx_hosts["relay"], sender).content)) == {default}


def test_notify_success_alone_asks_for_no_failure_report(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_host: FakeMX,
        unique: str, storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@refusing.test"
    queue_id = send_with_dsn(gateway, make_message(sender, rcpt, "Hello"),
                             {rcpt: ["NOTIFY=SUCCESS"]})
    wait_until_settled_with_nothing_for(gateway, queue_id, sender)
    assert_no_mail(mx_hosts["relay"], sender)


def test_a_failure_report_carries_envid_and_the_original_recipient(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_host: FakeMX,
        unique: str, storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@refusing.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "Hello"),
                  {rcpt: ["NOTIFY=FAILURE", "ORCPT=rfc822;List+2Bme@clinic.test"]},
                  ["ENVID=batch+207"])
    dsn = wait_for_mail(mx_hosts["relay"], sender).content
    assert status_blocks(dsn)[0]["Original-Envelope-Id"] == "batch 7"
    block = per_recipient(dsn)[rcpt]
    assert block["Original-Recipient"] == "rfc822; List+me@clinic.test"
    assert (block["Action"], block["Status"]) == ("failed", "5.1.1")


def test_ret_full_returns_the_whole_message_when_it_is_not_confidential(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_host: FakeMX,
        unique: str, storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@refusing.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "Agenda", "The agenda body"),
                  {rcpt: []}, ["RET=FULL"])
    dsn = wait_for_mail(mx_hosts["relay"], sender).content
    assert returned_part(dsn).get_content_type() == "message/rfc822"
    assert b"The agenda body" in dsn


def test_ret_full_returns_only_the_headers_of_confidential_mail(
        gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], refusing_host: FakeMX,
        unique: str, storage_backend: str) -> None:
    sender, rcpt = f"{unique}@relay.test", f"{unique}@refusing.test"
    send_with_dsn(gateway, make_message(sender, rcpt, "[secure] Diagnosis", "Secret body"),
                  {rcpt: []}, ["RET=FULL"])
    dsn = wait_for_mail(mx_hosts["relay"], sender).content
    assert returned_part(dsn).get_content_type() == "text/rfc822-headers"
    assert b"Secret body" not in dsn
