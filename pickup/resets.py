"""Password-reset links: emailed to the account's address, single use, valid 30 minutes.

Only a hash of each token is stored. Opening the link (a GET, which link scanners do too)
only shows the form; the token is spent by the POST that sets the new password.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.storage.store import Store
from pickup.accounts import normalize_address, set_password, token_hash

RESET_LIFETIME = 30 * 60.0
RESET_INTERVAL = 60.0      # one link a minute per address
RESET_DAILY_LIMIT = 5      # and a handful a day: the portal must not become a mail cannon


@dataclass(frozen=True)
class ResetLink:
    address: str
    pickup_id: str  # the message the request came from, to return to; may be empty


def plausible_token(token: str) -> bool:
    return 40 <= len(token) <= 64 and token.isascii()


class Resets:
    def __init__(self, store: Store) -> None:
        self.store = store

    def issue(self, address: str, pickup_id: str = "") -> str | None:
        """A new token for ADDRESS (earlier ones stop working); None when ADDRESS has no
        account or has had links enough for now. The caller answers the same either way."""
        address = normalize_address(address)
        now = self.store.clock()
        with self.store.transaction() as db:
            db.execute("DELETE FROM password_resets WHERE created < ?", (now - 86400,))
            if not db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
                return None
            recent = [row["created"] for row in db.execute(
                "SELECT created FROM password_resets WHERE address=? ORDER BY created DESC",
                (address,))]
            if recent and (now - recent[0] < RESET_INTERVAL or len(recent) >= RESET_DAILY_LIMIT):
                return None
            token = secrets.token_urlsafe(32)  # 256 bits
            db.execute("UPDATE password_resets SET used=1 WHERE address=?", (address,))
            db.execute(
                "INSERT INTO password_resets (token_hash, address, pickup_id, created, expires,"
                " used) VALUES (?,?,?,?,?,0)",
                (token_hash(token), address, pickup_id, now, now + RESET_LIFETIME))
        return token

    def peek(self, token: str) -> ResetLink | None:
        """The link's account while TOKEN is unused and unexpired; spends nothing."""
        if not plausible_token(token):
            return None
        rows = self.store.query(
            "SELECT address, pickup_id FROM password_resets WHERE token_hash=? AND used=0"
            " AND expires > ?", (token_hash(token), self.store.clock()))
        return ResetLink(rows[0]["address"], rows[0]["pickup_id"] or "") if rows else None

    def redeem(self, token: str, password_hash: str) -> ResetLink | None:
        """Spend TOKEN and set the new password in one transaction (which also ends every
        session of the account); None when the link is no longer valid."""
        if not plausible_token(token):
            return None
        now = self.store.clock()
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT address, pickup_id FROM password_resets WHERE token_hash=? AND used=0"
                " AND expires > ?", (token_hash(token), now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE password_resets SET used=1 WHERE address=?", (row["address"],))
            set_password(db, row["address"], password_hash, now)
        return ResetLink(row["address"], row["pickup_id"] or "")
