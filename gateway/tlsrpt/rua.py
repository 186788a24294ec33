"""Where a domain wants its TLS reports: the `_smtp._tls` TXT record of RFC 8460 3
("v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1").

Records that do not start with "v=TLSRPTv1" are someone else's and discarded; when not
exactly one is left, the domain does not take reports (RFC 8460 3). Only the mailto: and
https: schemes exist; a URI with another scheme is ignored, the others in the list stand.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from gateway.tls.txt_record import versioned_txt

_PREFIX = "v=TLSRPTv1"
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class RUAStatus(enum.Enum):
    FOUND = "found"
    NONE = "none"          # no (single, valid) record: the domain takes no reports
    TEMPFAIL = "tempfail"  # the look-up failed: try again later, it may well have one


@dataclass(frozen=True)
class RUALookup:
    status: RUAStatus
    targets: tuple[str, ...] = ()  # "mailto:a@b.example" or "https://..." URIs, in order
    detail: str = ""


def parse_tlsrpt_txt(text: str) -> tuple[str, ...] | None:
    """The rua URIs of a "v=TLSRPTv1; rua=..." record, or None when it is not valid."""
    fields = [f.strip() for f in text.split(";")]
    if fields and fields[-1] == "":
        fields.pop()
    if not fields or fields[0] != _PREFIX:
        return None
    rua: str | None = None
    for field in fields[1:]:
        name, eq, value = field.partition("=")
        if not eq:
            return None
        if name.strip() == "rua":
            rua = value.strip()
    if rua is None:
        return None
    targets = tuple(t for t in (u.strip() for u in rua.split(",")) if _usable(t))
    return targets or None


def _usable(uri: str) -> bool:
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "mailto":
        return bool(_ADDRESS.fullmatch(urllib.parse.unquote(rest)))
    if scheme.lower() == "https":
        return bool(urllib.parse.urlsplit(uri).hostname)
    return False


async def lookup_rua(domain: str, resolver: dns.asyncresolver.Resolver) -> RUALookup:
    name = f"_smtp._tls.{domain.rstrip('.')}"
    found = await versioned_txt(resolver, name, _PREFIX)
    if found.record is None:
        return RUALookup(RUAStatus.TEMPFAIL if found.tempfail else RUAStatus.NONE,
                         detail=found.detail)
    targets = parse_tlsrpt_txt(found.record)
    if targets is None:
        return RUALookup(RUAStatus.NONE,
                         detail=f"invalid TXT record at {name}: {found.record[:200]!r}")
    return RUALookup(RUAStatus.FOUND, targets, f"rua at {name}")
