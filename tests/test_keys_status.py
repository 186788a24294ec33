"""When purge destroys a key-encryption key (gateway/vault/shredding.py), and how `keys list`
shows keys live and destroyed (gateway/vault/key_report.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from gateway.storage.protocols import KeyUsage
from gateway.storage.store import Route, Store, open_store
from gateway.vault.epochs import DAY, epoch_end
from gateway.vault.expiry import purge
from gateway.vault.key_report import format_key_rows, key_rows
from gateway.vault.shredding import key_status
from tests.storage.helpers import FakeClock

NOV_15 = "e20231115g0"
END_OF_NOV_15 = epoch_end(date(2023, 11, 15))


def test_an_epoch_key_may_go_when_its_day_is_over() -> None:
    status = key_status(KeyUsage(NOV_15, 0, END_OF_NOV_15 - 60))
    assert status.epoch == date(2023, 11, 15) and status.destroyed_from == END_OF_NOV_15
    assert not status.spent(END_OF_NOV_15 - 1) and status.spent(END_OF_NOV_15)


def test_a_key_that_still_wraps_a_message_is_never_spent() -> None:
    assert not key_status(KeyUsage(NOV_15, 1, END_OF_NOV_15 - 60)).spent(END_OF_NOV_15 + DAY)


def test_a_key_of_the_ring_before_epochs_goes_once_nothing_it_wraps_is_left() -> None:
    wrapping = key_status(KeyUsage("0a1b2c3d", 2, 1_700_500_000.0))
    assert wrapping.epoch is None and wrapping.destroyed_from == 1_700_500_000.0
    assert not wrapping.spent(1_800_000_000.0)
    assert key_status(KeyUsage("0a1b2c3d", 0, None)).spent(1_700_000_000.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    opened = open_store(tmp_path / "var", clock)
    yield opened
    opened.close()


def store_pickup(store: Store, expires_in: float) -> str:
    queue_id = store.enqueue("d@clinic.test", [Route("p@x.test", True, "pickup")], b"x\r\n")
    return store.store_pickup(queue_id, "d@clinic.test", "p@x.test", store.clock() + expires_in)


def test_keys_list_shows_a_live_key_with_its_epoch_count_and_destruction_date(
        store: Store, clock: FakeClock) -> None:
    store_pickup(store, DAY)
    store_pickup(store, DAY + 60)
    assert key_rows(store, clock.now) == [{
        "key_id": NOV_15, "epoch": "2023-11-15", "messages": 2, "state": "live",
        "destroyed": "2023-11-16T00:00:00Z"}]


def test_keys_list_shows_a_destroyed_key_with_its_epoch_and_when(store: Store,
                                                                 clock: FakeClock) -> None:
    store_pickup(store, DAY)
    clock.now = END_OF_NOV_15 + 30
    purge(store)
    assert key_rows(store, clock.now) == [{
        "key_id": NOV_15, "epoch": "2023-11-15", "messages": 0, "state": "destroyed",
        "destroyed": "2023-11-16T00:00:30Z"}]


def test_keys_list_text_says_when_each_key_goes(store: Store, clock: FakeClock) -> None:
    store_pickup(store, DAY)
    text = format_key_rows(key_rows(store, clock.now))
    assert text.splitlines()[1].split() == [NOV_15, "2023-11-15", "1", "from",
                                            "2023-11-16T00:00:00Z"]


def test_keys_list_text_without_keys_says_when_they_come() -> None:
    assert "made with the first message of its epoch" in format_key_rows([])
