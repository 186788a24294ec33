"""MTA-STS (RFC 8461): discovery, policy fetch, parsing, cache and the resolver on top.

Kept apart as in postfix-mta-sts-resolver:
  lookup_sts_txt / fetch_policy   what the domain publishes right now (DNS + HTTPS)
  parse_policy                    the policy text, strictly
  STSCache                        what we learned before (storage's KnowledgeStore,
                                  injectable clock)
  MTASTSResolver                  the RFC 8461 5.1 rules that combine the three, the
                                  negative cache and the proactive refresh

Negative cache: a failed policy fetch is remembered per domain and TXT id in the storage
(so every queue runner and node shares it), with the next try after `retry_first`, doubled
per failure in a row up to `retry_max`: a broken policy host costs one fetch per back-off
step, not one per delivery. A new TXT id (a new policy announced) is fetched at once.

Proactive refresh (RFC 8461 5.1 allows it): cached policies that have lived REFRESH_AFTER of
their max_age are fetched again before they expire (MTASTSResolver.refresh_due, run by the
serve supervisor every `delivery.mta_sts_refresh`), so a domain mailed rarely keeps its
policy and an attacker never meets an expired cache.

Failures are verdicts (STSStatus), never exceptions, because every failure has a defined
meaning: no TXT or a broken fetch means "no policy" unless a cached one is still valid.

The policy host mta-sts.<domain> is resolved with the gateway's own resolver (the one
configured in `dns.nameservers`), never the system's, so that policy fetches see the
same DNS as MX lookups; the connection goes to that address while SNI, the Host header
and certificate verification use the host name.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.delivery.mx import MXResolver
from gateway.storage.protocols import CachedSTSPolicy, KnowledgeStore
from gateway.tls.inspect import dns_name_matches
from gateway.tls.txt_record import versioned_txt

__all__ = [
    "MAX_AGE_LIMIT", "MAX_POLICY_SIZE", "REFRESH_AFTER", "FetchError", "MTASTSResolver",
    "PolicyError", "STSCache", "cache_status",
    "STSLookup", "STSMode", "STSPolicy", "STSRecord", "STSStatus", "fetch_policy",
    "fetch_policy_body", "lookup_sts_txt", "parse_policy", "parse_sts_txt", "policy_ssl_context",
]

WELL_KNOWN_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_SIZE = 64 * 1024   # RFC 8461 3.3: senders may limit the policy size (64 KB suggested)
MAX_AGE_LIMIT = 31557600      # RFC 8461 3.2: one year is the largest allowed max_age
REFRESH_AFTER = 0.75          # fraction of max_age after which a cached policy is refetched
RETRY_FIRST = 300.0           # seconds before a failed fetch is tried again, doubled per failure
RETRY_MAX = 3600.0            # ... up to this
REMEMBER = 10.0               # seconds a runner trusts the store's "no policy cached" answer
REMEMBERED_DOMAINS = 10_000   # forgotten all at once beyond this many
_MAX_HEADER_BYTES = 16 * 1024
_TXT_PREFIX = "v=STSv1"
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_FIELD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_MX_PATTERN = re.compile(r"(\*\.)?([A-Za-z0-9-]+\.)*[A-Za-z0-9-]+\.?")

Clock = Callable[[], float]


class STSMode(enum.Enum):
    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


class STSStatus(enum.Enum):
    FOUND = "found"
    NO_POLICY = "no-policy"          # no (single, valid) _mta-sts TXT record
    FETCH_FAILED = "fetch-failed"    # TXT present, HTTPS fetch or policy invalid
    DNS_TEMPFAIL = "dns-tempfail"    # TXT lookup failed: unknown, not "none"


@dataclass(frozen=True)
class STSPolicy:
    id: str            # the TXT record's id when the policy was fetched
    mode: STSMode
    mx_patterns: list[str]
    max_age: int

    def matches(self, mx_host: str) -> bool:
        """RFC 8461 4.1: exact name, or "*.example.net" for exactly one leftmost label."""
        return any(dns_name_matches(pattern, mx_host) for pattern in self.mx_patterns)

    @property
    def enforced(self) -> bool:
        return self.mode is STSMode.ENFORCE

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "mode": self.mode.value, "mx": list(self.mx_patterns),
                "max_age": self.max_age}


@dataclass(frozen=True)
class STSRecord:
    id: str


@dataclass(frozen=True)
class STSLookup:
    status: STSStatus
    policy: STSPolicy | None = None
    detail: str = ""
    txt_id: str = ""   # set whenever a valid TXT record was found


# -- DNS ---------------------------------------------------------------------------------


def parse_sts_txt(text: str) -> STSRecord | None:
    """The record of RFC 8461 3.1 ("v=STSv1; id=20160831085700Z;"), or None if invalid.

    Unknown extension fields are allowed and ignored; v must come first.
    """
    parts = [p.strip() for p in text.split(";")]
    if parts and parts[-1] == "":
        parts.pop()
    if not parts or parts[0] != _TXT_PREFIX:
        return None
    found_id: str | None = None
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if not eq or not _FIELD_NAME.fullmatch(name.strip()):
            return None
        if name.strip() == "id":
            if found_id is not None or not _ID.fullmatch(value.strip()):
                return None
            found_id = value.strip()
    return STSRecord(found_id) if found_id else None


async def lookup_sts_txt(domain: str, resolver: dns.asyncresolver.Resolver) -> STSLookup:
    """FOUND (with txt_id, no policy yet), NO_POLICY or DNS_TEMPFAIL."""
    name = f"_mta-sts.{domain.rstrip('.')}"
    found = await versioned_txt(resolver, name, _TXT_PREFIX)
    if found.record is None:
        status = STSStatus.DNS_TEMPFAIL if found.tempfail else STSStatus.NO_POLICY
        return STSLookup(status, detail=found.detail)
    record = parse_sts_txt(found.record)
    if record is None:
        return STSLookup(STSStatus.NO_POLICY,
                         detail=f"invalid TXT record at {name}: {found.record!r}")
    return STSLookup(STSStatus.FOUND, detail=f"TXT id={record.id}", txt_id=record.id)


# -- policy text -------------------------------------------------------------------------


class PolicyError(ValueError):
    pass


def parse_policy(text: str, policy_id: str) -> STSPolicy:
    """Parse a policy file (RFC 8461 3.2); raises PolicyError saying what is wrong.

    Lines are "key: value" separated by LF or CRLF. Unknown keys are ignored; for the
    single-valued keys the first occurrence wins; "mx" may repeat.
    """
    values: dict[str, str] = {}
    mx: list[str] = []
    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        key, colon, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not colon or not _FIELD_NAME.fullmatch(key):
            raise PolicyError(f"line {number}: not 'key: value': {raw[:80]!r}")
        if key == "mx":
            if not _MX_PATTERN.fullmatch(value):
                raise PolicyError(f"line {number}: invalid mx pattern {value[:80]!r}")
            mx.append(value.rstrip(".").lower())
        else:
            values.setdefault(key, value)
    if values.get("version") != "STSv1":
        raise PolicyError(f"version must be STSv1, got {values.get('version')!r}")
    try:
        mode = STSMode(values.get("mode", ""))
    except ValueError:
        raise PolicyError("mode must be enforce, testing or none,"
                          f" got {values.get('mode')!r}") from None
    max_age_text = values.get("max_age", "")
    if not re.fullmatch(r"\d{1,10}", max_age_text):
        raise PolicyError(f"max_age must be a number of seconds, got {max_age_text!r}")
    if not mx and mode is not STSMode.NONE:
        raise PolicyError(f"mode {mode.value} needs at least one mx pattern")
    return STSPolicy(policy_id, mode, mx, min(int(max_age_text), MAX_AGE_LIMIT))


# -- HTTPS -------------------------------------------------------------------------------


class FetchError(Exception):
    pass


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@functools.lru_cache(maxsize=8)
def policy_ssl_context(ca_file: str = "") -> ssl.SSLContext:
    """System roots plus CA_FILE, host name checked: RFC 8461 3.3 requires a valid
    certificate for mta-sts.<domain>; there is no "unverified" fallback.

    Cached because loading the system store costs milliseconds per fetch; contexts are
    safe to share between connections and threads."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def fetch_policy(domain: str, resolver: dns.asyncresolver.Resolver, *,
                       https_port: int = 443, ca_file: str = "",
                       timeout: float = 10) -> STSLookup:
    """The domain's current policy: TXT discovery, then the HTTPS fetch."""
    txt = await lookup_sts_txt(domain, resolver)
    if txt.status is not STSStatus.FOUND:
        return txt
    return await fetch_policy_body(domain, txt.txt_id, resolver, https_port=https_port,
                                   ca_file=ca_file, timeout=timeout)


