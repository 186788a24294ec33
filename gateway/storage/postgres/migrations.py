"""Schema migrations for PostgreSQL: named steps, each applied once in its own transaction
together with the row in `migrations` that records it, so a failed step leaves the database
as it was.

Every step runs under a transaction-level advisory lock: when several nodes start at the
same moment, one applies a step while the others wait, then find it recorded and skip it.

The tables follow the SQLite schema (gateway/storage/schema.py) so that both back-ends keep
the same facts; times are float seconds since the epoch (double precision), like SQLite's,
never timestamptz, so no time zone can creep in. Text that is ordered or compared as an id
uses the "C" collation: byte order, as in SQLite, whatever the database's locale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from gateway.storage.schema import MigrationError

LOCK_NAME = "sealgate:migrations"
ID = 'text COLLATE "C"'


@dataclass(frozen=True)
class Migration:
    name: str
    statements: tuple[str, ...]


MIGRATIONS = [
    Migration("create_queue", (
        f"""CREATE TABLE messages (
            id {ID} PRIMARY KEY, sender text NOT NULL, received double precision NOT NULL,
            size bigint NOT NULL, spool text NOT NULL, client text NOT NULL DEFAULT '',
            smtputf8 boolean NOT NULL DEFAULT false)""",
        f"""CREATE TABLE recipients (
            seq bigserial UNIQUE, message_id {ID} NOT NULL REFERENCES messages (id),
            rcpt {ID} NOT NULL, domain text NOT NULL, confidential boolean NOT NULL,
            mode text NOT NULL, reason text NOT NULL DEFAULT '', state text NOT NULL,
            attempts integer NOT NULL DEFAULT 0, next_attempt double precision NOT NULL,
            last_reply text NOT NULL DEFAULT '', updated double precision NOT NULL,
            claimed_by text, lease_until double precision,
            PRIMARY KEY (message_id, rcpt))""",
        "CREATE INDEX recipients_due ON recipients (state, next_attempt)",
        f"""CREATE TABLE attempts (
            id bigserial PRIMARY KEY, message_id {ID} NOT NULL, rcpt {ID} NOT NULL,
            at double precision NOT NULL, host text NOT NULL DEFAULT '',
            address text NOT NULL DEFAULT '', reply text NOT NULL DEFAULT '',
            tls_version text, cipher text, cert_subject text NOT NULL DEFAULT '',
            cert_issuer text NOT NULL DEFAULT '', verified boolean NOT NULL DEFAULT false,
            reason text NOT NULL DEFAULT '')""",
        "CREATE INDEX attempts_message ON attempts (message_id)",
    )),
    Migration("create_blob_chunks", (
        # Spool copies and encrypted pickups, cut into rows of at most 1 MiB so that neither
        # side ever holds a whole message. Encrypted data does not compress: EXTERNAL stores
        # it out of line without trying.
        f"""CREATE TABLE blob_chunks (
            blob {ID} NOT NULL, seq integer NOT NULL, data bytea NOT NULL,
            PRIMARY KEY (blob, seq))""",
        "ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    )),
    Migration("create_pickups", (
        f"""CREATE TABLE pickups (
            seq bigserial UNIQUE, id {ID} PRIMARY KEY, message_id {ID} NOT NULL,
            sender text NOT NULL, recipient {ID} NOT NULL, created double precision NOT NULL,
            expires double precision NOT NULL, key_id text NOT NULL, wrapped_key bytea NOT NULL,
            blob {ID} NOT NULL, read_at double precision, size bigint NOT NULL,
            kind text NOT NULL DEFAULT 'message', thread_id {ID},
            replied_at double precision)""",
        "CREATE INDEX pickups_recipient ON pickups (recipient)",
        "CREATE INDEX pickups_expires ON pickups (expires)",
        "CREATE INDEX pickups_thread ON pickups (thread_id)",
    )),
    Migration("create_accounts", (
        f"""CREATE TABLE users (
            address {ID} PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
            password_hash text NOT NULL, created double precision NOT NULL,
            password_changed double precision NOT NULL, time_zone text NOT NULL DEFAULT 'UTC')""",
        f"""CREATE TABLE verifications (
            id bigserial PRIMARY KEY, address {ID} NOT NULL, code_hash text NOT NULL,
            created double precision NOT NULL, expires double precision NOT NULL,
            attempts integer NOT NULL DEFAULT 0, used boolean NOT NULL DEFAULT false)""",
        "CREATE INDEX verifications_address ON verifications (address)",
        f"""CREATE TABLE sessions (
            token_hash {ID} PRIMARY KEY, address {ID} NOT NULL,
            created double precision NOT NULL, last_seen double precision NOT NULL)""",
        "CREATE INDEX sessions_address ON sessions (address)",
        f"""CREATE TABLE password_resets (
            token_hash {ID} PRIMARY KEY, address {ID} NOT NULL, pickup_id text NOT NULL,
            created double precision NOT NULL, expires double precision NOT NULL,
            used boolean NOT NULL DEFAULT false)""",
        "CREATE INDEX password_resets_address ON password_resets (address)",
        f"""CREATE TABLE login_failures (
            id bigserial PRIMARY KEY, key {ID} NOT NULL, at double precision NOT NULL)""",
        "CREATE INDEX login_failures_key ON login_failures (key, at)",
        f"""CREATE TABLE audit (
            id bigserial PRIMARY KEY, pickup_id {ID} NOT NULL, at double precision NOT NULL,
            event text NOT NULL, client text NOT NULL DEFAULT '',
            detail text NOT NULL DEFAULT '')""",
        "CREATE INDEX audit_pickup ON audit (pickup_id)",
    )),
    Migration("create_delivery_knowledge", (
        f"""CREATE TABLE tls_cache (
            domain {ID} NOT NULL, host {ID} NOT NULL, starttls boolean NOT NULL,
            verified boolean NOT NULL, seen double precision NOT NULL, detail text NOT NULL,
            PRIMARY KEY (domain, host))""",
        f"""CREATE TABLE mta_sts_cache (
            domain {ID} PRIMARY KEY, policy_id text NOT NULL, mode text NOT NULL,
            mx text NOT NULL, max_age bigint NOT NULL, fetched double precision NOT NULL)""",
    )),
    Migration("create_keys", (
        # Key-encryption keys shared by every node, each wrapped by the master key that
        # lives outside the database (gateway/storage/postgres/keys.py).
        f"""CREATE TABLE keys (
            seq bigserial UNIQUE, id {ID} PRIMARY KEY, master_id text NOT NULL,
            wrapped bytea NOT NULL, created double precision NOT NULL)""",
    )),
    Migration("blob_chunks_written", (
        # When each chunk was written, by the database's clock (the same for every node):
        # the queue's debris sweep leaves young content alone (it may belong to a message
        # being accepted). A constant default first, so existing rows are not rewritten.
        "ALTER TABLE blob_chunks ADD COLUMN written double precision NOT NULL DEFAULT 0",
        "ALTER TABLE blob_chunks ALTER COLUMN written"
        " SET DEFAULT extract(epoch FROM clock_timestamp())",
        # Leases: renewals and still_claimed look up one owner's claims.
        "CREATE INDEX recipients_claimed ON recipients (claimed_by) WHERE state = 'delivering'",
    )),
    Migration("portal_user_language", (
        # The portal language a recipient chose; '' = not chosen (Accept-Language decides).
        "ALTER TABLE users ADD COLUMN language text NOT NULL DEFAULT ''",
    )),
    Migration("create_sender_links", (
        # The sender's receipt links: the hash of each secret, bound to a message and sender.
        f"""CREATE TABLE sender_links (
            link_id {ID} PRIMARY KEY, secret_hash text NOT NULL, message_id {ID} NOT NULL,
            sender text NOT NULL, created double precision NOT NULL,
            expires double precision NOT NULL, revoked_at double precision)""",
        "CREATE INDEX sender_links_expires ON sender_links (expires)",
        "CREATE INDEX IF NOT EXISTS pickups_message ON pickups (message_id)",
    )),
    Migration("delivery_status_notifications", (
        # RFC 3461: what the sender asked of DSNs, per message (RET, ENVID) and per
        # recipient (NOTIFY, ORCPT), and whether the policy asks for a receipt.
        "ALTER TABLE messages ADD COLUMN dsn_ret text NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN dsn_envid text NOT NULL DEFAULT ''",
        "ALTER TABLE recipients ADD COLUMN dsn_notify text NOT NULL DEFAULT ''",
        "ALTER TABLE recipients ADD COLUMN dsn_orcpt text NOT NULL DEFAULT ''",
        "ALTER TABLE recipients ADD COLUMN receipt boolean NOT NULL DEFAULT false",
    )),
    Migration("epoch_keys", (
        # A KEK per expiry epoch, destroyed by purge once it wraps nothing any more, each
        # wrapped by its epoch's key from the nodes' epoch chain (epoch_chain.py); in one
        # row the master key's id, the rotation generation and the furthest chain link any
        # node reached (keys.py).
        """CREATE TABLE key_ring (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            master_id text NOT NULL, generation integer NOT NULL DEFAULT 0,
            chain_day date, chain_check text)""",
        "INSERT INTO key_ring (master_id) SELECT master_id FROM keys ORDER BY seq DESC LIMIT 1",
        f"""CREATE TABLE epoch_keys (
            id {ID} PRIMARY KEY, wrapped_by text NOT NULL, wrapped bytea NOT NULL,
            created double precision NOT NULL)""",
        # Purge counts the pickups each KEK still wraps.
        "CREATE INDEX pickups_key ON pickups (key_id)",
    )),
    Migration("downgrade_memory_and_sts_failures", (
        # Per MX host: when it last did STARTTLS and last verified, and the downgrade it is
        # in (delivery.downgrade_protection); per domain: failed MTA-STS fetches.
        f"""CREATE TABLE host_security (
            host {ID} PRIMARY KEY, starttls_seen double precision,
            verified_seen double precision, downgraded_since double precision,
            downgrade_detail text NOT NULL DEFAULT '', alerted_day text NOT NULL DEFAULT '')""",
        f"""CREATE TABLE mta_sts_failures (
            domain {ID} PRIMARY KEY, policy_id text NOT NULL, failures integer NOT NULL,
            detail text NOT NULL, retry_at double precision NOT NULL)""",
    )),
    Migration("create_tls_reporting", (
        # RFC 8460 reports: delivery sessions counted per policy domain, day, policy and
        # result; which reports are done; report addresses that failed (their back-off).
        """CREATE TABLE tls_sessions (
            day text COLLATE "C" NOT NULL, policy_domain text NOT NULL,
            policy_type text NOT NULL, policy_string text NOT NULL, mx_host text NOT NULL,
            result_type text NOT NULL, sending_ip text NOT NULL, receiving_mx text NOT NULL,
            receiving_ip text NOT NULL, detail text NOT NULL, count bigint NOT NULL,
            PRIMARY KEY (day, policy_domain, policy_type, policy_string, mx_host,
                         result_type, sending_ip, receiving_mx, receiving_ip))""",
        "CREATE INDEX tls_sessions_domain ON tls_sessions (policy_domain, day)",
        """CREATE TABLE tls_reports_done (
            policy_domain text NOT NULL, day text COLLATE "C" NOT NULL, outcome text NOT NULL,
            at double precision NOT NULL, PRIMARY KEY (policy_domain, day))""",
        """CREATE TABLE report_target_failures (
            target text PRIMARY KEY, failures integer NOT NULL,
            retry_at double precision NOT NULL, detail text NOT NULL)""",
    )),
    Migration("messages_requiretls", (
        # Received with REQUIRETLS (RFC 8689), and "TLS-Required: No" honoured.
        "ALTER TABLE messages ADD COLUMN requiretls boolean NOT NULL DEFAULT false",
        "ALTER TABLE messages ADD COLUMN tls_optional boolean NOT NULL DEFAULT false",
    )),
]


def migrate(conn: psycopg.Connection[tuple[object, ...]],
            steps: list[Migration] | None = None) -> list[str]:
    """Apply every step of STEPS (default: MIGRATIONS) not yet recorded, in order; returns
    the names this call applied (a node that started second gets [])."""
    applied = []
    for step in MIGRATIONS if steps is None else steps:
        if _apply(conn, step):
            applied.append(step.name)
    return applied


def _apply(conn: psycopg.Connection[tuple[object, ...]], step: Migration) -> bool:
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (LOCK_NAME,))
            conn.execute("CREATE TABLE IF NOT EXISTS migrations"
                         " (name text PRIMARY KEY, applied double precision NOT NULL)")
            if conn.execute("SELECT 1 FROM migrations WHERE name = %s",
                            (step.name,)).fetchone():
                return False
            for statement in step.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO migrations (name, applied) VALUES (%s, %s)",
                         (step.name, time.time()))
    except psycopg.Error as exc:
        raise MigrationError(f"database schema step {step.name!r} failed and was rolled back,"
                             f" the database is unchanged: {exc}") from exc
    return True
