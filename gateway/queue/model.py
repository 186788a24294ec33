"""Value objects of the queue: how a recipient is routed and where it stands.

Both are `StrEnum`s so that their values are exactly the strings stored in the database and
written by earlier versions; a member compares equal to its string.
"""

from __future__ import annotations

from enum import StrEnum


class Mode(StrEnum):
    """How a recipient is handed on, decided at accept time."""

    OPPORTUNISTIC = "opportunistic"        # STARTTLS when offered, plaintext otherwise
    REQUIRE_TLS = "require-tls"            # never plaintext
    REQUIRE_VERIFIED_TLS = "require-verified-tls"  # PKIX chain and MX host name
    PICKUP = "pickup"                      # always stored for pickup in the portal
    INTERNAL = "internal"                  # to internal.relay (portal replies, reports)
    # "TLS-Required: No" (RFC 8689 5): STARTTLS when offered, but the domain's MTA-STS and
    # DANE are not applied. Only for mail Sealgate writes that must get through when TLS to
    # the domain is broken: TLS reports (RFC 8460 5.3), which report exactly that.
    TLS_OPTIONAL = "tls-optional"


class State(StrEnum):
    """Where a recipient stands in the queue."""

    QUEUED = "queued"
    DEFERRED = "deferred"
    DELIVERING = "delivering"  # claimed under a lease (claimed_by, lease_until)
    DELIVERED = "delivered"
    PICKUP = "pickup"
    BOUNCED = "bounced"

    @property
    def pending(self) -> bool:
        """The recipient still needs the spool file."""
        return self in (State.QUEUED, State.DEFERRED, State.DELIVERING)
