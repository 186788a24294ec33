"""TLS reporting end to end in one process: a queue runner delivers through the loopback DNS
to the fake MX hosts and counts each session; the reporter then sends the day's report to
the rua targets each domain publishes, by HTTPS POST to the loopback HTTPS server and by
mail through the queue to a fake MX host.

Domains (each publishes `_smtp._tls` unless named otherwise):
  rpt-https.test      MX mx.tls.test, rua https://tlsrpt.reports.test:PORT/v1/report
  rpt-plain.test      MX mx.plain.test (no STARTTLS), rua the same
  rpt-sts.test        MTA-STS enforce listing mx.tls.test, rua the same
  rpt.verified.test   MX mx.bad-cert.test (a CA nobody trusts), route require-verified-tls
  rpt-mail-<unique>.test  MX mx.tls.test, rua mailto:<unique>@tls.test (a test's own)
  rpt-norua.test      MX mx.tls.test, no _smtp._tls record
  rpt-failing.test    MX mx.tls.test, rua https://tlsrpt-down.reports.test:PORT/ (says 500)
  rpt-dane.test       MX mx.rpt-dane.test (127.0.0.21), TLSA 3 1 1 of its certificate
  rpt-dane-bad.test   the same host under another name, TLSA matching nothing
  rpt-dane-broken.test  the same host, its TLSA look-up answers SERVFAIL
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import dkim  # type: ignore[import-untyped]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.config import Config
from gateway.delivery.mx import make_resolver
from gateway.storage.protocols import Route, TLSSessionCount
from gateway.storage.store import Store
from gateway.tlsrpt.results import utc_day
from gateway.tlsrpt.schedule import FIRST_BACKOFF, ReportOutcome, TLSReporter
from tests.conftest import POLICY_HTTPS_IP, assert_no_mail, wait_for_mail
from tests.fakes.certs import leaf, make_ca
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS, PolicyRequest, Reply
from tests.fakes.mx_host import FakeMX
from tests.portal_fixtures import FakeClock, clock, store
from tests.runner_rounds import run_rounds
from tests.tlsrpt import (
    assert_valid_report,
    policy_entry,
    report_mail,
    report_of_gzip,
    report_of_mail,
)

__all__ = ["clock", "store"]  # shared fixtures, used here by name

ENDPOINT = "tlsrpt.reports.test"
DOWN = "tlsrpt-down.reports.test"
MESSAGE = b"From: doctor@clinic.test\r\nSubject: Results\r\n\r\nHello\r\n"
DAY = 86400.0


@pytest.fixture(scope="module")
def domains(fake_dns: FakeDNS, policy_https: FakeHTTPS) -> Iterator[None]:
    for domain, mx in (("rpt-https.test", "mx.tls.test"), ("rpt-plain.test", "mx.plain.test"),
                       ("rpt-sts.test", "mx.tls.test"), ("rpt.verified.test", "mx.bad-cert.test"),
                       ("rpt-norua.test", "mx.tls.test"),
                       ("rpt-failing.test", "mx.tls.test")):
        fake_dns.add(domain, "MX", f"10 {mx}.")
    rua = f"v=TLSRPTv1; rua=https://{ENDPOINT}:{policy_https.port}/v1/report"
    for domain in ("rpt-https.test", "rpt-plain.test", "rpt-sts.test", "rpt.verified.test"):
        fake_dns.add(f"_smtp._tls.{domain}", "TXT", f'"{rua}"')
    fake_dns.add("_smtp._tls.rpt-failing.test", "TXT",
                 f'"v=TLSRPTv1; rua=https://{DOWN}:{policy_https.port}/"')
    fake_dns.add("_mta-sts.rpt-sts.test", "TXT", '"v=STSv1; id=20261201;"')
    fake_dns.add("mta-sts.rpt-sts.test", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy("rpt-sts.test", "version: STSv1\nmode: enforce\n"
                              "mx: mx.tls.test\nmax_age: 86400\n")
    for host in (ENDPOINT, DOWN):
        fake_dns.add(host, "A", POLICY_HTTPS_IP)
    policy_https.serve(ENDPOINT, Reply(b"thanks\n", 200), path="/v1/report")
    policy_https.serve(DOWN, Reply(b"down\n", 500), path="/")
    yield


@pytest.fixture
def config(runner_config: Config) -> Config:
    runner_config.tlsrpt.enabled = True
    runner_config.tlsrpt.organization = "Example Clinic"
    runner_config.tlsrpt.contact = "postmaster@clinic.test"
    runner_config.tlsrpt.from_ = "tlsrpt@clinic.test"
    runner_config.tlsrpt.submitter = "gateway.clinic.test"
    runner_config.delivery.mta_sts_port = 0  # set by the test from the HTTPS server
    return runner_config


@pytest.fixture(autouse=True)
def sts_port(config: Config, policy_https: FakeHTTPS, domains: None,
             mx_hosts: dict[str, FakeMX]) -> None:
    """Every test: the domains published, the MX hosts up, MTA-STS fetched from the fake."""
    config.delivery.mta_sts_port = policy_https.port


def deliver(config: Config, store: Store, *routes: Route, rounds: int = 1) -> None:
    for route in routes:
        store.enqueue("doctor@clinic.test", [route], MESSAGE)
    run_rounds(config, store, rounds)


def send_reports(config: Config, store: Store) -> list[ReportOutcome]:
    resolver = make_resolver(config.dns.nameservers)
    return asyncio.run(TLSReporter(config, store, resolver).send_due())


def posts_for(https: FakeHTTPS, domain: str) -> list[PolicyRequest]:
    """The reports for DOMAIN the endpoint took."""
    return [r for r in https.requests_for(ENDPOINT)
            if r.method == "POST" and report_of_gzip(r.body)["policies"][0]["policy"][
                "policy-domain"] == domain]


def today(store: Store) -> str:
    return utc_day(store.clock())


def counted(store: Store, domain: str) -> list[TLSSessionCount]:
    return store.tls_sessions(domain, today(store))


def test_a_tls_delivery_is_counted_as_a_success_without_a_policy(config: Config,
                                                                store: Store) -> None:
    deliver(config, store, Route("a@rpt-https.test"))
    [row] = counted(store, "rpt-https.test")
    assert (row.policy_type, row.result_type, row.count) == ("no-policy-found", "success", 1)


def test_a_host_without_starttls_is_counted_with_its_addresses(config: Config,
                                                              store: Store) -> None:
    deliver(config, store, Route("a@rpt-plain.test"), Route("b@rpt-plain.test"))
    [row] = counted(store, "rpt-plain.test")
    assert (row.result_type, row.receiving_mx, row.receiving_ip, row.sending_ip, row.count) == (
        "starttls-not-supported", "mx.plain.test", "127.0.0.3", "127.0.0.1", 2)


def test_an_mta_sts_domain_is_counted_under_its_policy(config: Config, store: Store) -> None:
    deliver(config, store, Route("a@rpt-sts.test"))
    [row] = counted(store, "rpt-sts.test")
    assert (row.policy_type, row.result_type, row.mx_host) == ("sts", "success",
                                                               ("mx.tls.test",))
    assert "mode: enforce" in row.policy_string


def test_a_certificate_no_trusted_ca_issued_is_counted_certificate_not_trusted(
        config: Config, store: Store) -> None:
    deliver(config, store, Route("a@rpt.verified.test", True, "require-verified-tls"))
    [row] = counted(store, "rpt.verified.test")
    assert (row.result_type, row.receiving_mx) == ("certificate-not-trusted",
                                                   "mx.bad-cert.test")
    assert row.detail


@pytest.fixture
def sts_two_hosts(fake_dns: FakeDNS, policy_https: FakeHTTPS, unique: str) -> str:
    """MTA-STS enforce listing mx.bad-cert.test (tried first, its certificate from a CA
    nobody trusts) and mx.tls.test; rua the HTTPS endpoint."""
    domain = f"rpt-two-{unique}.test"
    fake_dns.add(domain, "MX", "10 mx.bad-cert.test.", "20 mx.tls.test.")
    fake_dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20261204;"')
    fake_dns.add(f"mta-sts.{domain}", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy(domain, "version: STSv1\nmode: enforce\nmx: mx.bad-cert.test\n"
                              "mx: mx.tls.test\nmax_age: 604800\n")
    fake_dns.add(f"_smtp._tls.{domain}", "TXT",
                 f'"v=TLSRPTv1; rua=https://{ENDPOINT}:{policy_https.port}/v1/report"')
    return domain


def test_a_failed_host_and_the_next_that_took_the_mail_are_both_in_the_report(
        config: Config, store: Store, clock: FakeClock, policy_https: FakeHTTPS,
        sts_two_hosts: str) -> None:
    deliver(config, store, Route(f"a@{sts_two_hosts}"), Route(f"b@{sts_two_hosts}"))
    clock.advance(DAY)
    send_reports(config, store)
    [post] = posts_for(policy_https, sts_two_hosts)
    document = report_of_gzip(post.body)
    assert_valid_report(document)
    sts = policy_entry(document, "sts")
    assert sts["policy"]["mx-host"] == ["mx.bad-cert.test", "mx.tls.test"]
    assert sts["summary"] == {"total-successful-session-count": 2,
                              "total-failure-session-count": 2}
    [failure] = sts["failure-details"]
    assert (failure["result-type"], failure["receiving-mx-hostname"],
            failure["failed-session-count"]) == ("certificate-not-trusted",
                                                 "mx.bad-cert.test", 2)


def test_the_day_is_reported_only_once_it_has_ended(config: Config, store: Store,
                                                    policy_https: FakeHTTPS) -> None:
    deliver(config, store, Route("a@rpt-https.test"))
    assert send_reports(config, store) == []
    assert posts_for(policy_https, "rpt-https.test") == []


def test_the_report_is_posted_gzipped_and_follows_the_rfc_schema(
        config: Config, store: Store, clock: FakeClock, policy_https: FakeHTTPS) -> None:
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-https.test"), Route("b@rpt-https.test"))
    clock.advance(DAY)
    [outcome] = send_reports(config, store)
    assert (outcome.outcome, [t.result for t in outcome.targets]) == ("sent", ["posted"])
    [post] = posts_for(policy_https, "rpt-https.test")
    assert post.content_type == "application/tlsrpt+gzip"
    document = report_of_gzip(post.body)
    assert_valid_report(document)
    assert policy_entry(document, "no-policy-found")["summary"] == {
        "total-successful-session-count": 2, "total-failure-session-count": 0}
    assert document["organization-name"] == "Example Clinic"


def test_a_report_with_failures_carries_their_details(config: Config, store: Store,
                                                      clock: FakeClock,
                                                      policy_https: FakeHTTPS) -> None:
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-plain.test"))
    clock.advance(DAY)
    send_reports(config, store)
    [post] = posts_for(policy_https, "rpt-plain.test")
    document = report_of_gzip(post.body)
    assert_valid_report(document)
    [detail] = policy_entry(document, "no-policy-found")["failure-details"]
    assert detail["result-type"] == "starttls-not-supported"
    assert (detail["receiving-mx-hostname"], detail["receiving-ip"]) == ("mx.plain.test",
                                                                         "127.0.0.3")


def test_a_day_is_reported_once(config: Config, store: Store, clock: FakeClock,
                                policy_https: FakeHTTPS) -> None:
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-https.test"))
    clock.advance(DAY)
    send_reports(config, store)
    assert send_reports(config, store) == []
    assert len(posts_for(policy_https, "rpt-https.test")) == 1


def test_a_report_another_process_is_sending_is_left_to_it(
        config: Config, store: Store, clock: FakeClock, policy_https: FakeHTTPS) -> None:
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-https.test"))
    clock.advance(DAY)
    [(domain, day)] = store.unreported_tls_days(today(store))
    assert store.claim_tls_report(domain, day, clock.now + 60)  # as `tlsrpt send` would
    assert store.unreported_tls_days(today(store)) == []
    outcome = asyncio.run(TLSReporter(config, store, make_resolver(config.dns.nameservers))
                          .send_report(domain, day))
    assert outcome.outcome == "claimed"
    assert posts_for(policy_https, "rpt-https.test") == []


def test_a_domain_without_traffic_gets_no_report(config: Config, store: Store,
                                                 clock: FakeClock,
                                                 policy_https: FakeHTTPS) -> None:
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-sts.test"))
    clock.advance(DAY)
    assert [o.domain for o in send_reports(config, store)] == ["rpt-sts.test"]
    assert posts_for(policy_https, "rpt-https.test") == []


def test_a_domain_that_publishes_no_tlsrpt_record_gets_no_report(config: Config, store: Store,
                                                                 clock: FakeClock) -> None:
    deliver(config, store, Route("a@rpt-norua.test"))
    clock.advance(DAY)
    [outcome] = send_reports(config, store)
    assert (outcome.outcome, outcome.targets) == ("no-rua", [])
    assert send_reports(config, store) == []  # done: not looked up again


def test_a_failing_target_is_backed_off_then_tried_again(config: Config, store: Store,
                                                         clock: FakeClock,
                                                         policy_https: FakeHTTPS) -> None:
    target = f"https://{DOWN}:{policy_https.port}/"
    policy_https.clear_log()
    deliver(config, store, Route("a@rpt-failing.test"))
    clock.advance(DAY)
    [first] = send_reports(config, store)
    assert (first.outcome, first.targets[0].result) == ("retry-later", "failed")
    failure = store.report_target_failure(target)
    assert failure is not None and failure.failures == 1 and "HTTP 500" in failure.detail
    [second] = send_reports(config, store)
    assert second.targets[0].result == "backing-off"
    assert len(policy_https.requests_for(DOWN)) == 1
    clock.advance(FIRST_BACKOFF + 1)
    [third] = send_reports(config, store)
    assert third.targets[0].result == "failed"
    assert len(policy_https.requests_for(DOWN)) == 2
    assert store.report_target_failure(target).failures == 2  # type: ignore[union-attr]


@dataclass(frozen=True)
class MailRUA:
    domain: str  # the test's own domain, MX mx.tls.test
    rcpt: str    # its rua mailto: address, at tls.test


@pytest.fixture
def mail_rua(fake_dns: FakeDNS, unique: str) -> MailRUA:
    rua = MailRUA(f"rpt-mail-{unique}.test", f"{unique}@tls.test")
    fake_dns.add(rua.domain, "MX", "10 mx.tls.test.")
    fake_dns.add(f"_smtp._tls.{rua.domain}", "TXT", f'"v=TLSRPTv1; rua=mailto:{rua.rcpt}"')
    return rua


def mailed_report(config: Config, store: Store, clock: FakeClock, rua: MailRUA,
                  tls_host: FakeMX) -> EmailMessage:
    store.add_tls_sessions([TLSSessionCount(today(store), rua.domain, "no-policy-found",
                                            (), (), "success", count=4)])
    clock.advance(DAY)
    [outcome] = send_reports(config, store)
    assert [t.result for t in outcome.targets] == ["queued"]
    deliver(config, store)  # the report mail goes out through the queue
    return report_mail(wait_for_mail(tls_host, rua.rcpt).content)


def test_a_mailed_report_is_a_multipart_report_naming_domain_and_submitter(
        config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX],
        mail_rua: MailRUA) -> None:
    message = mailed_report(config, store, clock, mail_rua, mx_hosts["tls"])
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == mail_rua.domain
    assert message["TLS-Report-Submitter"] == "gateway.clinic.test"
    assert message["From"] == "tlsrpt@clinic.test"
    assert message["Subject"].startswith(f"Report Domain: {mail_rua.domain} Submitter:"
                                         " gateway.clinic.test Report-ID: <")
    filename, document = report_of_mail(message)
    assert filename.startswith(f"gateway.clinic.test!{mail_rua.domain}!")
    assert filename.endswith(".json.gz")
    assert_valid_report(document)
    assert policy_entry(document, "no-policy-found")["summary"][
        "total-successful-session-count"] == 4


def test_the_delivery_of_a_report_mail_is_not_itself_counted(
        config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX],
        mail_rua: MailRUA) -> None:
    mailed_report(config, store, clock, mail_rua, mx_hosts["tls"])
    assert counted(store, "tls.test") == []  # it was checked against no policy: no data


def test_a_mailed_report_says_tls_is_not_required_for_it(
        config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX],
        mail_rua: MailRUA) -> None:
    message = mailed_report(config, store, clock, mail_rua, mx_hosts["tls"])
    assert message["TLS-Required"] == "No"


@pytest.fixture
def broken_sts_rua(fake_dns: FakeDNS, policy_https: FakeHTTPS, unique: str) -> MailRUA:
    """A reporting domain whose rua mailbox is at a domain with a broken MTA-STS policy
    (enforce, but its MX host mx.tls.test is not listed): mail there cannot meet it."""
    mailbox = f"rpt-broken-{unique}.test"
    fake_dns.add(mailbox, "MX", "10 mx.tls.test.")
    fake_dns.add(f"_mta-sts.{mailbox}", "TXT", '"v=STSv1; id=20261202;"')
    fake_dns.add(f"mta-sts.{mailbox}", "A", POLICY_HTTPS_IP)
    policy_https.serve_policy(mailbox, "version: STSv1\nmode: enforce\n"
                              "mx: mx.elsewhere.test\nmax_age: 86400\n")
    rua = MailRUA(f"rpt-mail-{unique}.test", f"{unique}@{mailbox}")
    fake_dns.add(rua.domain, "MX", "10 mx.tls.test.")
    fake_dns.add(f"_smtp._tls.{rua.domain}", "TXT", f'"v=TLSRPTv1; rua=mailto:{rua.rcpt}"')
    return rua


def test_ordinary_mail_to_a_domain_with_a_broken_sts_policy_waits(
        config: Config, store: Store, mx_hosts: dict[str, FakeMX],
        broken_sts_rua: MailRUA) -> None:
    deliver(config, store, Route(broken_sts_rua.rcpt))
    [message] = store.messages_to(broken_sts_rua.rcpt)
    assert [r.state for r in message.recipients] == ["deferred"]
    assert_no_mail(mx_hosts["tls"], broken_sts_rua.rcpt)


def test_a_mailed_report_goes_out_even_where_the_sts_policy_is_broken(
        config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX],
        broken_sts_rua: MailRUA) -> None:
    message = mailed_report(config, store, clock, broken_sts_rua, mx_hosts["tls"])
    assert message["TLS-Report-Domain"] == broken_sts_rua.domain


def sts_without_policy(fake_dns: FakeDNS, unique: str) -> str:
    """A domain whose _mta-sts record points at a policy host serving no policy."""
    domain = f"rpt-nopolicy-{unique}.test"
    fake_dns.add(domain, "MX", "10 mx.tls.test.")
    fake_dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20261203;"')
    fake_dns.add(f"mta-sts.{domain}", "A", POLICY_HTTPS_IP)
    return domain


def fetch_failure(config: Config, store: Store, domain: str) -> TLSSessionCount:
    deliver(config, store, Route(f"a@{domain}"))
    rows = {r.policy_type: r for r in counted(store, domain)}
    assert set(rows) == {"sts", "no-policy-found"}
    assert rows["no-policy-found"].result_type == "success"  # the session itself was fine
    assert (rows["sts"].receiving_mx, rows["sts"].policy_string) == (f"mta-sts.{domain}", ())
    return rows["sts"]


def test_a_policy_host_answering_404_is_counted_as_an_sts_fetch_error(
        config: Config, store: Store, fake_dns: FakeDNS, policy_https: FakeHTTPS,
        unique: str) -> None:
    domain = sts_without_policy(fake_dns, unique)
    policy_https.add_host(f"mta-sts.{domain}")  # a valid certificate, but no policy: 404
    failure = fetch_failure(config, store, domain)
    assert failure.result_type == "sts-policy-fetch-error" and "404" in failure.detail


def test_a_policy_host_with_a_wrong_certificate_is_counted_as_sts_webpki_invalid(
        config: Config, store: Store, fake_dns: FakeDNS, unique: str) -> None:
    domain = sts_without_policy(fake_dns, unique)  # the server's default certificate only
    assert fetch_failure(config, store, domain).result_type == "sts-webpki-invalid"


def test_a_mailed_report_is_dkim_signed_when_dkim_is_configured(
        config: Config, store: Store, clock: FakeClock, mx_hosts: dict[str, FakeMX],
        mail_rua: MailRUA, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "dkim.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    config.dkim.domain, config.dkim.selector, config.dkim.key_file = (
        "clinic.test", "sg1", str(key_file))
    message = mailed_report(config, store, clock, mail_rua, mx_hosts["tls"])
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    raw = message.as_bytes(policy=email.policy.SMTP)
    assert dkim.verify(raw, dnsfunc=lambda name, timeout=5: record)


DANE_IP = "127.0.0.21"


@pytest.fixture(scope="module")
def dane_host(fake_dns: FakeDNS, mx_port: int) -> Iterator[str]:
    """mx.rpt-dane.test on DANE_IP with a certificate no CA vouches for, and its TLSA record
    (3 1 1, DNSSEC-validated: the AD bit set); returns the record as published."""
    cert = leaf(make_ca(), "mx.rpt-dane.test")
    parsed = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = parsed.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    record = f"3 1 1 {hashlib.sha256(spki).hexdigest()}"
    for host, tlsa in (("mx.rpt-dane.test", record),
                       ("mx.rpt-dane-bad.test", "3 1 1 " + "cd" * 32)):
        fake_dns.add(host, "A", DANE_IP)
        fake_dns.add(f"_{mx_port}._tcp.{host}", "TLSA", tlsa)
        fake_dns.set_authenticated(f"_{mx_port}._tcp.{host}", True)
    fake_dns.add("rpt-dane.test", "MX", "10 mx.rpt-dane.test.")
    fake_dns.add("rpt-dane-bad.test", "MX", "10 mx.rpt-dane-bad.test.")
    fake_dns.add("mx.rpt-dane-broken.test", "A", DANE_IP)
    fake_dns.set_rcode(f"_{mx_port}._tcp.mx.rpt-dane-broken.test", "SERVFAIL")
    fake_dns.add("rpt-dane-broken.test", "MX", "10 mx.rpt-dane-broken.test.")
    # DANE applies only behind validated MX and address answers too (RFC 7672 2.2.1).
    for name in ("rpt-dane", "rpt-dane-bad", "rpt-dane-broken"):
        fake_dns.set_authenticated(f"{name}.test", True)
        fake_dns.set_authenticated(f"mx.{name}.test", True)
    with FakeMX(DANE_IP, mx_port, name="mx.rpt-dane.test", tls_cert=cert):
        yield record


def test_a_dane_host_is_counted_under_its_tlsa_records(config: Config, store: Store,
                                                       dane_host: str) -> None:
    deliver(config, store, Route("a@rpt-dane.test"))
    [row] = counted(store, "rpt-dane.test")
    assert (row.policy_type, row.policy_string, row.mx_host, row.result_type) == (
        "tlsa", (dane_host,), ("mx.rpt-dane.test",), "success")


def test_a_certificate_matching_no_tlsa_record_is_counted_tlsa_invalid(
        config: Config, store: Store, dane_host: str) -> None:
    deliver(config, store, Route("a@rpt-dane-bad.test"))
    [row] = counted(store, "rpt-dane-bad.test")
    assert (row.policy_type, row.result_type, row.receiving_ip) == ("tlsa", "tlsa-invalid",
                                                                    DANE_IP)


def test_a_tlsa_lookup_that_fails_is_counted_dnssec_invalid(config: Config, store: Store,
                                                            dane_host: str) -> None:
    deliver(config, store, Route("a@rpt-dane-broken.test"))
    [row] = counted(store, "rpt-dane-broken.test")
    assert (row.policy_type, row.result_type, row.receiving_mx) == (
        "tlsa", "dnssec-invalid", "mx.rpt-dane-broken.test")


def test_a_mailto_target_whose_report_bounced_is_backed_off_then_tried_again(
        config: Config, store: Store, clock: FakeClock, fake_dns: FakeDNS,
        unique: str) -> None:
    domain, target = f"rpt-bounce-{unique}.test", f"mailto:{unique}@nowhere-{unique}.test"
    fake_dns.add(f"_smtp._tls.{domain}", "TXT", f'"v=TLSRPTv1; rua={target}"')

    def day_with_traffic() -> list[str]:
        """A day's sessions, then the day after: what each due report's target did."""
        store.add_tls_sessions([TLSSessionCount(today(store), domain, "no-policy-found", (),
                                                (), "success")])
        clock.advance(DAY)
        return [o.targets[0].result for o in send_reports(config, store)]

    assert day_with_traffic() == ["queued"]
    deliver(config, store, rounds=2)  # NXDOMAIN: the report mail bounces
    assert day_with_traffic() == ["backing-off"]
    failure = store.report_target_failure(target)
    assert failure is not None and failure.failures == 1
    assert failure.detail.startswith("bounced: ")
    clock.advance(FIRST_BACKOFF)
    assert day_with_traffic() == ["queued", "queued"]  # the day held back, and the new one
