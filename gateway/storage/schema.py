"""Schema migrations as an ordered registry of named steps.

Each step runs once, in its own BEGIN IMMEDIATE ... COMMIT together with the row that
records its name, so a step that fails leaves the database exactly as it was and start-up
can simply be retried once the cause is fixed. (sqlite_utils nests its own work in
savepoints when a transaction is open, so it never commits a step half-way.)

Databases written before steps had names recorded numbers 1..N in `schema_version`; those
numbers are the positions of the first steps below, which therefore never move.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []
NUMBERED = ("create_queue", "create_pickups", "create_accounts", "create_delivery_knowledge",
            "portal_threads_accounts_and_throttle")  # recorded by number before names existed


class MigrationError(OSError):
    """A schema step failed; the database is as it was before the step."""


def migration(func: Migration) -> Migration:
    MIGRATIONS.append(func)
    return func


@migration
def create_queue(db: Database) -> None:
    db.table("messages").create(
        {"id": str, "sender": str, "received": float, "size": int, "spool": str, "client": str},
        pk="id",
    )
    db.table("recipients").create(
        {
            "message_id": str, "rcpt": str, "domain": str, "confidential": int, "mode": str,
            "reason": str, "state": str, "attempts": int, "next_attempt": float,
            "last_reply": str, "updated": float,
        },
        pk=("message_id", "rcpt"),
        foreign_keys=[("message_id", "messages", "id")],
    )
    db.table("recipients").create_index(["state", "next_attempt"])


@migration
def create_pickups(db: Database) -> None:
    db.table("pickups").create(
        {
            "id": str, "message_id": str, "sender": str, "recipient": str, "created": float,
            "expires": float, "key_id": str, "wrapped_key": bytes, "blob": str,
            "read_at": float, "size": int,
        },
        pk="id",
    )
    db.table("pickups").create_index(["recipient"])
    db.table("pickups").create_index(["expires"])


@migration
def create_accounts(db: Database) -> None:
    db.table("users").create(
        {
            "address": str, "first_name": str, "last_name": str, "password_hash": str,
            "created": float, "password_changed": float,
        },
        pk="address",
    )
    db.table("verifications").create(
        {"id": int, "address": str, "code_hash": str, "created": float, "expires": float,
         "attempts": int, "used": int},
        pk="id",
    )
    db.table("verifications").create_index(["address"])
    db.table("sessions").create(
        {"token_hash": str, "address": str, "created": float, "last_seen": float},
        pk="token_hash",
    )
    db.table("sessions").create_index(["address"])
    db.table("audit").create(
        {"id": int, "pickup_id": str, "at": float, "event": str, "client": str, "detail": str},
        pk="id",
    )
    db.table("audit").create_index(["pickup_id"])


@migration
def create_delivery_knowledge(db: Database) -> None:
    """Every attempt with its TLS facts, and what deliveries and probes learned per MX host."""
    db.table("attempts").create(
        {
            "id": int, "message_id": str, "rcpt": str, "at": float, "host": str, "address": str,
            "reply": str, "tls_version": str, "cipher": str, "cert_subject": str,
            "cert_issuer": str, "verified": int, "reason": str,
        },
        pk="id",
    )
    db.table("attempts").create_index(["message_id"])
    db.table("tls_cache").create(
        {"domain": str, "host": str, "starttls": int, "verified": int, "seen": float,
         "detail": str},
        pk=("domain", "host"),
    )
    db.table("mta_sts_cache").create(
        {"domain": str, "policy_id": str, "mode": str, "mx": str, "max_age": int, "fetched": float},
        pk="domain",
    )


@migration
def portal_threads_accounts_and_throttle(db: Database) -> None:
    """Pickup portal: replies stored in the thread of the message they answer, the user's
    time zone, single-use password-reset links, and failed sign-ins for throttling."""
    # kind: 'message' (stored by the gateway) or 'reply' (written in the portal);
    # thread_id: for a reply, the id of the message it belongs under.
    db.table("pickups").add_column("kind", str, not_null_default="message")
    db.table("pickups").add_column("thread_id", str)
    db.table("pickups").add_column("replied_at", float)
    db.table("pickups").create_index(["thread_id"])
    db.table("users").add_column("time_zone", str, not_null_default="UTC")
    db.table("password_resets").create(
        {"token_hash": str, "address": str, "pickup_id": str, "created": float,
         "expires": float, "used": int},
        pk="token_hash",
    )
    db.table("password_resets").create_index(["address"])
    db.table("login_failures").create({"id": int, "key": str, "at": float}, pk="id")
    db.table("login_failures").create_index(["key", "at"])


@migration
def recipient_claim_leases(db: Database) -> None:
    """Who claimed a recipient for delivery, and until when the claim holds: requeueing at
    start-up touches only claims of a dead owner or expired leases, never live work."""
    db.table("recipients").add_column("claimed_by", str)
    db.table("recipients").add_column("lease_until", float)



@migration
def messages_smtputf8(db: Database) -> None:
    """Whether a message was received with SMTPUTF8 (RFC 6531): it may only go to next hops
    that offer it."""
    db.table("messages").add_column("smtputf8", int, not_null_default=0)


@migration
def portal_user_language(db: Database) -> None:
    """The portal language a recipient chose ("" = not chosen: Accept-Language decides)."""
    db.table("users").add_column("language", str, not_null_default="")


@migration
def create_sender_links(db: Database) -> None:
    """The sender's receipt links: the hash of each secret, bound to a message and sender."""
    db.table("sender_links").create(
        {"link_id": str, "secret_hash": str, "message_id": str, "sender": str,
         "created": float, "expires": float, "revoked_at": float},
        pk="link_id", not_null={"secret_hash", "message_id", "sender", "created", "expires"},
    )
    db.table("sender_links").create_index(["expires"])
    db.table("pickups").create_index(["message_id"], if_not_exists=True)


