"""Recipient accounts over the store's tables: users and passwords, emailed verification
codes, and sign-in sessions.

Everything here is synchronous and may be slow (argon2, fsync'ed commits): callers on the
event loop run it in a worker thread.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.store import Store
from pickup.security import derive_key

PASSWORD_MIN = 8
PASSWORD_MAX = 128
NAME_MAX = 100

CODE_DIGITS = 8  # 10^8 codes: with 5 tries per code and the send limits, guessing is hopeless
CODE_LIFETIME = 15 * 60.0
CODE_MAX_ATTEMPTS = 5
CODE_RESEND_INTERVAL = 60.0
CODE_DAILY_LIMIT = 10  # codes per address per 24 h: the portal must not become a mail cannon

LOGIN_MAX_FAILURES = 10  # per address and window, then sign-in waits (a code still works)
LOGIN_FAILURE_WINDOW = 15 * 60.0


@dataclass(frozen=True)
class User:
    address: str
    first_name: str
    last_name: str

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


class TooManyFailures(Exception):
    """Sign-in for this address is paused after repeated wrong passwords."""


def password_problem(password: str, confirmation: str) -> tuple[str, str] | None:
    """Which field is wrong and why, in words for the form; None when PASSWORD can be used."""
    if len(password) < PASSWORD_MIN:
        return "password", f"Use at least {PASSWORD_MIN} characters."
    if len(password) > PASSWORD_MAX:
        return "password", f"Use at most {PASSWORD_MAX} characters."
    if password != confirmation:
        return "password_confirm", "The two passwords are not the same. Please type them again."
    return None


def normalize_address(address: str) -> str:
    return address.strip().lower()


def normalize_code(code: str) -> str:
    """People paste codes with spaces or dashes; only the digits count."""
    return "".join(ch for ch in code if ch not in " -\t")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class FailureThrottle:
    """Recent failures per key, in memory: enough for one portal process to slow down
    password guessing without a table (a restart forgets, which only helps the user)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: str, now: float) -> bool:
        with self._lock:
            recent = [t for t in self._failures.get(key, []) if t > now - self.window]
            if recent:
                self._failures[key] = recent
            else:
                self._failures.pop(key, None)
            return len(recent) >= self.limit

    def record(self, key: str, now: float) -> None:
        with self._lock:
            self._failures.setdefault(key, []).append(now)

    def clear(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


class Accounts:
    def __init__(self, store: Store, secret: bytes, idle_timeout: float) -> None:
        self.store = store
        self.idle_timeout = idle_timeout
        self.hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
        self.code_key = derive_key(secret, "verification-code")
        self.login_failures = FailureThrottle(LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW)
        # Verified against when the address has no account, so that a wrong address and a
        # wrong password take the same time.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))

    # -- users and passwords -------------------------------------------------------------

    def hash_password(self, password: str) -> str:
        return self.hasher.hash(password)

    def get_user(self, address: str) -> User | None:
        rows = self.store.query("SELECT address, first_name, last_name FROM users WHERE address=?",
                                (normalize_address(address),))
        if not rows:
            return None
        return User(rows[0]["address"], rows[0]["first_name"], rows[0]["last_name"])

    def authenticate(self, address: str, password: str) -> User | None:
        """The user when PASSWORD is right; raises TooManyFailures while sign-in is paused."""
        address = normalize_address(address)
        now = self.store.clock()
        if self.login_failures.blocked(address, now):
            raise TooManyFailures(address)
        rows = self.store.query("SELECT * FROM users WHERE address=?", (address,))
        stored = rows[0]["password_hash"] if rows else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
            ok = bool(rows)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            self.login_failures.record(address, now)
            return None
        self.login_failures.clear(address)
        if self.hasher.check_needs_rehash(stored):
            with self.store.transaction() as db:
                db.execute("UPDATE users SET password_hash=? WHERE address=?",
                           (self.hasher.hash(password), address))
        return User(address, rows[0]["first_name"], rows[0]["last_name"])

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

    def redeem_code(self, address: str, code: str, password_hash: str,
                    first_name: str | None, last_name: str | None) -> tuple[CodeCheck, int]:
        """Check CODE and, when right, create the account or set its new password in the
        same transaction. Returns the outcome and the attempts left for this code.

        Names are kept as they are when None (a password reset)."""
        address = normalize_address(address)
        now = self.store.clock()
        with self.store.transaction() as db:
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
            exists = db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone()
            if exists:
                db.execute(
                    "UPDATE users SET password_hash=?, password_changed=?,"
                    " first_name=coalesce(?, first_name), last_name=coalesce(?, last_name)"
                    " WHERE address=?", (password_hash, now, first_name, last_name, address))
            else:
                db.execute(
                    "INSERT INTO users (address, first_name, last_name, password_hash, created,"
                    " password_changed) VALUES (?,?,?,?,?,?)",
                    (address, first_name or "", last_name or "", password_hash, now, now))
            # A new password ends every session signed in with the old one.
            db.execute("DELETE FROM sessions WHERE address=?", (address,))
        self.login_failures.clear(address)
        return CodeCheck.OK, CODE_MAX_ATTEMPTS - row["attempts"]

    # -- sessions ------------------------------------------------------------------------

    def start_session(self, address: str, replacing: str | None = None) -> str:
        """A new session token for ADDRESS (only its hash is stored); ends REPLACING."""
        token = secrets.token_urlsafe(32)  # 256 bits
        now = self.store.clock()
        with self.store.transaction() as db:
            if replacing:
                db.execute("DELETE FROM sessions WHERE token_hash=?", (_token_hash(replacing),))
            db.execute("DELETE FROM sessions WHERE last_seen <= ?", (now - self.idle_timeout,))
            db.execute("INSERT INTO sessions (token_hash, address, created, last_seen)"
                       " VALUES (?,?,?,?)",
                       (_token_hash(token), normalize_address(address), now, now))
        return token

    def resolve_session(self, token: str) -> User | None:
        """The signed-in user for TOKEN, keeping the session alive; None when unknown or idle."""
        if not 20 <= len(token) <= 100:
            return None
        digest = _token_hash(token)
        rows = self.store.query(
            "SELECT s.last_seen, u.address, u.first_name, u.last_name FROM sessions s"
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
        return User(rows[0]["address"], rows[0]["first_name"], rows[0]["last_name"])

    def end_session(self, token: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash=?", (_token_hash(token),))
