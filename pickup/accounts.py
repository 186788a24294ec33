"""Recipient accounts over the store's tables: users and passwords, emailed verification
codes, sign-in sessions and profile settings.

Everything here is synchronous and may be slow (argon2, fsync'ed commits): callers on the
event loop run it in a worker thread.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.storage.store import Store
from pickup.security import derive_key
from pickup.throttle import LoginThrottle, Paused

NAME_MAX = 100

CODE_DIGITS = 8  # 10^8 codes: with 5 tries per code and the send limits, guessing is hopeless
CODE_LIFETIME = 15 * 60.0
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_INTERVAL = 60.0
CODE_DAILY_LIMIT = 10  # codes per address per 24 h: the portal must not become a mail cannon


@dataclass(frozen=True)
class User:
    address: str
    first_name: str
    last_name: str
    time_zone: str = "UTC"

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.address


class CodeSend(enum.Enum):
    SENT = "sent"
    WAIT = "wait"  # asked again within CODE_RESEND_INTERVAL
    LIMIT = "limit"  # CODE_DAILY_LIMIT reached


@dataclass(frozen=True)
class IssuedCode:
    outcome: CodeSend
    code: str = ""


class CodeCheck(enum.Enum):
    OK = "ok"
    WRONG = "wrong"  # try again
    INVALID = "invalid"  # none outstanding, expired, used, or out of attempts: ask for a new one
    REGISTERED = "registered"  # the address has an account already: sign in instead


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


def set_password(db: sqlite3.Connection, address: str, password_hash: str, now: float) -> None:
    """A new password, inside the caller's transaction; it ends every session signed in
    with the old one (the caller starts a fresh one for the browser that changed it)."""
    db.execute("UPDATE users SET password_hash=?, password_changed=? WHERE address=?",
               (password_hash, now, address))
    db.execute("DELETE FROM sessions WHERE address=?", (address,))


def _user(row: sqlite3.Row) -> User:
    return User(row["address"], row["first_name"], row["last_name"], row["time_zone"])


class Accounts:
    def __init__(self, store: Store, secret: bytes, idle_timeout: float) -> None:
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
        rows = self.store.query("SELECT * FROM users WHERE address=?",
                                (normalize_address(address),))
        return _user(rows[0]) if rows else None

    def authenticate(self, address: str, password: str, client: str) -> User | None:
        """The user when PASSWORD is right; raises TooManyFailures while sign-in is paused
        for this address or this client. Unknown addresses take the same time and count
        the same failures as known ones."""
        address = normalize_address(address)
        paused = self.throttle.paused(address, client)
        if paused is not None:
            raise TooManyFailures(paused)
        rows = self.store.query("SELECT * FROM users WHERE address=?", (address,))
        stored = rows[0]["password_hash"] if rows else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
            ok = bool(rows)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self.throttle.record_failure(address, client)
            return None
        self.throttle.clear_account(address)
        if self.hasher.check_needs_rehash(stored):
            with self.store.transaction() as db:
                db.execute("UPDATE users SET password_hash=? WHERE address=?",
                           (self.hasher.hash(password), address))
        return _user(rows[0])

    def change_password(self, address: str, password_hash: str) -> None:
        with self.store.transaction() as db:
            set_password(db, normalize_address(address), password_hash, self.store.clock())
        self.throttle.clear_account(normalize_address(address))

    def set_time_zone(self, address: str, zone: str) -> None:
        with self.store.transaction() as db:
            db.execute("UPDATE users SET time_zone=? WHERE address=?",
                       (zone, normalize_address(address)))

    # -- verification codes --------------------------------------------------------------

    def _code_hash(self, address: str, code: str) -> str:
        # Keyed, so a copy of the database alone does not reveal codes by brute force.
        message = f"{address}\0{code}".encode()
        return hmac.new(self.code_key, message, hashlib.sha256).hexdigest()

    def issue_code(self, address: str) -> IssuedCode:
        """A fresh code for ADDRESS (earlier ones stop working), unless throttled."""
        address = normalize_address(address)
        now = self.store.clock()
        with self.store.transaction() as db:
            db.execute("DELETE FROM verifications WHERE expires < ?", (now - 86400,))
            recent = db.execute(
                "SELECT created FROM verifications WHERE address=? AND created > ?"
                " ORDER BY created DESC", (address, now - 86400)).fetchall()
            if recent and now - recent[0]["created"] < CODE_RESEND_INTERVAL:
                return IssuedCode(CodeSend.WAIT)
            if len(recent) >= CODE_DAILY_LIMIT:
                return IssuedCode(CodeSend.LIMIT)
            code = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS))
            db.execute("UPDATE verifications SET used=1 WHERE address=? AND used=0", (address,))
            db.execute(
                "INSERT INTO verifications (address, code_hash, created, expires, attempts, used)"
                " VALUES (?,?,?,?,0,0)",
                (address, self._code_hash(address, code), now, now + CODE_LIFETIME),
            )
        return IssuedCode(CodeSend.SENT, code)

    def redeem_code(self, address: str, code: str, password_hash: str, first_name: str,
                    last_name: str, time_zone: str) -> tuple[CodeCheck, int]:
        """Check CODE and, when right, create the account in the same transaction.
        Returns the outcome and the attempts left for this code.

        A code only ever creates an account: an existing password is changed with the
        current password or a reset link, never by whoever holds a fresh code."""
        address = normalize_address(address)
        now = self.store.clock()
        with self.store.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
                return CodeCheck.REGISTERED, 0
            row = db.execute(
                "SELECT * FROM verifications WHERE address=? AND used=0 ORDER BY id DESC LIMIT 1",
                (address,)).fetchone()
            if row is None or row["expires"] <= now or row["attempts"] >= CODE_MAX_ATTEMPTS:
                return CodeCheck.INVALID, 0
            if not hmac.compare_digest(self._code_hash(address, code), row["code_hash"]):
                attempts = row["attempts"] + 1
                db.execute("UPDATE verifications SET attempts=?, used=? WHERE id=?",
                           (attempts, int(attempts >= CODE_MAX_ATTEMPTS), row["id"]))
                left = CODE_MAX_ATTEMPTS - attempts
                return (CodeCheck.WRONG if left else CodeCheck.INVALID), left
            db.execute("UPDATE verifications SET used=1 WHERE id=?", (row["id"],))
            db.execute(
                "INSERT INTO users (address, first_name, last_name, password_hash, created,"
                " password_changed, time_zone) VALUES (?,?,?,?,?,?,?)",
                (address, first_name, last_name, password_hash, now, now, time_zone))
            db.execute("DELETE FROM sessions WHERE address=?", (address,))
        return CodeCheck.OK, CODE_MAX_ATTEMPTS - row["attempts"]

    # -- sessions ------------------------------------------------------------------------

    def start_session(self, address: str, replacing: str | None = None) -> str:
        """A new session token for ADDRESS (only its hash is stored); ends REPLACING."""
        token = secrets.token_urlsafe(32)  # 256 bits
        now = self.store.clock()
        with self.store.transaction() as db:
            if replacing:
                db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash(replacing),))
            db.execute("DELETE FROM sessions WHERE last_seen <= ?", (now - self.idle_timeout,))
            db.execute("INSERT INTO sessions (token_hash, address, created, last_seen)"
                       " VALUES (?,?,?,?)",
                       (token_hash(token), normalize_address(address), now, now))
        return token

    def resolve_session(self, token: str) -> User | None:
        """The signed-in user for TOKEN, keeping the session alive; None when unknown or idle."""
        if not 20 <= len(token) <= 100:
            return None
        digest = token_hash(token)
        rows = self.store.query(
            "SELECT s.last_seen, u.* FROM sessions s"
            " JOIN users u ON u.address = s.address WHERE s.token_hash=?", (digest,))
        if not rows:
            return None
        now = self.store.clock()
        idle = now - rows[0]["last_seen"]
        if idle >= self.idle_timeout:
            self.end_session(token)
            return None
        # Touch at most about once a minute: each write is an fsync'ed commit.
        if idle > min(60.0, self.idle_timeout / 10):
            with self.store.transaction() as db:
                db.execute("UPDATE sessions SET last_seen=? WHERE token_hash=?", (now, digest))
        return _user(rows[0])

    def end_session(self, token: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash(token),))

    def end_all_sessions(self, address: str) -> None:
        """Sign out everywhere: every browser signed in as ADDRESS, this one included."""
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE address=?", (normalize_address(address),))