@migration
def delivery_status_notifications(db: Database) -> None:
    """RFC 3461: what the sender asked of DSNs, per message (RET, ENVID) and per recipient
    (NOTIFY, ORCPT), and whether the policy asks for a receipt for the recipient."""
    db.table("messages").add_column("dsn_ret", str, not_null_default="")
    db.table("messages").add_column("dsn_envid", str, not_null_default="")
    db.table("recipients").add_column("dsn_notify", str, not_null_default="")
    db.table("recipients").add_column("dsn_orcpt", str, not_null_default="")
    db.table("recipients").add_column("receipt", int, not_null_default=0)


@migration
def pickups_by_key(db: Database) -> None:
    """Purge counts the pickups each key-encryption key still wraps before destroying it."""
    db.table("pickups").create_index(["key_id"])


@migration
def downgrade_memory_and_sts_failures(db: Database) -> None:
    """Per MX host: when it last did STARTTLS and last verified, and the downgrade it is in
    (delivery.downgrade_protection); per domain: failed MTA-STS fetches (the negative cache)."""
    db.execute("CREATE TABLE host_security (host TEXT PRIMARY KEY, starttls_seen REAL,"
               " verified_seen REAL, downgraded_since REAL,"
               " downgrade_detail TEXT NOT NULL DEFAULT '',"
               " alerted_day TEXT NOT NULL DEFAULT '')")
    db.execute("CREATE TABLE mta_sts_failures (domain TEXT PRIMARY KEY, policy_id TEXT NOT NULL,"
               " failures INTEGER NOT NULL, detail TEXT NOT NULL, retry_at REAL NOT NULL)")


@migration
def create_tls_reporting(db: Database) -> None:
    """RFC 8460 reports: delivery sessions counted per policy domain, day, policy and
    result; which reports are done; report addresses that failed (their back-off)."""
    db.execute("""CREATE TABLE tls_sessions (
        day TEXT NOT NULL, policy_domain TEXT NOT NULL, policy_type TEXT NOT NULL,
        policy_string TEXT NOT NULL, mx_host TEXT NOT NULL, result_type TEXT NOT NULL,
        sending_ip TEXT NOT NULL, receiving_mx TEXT NOT NULL, receiving_ip TEXT NOT NULL,
        detail TEXT NOT NULL, count INTEGER NOT NULL,
        PRIMARY KEY (day, policy_domain, policy_type, policy_string, mx_host, result_type,
                     sending_ip, receiving_mx, receiving_ip))""")
    db.execute("CREATE INDEX tls_sessions_domain ON tls_sessions (policy_domain, day)")
    db.execute("""CREATE TABLE tls_reports_done (
        policy_domain TEXT NOT NULL, day TEXT NOT NULL, outcome TEXT NOT NULL,
        at REAL NOT NULL, PRIMARY KEY (policy_domain, day))""")
    db.execute("""CREATE TABLE report_target_failures (
        target TEXT PRIMARY KEY, failures INTEGER NOT NULL, retry_at REAL NOT NULL,
        detail TEXT NOT NULL)""")


@migration
def messages_requiretls(db: Database) -> None:
    """Per message: received with REQUIRETLS (RFC 8689: relayed only over verified TLS to
    hosts found securely and offering REQUIRETLS), and "TLS-Required: No" honoured."""
    db.table("messages").add_column("requiretls", int, not_null_default=0)
    db.table("messages").add_column("tls_optional", int, not_null_default=0)


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every step not yet recorded, in order; returns the names applied now."""
    _adopt_numbered_versions(conn)
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
    applied = []
    for step in MIGRATIONS:
        if step.__name__ not in done:
            _apply(conn, step)
            applied.append(step.__name__)
    return applied


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        step(Database(conn))
        conn.execute("INSERT INTO schema_migrations (name, applied) VALUES (?, ?)",
                     (step.__name__, time.time()))
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, Exception):
            raise MigrationError(f"database schema step {step.__name__!r} failed and was rolled"
                                 f" back, the database is unchanged: {exc}") from exc
        raise
    conn.execute("COMMIT")


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _adopt_numbered_versions(conn: sqlite3.Connection) -> None:
    """Create the table of applied names; a database that recorded numbers gets their names
    (schema_version itself is left as it was, for the code that wrote it). Writes nothing
    when there is nothing to do, so a read-only, up-to-date database still opens."""
    if "schema_migrations" in _tables(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations"
                     " (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        if "schema_version" in _tables(conn):
            numbers = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
            conn.executemany("INSERT OR IGNORE INTO schema_migrations (name, applied)"
                             " VALUES (?, ?)",
                             [(NUMBERED[n - 1], time.time()) for n in numbers
                              if 1 <= n <= len(NUMBERED)])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
