"""The connection pool every PostgreSQL part shares, and its two units of work: a
transaction (for writes and reads that must agree) and a single read.

Connections are checked when taken from the pool, so a node whose database restarted gets
a fresh connection on its next unit of work instead of an error on every later one; the
unit that was running when the connection dropped fails (OperationalError), which callers
map to a temporary error (storage_errors())."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool

Row = DictRow
Cursor = psycopg.Cursor[DictRow]
CONNECT_TIMEOUT = 10  # seconds to reach the server before a unit of work fails
# Seconds a unit of work waits for a connection (all busy, or the server unreachable) before
# it fails: short enough for an SMTP client to get its 451 rather than time out itself.
POOL_TIMEOUT = 15.0
# Seconds the pool keeps trying (with a growing back-off) to replace a connection it lost;
# then it gives up until the next unit of work asks for one, and starts afresh. Short, so
# that after a database restart the back-off has not grown to half a minute: a node is
# back within seconds of its server.
RECONNECT_TIMEOUT = 10.0


class Database:
    """A pool of autocommit connections to URL; each unit of work borrows one."""

    def __init__(self, url: str, max_size: int = 8, timeout: float = POOL_TIMEOUT) -> None:
        self.url = url
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=max_size, open=False, name="sealgate",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            check=ConnectionPool.check_connection, timeout=timeout,
            reconnect_timeout=RECONNECT_TIMEOUT)

    def open(self) -> None:
        self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self.pool.connection() as conn, conn.transaction(), \
                conn.cursor(row_factory=dict_row) as cursor:
            yield cursor

    def query(self, statement: str, params: tuple[Any, ...] | dict[str, Any] = ()
              ) -> list[Row]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    def fetch_binary(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The first row, in binary (bytea without the hex encoding that would double it on
        the wire), on a connection borrowed for this one statement."""
        with self.pool.connection() as conn:
            return _fetch_binary(conn, statement, params)


FetchBinary = Callable[[str, tuple[Any, ...]], tuple[Any, ...] | None]


def fetch_in(cursor: Cursor) -> FetchBinary:
    """Database.fetch_binary on CURSOR's connection, inside its transaction: a unit of work
    that holds a connection must not wait for a second one (with every connection of the
    pool held that way, none would ever come back)."""
    return lambda statement, params: _fetch_binary(cursor.connection, statement, params)


def _fetch_binary(conn: psycopg.Connection[Any], statement: str, params: tuple[Any, ...]
                  ) -> tuple[Any, ...] | None:
    with conn.cursor(binary=True) as cursor:
        cursor.execute(statement, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
        return row


def lock_key(cursor: Cursor, name: str) -> None:
    """Serialise this transaction with every other one (on any node) locking NAME, until it
    ends: for check-then-write units such as issuing a code within its limits."""
    cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


class PostgresPart:
    """A mixin of PostgresStorage: the SQL of one concern over the shared pool."""

    db: Database
    clock: Callable[[], float]
