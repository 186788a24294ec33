"""Password-reset links: emailed to the account's address, single use, valid 30 minutes.

Only a hash of each token is stored. Opening the link (a GET, which link scanners do too)
only shows the form; the token is spent by the POST that sets the new password.
"""

from __future__ import annotations

import secrets

from gateway.storage.protocols import PortalStore, ResetLimits, ResetLink
from pickup.accounts import normalize_address, token_hash

__all__ = ["ResetLink", "Resets", "plausible_token"]

RESET_LIFETIME = 30 * 60.0
RESET_INTERVAL = 60.0      # one link a minute per address
RESET_DAILY_LIMIT = 5      # and a handful a day: the portal must not become a mail cannon
RESET_LIMITS = ResetLimits(RESET_LIFETIME, RESET_INTERVAL, RESET_DAILY_LIMIT)


def plausible_token(token: str) -> bool:
    return 40 <= len(token) <= 64 and token.isascii()


class Resets:
    def __init__(self, store: PortalStore) -> None:
        self.store = store

    def issue(self, address: str, pickup_id: str = "") -> str | None:
        """A new token for ADDRESS (earlier ones stop working); None when ADDRESS has no
        account or has had links enough for now. The caller answers the same either way."""
        token = secrets.token_urlsafe(32)  # 256 bits
        issued = self.store.issue_reset(token_hash(token), normalize_address(address), pickup_id,
                                        RESET_LIMITS)
        return token if issued else None

    def peek(self, token: str) -> ResetLink | None:
        """The link's account while TOKEN is unused and unexpired; spends nothing."""
        return self.store.peek_reset(token_hash(token)) if plausible_token(token) else None

    def redeem(self, token: str, password_hash: str) -> ResetLink | None:
        """Spend TOKEN and set the new password in one unit of work (which also ends every
        session of the account); None when the link is no longer valid."""
        if not plausible_token(token):
            return None
        return self.store.redeem_reset(token_hash(token), password_hash)
