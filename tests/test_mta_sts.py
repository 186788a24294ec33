"""MTA-STS (RFC 8461) over real sockets: TXT discovery through the fake DNS, policy
fetch over real TLS from the fake HTTPS server, parsing, the SQLite cache and the
refresh rules of the resolver driven by a fake clock.

Domains are named for their scenario; every mta-sts.<domain> resolves (in the fake DNS
only, so the system resolver could never find it) to the fake HTTPS server.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.asyncresolver
import pytest
import trustme

from gateway.delivery.mx import make_resolver
from gateway.storage.store import Store
from gateway.tls.mta_sts import (
    MAX_AGE_LIMIT,
    FetchError,
    MTASTSResolver,
    PolicyError,
    STSCache,
    STSLookup,
    STSMode,
    STSPolicy,
    STSStatus,
    _read_body,
    fetch_policy,
    parse_policy,
    parse_sts_txt,
)
from tests.fakes.certs import make_ca, write_ca_pem
from tests.fakes.dns_server import FakeDNS
from tests.fakes.https_server import FakeHTTPS
from tests.fakes.ports import free_port

HTTPS_IP = "127.0.0.20"
SILENT_IP = "127.0.0.21"   # accepts TCP, never speaks TLS
ENFORCE = ("version: STSv1\nmode: enforce\nmx: mx1.enforce-match.test\n"
           "mx: *.mail.enforce-match.test\nmax_age: 86400\n")

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="module")
def sts_ca() -> trustme.CA:
    return make_ca()


@pytest.fixture(scope="module")
def ca_file(sts_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_ca_pem(sts_ca, tmp_path_factory.mktemp("sts-ca") / "ca.pem"))


@pytest.fixture(scope="module")
def https(sts_ca: trustme.CA) -> Iterator[FakeHTTPS]:
    with FakeHTTPS(HTTPS_IP, free_port(HTTPS_IP), sts_ca) as server:
        yield server


@pytest.fixture
def zone() -> Iterator[FakeDNS]:
    """Per test, because changing a policy id means replacing a TXT record (clear())."""
    with FakeDNS() as server:
        yield server


@pytest.fixture
def resolver(zone: FakeDNS) -> dns.asyncresolver.Resolver:
    uncached = make_resolver([zone.nameserver], timeout=2.0)
    uncached.cache = None  # these tests change records within their TTL
    return uncached


def publish(zone: FakeDNS, https: FakeHTTPS, domain: str, text: str | bytes | None,
            policy_id: str = "20240101", **reply: Any) -> None:
    """TXT record, policy host address and (unless TEXT is None) the policy itself."""
    zone.add(f"_mta-sts.{domain}", "TXT", f'"v=STSv1; id={policy_id};"')
    zone.add(f"mta-sts.{domain}", "A", HTTPS_IP)
    if text is not None:
        https.serve_policy(domain, text, **reply)


def fetch(domain: str, resolver: dns.asyncresolver.Resolver, https: FakeHTTPS, ca_file: str,
          timeout: float = 5) -> STSLookup:
    return run(fetch_policy(domain, resolver, https_port=https.port, ca_file=ca_file,
                            timeout=timeout))


# ------------------------------------------------------------------ TXT record


@pytest.mark.parametrize(("text", "expected"), [
    ("v=STSv1; id=20160831085700Z;", "20160831085700Z"),
    ("v=STSv1;id=abc", "abc"),
    ("v=STSv1; id=abc; ext=whatever", "abc"),
    ("v=STSv1 ; id = abc ;", "abc"),
])
def test_txt_record_valid(text: str, expected: str) -> None:
    record = parse_sts_txt(text)
    assert record is not None and record.id == expected


@pytest.mark.parametrize("text", [
    "v=STSv2; id=abc", "id=abc; v=STSv1", "v=STSv1;", "v=STSv1; id=", "v=STSv1; id=has-dash",
    "v=STSv1; id=" + "a" * 33, "v=STSv1; id=a; id=b", "v=STSv1; junk",
])
def test_txt_record_invalid(text: str) -> None:
    assert parse_sts_txt(text) is None


def test_no_txt_means_no_policy_and_no_fetch(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                             ca_file: str) -> None:
    https.clear_log()
    result = fetch("no-txt.test", resolver, https, ca_file)
    assert result.status is STSStatus.NO_POLICY and result.policy is None
    assert https.requests == []


def test_two_sts_txt_records_mean_no_policy(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                           ca_file: str) -> None:
    publish(zone, https, "two-txt.test", ENFORCE, policy_id="one")
    zone.add("_mta-sts.two-txt.test", "TXT", '"v=STSv1; id=two"')
    result = fetch("two-txt.test", resolver, https, ca_file)
    assert result.status is STSStatus.NO_POLICY
    assert "2 v=STSv1 TXT records" in result.detail


def test_other_txt_records_are_ignored(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                       ca_file: str) -> None:
    publish(zone, https, "other-txt.test", ENFORCE.replace("enforce-match", "other-txt"))
    zone.add("_mta-sts.other-txt.test", "TXT", '"google-site-verification=xyz"')
    assert fetch("other-txt.test", resolver, https, ca_file).status is STSStatus.FOUND


def test_txt_split_into_strings_is_joined(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                          ca_file: str) -> None:
    zone.add("_mta-sts.split-txt.test", "TXT", '"v=STSv1; " "id=split1"')
    zone.add("mta-sts.split-txt.test", "A", HTTPS_IP)
    https.serve_policy("split-txt.test", ENFORCE)
    result = fetch("split-txt.test", resolver, https, ca_file)
    assert result.status is STSStatus.FOUND and result.policy is not None
    assert result.policy.id == "split1"


def test_txt_servfail_is_tempfail(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                  ca_file: str) -> None:
    zone.add("_mta-sts.servfail.test", "TXT", '"v=STSv1; id=1"')
    zone.set_rcode("_mta-sts.servfail.test", "SERVFAIL")
    assert fetch("servfail.test", resolver, https, ca_file).status is STSStatus.DNS_TEMPFAIL


# ------------------------------------------------------------------ fetch + parse


def test_fetch_enforce_policy(zone: FakeDNS, resolver: Any, https: FakeHTTPS, ca_file: str) -> None:
    publish(zone, https, "enforce-match.test", ENFORCE, policy_id="20240101")
    https.clear_log()
    result = fetch("enforce-match.test", resolver, https, ca_file)
    assert result.status is STSStatus.FOUND, result.detail
    patterns = ["mx1.enforce-match.test", "*.mail.enforce-match.test"]
    assert result.policy == STSPolicy("20240101", STSMode.ENFORCE, patterns, 86400)
    # SNI and Host name the policy host although the connection went to an IP address.
    (request,) = https.requests
    assert (request.sni, request.host, request.path) == (
        "mta-sts.enforce-match.test", "mta-sts.enforce-match.test", "/.well-known/mta-sts.txt")
    # The policy host was resolved through our resolver (the fake), not the system's.
    assert ("mta-sts.enforce-match.test", "A") in zone.queries


def test_policy_with_crlf_charset_and_unknown_keys(zone: FakeDNS, resolver: Any,
                                                   https: FakeHTTPS, ca_file: str) -> None:
    text = "version: STSv1\r\nmode: testing\r\nmx: mx.testing.test\r\nfuture: x\r\nmax_age: 600\r\n"
    publish(zone, https, "testing.test", text, content_type="text/plain; charset=utf-8")
    result = fetch("testing.test", resolver, https, ca_file)
    assert result.policy == STSPolicy("20240101", STSMode.TESTING, ["mx.testing.test"], 600)


def test_max_age_is_capped_at_one_year(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                       ca_file: str) -> None:
    publish(zone, https, "max-age-cap.test", ENFORCE.replace("86400", "9999999999"))
    result = fetch("max-age-cap.test", resolver, https, ca_file)
    assert result.policy is not None and result.policy.max_age == MAX_AGE_LIMIT == 31557600


@pytest.mark.parametrize(("domain", "text", "complaint"), [
    ("bad-version.test", ENFORCE.replace("STSv1", "STSv2"), "version must be STSv1"),
    ("no-version.test", ENFORCE.replace("version: STSv1\n", ""), "version must be STSv1"),
    ("missing-mx.test", "version: STSv1\nmode: enforce\nmax_age: 86400\n", "needs at least one mx"),
    ("bad-mode.test", ENFORCE.replace("enforce", "strict", 1), "mode must be"),
    ("bad-max-age.test", ENFORCE.replace("86400", "1d"), "max_age must be"),
    ("bad-line.test", ENFORCE + "garbage\n", "not 'key: value'"),
    ("bad-mx.test", ENFORCE + "mx: mx*.bad.test\n", "invalid mx pattern"),
])
def test_invalid_policy_is_fetch_failed(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                        ca_file: str, domain: str, text: str,
                                        complaint: str) -> None:
    publish(zone, https, domain, text)
    result = fetch(domain, resolver, https, ca_file)
    assert (result.status, result.policy) == (STSStatus.FETCH_FAILED, None)
    assert complaint in result.detail


def test_mode_none_needs_no_mx(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                               ca_file: str) -> None:
    publish(zone, https, "mode-none.test", "version: STSv1\nmode: none\nmax_age: 86400\n")
    result = fetch("mode-none.test", resolver, https, ca_file)
    assert result.policy == STSPolicy("20240101", STSMode.NONE, [], 86400)
    assert not result.policy.enforced


def test_wrong_content_type(zone: FakeDNS, resolver: Any, https: FakeHTTPS, ca_file: str) -> None:
    publish(zone, https, "wrong-type.test", ENFORCE, content_type="text/html")
    result = fetch("wrong-type.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED
    assert "Content-Type must be text/plain, got 'text/html'" in result.detail


def test_oversize_policy(zone: FakeDNS, resolver: Any, https: FakeHTTPS, ca_file: str) -> None:
    publish(zone, https, "oversize.test", ENFORCE + "x-padding: " + "x" * 70_000 + "\n")
    result = fetch("oversize.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED
    assert "larger than 65536 bytes" in result.detail


def test_redirect_is_not_followed(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                  ca_file: str) -> None:
    publish(zone, https, "redirect.test", "moved\n", status=301,
            headers={"Location": "https://mta-sts.enforce-match.test/.well-known/mta-sts.txt"})
    https.clear_log()
    result = fetch("redirect.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED and "HTTP 301" in result.detail
    assert [r.host for r in https.requests] == ["mta-sts.redirect.test"]


def test_not_found(zone: FakeDNS, resolver: Any, https: FakeHTTPS, ca_file: str) -> None:
    publish(zone, https, "not-found.test", None)
    https.add_host("mta-sts.not-found.test")
    result = fetch("not-found.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED and "HTTP 404" in result.detail


def test_certificate_for_wrong_name(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                    ca_file: str, sts_ca: trustme.CA) -> None:
    publish(zone, https, "wrong-cert.test", ENFORCE,
            cert=sts_ca.issue_cert("mta-sts.somebody-else.test"))
    https.clear_log()
    result = fetch("wrong-cert.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED
    assert "certificate not valid" in result.detail and "mismatch" in result.detail.lower()
    assert https.requests == []  # nothing was asked over the unverified connection


def test_certificate_from_untrusted_ca(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                       ca_file: str) -> None:
    publish(zone, https, "untrusted-ca.test", ENFORCE,
            cert=make_ca().issue_cert("mta-sts.untrusted-ca.test"))
    result = fetch("untrusted-ca.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED and "certificate not valid" in result.detail


def test_system_roots_alone_do_not_trust_the_test_ca(zone: FakeDNS, resolver: Any,
                                                     https: FakeHTTPS) -> None:
    publish(zone, https, "enforce-match.test", ENFORCE)
    assert fetch("enforce-match.test", resolver, https, "").status is STSStatus.FETCH_FAILED


def test_policy_host_without_address(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                     ca_file: str) -> None:
    zone.add("_mta-sts.no-host.test", "TXT", '"v=STSv1; id=1"')
    result = fetch("no-host.test", resolver, https, ca_file)
    assert result.status is STSStatus.FETCH_FAILED and "no address records" in result.detail
    assert result.txt_id == "1"


def test_silent_server_times_out(zone: FakeDNS, resolver: Any, https: FakeHTTPS,
                                 ca_file: str) -> None:
    port = free_port(SILENT_IP)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind((SILENT_IP, port))
        silent.listen(4)  # the kernel completes the TCP handshake; nobody speaks TLS
        zone.add("_mta-sts.silent.test", "TXT", '"v=STSv1; id=1"')
        zone.add("mta-sts.silent.test", "A", SILENT_IP)
        result = run(fetch_policy("silent.test", resolver, https_port=port, ca_file=ca_file,
                                  timeout=0.5))
    assert result.status is STSStatus.FETCH_FAILED and "timed out" in result.detail


def test_chunked_body_is_decoded() -> None:
    async def read() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n")
        reader.feed_eof()
        return await _read_body(reader, {"transfer-encoding": "chunked"})

    assert run(read()) == b"hello, world"


def test_parse_policy_errors_name_the_line() -> None:
    with pytest.raises(PolicyError, match="line 3"):
        parse_policy("version: STSv1\nmode: enforce\n???\n", "1")


# ------------------------------------------------------------------ matching


@pytest.mark.parametrize(("host", "expected"), [
    ("mx1.enforce-match.test", True),
    ("MX1.Enforce-Match.TEST.", True),
    ("a.mail.enforce-match.test", True),
    ("mail.enforce-match.test", False),        # the wildcard needs a label of its own
    ("a.b.mail.enforce-match.test", False),    # and only one
    ("mx2.enforce-match.test", False),
    ("mx1.enforce-match.test.evil.test", False),
])
def test_mx_pattern_matching(host: str, expected: bool) -> None:
    policy = parse_policy(ENFORCE, "1")
    assert policy.matches(host) is expected


# ------------------------------------------------------------------ cache


@pytest.fixture
def cache_store(tmp_path: Path) -> Iterator[Store]:
    """The resolver's cache over a real store (the cache's own behaviour is in the storage
    contract suite, tests/storage/test_contract_knowledge.py)."""
    store = Store(tmp_path / "var")
    yield store
    store.close()


class _Scenario:
    """One domain's published policy, changeable between resolver calls."""

    def __init__(self, zone: FakeDNS, https: FakeHTTPS, domain: str) -> None:
        self.zone, self.https, self.domain = zone, https, domain

    def publish(self, policy_id: str | None, text: str | None = None, **reply: Any) -> None:
        self.zone.clear()
        if policy_id is not None:
            publish(self.zone, self.https, self.domain, text, policy_id, **reply)

    @property
    def fetches(self) -> int:
        return len(self.https.requests_for(f"mta-sts.{self.domain}"))


