"""Portal accounts, sessions, verification codes, reset links and sign-in failures in SQLite
(tables users, sessions, verifications, password_resets, login_failures)."""

from __future__ import annotations

import hmac
import sqlite3
from collections.abc import Sequence

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
from gateway.storage.sqlite.base import SQLitePart

DAY = 86400.0


def _user(row: sqlite3.Row) -> User:
    return User(row["address"], row["first_name"], row["last_name"], row["time_zone"],
                row["language"] or "")


def _set_password(db: sqlite3.Connection, address: str, password_hash: str, now: float) -> None:
    """Inside the caller's transaction: a new password ends every session signed in with the
    old one."""
    db.execute("UPDATE users SET password_hash=?, password_changed=? WHERE address=?",
               (password_hash, now, address))
    db.execute("DELETE FROM sessions WHERE address=?", (address,))


class SQLitePortal(SQLitePart):
    # -- users -------------------------------------------------------------------------

    def get_user(self, address: str) -> User | None:
        found = self.query("SELECT * FROM users WHERE address=?", (address,))
        return _user(found[0]) if found else None

    def get_credentials(self, address: str) -> Credentials | None:
        found = self.query("SELECT * FROM users WHERE address=?", (address,))
        return Credentials(_user(found[0]), found[0]["password_hash"]) if found else None

    def replace_password_hash(self, address: str, password_hash: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE users SET password_hash=? WHERE address=?",
                       (password_hash, address))

    def set_password(self, address: str, password_hash: str) -> None:
        with self.transaction() as db:
            _set_password(db, address, password_hash, self.clock())

    def set_time_zone(self, address: str, zone: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE users SET time_zone=? WHERE address=?", (zone, address))

    def set_language(self, address: str, language: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE users SET language=? WHERE address=?", (language, address))

    # -- verification codes ------------------------------------------------------------

    def issue_code(self, address: str, code_hash: str, limits: CodeLimits) -> CodeSend:
        now = self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM verifications WHERE expires < ?", (now - DAY,))
            recent = [r["created"] for r in db.execute(
                "SELECT created FROM verifications WHERE address=? AND created > ?"
                " ORDER BY created DESC", (address, now - DAY))]
            if recent and now - recent[0] < limits.resend_interval:
                return CodeSend.WAIT
            if len(recent) >= limits.daily_limit:
                return CodeSend.LIMIT
            db.execute("UPDATE verifications SET used=1 WHERE address=? AND used=0", (address,))
            db.execute("INSERT INTO verifications (address, code_hash, created, expires,"
                       " attempts, used) VALUES (?,?,?,?,0,0)",
                       (address, code_hash, now, now + limits.lifetime))
        return CodeSend.SENT

    def redeem_code(self, user: NewUser, code_hash: str, limits: CodeLimits) -> CodeRedemption:
        now = self.clock()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE address=?", (user.address,)).fetchone():
                return CodeRedemption(CodeCheck.REGISTERED, 0)
            row = db.execute("SELECT * FROM verifications WHERE address=? AND used=0"
                             " ORDER BY id DESC LIMIT 1", (user.address,)).fetchone()
            if row is None or row["expires"] <= now or row["attempts"] >= limits.max_attempts:
                return CodeRedemption(CodeCheck.INVALID, 0)
            if not hmac.compare_digest(code_hash, row["code_hash"]):
                attempts = row["attempts"] + 1
                db.execute("UPDATE verifications SET attempts=?, used=? WHERE id=?",
                           (attempts, int(attempts >= limits.max_attempts), row["id"]))
                left = limits.max_attempts - attempts
                return CodeRedemption(CodeCheck.WRONG if left else CodeCheck.INVALID, left)
            db.execute("UPDATE verifications SET used=1 WHERE id=?", (row["id"],))
            db.execute("INSERT INTO users (address, first_name, last_name, password_hash,"
                       " created, password_changed, time_zone, language)"
                       " VALUES (?,?,?,?,?,?,?,?)",
                       (user.address, user.first_name, user.last_name, user.password_hash,
                        now, now, user.time_zone, user.language))
            db.execute("DELETE FROM sessions WHERE address=?", (user.address,))
        return CodeRedemption(CodeCheck.OK, limits.max_attempts - row["attempts"])

    def redeem_sign_in_code(self, address: str, code_hash: str,
                            limits: CodeLimits) -> CodeRedemption:
        now = self.clock()
        with self.transaction() as db:
            if not db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
                return CodeRedemption(CodeCheck.INVALID, 0)
            row = db.execute("SELECT * FROM verifications WHERE address=? AND used=0"
                             " ORDER BY id DESC LIMIT 1", (address,)).fetchone()
            if row is None or row["expires"] <= now or row["attempts"] >= limits.max_attempts:
                return CodeRedemption(CodeCheck.INVALID, 0)
            if not hmac.compare_digest(code_hash, row["code_hash"]):
                attempts = row["attempts"] + 1
                db.execute("UPDATE verifications SET attempts=?, used=? WHERE id=?",
                           (attempts, int(attempts >= limits.max_attempts), row["id"]))
                left = limits.max_attempts - attempts
                return CodeRedemption(CodeCheck.WRONG if left else CodeCheck.INVALID, left)
            db.execute("UPDATE verifications SET used=1 WHERE id=?", (row["id"],))
        return CodeRedemption(CodeCheck.OK, limits.max_attempts - row["attempts"])

    # -- sessions ----------------------------------------------------------------------

    def start_session(self, token_hash: str, address: str, idle_timeout: float,
                      replacing: str | None = None) -> None:
        now = self.clock()
        with self.transaction() as db:
            if replacing:
                db.execute("DELETE FROM sessions WHERE token_hash=?", (replacing,))
            db.execute("DELETE FROM sessions WHERE last_seen <= ?", (now - idle_timeout,))
            db.execute("INSERT INTO sessions (token_hash, address, created, last_seen)"
                       " VALUES (?,?,?,?)", (token_hash, address, now, now))

    def find_session(self, token_hash: str) -> Session | None:
        found = self.query("SELECT s.last_seen, u.* FROM sessions s"
                           " JOIN users u ON u.address = s.address WHERE s.token_hash=?",
                           (token_hash,))
        return Session(_user(found[0]), found[0]["last_seen"]) if found else None

    def touch_session(self, token_hash: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE sessions SET last_seen=? WHERE token_hash=?",
                       (self.clock(), token_hash))

    def end_session(self, token_hash: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    def end_all_sessions(self, address: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM sessions WHERE address=?", (address,))

    # -- password reset links ----------------------------------------------------------

    def issue_reset(self, token_hash: str, address: str, pickup_id: str,
                    limits: ResetLimits) -> bool:
        now = self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM password_resets WHERE created < ?", (now - DAY,))
            if not db.execute("SELECT 1 FROM users WHERE address=?", (address,)).fetchone():
                return False
            recent = [r["created"] for r in db.execute(
                "SELECT created FROM password_resets WHERE address=? ORDER BY created DESC",
                (address,))]
            if recent and (now - recent[0] < limits.interval
                           or len(recent) >= limits.daily_limit):
                return False
            db.execute("UPDATE password_resets SET used=1 WHERE address=?", (address,))
            db.execute("INSERT INTO password_resets (token_hash, address, pickup_id, created,"
                       " expires, used) VALUES (?,?,?,?,?,0)",
                       (token_hash, address, pickup_id, now, now + limits.lifetime))
        return True

    def peek_reset(self, token_hash: str) -> ResetLink | None:
        found = self.query("SELECT address, pickup_id FROM password_resets"
                           " WHERE token_hash=? AND used=0 AND expires > ?",
                           (token_hash, self.clock()))
        return ResetLink(found[0]["address"], found[0]["pickup_id"] or "") if found else None

    def redeem_reset(self, token_hash: str, password_hash: str) -> ResetLink | None:
        now = self.clock()
        with self.transaction() as db:
            row = db.execute("SELECT address, pickup_id FROM password_resets"
                             " WHERE token_hash=? AND used=0 AND expires > ?",
                             (token_hash, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE password_resets SET used=1 WHERE address=?", (row["address"],))
            _set_password(db, row["address"], password_hash, now)
        return ResetLink(row["address"], row["pickup_id"] or "")

    # -- sign-in failures --------------------------------------------------------------

    def count_login_failures(self, key: str, since: float) -> int:
        return int(self.query("SELECT count(*) FROM login_failures WHERE key=? AND at > ?",
                              (key, since))[0][0])

    def record_login_failures(self, keys: Sequence[str], window: float) -> None:
        now = self.clock()
        with self.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE at <= ?", (now - window,))
            db.executemany("INSERT INTO login_failures (key, at) VALUES (?, ?)",
                           [(key, now) for key in keys])

    def clear_login_failures(self, key: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM login_failures WHERE key=?", (key,))

    def portal_counts(self) -> PortalCounts:
        now = self.clock()
        [row] = self.query(
            "SELECT (SELECT count(*) FROM users),"
            " (SELECT count(*) FROM sessions),"
            " (SELECT count(*) FROM verifications WHERE used=0 AND expires > :now),"
            " (SELECT count(*) FROM password_resets WHERE used=0 AND expires > :now),"
            " (SELECT count(*) FROM login_failures)", {"now": now})
        return PortalCounts(*(int(value) for value in row))
