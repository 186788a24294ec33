"""Recipient accounts: users and passwords, emailed verification codes, sign-in sessions and
profile settings. The rules live here (hashing, limits, timeouts); the storage's PortalStore
keeps the data and applies each check-and-write atomically.

Everything here is synchronous and may be slow (argon2, fsync'ed commits): callers on the
event loop run it in a worker thread.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.storage.protocols import CodeCheck, CodeLimits, CodeSend, NewUser, PortalStore, User
from pickup.security import derive_key
from pickup.throttle import LoginThrottle, Paused

__all__ = ["Accounts", "CodeCheck", "CodeSend", "IssuedCode", "TooManyFailures", "User"]

NAME_MAX = 100

CODE_DIGITS = 8  # 10^8 codes: with 5 tries per code and the send limits, guessing is hopeless
CODE_LIFETIME = 15 * 60.0
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_INTERVAL = 60.0
CODE_DAILY_LIMIT = 10  # codes per address per 24 h: the portal must not become a mail cannon
CODE_LIMITS = CodeLimits(CODE_LIFETIME, CODE_RESEND_INTERVAL, CODE_DAILY_LIMIT, CODE_MAX_ATTEMPTS)


@dataclass(frozen=True)
class IssuedCode:
    outcome: CodeSend
    code: str = ""


class TooManyFailures(Exception):
    """Sign-in is paused after repeated wrong passwords, for this address or this client."""

    def __init__(self, paused: Paused) -> None:
        super().__init__(paused.reason)
        self.reason = paused.reason


def normalize_address(address: str) -> str:
    return address.strip().lower()


def normalize_code(code: str) -> str:
    """People paste codes with spaces or dashes; only the digits count."""
    return "".join(ch for ch in code if ch not in " -\t")


def token_hash(token: str) -> str:
    """Session and reset tokens are stored hashed: a copy of the database signs no one in."""
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, store: PortalStore, secret: bytes, idle_timeout: float) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self.code_key = derive_key(secret, "verification-code")
        self.throttle = LoginThrottle(store)

    # -- users and passwords -------------------------------------------------------------

    @cached_property
    def _dummy_hash(self) -> str:
        """Verified against when the address has no account, so that a wrong address and a
        wrong password take the same time. Made on first use: each hash costs 19 MiB and
        tens of milliseconds."""
        return self.hasher.hash(secrets.token_hex(16))

    def hash_password(self, password: str) -> str:
        return self.hasher.hash(password)

    def get_user(self, address: str) -> User | None:
        return self.store.get_user(normalize_address(address))

    def authenticate(self, address: str, password: str, client: str) -> User | None:
        """The user when PASSWORD is right; raises TooManyFailures while sign-in is paused
        for this address or this client. Unknown addresses take the same time and count
        the same failures as known ones."""
        address = normalize_address(address)
        paused = self.throttle.paused(address, client)
        if paused is not None:
            raise TooManyFailures(paused)
        found = self.store.get_credentials(address)
        stored = found.password_hash if found else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
            ok = found is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or found is None:
            self.throttle.record_failure(address, client)
            return None
        self.throttle.clear_account(address)
        if self.hasher.check_needs_rehash(stored):
            self.store.replace_password_hash(address, self.hasher.hash(password))
        return found.user

    def change_password(self, address: str, password_hash: str) -> None:
        self.store.set_password(normalize_address(address), password_hash)
        self.throttle.clear_account(normalize_address(address))

    def set_time_zone(self, address: str, zone: str) -> None:
        self.store.set_time_zone(normalize_address(address), zone)

    # -- verification codes --------------------------------------------------------------

    def _code_hash(self, address: str, code: str) -> str:
        # Keyed, so a copy of the database alone does not reveal codes by brute force.
        message = f"{address}\0{code}".encode()
        return hmac.new(self.code_key, message, hashlib.sha256).hexdigest()

    def issue_code(self, address: str) -> IssuedCode:
        """A fresh code for ADDRESS (earlier ones stop working), unless throttled."""
        address = normalize_address(address)
        code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
        outcome = self.store.issue_code(address, self._code_hash(address, code), CODE_LIMITS)
        return IssuedCode(outcome, code if outcome is CodeSend.SENT else "")

    def redeem_code(self, address: str, code: str, password_hash: str, first_name: str,
                    last_name: str, time_zone: str, language: str = "") -> tuple[CodeCheck, int]:
        """Check CODE and, when right, create the account in the same transaction.
        Returns the outcome and the attempts left for this code.

        A code only ever creates an account: an existing password is changed with the
        current password or a reset link, never by whoever holds a fresh code."""
        address = normalize_address(address)
        user = NewUser(address, first_name, last_name, password_hash, time_zone, language)
        redeemed = self.store.redeem_code(user, self._code_hash(address, code), CODE_LIMITS)
        return redeemed.outcome, redeemed.attempts_left

    def redeem_sign_in_code(self, address: str, code: str, client: str) -> tuple[CodeCheck, int]:
        """Spend CODE, the newest emailed to ADDRESS, to sign in (no account is created or
        changed). Wrong codes count as failed sign-ins; raises TooManyFailures while sign-in
        is paused for this address or client, like a password would."""
        address = normalize_address(address)
        paused = self.throttle.paused(address, client)
        if paused is not None:
            raise TooManyFailures(paused)
        redeemed = self.store.redeem_sign_in_code(address, self._code_hash(address, code),
                                                  CODE_LIMITS)
        if redeemed.outcome is CodeCheck.OK:
            self.throttle.clear_account(address)
        else:
            self.throttle.record_failure(address, client)
        return redeemed.outcome, redeemed.attempts_left

    def set_language(self, address: str, language: str) -> None:
        self.store.set_language(normalize_address(address), language)

    # -- sessions ------------------------------------------------------------------------

    def start_session(self, address: str, replacing: str | None = None) -> str:
        """A new session token for ADDRESS (only its hash is stored); ends REPLACING."""
        token = secrets.token_urlsafe(32)  # 256 bits
        self.store.start_session(token_hash(token), normalize_address(address), self.idle_timeout,
                                 replacing=token_hash(replacing) if replacing else None)
        return token

    def resolve_session(self, token: str) -> User | None:
        """The signed-in user for TOKEN, keeping the session alive; None when unknown or idle."""
        if not 20 <= len(token) <= 100:
            return None
        digest = token_hash(token)
        session = self.store.find_session(digest)
        if session is None:
            return None
        idle = self.store.clock() - session.last_seen
        if idle >= self.idle_timeout:
            self.store.end_session(digest)
            return None
        # Touch at most about once a minute: each write is an fsync'ed commit.
        if idle > min(60.0, self.idle_timeout / 10):
            self.store.touch_session(digest)
        return session.user

    def end_session(self, token: str) -> None:
        self.store.end_session(token_hash(token))

    def end_all_sessions(self, address: str) -> None:
        """Sign out everywhere: every browser signed in as ADDRESS, this one included."""
        self.store.end_all_sessions(normalize_address(address))