@pytest.fixture
def sts(zone: FakeDNS, resolver: Any, https: FakeHTTPS, ca_file: str,
        cache_store: Store) -> tuple[MTASTSResolver, FakeClock, _Scenario]:
    clock = FakeClock()
    resolver_ = MTASTSResolver(resolver, STSCache(cache_store, clock=clock), https_port=https.port,
                               ca_file=ca_file, clock=clock, timeout=5)
    https.clear_log()
    return resolver_, clock, _Scenario(zone, https, "cached.test")


POLICY_V1 = "version: STSv1\nmode: enforce\nmx: mx1.cached.test\nmax_age: 3600\n"
POLICY_V2 = "version: STSv1\nmode: enforce\nmx: mx2.cached.test\nmax_age: 3600\n"


def test_resolver_uses_cache_while_id_unchanged(sts: Any) -> None:
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    first = run(resolver.policy_for("cached.test"))
    assert first is not None and first.mx_patterns == ["mx1.cached.test"]
    clock.advance(600)
    assert run(resolver.policy_for("cached.test")) == first
    assert scenario.fetches == 1


def test_resolver_refetches_when_id_changes(sts: Any) -> None:
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    run(resolver.policy_for("cached.test"))
    scenario.publish("v2", POLICY_V2)
    clock.advance(10)
    policy = run(resolver.policy_for("cached.test"))
    assert policy is not None and (policy.id, policy.mx_patterns) == ("v2", ["mx2.cached.test"])
    assert scenario.fetches == 2
    assert resolver.cache.get("cached.test", now=clock.now) == policy


