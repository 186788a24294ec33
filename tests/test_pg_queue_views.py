"""The admin's views of the queue on PostgreSQL beyond today's QueueInspection Protocol:
messages_to, which the queue branch adds to it (its contract test then covers both)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.postgres.storage import PostgresStorage
from gateway.storage.store import Route

SENDER = "doctor@clinic.test"


def test_messages_to_a_recipient_are_listed_oldest_first(
        open_pg: Callable[..., PostgresStorage]) -> None:
    now = [1_700_000_000.0]
    storage = open_pg(clock=lambda: now[0])
    first = storage.enqueue(SENDER, [Route("a@plain.test"), Route("b@plain.test")], b"x\r\n")
    now[0] += 1
    storage.enqueue(SENDER, [Route("c@plain.test")], b"y\r\n")
    now[0] += 1
    second = storage.enqueue(SENDER, [Route("a@plain.test")], b"z\r\n")
    found = storage.messages_to("a@plain.test")
    assert [m.id for m in found] == [first, second]
    assert [r.rcpt for r in found[0].recipients] == ["a@plain.test", "b@plain.test"]
    assert storage.messages_to("A@plain.test") == []  # matched exactly
