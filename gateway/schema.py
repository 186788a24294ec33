"""Schema migrations as an ordered registry: each runs once, in order, recorded by number."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlite_utils import Database

Migration = Callable[[Database], None]
MIGRATIONS: list[Migration] = []


def migration(func: Migration) -> Migration:
    MIGRATIONS.append(func)
    return func


@migration
def create_queue(db: Database) -> None:
    db["messages"].create(
        {"id": str, "sender": str, "received": float, "size": int, "spool": str, "client": str},
        pk="id",
    )
    db["recipients"].create(
        {
            "message_id": str, "rcpt": str, "domain": str, "confidential": int, "mode": str,
            "reason": str, "state": str, "attempts": int, "next_attempt": float,
            "last_reply": str, "updated": float,
        },
        pk=("message_id", "rcpt"),
        foreign_keys=[("message_id", "messages", "id")],
    )
    db["recipients"].create_index(["state", "next_attempt"])


@migration
def create_pickups(db: Database) -> None:
    db["pickups"].create(
        {
            "id": str, "message_id": str, "sender": str, "recipient": str, "created": float,
            "expires": float, "key_id": str, "wrapped_key": bytes, "blob": str,
            "read_at": float, "size": int,
        },
        pk="id",
    )
    db["pickups"].create_index(["recipient"])
    db["pickups"].create_index(["expires"])


@migration
def create_accounts(db: Database) -> None:
    db["users"].create(
        {
            "address": str, "first_name": str, "last_name": str, "password_hash": str,
            "created": float, "password_changed": float,
        },
        pk="address",
    )
    db["verifications"].create(
        {"id": int, "address": str, "code_hash": str, "created": float, "expires": float,
         "attempts": int, "used": int},
        pk="id",
    )
    db["verifications"].create_index(["address"])
    db["sessions"].create(
        {"token_hash": str, "address": str, "created": float, "last_seen": float},
        pk="token_hash",
    )
    db["sessions"].create_index(["address"])
    db["audit"].create(
        {"id": int, "pickup_id": str, "at": float, "event": str, "client": str, "detail": str},
        pk="id",
    )
    db["audit"].create_index(["pickup_id"])


def migrate(conn: sqlite3.Connection) -> None:
    db = Database(conn)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    done = row[0] or 0
    for number, step in enumerate(MIGRATIONS, start=1):
        if number > done:
            with conn:
                step(db)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))


@migration
def create_delivery_knowledge(db: Database) -> None:
    """Every attempt with its TLS facts, and what deliveries and probes learned per MX host."""
    db["attempts"].create(
        {
            "id": int, "message_id": str, "rcpt": str, "at": float, "host": str, "address": str,
            "reply": str, "tls_version": str, "cipher": str, "cert_subject": str,
            "cert_issuer": str, "verified": int, "reason": str,
        },
        pk="id",
    )
    db["attempts"].create_index(["message_id"])
    db["tls_cache"].create(
        {"domain": str, "host": str, "starttls": int, "verified": int, "seen": float, "detail": str},
        pk=("domain", "host"),
    )
    db["mta_sts_cache"].create(
        {"domain": str, "policy_id": str, "mode": str, "mx": str, "max_age": int, "fetched": float},
        pk="domain",
    )


@migration
def portal_threads_accounts_and_throttle(db: Database) -> None:
    """Pickup portal: replies stored in the thread of the message they answer, the user's
    time zone, single-use password-reset links, and failed sign-ins for throttling."""
    # kind: 'message' (stored by the gateway) or 'reply' (written in the portal);
    # thread_id: for a reply, the id of the message it belongs under.
    db["pickups"].add_column("kind", str, not_null_default="message")
    db["pickups"].add_column("thread_id", str)
    db["pickups"].add_column("replied_at", float)
    db["pickups"].create_index(["thread_id"])
    db["users"].add_column("time_zone", str, not_null_default="UTC")
    db["password_resets"].create(
        {"token_hash": str, "address": str, "pickup_id": str, "created": float,
         "expires": float, "used": int},
        pk="token_hash",
    )
    db["password_resets"].create_index(["address"])
    db["login_failures"].create({"id": int, "key": str, "at": float}, pk="id")
    db["login_failures"].create_index(["key", "at"])


@migration
def messages_smtputf8(db: Database) -> None:
    """Whether a message was received with SMTPUTF8 (RFC 6531): it may only go to next hops
    that offer it."""
    db["messages"].add_column("smtputf8", int, not_null_default=0)
