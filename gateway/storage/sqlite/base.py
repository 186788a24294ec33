"""What every SQLite part needs from the store that hosts it (Store provides each)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any


class SQLitePart:
    """A mixin of Store: the SQL of one concern, over Store's connection."""

    clock: Callable[[], float]

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError
