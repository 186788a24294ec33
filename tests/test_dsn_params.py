"""The DSN extension's parameters on the way in (RFC 3461 4): RET and ENVID on MAIL, NOTIFY
and ORCPT on RCPT are taken when well-formed, and refused with a clear 501 5.5.4 when not."""

from __future__ import annotations

import pytest

from gateway.delivery.dsn_options import encode_xtext
from gateway.inbound import codes
from gateway.inbound.esmtp_params import ParamError, decode_xtext
from tests.gateway_process import GatewayProcess
from tests.smtp_talk import RawSMTP


def mail_reply(gateway: GatewayProcess, params: str) -> str:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        return smtp.command(f"MAIL FROM:<doctor@clinic.test> {params}")


def rcpt_reply(gateway: GatewayProcess, params: str) -> str:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        assert smtp.command("MAIL FROM:<doctor@clinic.test>").startswith("250")
        return smtp.command(f"RCPT TO:<someone@plain.test> {params}")


def test_ehlo_offers_dsn(gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        assert "250-DSN" in smtp.command("EHLO client.clinic.test").splitlines()


@pytest.mark.parametrize("params", ["RET=HDRS", "RET=full ENVID=QQ+2B1+3Dx", "SIZE=100 RET=FULL",
                                    "ENVID=<id@clinic.test> SMTPUTF8"])
def test_mail_takes_well_formed_ret_and_envid(gateway: GatewayProcess, params: str) -> None:
    assert mail_reply(gateway, params) == codes.OK_SENDER


@pytest.mark.parametrize(("params", "named"), [
    ("RET=BODY", "RET"), ("RET=", "RET"), ("ENVID=a+zz", "ENVID"), ("ENVID=a=b", "ENVID"),
    ("ENVID=" + "x" * 101, "ENVID")])
def test_mail_refuses_a_malformed_ret_or_envid_naming_it(gateway: GatewayProcess, params: str,
                                                         named: str) -> None:
    reply = mail_reply(gateway, params)
    assert reply.startswith("501 5.5.4 ") and named in reply, reply


def test_mail_refuses_ret_given_twice(gateway: GatewayProcess) -> None:
    assert mail_reply(gateway, "RET=HDRS RET=FULL") == codes.DSN_PARAM_TWICE.format(param="RET")


@pytest.mark.parametrize("params", ["NOTIFY=NEVER", "NOTIFY=success,Failure,DELAY",
                                    "ORCPT=rfc822;Someone+40plain.test",
                                    "NOTIFY=SUCCESS ORCPT=rfc822;a@b.test"])
def test_rcpt_takes_well_formed_notify_and_orcpt(gateway: GatewayProcess, params: str) -> None:
    assert rcpt_reply(gateway, params) == codes.OK_RECIPIENT


@pytest.mark.parametrize(("params", "named"), [
    ("NOTIFY=NEVER,SUCCESS", "NOTIFY"), ("NOTIFY=ALWAYS", "NOTIFY"),
    ("NOTIFY=SUCCESS,SUCCESS", "NOTIFY"), ("ORCPT=a@b.test", "ORCPT"),
    ("ORCPT=rfc822;", "ORCPT"), ("ORCPT=rfc822;a+4", "ORCPT"),
    ("ORCPT=rfc822;" + "a" * 500, "ORCPT")])
def test_rcpt_refuses_a_malformed_notify_or_orcpt_naming_it(gateway: GatewayProcess,
                                                            params: str, named: str) -> None:
    reply = rcpt_reply(gateway, params)
    assert reply.startswith("501 5.5.4 ") and named in reply, reply


def test_a_refused_recipient_parameter_leaves_the_transaction_open(
        gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("EHLO client.clinic.test")
        smtp.command("MAIL FROM:<doctor@clinic.test>")
        assert smtp.command("RCPT TO:<a@plain.test> NOTIFY=BOGUS").startswith("501")
        assert smtp.command("RCPT TO:<a@plain.test> NOTIFY=FAILURE") == codes.OK_RECIPIENT


def test_dsn_parameters_after_helo_are_refused_as_aiosmtpd_refuses_any(
        gateway: GatewayProcess) -> None:
    with RawSMTP(gateway.smtp_port) as smtp:
        smtp.command("HELO client.clinic.test")
        assert smtp.command("MAIL FROM:<doctor@clinic.test> RET=HDRS").startswith("501")


def test_xtext_decodes_hex_escapes_and_encodes_them_back() -> None:
    assert decode_xtext("a+2Bb+3Dc+20d", "ENVID") == "a+b=c d"
    assert encode_xtext("a+b=c d\u00e9") == "a+2Bb+3Dc+20d+E9"


def test_xtext_refuses_lower_case_hex() -> None:
    with pytest.raises(ParamError):
        decode_xtext("a+2b", "ENVID")


def test_rcpt_has_room_for_an_orcpt_of_500_characters(gateway: GatewayProcess) -> None:
    orcpt = "rfc822;" + "o" * 480 + "@x.test"  # RFC 3461 4.2: up to 500 characters
    assert len(orcpt) == 494
    assert rcpt_reply(gateway, f"NOTIFY=SUCCESS,FAILURE,DELAY ORCPT={orcpt}") == codes.OK_RECIPIENT


def test_mail_takes_an_envid_of_100_characters_beside_size_and_ret(
        gateway: GatewayProcess) -> None:
    assert mail_reply(gateway, f"SIZE=1000 RET=HDRS ENVID={'e' * 100}") == codes.OK_SENDER
