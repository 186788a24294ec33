"""Which RFC 8460 result type and policy each delivery session is counted under."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.tls.dane import TLSARecord
from gateway.tls.mta_sts import STSMode, STSPolicy
from gateway.tlsrpt.results import (
    NO_POLICY,
    PolicyType,
    ResultType,
    failure_result,
    sessions_of,
    sts_fetch_result,
    sts_policy,
    tlsa_policy,
)

ENFORCE = STSPolicy("id1", STSMode.ENFORCE, ["mx.tls.test", "*.tls.test"], 86400)
RECORD = TLSARecord(3, 1, 1, bytes.fromhex("ab" * 32))


@dataclass
class Attempt:
    host: str = "mx.tls.test"
    address: str = "127.0.0.2"
    reply: str = ""
    tls_version: str | None = None
    tls_failure: str | None = None
    starttls_offered: bool | None = True
    tlsa: tuple[TLSARecord, ...] = ()
    tlsa_failed: bool = False
    local_address: str = "127.0.0.1"


def test_a_tls_session_that_met_its_policy_is_a_success_under_that_policy() -> None:
    [session] = sessions_of("tls.test", [Attempt(tls_version="TLSv1.3")], ENFORCE)
    assert (session.result, session.policy) == (ResultType.SUCCESS, sts_policy(ENFORCE))


def test_an_sts_policy_is_reported_by_its_lines_and_mx_patterns() -> None:
    policy = sts_policy(ENFORCE)
    assert policy.strings == ("version: STSv1", "mode: enforce", "mx: mx.tls.test",
                              "mx: *.tls.test", "max_age: 86400")
    assert policy.mx_host == ("mx.tls.test", "*.tls.test")


def test_a_host_with_tlsa_records_is_reported_under_them_not_under_sts() -> None:
    [session] = sessions_of("tls.test", [Attempt(tls_version="TLSv1.3", tlsa=(RECORD,))],
                            ENFORCE)
    assert session.policy == tlsa_policy("mx.tls.test", [RECORD])
    assert session.policy.strings == ("3 1 1 " + "ab" * 32,)


def test_without_sts_or_tlsa_the_session_has_no_policy() -> None:
    [session] = sessions_of("tls.test", [Attempt(tls_version="TLSv1.3")], None)
    assert session.policy == NO_POLICY


def test_an_sts_policy_of_mode_none_counts_as_no_policy() -> None:
    withdrawn = STSPolicy("id2", STSMode.NONE, [], 86400)
    [session] = sessions_of("tls.test", [Attempt(tls_version="TLSv1.3")], withdrawn)
    assert session.policy.type is PolicyType.NONE


def test_no_starttls_is_starttls_not_supported_with_the_addresses() -> None:
    [session] = sessions_of("tls.test", [Attempt(tls_failure="no-starttls", reply="no")], None)
    assert session.result is ResultType.STARTTLS_NOT_SUPPORTED
    assert (session.sending_ip, session.receiving_mx, session.receiving_ip) == (
        "127.0.0.1", "mx.tls.test", "127.0.0.2")


def test_opportunistic_mail_sent_in_plaintext_counts_as_starttls_not_supported() -> None:
    [session] = sessions_of("plain.test", [Attempt(starttls_offered=False)], None)
    assert session.result is ResultType.STARTTLS_NOT_SUPPORTED


def test_certificate_failures_are_told_apart_by_what_the_check_said() -> None:
    assert failure_result("cert-not-verified", "certificate not verified: certificate has"
                          " expired") is ResultType.CERTIFICATE_EXPIRED
    assert failure_result("cert-not-verified", "mx: certificate name does not match") is \
        ResultType.CERTIFICATE_HOST_MISMATCH
    assert failure_result("cert-not-verified", "TLS failed: self-signed certificate in"
                          " certificate chain") is ResultType.CERTIFICATE_NOT_TRUSTED
    assert failure_result("mta-sts-mismatch", "MTA-STS enforce: mx: certificate not"
                          " verified: unable to get local issuer certificate") is \
        ResultType.CERTIFICATE_NOT_TRUSTED


def test_a_dane_mismatch_is_tlsa_invalid_and_a_broken_handshake_a_validation_failure() -> None:
    assert failure_result("dane-mismatch", "DANE: no match") is ResultType.TLSA_INVALID
    assert failure_result("tls-handshake-failed", "reset") is ResultType.VALIDATION_FAILURE


def test_a_failed_tlsa_lookup_is_dnssec_invalid_under_the_host_tlsa_policy() -> None:
    skipped = Attempt(address="", starttls_offered=None, tlsa_failed=True,
                      reply="TLSA lookup failed (SERVFAIL)")
    [session] = sessions_of("tls.test", [skipped], None)
    assert (session.result, session.policy.type) == (ResultType.DNSSEC_INVALID,
                                                      PolicyType.TLSA)


def test_an_mx_host_the_sts_policy_does_not_list_is_a_validation_failure() -> None:
    skipped = Attempt(host="mx.other.test", address="", starttls_offered=None,
                      tls_failure="mta-sts-mismatch", reply="not in the policy")
    [session] = sessions_of("tls.test", [skipped], ENFORCE)
    assert (session.result, session.receiving_mx) == (ResultType.VALIDATION_FAILURE,
                                                      "mx.other.test")


def test_hosts_never_reached_and_answers_from_the_tls_cache_are_no_sessions() -> None:
    refused = Attempt(starttls_offered=None, reply="connection refused")
    cached = Attempt(address="", starttls_offered=None, tls_failure="no-starttls",
                     reply="known from the TLS cache")
    assert sessions_of("tls.test", [refused, cached], None) == []


def test_a_policy_fetch_failure_is_a_line_of_its_own_by_its_cause() -> None:
    [fetch, session] = sessions_of("tls.test", [Attempt(tls_version="TLSv1.3")], None,
                                   "mta-sts.tls.test: [127.0.0.12] certificate not valid: x")
    assert (fetch.result, fetch.policy.type, fetch.receiving_mx) == (
        ResultType.STS_WEBPKI_INVALID, PolicyType.STS, "mta-sts.tls.test")
    assert session.result is ResultType.SUCCESS
    assert sts_fetch_result("mta-sts.x: invalid policy: line 1") is ResultType.STS_POLICY_INVALID
    assert sts_fetch_result("mta-sts.x: HTTP 404 Not Found") is ResultType.STS_POLICY_FETCH_ERROR
