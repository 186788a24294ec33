"""The organization's own domains (`internal.domains`): mail to them, and the reports
Sealgate writes for their senders, go to `internal.relay` instead of MX hosts.

Pure functions, so the inbound side (at accept time) and the queue runner (for DSNs and
postmaster copies) decide the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.classify.policy import Decision
from gateway.delivery.deliverer import INTERNAL
from gateway.storage.protocols import Route


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".")


def is_internal(address: str, internal_domains: Iterable[str]) -> bool:
    """Whether ADDRESS is in one of INTERNAL_DOMAINS: an exact domain ("org.example"), or
    "*.org.example" for its subdomains (the domain itself included), as in policy files."""
    domain = domain_of(address)
    if not domain or "@" not in address:
        return False
    for entry in internal_domains:
        entry = entry.lower().rstrip(".")
        if entry.startswith("*."):
            base = entry[2:]
            if domain == base or domain.endswith("." + base):
                return True
        elif domain == entry:
            return True
    return False


def route_for(rcpt: str, decision: Decision, internal_domains: Iterable[str]) -> Route:
    """The route of one recipient: the policy's DECISION, unless RCPT is internal, which
    goes to internal.relay whatever the mode (confidentiality is kept as decided)."""
    if is_internal(rcpt, internal_domains):
        return Route(rcpt, decision.confidential, INTERNAL,
                     f"internal domain {domain_of(rcpt)} ({decision.why})")
    return Route(rcpt, decision.confidential, decision.mode, decision.why)


def report_route(rcpt: str, reason: str, internal_domains: Iterable[str]) -> Route:
    """The route of mail Sealgate writes itself (a DSN, a postmaster copy) to RCPT."""
    mode = INTERNAL if is_internal(rcpt, internal_domains) else "opportunistic"
    return Route(rcpt, mode=mode, reason=reason)
