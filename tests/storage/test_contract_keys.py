"""Contract: the key-encryption keys (KeyStore). Every pickup's data key is wrapped by the KEK
of its expiry epoch (UTC day), made on demand; purge destroys a KEK once its epoch is over
and nothing it wraps is left, and audits it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.storage.protocols import KEY_DESTROYED, KeyUsage, Storage
from gateway.storage.store import Route
from gateway.vault.crypto import DecryptionError
from gateway.vault.epochs import DAY
from gateway.vault.expiry import purge
from tests.storage.helpers import FakeClock

SENDER, PAT = "doctor@clinic.test", "pat@patients.test"
RAW = b"Subject: Lab\r\n\r\nresults 42\r\n"
# The contract suite's clock starts at 2023-11-14 22:13:20 UTC.
NOV_15, NOV_16 = "e20231115g0", "e20231116g0"
END_OF_NOV_15 = 1_700_092_800.0  # 2023-11-16 00:00 UTC


def stored(storage: Storage, expires_in: float) -> str:
    queue_id = storage.enqueue(SENDER, [Route(PAT, True, "pickup")], RAW)
    return storage.store_pickup(queue_id, SENDER, PAT, storage.clock() + expires_in)


def key_of(storage: Storage, pickup_id: str) -> str:
    [pickup] = [p for p in storage.list_pickups() if p.id == pickup_id]
    return pickup.key_id


def test_a_pickup_is_wrapped_by_the_key_of_its_expiry_day(storage: Storage) -> None:
    assert key_of(storage, stored(storage, DAY)) == NOV_15
    assert key_of(storage, stored(storage, 1.5 * DAY)) == NOV_16


def test_pickups_expiring_on_one_day_share_its_key(storage: Storage) -> None:
    first, second = stored(storage, DAY), stored(storage, DAY + 3600)
    assert key_of(storage, first) == key_of(storage, second) == NOV_15
    assert [u.key_id for u in storage.key_usage()] == [NOV_15]


def test_key_usage_counts_the_pickups_each_key_wraps(storage: Storage,
                                                     clock: FakeClock) -> None:
    stored(storage, DAY)
    stored(storage, DAY + 60)
    stored(storage, 1.5 * DAY)
    assert storage.key_usage() == [KeyUsage(NOV_15, 2, clock.now + DAY + 60),
                                   KeyUsage(NOV_16, 1, clock.now + 1.5 * DAY)]


def test_a_rotation_gives_later_pickups_of_the_day_a_new_key(storage: Storage) -> None:
    before = stored(storage, DAY)
    assert storage.rotate_keys() == 1
    after = stored(storage, DAY)
    assert (key_of(storage, before), key_of(storage, after)) == (NOV_15, "e20231115g1")
    assert storage.open_pickup(before) == storage.open_pickup(after) == RAW


def test_another_opening_finds_the_key_one_made(storage: Storage,
                                                reopen: Callable[..., Storage]) -> None:
    pickup_id = stored(storage, DAY)
    other = reopen()
    assert other.open_pickup(pickup_id) == RAW
    assert key_of(other, stored(other, DAY)) == NOV_15


def test_purge_keeps_a_key_until_its_epoch_is_over(storage: Storage, clock: FakeClock) -> None:
    stored(storage, DAY)
    clock.advance(DAY)
    assert purge(storage) == (1, [])  # the day's last message is gone; the day is not
    assert [u.key_id for u in storage.key_usage()] == [NOV_15]


def test_purge_destroys_the_key_of_an_epoch_that_is_over_and_empty(
        storage: Storage, clock: FakeClock) -> None:
    stored(storage, DAY)
    later = stored(storage, 1.5 * DAY)
    clock.now = END_OF_NOV_15
    assert purge(storage) == (1, [NOV_15])
    assert [u.key_id for u in storage.key_usage()] == [NOV_16]
    assert storage.open_pickup(later) == RAW


def test_a_destroyed_key_is_gone_for_every_opening(storage: Storage, clock: FakeClock,
                                                   reopen: Callable[..., Storage]) -> None:
    pickup_id = stored(storage, DAY)
    sealed_copy_reader = reopen()
    clock.now = END_OF_NOV_15
    purge(storage)
    assert not storage.destroy_key(NOV_15, "test", "again")  # nothing left to destroy
    assert NOV_15 not in [u.key_id for u in sealed_copy_reader.key_usage()]
    with pytest.raises((KeyError, DecryptionError)):
        sealed_copy_reader.open_pickup(pickup_id)


def test_key_destruction_is_audited_with_its_epoch(storage: Storage, clock: FakeClock) -> None:
    stored(storage, DAY)
    clock.now = END_OF_NOV_15 + 5
    purge(storage)
    [event] = storage.key_destructions()
    assert (event.pickup_id, event.event, event.client, event.detail, event.at) == (
        f"key:{NOV_15}", KEY_DESTROYED, "purge", "epoch 2023-11-15", END_OF_NOV_15 + 5)
    assert storage.audit_events(f"key:{NOV_15}") == [event]


def test_a_key_wrapping_nothing_stays_until_its_epoch_is_over(storage: Storage,
                                                              clock: FakeClock) -> None:
    stored(storage, DAY)
    storage.rotate_keys()  # the day's g0 key now wraps one message, and gets no more
    stored(storage, DAY)
    clock.now = END_OF_NOV_15 - 1
    assert purge(storage) == (2, [])
    clock.now = END_OF_NOV_15
    assert purge(storage) == (0, [NOV_15, "e20231115g1"])
