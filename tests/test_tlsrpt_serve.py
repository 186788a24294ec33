"""TLS reporting in the real processes: a running `sealgate serve` with [tlsrpt] enabled
counts the sessions of the mail it delivers, `sealgate tlsrpt send` posts the reports that
are due to the loopback HTTPS endpoint a domain publishes, and the config keys are checked."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from gateway.storage.protocols import TLSSessionCount
from gateway.tlsrpt.results import utc_day
from tests.conftest import POLICY_HTTPS_IP, make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS, Reply
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import opened_storage
from tests.tlsrpt import assert_valid_report, report_of_gzip

TLSRPT = {"enabled": True, "organization": "Example Clinic",
          "contact": "postmaster@clinic.test", "from": "tlsrpt@clinic.test",
          "submitter": "gateway.clinic.test"}
ENDPOINT = "tlsrpt-cli.reports.test"


def reporting_gateway(settings: GatewaySettings, directory: Path,
                      **tlsrpt: object) -> GatewayProcess:
    extra = {**settings.extra, "tlsrpt": {**TLSRPT, **tlsrpt}}
    return GatewayProcess(directory, dataclasses.replace(settings, extra=extra))


def test_a_running_gateway_counts_the_sessions_of_what_it_delivers(
        gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX], tmp_path: Path,
        unique: str) -> None:
    process = reporting_gateway(gateway_settings, tmp_path / "gw")
    process.start()
    try:
        rcpt = f"{unique}@tls.test"
        process.send(make_message("doctor@clinic.test", rcpt, "Counted"))
        assert wait_for_mail(mx_hosts["tls"], rcpt).tls
        deadline = time.monotonic() + 30
        with opened_storage(process.storage_dir) as storage:
            while not (rows := storage.tls_sessions("tls.test", utc_day(time.time()))):
                assert time.monotonic() < deadline, process.log_tail()
                time.sleep(0.2)
        assert [(r.policy_type, r.result_type) for r in rows] == [("no-policy-found",
                                                                  "success")]
    finally:
        process.stop()


@pytest.fixture
def endpoint(fake_dns: FakeDNS, policy_https: FakeHTTPS, unique: str) -> str:
    """A domain of the test's own whose rua is the loopback HTTPS endpoint."""
    domain = f"rpt-cli-{unique}.test"
    fake_dns.add(f"_smtp._tls.{domain}", "TXT",
                 f'"v=TLSRPTv1; rua=https://{ENDPOINT}:{policy_https.port}/{unique}"')
    fake_dns.add(ENDPOINT, "A", POLICY_HTTPS_IP)
    policy_https.serve(ENDPOINT, Reply(b"ok\n", 200), path=f"/{unique}")
    return domain


def test_tlsrpt_send_posts_the_reports_of_days_that_ended(
        gateway_settings: GatewaySettings, policy_https: FakeHTTPS, endpoint: str,
        tmp_path: Path, unique: str) -> None:
    process = reporting_gateway(gateway_settings, tmp_path / "gw")
    yesterday = utc_day(time.time() - 86400)
    with opened_storage(process.storage_dir) as storage:
        storage.add_tls_sessions([
            TLSSessionCount(yesterday, endpoint, "no-policy-found", (), (), "success", count=7),
            TLSSessionCount(yesterday, endpoint, "no-policy-found", (), (),
                            "starttls-not-supported", "127.0.0.1", "mx.plain.test",
                            "127.0.0.3", "mx.plain.test: no STARTTLS")])
    done = process.cli("tlsrpt", "send", "--json")
    assert done.returncode == 0, done.stderr
    [outcome] = json.loads(done.stdout)
    assert (outcome["domain"], outcome["day"], outcome["outcome"]) == (endpoint, yesterday,
                                                                       "sent")
    [post] = [r for r in policy_https.requests_for(ENDPOINT) if r.path == f"/{unique}"]
    document = report_of_gzip(post.body)
    assert_valid_report(document)
    assert document == outcome["report"]
    assert document["policies"][0]["summary"] == {"total-successful-session-count": 7,
                                                  "total-failure-session-count": 1}
    again = process.cli("tlsrpt", "send")
    assert (again.returncode, again.stdout.strip()) == (0, "no TLS reports due")


def test_a_running_gateway_sends_the_reports_of_the_day_before_by_itself(
        gateway_settings: GatewaySettings, policy_https: FakeHTTPS, endpoint: str,
        tmp_path: Path, unique: str) -> None:
    process = reporting_gateway(gateway_settings, tmp_path / "gw")
    with opened_storage(process.storage_dir) as storage:
        storage.add_tls_sessions([TLSSessionCount(utc_day(time.time() - 86400), endpoint,
                                                  "no-policy-found", (), (), "success")])
    process.start()
    try:
        deadline = time.monotonic() + 30
        while not [r for r in policy_https.requests_for(ENDPOINT) if r.path == f"/{unique}"]:
            assert time.monotonic() < deadline, process.log_tail()
            time.sleep(0.2)
    finally:
        process.stop()
    done = process.cli("tlsrpt", "send")
    assert done.stdout.strip() == "no TLS reports due"  # marked sent by the gateway


def test_tlsrpt_send_says_so_when_reporting_is_off(gateway_settings: GatewaySettings,
                                                   tmp_path: Path) -> None:
    process = reporting_gateway(gateway_settings, tmp_path / "gw", enabled=False)
    done = process.cli("tlsrpt", "send")
    assert done.returncode == 1
    assert done.stderr.strip().startswith("sealgate: tlsrpt.enabled is false")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("key", "value", "says"), [
    ("from", "not an address", "tlsrpt.from: 'not an address' is not an address"),
    ("contact", "nobody", "tlsrpt.contact: 'nobody' is not an address"),
    ("submitter", "*.clinic.test", "tlsrpt.submitter: '*.clinic.test' is not a domain"),
])
def test_config_check_names_a_bad_tlsrpt_value(gateway_settings: GatewaySettings,
                                               tmp_path: Path, key: str, value: str,
                                               says: str) -> None:
    process = reporting_gateway(gateway_settings, tmp_path / "gw", **{key: value})
    done = process.cli("config", "check")
    assert done.returncode == 1
    assert says in done.stdout + done.stderr
