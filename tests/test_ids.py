"""Identifiers that admins copy into commands and recipients open in links."""

from __future__ import annotations

from gateway.storage.store import new_pickup_id, new_queue_id


def test_pickup_ids_never_start_with_a_dash_a_command_line_would_read_as_an_option() -> None:
    # One id in 64 would start with "-" by chance: 5,000 draws find it if it can happen.
    assert not [i for i in (new_pickup_id() for _ in range(5000)) if i.startswith("-")]


def test_pickup_ids_are_long_and_distinct() -> None:
    ids = {new_pickup_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 for i in ids)


def test_queue_ids_sort_by_arrival() -> None:
    first, second = new_queue_id(), new_queue_id()
    assert first[:11] <= second[:11]