async def fetch_policy_body(domain: str, policy_id: str, resolver: dns.asyncresolver.Resolver,
                            *, https_port: int = 443, ca_file: str = "",
                            timeout: float = 10) -> STSLookup:
    """Fetch and parse https://mta-sts.<domain>/.well-known/mta-sts.txt (TXT already seen)."""
    host = f"mta-sts.{domain.rstrip('.')}"

    def failed(why: str) -> STSLookup:
        return STSLookup(STSStatus.FETCH_FAILED, detail=f"{host}: {why}", txt_id=policy_id)

    try:
        addresses = await MXResolver(resolver).addresses(host)
    except dns.exception.DNSException as exc:
        return failed(f"address lookup failed: {exc}")
    if not addresses:
        return failed("no address records")
    context = policy_ssl_context(ca_file)
    errors: list[str] = []
    for address in addresses:
        try:
            async with asyncio.timeout(timeout):
                response = await _https_get(address, https_port, host, WELL_KNOWN_PATH, context)
        except TimeoutError:
            errors.append(f"[{address}] timed out after {timeout:g}s")
            continue
        except (OSError, FetchError) as exc:  # ssl.SSLError is an OSError
            errors.append(f"[{address}] {_describe(exc)}")
            continue
        return _policy_from_response(response, policy_id, failed)
    return failed("; ".join(errors))