def test_resolver_keeps_valid_cached_policy_when_fetch_fails(sts: Any) -> None:
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    cached = run(resolver.policy_for("cached.test"))
    scenario.publish("v2", "oops", status=500)
    clock.advance(60)
    lookup = run(resolver.lookup("cached.test"))
    assert lookup.policy == cached and "HTTP 500" in lookup.detail
    # Once the cached policy has expired, a failed fetch means no policy.
    clock.advance(3600)
    assert run(resolver.policy_for("cached.test")) is None


def test_resolver_refetches_after_expiry(sts: Any) -> None:
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    run(resolver.policy_for("cached.test"))
    clock.advance(3600)
    assert run(resolver.policy_for("cached.test")) is not None
    assert scenario.fetches == 2


def test_resolver_keeps_policy_when_txt_disappears(sts: Any) -> None:
    """Deleting the TXT record does not withdraw a policy (an attacker could do that)."""
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    cached = run(resolver.policy_for("cached.test"))
    scenario.publish(None)
    clock.advance(60)
    assert run(resolver.policy_for("cached.test")) == cached
    clock.advance(3600)
    assert run(resolver.policy_for("cached.test")) is None


def test_resolver_mode_none_replaces_enforce(sts: Any) -> None:
    resolver, clock, scenario = sts
    scenario.publish("v1", POLICY_V1)
    run(resolver.policy_for("cached.test"))
    scenario.publish("v2", "version: STSv1\nmode: none\nmax_age: 3600\n")
    policy = run(resolver.policy_for("cached.test"))
    assert policy is not None and policy.mode is STSMode.NONE and not policy.enforced


