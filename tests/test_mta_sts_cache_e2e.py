"""The MTA-STS cache end to end: a real `sealgate serve` refreshes a cached policy before it
expires with no delivery asking for it, holds back fetches that failed, and `sealgate route`
and `sealgate probe` show the cache's age; policies from the loopback HTTPS server, TXT
records from the loopback DNS, delivery to the session's fake MX with STARTTLS."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import pytest

from tests.conftest import POLICY_HTTPS_IP, make_message, wait_for_mail
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings

MAX_AGE = 8


@dataclasses.dataclass(frozen=True)
class Domains:
    """Per storage back-end: the session's HTTPS server counts requests per domain."""

    refreshed: str   # max_age 8 s: refetched from 6 s on
    failing: str     # its policy host answers 500


@pytest.fixture(scope="module")
def domains(storage_backend: str) -> Domains:
    return Domains(f"refresh-{storage_backend}-e2e.test", f"sts-fails-{storage_backend}-e2e.test")


def publish(dns: FakeDNS, https: FakeHTTPS, domain: str, max_age: int, status: int = 200) -> None:
    dns.add(domain, "MX", "10 mx.tls.test.")
    dns.add(f"_mta-sts.{domain}", "TXT", '"v=STSv1; id=20261202;"')
    dns.add(f"mta-sts.{domain}", "A", POLICY_HTTPS_IP)
    https.serve_policy(domain, f"version: STSv1\nmode: enforce\nmx: mx.tls.test\n"
                               f"max_age: {max_age}\n", status=status)


@pytest.fixture(scope="module")
def refreshing_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                       fake_dns: FakeDNS, policy_https: FakeHTTPS, domains: Domains,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    publish(fake_dns, policy_https, domains.refreshed, MAX_AGE)
    publish(fake_dns, policy_https, domains.failing, 86400, status=500)
    extra = {**gateway_settings.extra,
             "delivery": {**gateway_settings.extra.get("delivery", {}),
                          "mta_sts_refresh": "1s"}}
    process = GatewayProcess(tmp_path_factory.mktemp("sts-refresh"),
                             dataclasses.replace(gateway_settings, extra=extra))
    process.start()
    yield process
    process.stop()


def fetches(https: FakeHTTPS, domain: str) -> int:
    return len(https.requests_for(f"mta-sts.{domain}"))


def test_a_cached_policy_is_refreshed_before_it_expires_without_a_delivery(
        refreshing_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        policy_https: FakeHTTPS, domains: Domains, unique: str) -> None:
    rcpt = f"{unique}@{domains.refreshed}"
    refreshing_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
    assert wait_for_mail(mx_hosts["tls"], rcpt).tls
    fetched_once = fetches(policy_https, domains.refreshed)
    assert fetched_once >= 1
    deadline = time.monotonic() + MAX_AGE * 2 + 10
    while fetches(policy_https, domains.refreshed) == fetched_once:
        assert time.monotonic() < deadline, refreshing_gateway.log_tail()
        time.sleep(0.2)


def test_route_shows_the_age_of_the_cached_policy(
        refreshing_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], domains: Domains,
        unique: str) -> None:
    rcpt = f"{unique}@{domains.refreshed}"
    refreshing_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
    wait_for_mail(mx_hosts["tls"], rcpt)
    done = refreshing_gateway.cli("route", "--from", "doctor@clinic.test", "--to", rcpt,
                                  "--no-dns")
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.startswith("mta-sts cache:")]
    assert " ago), " in line and "refetched from" in line


def test_a_failed_policy_fetch_is_not_repeated_for_the_next_delivery(
        refreshing_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX],
        policy_https: FakeHTTPS, domains: Domains, unique: str) -> None:
    for n in range(3):
        rcpt = f"{unique}-{n}@{domains.failing}"
        refreshing_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
        wait_for_mail(mx_hosts["tls"], rcpt)
    assert fetches(policy_https, domains.failing) == 1
    done = refreshing_gateway.cli("route", "--from", "doctor@clinic.test", "--to",
                                  f"x@{domains.failing}", "--no-dns", "--json")
    failed = json.loads(done.stdout)["domain"]["mta_sts_cache"]["failed_fetches"]
    assert failed["failures"] == 1 and "HTTP 500" in failed["detail"]


def test_probe_shows_the_policy_the_gateway_has_cached_and_its_age(
        refreshing_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], domains: Domains,
        unique: str) -> None:
    rcpt = f"{unique}@{domains.refreshed}"
    refreshing_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
    wait_for_mail(mx_hosts["tls"], rcpt)
    done = refreshing_gateway.cli("probe", domains.refreshed)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.strip().startswith("cached")]
    assert "enforce, id 20261202, fetched " in line and " ago, " in line
    report = json.loads(refreshing_gateway.cli("probe", domains.refreshed, "--json").stdout)
    assert report["mta_sts_cache"]["cached"]["max_age"] == MAX_AGE
    assert report["mta_sts_cache"]["cached"]["age_seconds"] >= 0


def test_probe_shows_failed_fetches_held_back(
        refreshing_gateway: GatewayProcess, mx_hosts: dict[str, FakeMX], domains: Domains,
        unique: str) -> None:
    rcpt = f"{unique}@{domains.failing}"
    refreshing_gateway.send(make_message("doctor@clinic.test", rcpt, "Ordinary"))
    wait_for_mail(mx_hosts["tls"], rcpt)
    done = refreshing_gateway.cli("probe", domains.failing)
    assert done.returncode == 0, done.stderr
    [line] = [x for x in done.stdout.splitlines() if x.strip().startswith("fetches")]
    assert "failed 1x in a row" in line and "HTTP 500" in line and "next try after" in line