def _policy_from_response(response: _Response, policy_id: str,
                          failed: Callable[[str], STSLookup]) -> STSLookup:
    if response.status != 200:
        # RFC 8461 3.3: redirects MUST NOT be followed; any non-200 is a failed fetch.
        where = response.headers.get("location", "")
        status = f"HTTP {response.status} {response.reason}".rstrip()
        return failed(f"{status} -> {where}" if where else status)
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        return failed(f"Content-Type must be text/plain, got {media_type or 'none'!r}")
    try:
        policy = parse_policy(response.body.decode("utf-8"), policy_id)
    except UnicodeDecodeError:
        return failed("policy is not UTF-8 text")
    except PolicyError as exc:
        return failed(f"invalid policy: {exc}")
    return STSLookup(STSStatus.FOUND, policy, f"mode {policy.mode.value}, id {policy_id}",
                     txt_id=policy_id)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not valid: {exc.verify_message or exc}"
    return str(exc) or type(exc).__name__


async def _https_get(address: str, port: int, host: str, path: str,
                     context: ssl.SSLContext) -> _Response:
    """One HTTP/1.1 GET over TLS to ADDRESS, with HOST for SNI, verification and Host.

    A deliberately small client (no redirects, no keep-alive, bounded sizes) instead of
    a general HTTP library: the protocol needs none of their features and forbids some.
    """
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=host)
    try:
        authority = host if port == 443 else f"{host}:{port}"
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: sealgate\r\n"
                      "Accept: text/plain\r\nConnection: close\r\n\r\n").encode("ascii"))
        await writer.drain()
        response = await _read_head(reader)
        response.body = await _read_body(reader, response.headers)
        return response
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass  # the peer may drop TLS without close_notify once it has answered


async def _read_head(reader: asyncio.StreamReader) -> _Response:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise FetchError("HTTP response headers too large") from None
    except asyncio.IncompleteReadError:
        raise FetchError("connection closed before a complete HTTP response") from None
    if len(head) > _MAX_HEADER_BYTES:
        raise FetchError("HTTP response headers too large")
    lines = head.decode("latin-1").split("\r\n")
    match = re.fullmatch(r"HTTP/1\.[01] (\d{3})(?: (.*))?", lines[0])
    if not match:
        raise FetchError(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    return _Response(int(match.group(1)), match.group(2) or "", headers)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise FetchError(f"bad Content-Length {length!r}")
        if int(length) > MAX_POLICY_SIZE:
            raise FetchError(f"policy larger than {MAX_POLICY_SIZE} bytes ({length})")
        try:
            return await reader.readexactly(int(length))
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed before the whole policy arrived") from None
    body = await reader.read(MAX_POLICY_SIZE + 1)
    while body and len(body) <= MAX_POLICY_SIZE:
        more = await reader.read(MAX_POLICY_SIZE + 1 - len(body))
        if not more:
            break
        body += more
    if len(body) > MAX_POLICY_SIZE:
        raise FetchError(f"policy larger than {MAX_POLICY_SIZE} bytes")
    return body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = b""
    while True:
        try:
            size_line = (await reader.readline()).split(b";")[0].strip()
        except ValueError:  # StreamReader's way of saying the line exceeded its limit
            raise FetchError("bad chunked encoding") from None
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,8}", size_line):
            raise FetchError("bad chunked encoding")
        size = int(size_line, 16)
        if size == 0:
            return body
        if len(body) + size > MAX_POLICY_SIZE:
            raise FetchError(f"policy larger than {MAX_POLICY_SIZE} bytes")
        try:
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        except asyncio.IncompleteReadError:
            raise FetchError("connection closed inside a chunk") from None


