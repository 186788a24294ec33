"""Portal accounts, sessions, verification codes, reset links and sign-in failures in
PostgreSQL (tables users, sessions, verifications, password_resets, login_failures).

Every check-then-write unit (a code within its limits, a redemption, a reset link) first
takes an advisory lock on the address, so requests for one address spread over several
nodes are applied one after the other: an attacker gains nothing from more nodes."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from gateway.storage.postgres.connection import Cursor, PostgresPart, Row, lock_key
from gateway.storage.protocols import (
    CodeCheck,
    CodeLimits,
    CodeRedemption,
    CodeSend,
    Credentials,
    NewUser,
    PortalCounts,
    ResetLimits,
    ResetLink,
    Session,
    User,
)

DAY = 86400.0


def _user(row: Row) -> User:
    return User(row["address"], row["first_name"], row["last_name"], row["time_zone"],
                row["language"] or "")


def _lock_address(cursor: Cursor, address: str) -> None:
    lock_key(cursor, f"sealgate:portal:{address}")


def _has_user(cursor: Cursor, address: str) -> bool:
    return cursor.execute("SELECT 1 FROM users WHERE address = %s", (address,)).fetchone() \
        is not None


def _set_password(cursor: Cursor, address: str, password_hash: str, now: float) -> None:
    """Inside the caller's transaction: a new password ends every session signed in with the
    old one."""
    cursor.execute("UPDATE users SET password_hash = %s, password_changed = %s"
                   " WHERE address = %s", (password_hash, now, address))
    cursor.execute("DELETE FROM sessions WHERE address = %s", (address,))


class PostgresPortal(PostgresPart):
    # -- users -------------------------------------------------------------------------

    def get_user(self, address: str) -> User | None:
        found = self.db.query("SELECT * FROM users WHERE address = %s", (address,))
        return _user(found[0]) if found else None

    def get_credentials(self, address: str) -> Credentials | None:
        found = self.db.query("SELECT * FROM users WHERE address = %s", (address,))
        return Credentials(_user(found[0]), found[0]["password_hash"]) if found else None

    def replace_password_hash(self, address: str, password_hash: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE users SET password_hash = %s WHERE address = %s",
                           (password_hash, address))

    def set_password(self, address: str, password_hash: str) -> None:
        with self.db.transaction() as cursor:
            _set_password(cursor, address, password_hash, self.clock())

    def set_time_zone(self, address: str, zone: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE users SET time_zone = %s WHERE address = %s",
                           (zone, address))

    def set_language(self, address: str, language: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE users SET language = %s WHERE address = %s",
                           (language, address))

    # -- verification codes ------------------------------------------------------------

    def issue_code(self, address: str, code_hash: str, limits: CodeLimits) -> CodeSend:
        now = self.clock()
        with self.db.transaction() as cursor:
            _lock_address(cursor, address)
            cursor.execute("DELETE FROM verifications WHERE expires < %s", (now - DAY,))
            recent = [r["created"] for r in cursor.execute(
                "SELECT created FROM verifications WHERE address = %s AND created > %s"
                " ORDER BY created DESC", (address, now - DAY))]
            if recent and now - recent[0] < limits.resend_interval:
                return CodeSend.WAIT
            if len(recent) >= limits.daily_limit:
                return CodeSend.LIMIT
            cursor.execute("UPDATE verifications SET used = true WHERE address = %s"
                           " AND NOT used", (address,))
            cursor.execute("INSERT INTO verifications (address, code_hash, created, expires,"
                           " attempts, used) VALUES (%s, %s, %s, %s, 0, false)",
                           (address, code_hash, now, now + limits.lifetime))
        return CodeSend.SENT

    def redeem_code(self, user: NewUser, code_hash: str, limits: CodeLimits) -> CodeRedemption:
        now = self.clock()
        with self.db.transaction() as cursor:
            _lock_address(cursor, user.address)
            if _has_user(cursor, user.address):
                return CodeRedemption(CodeCheck.REGISTERED, 0)
            row = cursor.execute("SELECT * FROM verifications WHERE address = %s AND NOT used"
                                 " ORDER BY id DESC LIMIT 1", (user.address,)).fetchone()
            if row is None or row["expires"] <= now or row["attempts"] >= limits.max_attempts:
                return CodeRedemption(CodeCheck.INVALID, 0)
            if not hmac.compare_digest(code_hash, row["code_hash"]):
                attempts = row["attempts"] + 1
                cursor.execute("UPDATE verifications SET attempts = %s, used = %s WHERE id = %s",
                               (attempts, attempts >= limits.max_attempts, row["id"]))
                left = limits.max_attempts - attempts
                return CodeRedemption(CodeCheck.WRONG if left else CodeCheck.INVALID, left)
            cursor.execute("UPDATE verifications SET used = true WHERE id = %s", (row["id"],))
            cursor.execute("INSERT INTO users (address, first_name, last_name, password_hash,"
                           " created, password_changed, time_zone, language)"
                           " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                           (user.address, user.first_name, user.last_name, user.password_hash,
                            now, now, user.time_zone, user.language))
            cursor.execute("DELETE FROM sessions WHERE address = %s", (user.address,))
        return CodeRedemption(CodeCheck.OK, limits.max_attempts - row["attempts"])

    def redeem_sign_in_code(self, address: str, code_hash: str,
                            limits: CodeLimits) -> CodeRedemption:
        now = self.clock()
        with self.db.transaction() as cursor:
            _lock_address(cursor, address)
            if not _has_user(cursor, address):
                return CodeRedemption(CodeCheck.INVALID, 0)
            row = cursor.execute("SELECT * FROM verifications WHERE address = %s AND NOT used"
                                 " ORDER BY id DESC LIMIT 1", (address,)).fetchone()
            if row is None or row["expires"] <= now or row["attempts"] >= limits.max_attempts:
                return CodeRedemption(CodeCheck.INVALID, 0)
            if not hmac.compare_digest(code_hash, row["code_hash"]):
                attempts = row["attempts"] + 1
                cursor.execute("UPDATE verifications SET attempts = %s, used = %s WHERE id = %s",
                               (attempts, attempts >= limits.max_attempts, row["id"]))
                left = limits.max_attempts - attempts
                return CodeRedemption(CodeCheck.WRONG if left else CodeCheck.INVALID, left)
            cursor.execute("UPDATE verifications SET used = true WHERE id = %s", (row["id"],))
        return CodeRedemption(CodeCheck.OK, limits.max_attempts - row["attempts"])

    # -- sessions ----------------------------------------------------------------------

    def start_session(self, token_hash: str, address: str, idle_timeout: float,
                      replacing: str | None = None) -> None:
        now = self.clock()
        with self.db.transaction() as cursor:
            if replacing:
                cursor.execute("DELETE FROM sessions WHERE token_hash = %s", (replacing,))
            cursor.execute("DELETE FROM sessions WHERE last_seen <= %s", (now - idle_timeout,))
            cursor.execute("INSERT INTO sessions (token_hash, address, created, last_seen)"
                           " VALUES (%s, %s, %s, %s)", (token_hash, address, now, now))

    def find_session(self, token_hash: str) -> Session | None:
        found = self.db.query("SELECT s.last_seen, u.* FROM sessions s"
                              " JOIN users u ON u.address = s.address WHERE s.token_hash = %s",
                              (token_hash,))
        return Session(_user(found[0]), found[0]["last_seen"]) if found else None

    def touch_session(self, token_hash: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("UPDATE sessions SET last_seen = %s WHERE token_hash = %s",
                           (self.clock(), token_hash))

    def end_session(self, token_hash: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE token_hash = %s", (token_hash,))

    def end_all_sessions(self, address: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM sessions WHERE address = %s", (address,))

    # -- password reset links ----------------------------------------------------------

    def issue_reset(self, token_hash: str, address: str, pickup_id: str,
                    limits: ResetLimits) -> bool:
        now = self.clock()
        with self.db.transaction() as cursor:
            _lock_address(cursor, address)
            cursor.execute("DELETE FROM password_resets WHERE created < %s", (now - DAY,))
            if not _has_user(cursor, address):
                return False
            recent = [r["created"] for r in cursor.execute(
                "SELECT created FROM password_resets WHERE address = %s ORDER BY created DESC",
                (address,))]
            if recent and (now - recent[0] < limits.interval
                           or len(recent) >= limits.daily_limit):
                return False
            cursor.execute("UPDATE password_resets SET used = true WHERE address = %s",
                           (address,))
            cursor.execute("INSERT INTO password_resets (token_hash, address, pickup_id,"
                           " created, expires, used) VALUES (%s, %s, %s, %s, %s, false)",
                           (token_hash, address, pickup_id, now, now + limits.lifetime))
        return True

    def peek_reset(self, token_hash: str) -> ResetLink | None:
        found = self.db.query("SELECT address, pickup_id FROM password_resets"
                              " WHERE token_hash = %s AND NOT used AND expires > %s",
                              (token_hash, self.clock()))
        return ResetLink(found[0]["address"], found[0]["pickup_id"] or "") if found else None

    def redeem_reset(self, token_hash: str, password_hash: str) -> ResetLink | None:
        now = self.clock()
        with self.db.transaction() as cursor:
            # FOR UPDATE: two nodes redeeming one link at once: the second waits, then
            # finds it used.
            row = cursor.execute("SELECT address, pickup_id FROM password_resets"
                                 " WHERE token_hash = %s AND NOT used AND expires > %s"
                                 " FOR UPDATE", (token_hash, now)).fetchone()
            if row is None:
                return None
            cursor.execute("UPDATE password_resets SET used = true WHERE address = %s",
                           (row["address"],))
            _set_password(cursor, row["address"], password_hash, now)
        return ResetLink(row["address"], row["pickup_id"] or "")

    # -- sign-in failures --------------------------------------------------------------

    def count_login_failures(self, key: str, since: float) -> int:
        [row] = self.db.query("SELECT count(*) AS n FROM login_failures"
                              " WHERE key = %s AND at > %s", (key, since))
        return int(row["n"])

    def record_login_failures(self, keys: Sequence[str], window: float) -> None:
        now = self.clock()
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM login_failures WHERE at <= %s", (now - window,))
            cursor.executemany("INSERT INTO login_failures (key, at) VALUES (%s, %s)",
                               [(key, now) for key in keys])

    def clear_login_failures(self, key: str) -> None:
        with self.db.transaction() as cursor:
            cursor.execute("DELETE FROM login_failures WHERE key = %s", (key,))

    def portal_counts(self) -> PortalCounts:
        [row] = self.db.query(
            "SELECT (SELECT count(*) FROM users) AS users,"
            " (SELECT count(*) FROM sessions) AS sessions,"
            " (SELECT count(*) FROM verifications WHERE NOT used AND expires > %(now)s)"
            " AS open_codes,"
            " (SELECT count(*) FROM password_resets WHERE NOT used AND expires > %(now)s)"
            " AS open_resets,"
            " (SELECT count(*) FROM login_failures) AS login_failures",
            {"now": self.clock()})
        return PortalCounts(int(row["users"]), int(row["sessions"]), int(row["open_codes"]),
                            int(row["open_resets"]), int(row["login_failures"]))
