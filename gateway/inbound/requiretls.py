"""REQUIRETLS (RFC 8689) on the way in: the MAIL parameter, taken only over TLS, and the
"TLS-Required: No" header field.

A message sent with REQUIRETLS is treated as confidential: it leaves only as RFC 8689 4.2.1
demands (delivery/deliverer.py), and where that cannot be done it is stored for pickup,
like any confidential mail, instead of bouncing. "TLS-Required: No" (RFC 8689 5) lets
ordinary mail ignore the recipient domain's MTA-STS and DANE; it is never honoured for
confidential mail, and removed from it before it is relayed.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.classify.policy import HeaderSection, read_header_section
from gateway.storage.protocols import Route

__all__ = ["KEYWORD", "REQUIRETLS_REASON", "TLS_REQUIRED", "requiretls_mode",
           "requiretls_route", "split_requiretls", "strip_tls_required", "tls_required_no"]

KEYWORD = "REQUIRETLS"
TLS_REQUIRED = "TLS-Required"
REQUIRETLS_REASON = "REQUIRETLS (RFC 8689)"
# Route modes that REQUIRETLS raises to require-verified-tls; pickup and internal stay.
_WEAKER_MODES = ("opportunistic", "require-tls")


def split_requiretls(arg: str, params: str) -> tuple[str, str | None]:
    """ARG (the MAIL argument) without a REQUIRETLS parameter, and how it was written (None
    when absent). PARAMS: the parameter text after the path, which ends ARG."""
    tokens = params.split()
    found = [t for t in tokens if t.partition("=")[0].upper() == KEYWORD]
    if not found or not arg.endswith(params):
        return arg, None
    kept = " ".join(t for t in tokens if t not in found)
    return (arg[:len(arg) - len(params)] + kept).rstrip(), found[0]


def requiretls_mode(mode: str) -> str:
    """MODE for a REQUIRETLS message: at least require-verified-tls (RFC 8689 4.2.1 asks
    for a verified certificate); pickup and internal stay as they are."""
    return "require-verified-tls" if mode in _WEAKER_MODES else mode


def requiretls_route(route: Route) -> Route:
    """ROUTE for a REQUIRETLS message: confidential (pickup when it cannot be relayed as
    RFC 8689 demands), at least require-verified-tls."""
    reason = f"{REQUIRETLS_REASON}; {route.reason}" if route.reason else REQUIRETLS_REASON
    return replace(route, confidential=True, mode=requiretls_mode(route.mode), reason=reason)


def tls_required_no(section: HeaderSection) -> bool:
    """The header section asks, with "TLS-Required: No", that TLS policies be ignored."""
    return any(value.strip().lower() == "no" for value in section.values(TLS_REQUIRED))


def strip_tls_required(head: bytes) -> bytes:
    """HEAD (a header section) without any TLS-Required field, however it is written."""
    out, position = [], 0
    for field in read_header_section(head).named(TLS_REQUIRED):
        out.append(head[position:field.start])
        position = field.end
    return b"".join(out) + head[position:]