# -- cache -------------------------------------------------------------------------------


class STSCache:
    """Policies by domain, kept by the storage's KnowledgeStore (the `mta_sts_cache` table on
    SQLite). The clock decides expiry; a policy whose mode this version does not know is
    treated as absent, so it is fetched again rather than guessed at."""

    def __init__(self, store: KnowledgeStore, *, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        # domain -> (until, as stored): what the store said lately, for remembered().
        self._said: dict[str, tuple[float, CachedSTSPolicy | None]] = {}

    def get(self, domain: str, *, now: float | None = None) -> STSPolicy | None:
        """The cached policy while fetched + max_age is still ahead, else None."""
        cached = self.store.get_sts_policy(domain)
        self._remember(domain, cached)
        return self._valid(cached, now)

    def remembered(self, domain: str, *, now: float | None = None) -> STSPolicy | None:
        """get(), answered from what the store said in the last REMEMBER seconds. For a
        domain that publishes no policy (most of them) the store would say the same on
        every delivery: a database round trip each, a visible share of a runner's time."""
        said = self._said.get(domain)
        if said is None or said[0] <= time.monotonic():
            return self.get(domain, now=now)
        return self._valid(said[1], now)

    def _remember(self, domain: str, cached: CachedSTSPolicy | None) -> None:
        if len(self._said) >= REMEMBERED_DOMAINS:
            self._said.clear()
        self._said[domain] = (time.monotonic() + REMEMBER, cached)

    def _valid(self, cached: CachedSTSPolicy | None, now: float | None) -> STSPolicy | None:
        if cached is None:
            return None
        if cached.fetched + cached.max_age <= (self.clock() if now is None else now):
            return None
        try:
            mode = STSMode(cached.mode)
        except ValueError:
            return None  # written by a newer version; refetch rather than guess
        return STSPolicy(cached.policy_id, mode, list(cached.mx_patterns), cached.max_age)

    def put(self, domain: str, policy: STSPolicy, *, now: float | None = None) -> None:
        cached = CachedSTSPolicy(policy.id, policy.mode.value, tuple(policy.mx_patterns),
                                 policy.max_age, self.clock() if now is None else now)
        self.store.put_sts_policy(domain, cached)
        self._remember(domain, cached)

    def delete(self, domain: str) -> None:
        self.store.delete_sts_policy(domain)
        self._said.pop(domain, None)


def cache_status(store: KnowledgeStore, domain: str, now: float) -> dict[str, Any]:
    """What `route` and `probe` show of the cache for DOMAIN: the cached policy with its age,
    expiry and refresh time, and the failed fetches the negative cache holds."""
    cached = store.get_sts_policy(domain)
    failure = store.sts_failure(domain)
    policy = None
    if cached is not None:
        expires = cached.fetched + cached.max_age
        policy = {"id": cached.policy_id, "mode": cached.mode, "mx": list(cached.mx_patterns),
                  "max_age": cached.max_age, "fetched": cached.fetched,
                  "age_seconds": round(now - cached.fetched), "expires": expires,
                  "expired": expires <= now,
                  "refresh_after": cached.fetched + cached.max_age * REFRESH_AFTER}
    failed = None
    if failure is not None:
        failed = {"policy_id": failure.policy_id, "failures": failure.failures,
                  "detail": failure.detail, "retry_at": failure.retry_at}
    return {"cached": policy, "failed_fetches": failed}


# -- resolver ----------------------------------------------------------------------------


class MTASTSResolver:
    """The policy to apply to a domain now, following RFC 8461 5.1.

    policy_for() returns None when the domain has no policy at all. A policy of mode
    "none" is returned as such (callers check `.mode` / `.enforced`): it is how a domain
    withdraws an enforce policy, and it must replace the cached one.
    """

    def __init__(self, resolver: dns.asyncresolver.Resolver, cache: STSCache, *,
                 https_port: int = 443, ca_file: str = "", clock: Clock = time.time,
                 timeout: float = 10, retry_first: float = RETRY_FIRST,
                 retry_max: float = RETRY_MAX) -> None:
        self.resolver = resolver
        self.cache = cache
        self.https_port = https_port
        self.ca_file = ca_file
        self.clock = clock
        self.timeout = timeout
        self.retry_first = retry_first
        self.retry_max = retry_max

    async def policy_for(self, domain: str) -> STSPolicy | None:
        return (await self.lookup(domain)).policy

    async def lookup(self, domain: str) -> STSLookup:
        """policy_for() with the reason, for logs and the probe."""
        domain = domain.rstrip(".").lower()
        txt = await lookup_sts_txt(domain, self.resolver)
        # The resolver's clock decides, so one fake clock drives both in tests. Where a
        # policy is announced, the store is asked afresh (another runner or node may have
        # fetched it just now); where none is, what it said a moment ago will do.
        cached = (self.cache.get if txt.status is STSStatus.FOUND else self.cache.remembered)(
            domain, now=self.clock())
        if txt.status is not STSStatus.FOUND:
            # Removing the TXT record does not end a policy (only mode "none" does), and a
            # DNS failure is no reason to drop one: an attacker could cause either.
            if cached is not None:
                return STSLookup(STSStatus.FOUND, cached, f"cached policy ({txt.detail})",
                                 txt_id=cached.id)
            return txt
        if cached is not None and cached.id == txt.txt_id:
            return STSLookup(STSStatus.FOUND, cached, f"cached policy id {cached.id}",
                             txt_id=cached.id)
        fetched = self._failed_recently(domain, txt.txt_id) or await self._fetch(domain,
                                                                                 txt.txt_id)
        if fetched.status is STSStatus.FOUND and fetched.policy is not None:
            return fetched
        if cached is not None:
            # RFC 8461 5.1: a failed refresh keeps the still-valid cached policy, so an
            # attacker blocking the HTTPS fetch cannot strip an enforce policy.
            return STSLookup(STSStatus.FOUND, cached, f"cached policy ({fetched.detail})",
                             txt_id=txt.txt_id)
        return fetched

    def _failed_recently(self, domain: str, policy_id: str) -> STSLookup | None:
        """The negative cache's answer while a failed fetch of POLICY_ID waits for its retry."""
        failure = self.cache.store.sts_failure(domain)
        if failure is None or failure.policy_id != policy_id or failure.retry_at <= self.clock():
            return None
        retry = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(failure.retry_at))
        return STSLookup(STSStatus.FETCH_FAILED, txt_id=policy_id,
                         detail=f"{failure.detail} (failed {failure.failures}x in a row;"
                                f" not fetched again before {retry})")

    async def _fetch(self, domain: str, policy_id: str) -> STSLookup:
        """Fetch the policy body, and cache what came of it: the policy, or the failure."""
        fetched = await fetch_policy_body(domain, policy_id, self.resolver,
                                          https_port=self.https_port, ca_file=self.ca_file,
                                          timeout=self.timeout)
        if fetched.status is STSStatus.FOUND and fetched.policy is not None:
            self.cache.put(domain, fetched.policy, now=self.clock())
            if self.cache.store.sts_failure(domain) is not None:
                self.cache.store.clear_sts_failure(domain)
        else:
            self.cache.store.record_sts_failure(domain, policy_id, fetched.detail,
                                                self.retry_first, self.retry_max)
        return fetched

    async def refresh_due(self) -> int:
        """Fetch again the cached policies near their expiry (REFRESH_AFTER of max_age);
        returns how many were refreshed. A domain whose TXT record is gone or failing keeps
        its cached policy until it expires (RFC 8461 5.1), and is not fetched."""
        refreshed = 0
        for domain in self.cache.store.sts_policies_to_refresh(self.clock(), REFRESH_AFTER):
            txt = await lookup_sts_txt(domain, self.resolver)
            if txt.status is not STSStatus.FOUND or self._failed_recently(domain, txt.txt_id):
                continue
            fetched = await self._fetch(domain, txt.txt_id)
            refreshed += fetched.status is STSStatus.FOUND
        return refreshed