def test_resolver_no_policy(sts: Any) -> None:
    resolver, _clock, scenario = sts
    scenario.publish(None)
    lookup = run(resolver.lookup("cached.test"))
    assert (lookup.status, lookup.policy) == (STSStatus.NO_POLICY, None)


@pytest.mark.parametrize("wire", [b"-5\r\nhello\r\n0\r\n\r\n", b"zz\r\n",
                                  b"0x5\r\nhello\r\n0\r\n\r\n"])
def test_bad_chunked_encoding(wire: bytes) -> None:
    async def read() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(wire)
        reader.feed_eof()
        return await _read_body(reader, {"transfer-encoding": "chunked"})

    with pytest.raises(FetchError, match="bad chunked encoding"):
        run(read())


class _CountingKnowledge:
    """The real store, counting how often the resolver asks it for a cached policy."""

    def __init__(self, store: Store) -> None:
        self.store, self.asked = store, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def get_sts_policy(self, domain: str) -> Any:
        self.asked += 1
        return self.store.get_sts_policy(domain)


def test_a_domain_without_a_policy_is_not_asked_of_the_store_on_every_delivery(
        sts: Any, cache_store: Store) -> None:
    _, clock, scenario = sts
    scenario.publish(None)
    counting = _CountingKnowledge(cache_store)
    resolver = MTASTSResolver(sts[0].resolver, STSCache(counting, clock=clock), clock=clock)  # type: ignore[arg-type]
    for _ in range(20):
        assert run(resolver.policy_for("cached.test")) is None
    assert counting.asked == 1


def test_a_policy_another_runner_cached_applies_as_soon_as_it_is_announced(
        sts: Any, cache_store: Store) -> None:
    resolver, clock, scenario = sts
    scenario.publish(None)
    assert run(resolver.policy_for("cached.test")) is None  # remembered: nothing cached
    other_runner = MTASTSResolver(resolver.resolver, STSCache(cache_store, clock=clock),
                                  https_port=resolver.https_port, ca_file=resolver.ca_file,
                                  clock=clock, timeout=5)
    scenario.publish("v1", POLICY_V1)
    fetched = run(other_runner.policy_for("cached.test"))
    assert run(resolver.policy_for("cached.test")) == fetched
    assert scenario.fetches == 1  # the first runner used the other's, fetching nothing
