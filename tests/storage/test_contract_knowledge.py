"""Contract: TLS facts per MX host and cached MTA-STS policies (KnowledgeStore)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.protocols import CachedSTSPolicy, Storage
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import STSCache, STSMode, STSPolicy
from tests.storage.helpers import FakeClock

POLICY = CachedSTSPolicy("abc", "enforce", ("mx.a.test", "*.b.test"), 3600, 1_700_000_000.0)


def test_host_tls_is_recorded_and_read_back_case_insensitively(storage: Storage) -> None:
    storage.record_host_tls("Tls.Test", "MX.tls.test", True, False, "TLSv1.3")
    [host] = storage.host_tls_since("tls.test", storage.clock() - 1)
    assert (host.host, host.starttls, host.verified, host.detail) == (
        "mx.tls.test", True, False, "TLSv1.3")
    assert host.seen == storage.clock()


def test_recording_a_host_again_replaces_what_was_known(storage: Storage,
                                                         clock: FakeClock) -> None:
    storage.record_host_tls("tls.test", "mx.tls.test", True, True, "first")
    clock.advance(10)
    storage.record_host_tls("tls.test", "mx.tls.test", False, False, "second")
    [host] = storage.host_tls_since("tls.test", 0)
    assert (host.starttls, host.detail, host.seen) == (False, "second", clock.now)


def test_host_tls_older_than_since_is_left_out(storage: Storage, clock: FakeClock) -> None:
    storage.record_host_tls("tls.test", "old.tls.test", True, True, "")
    clock.advance(100)
    storage.record_host_tls("tls.test", "new.tls.test", True, True, "")
    assert [h.host for h in storage.host_tls_since("tls.test", clock.now - 50)] == ["new.tls.test"]


def test_host_tls_of_other_domains_is_not_mixed_in(storage: Storage) -> None:
    storage.record_host_tls("a.test", "mx.shared.test", True, True, "")
    assert storage.host_tls_since("b.test", 0) == []


def test_tls_cache_says_none_offer_starttls_only_when_every_host_was_seen_without(
        storage: Storage, clock: FakeClock) -> None:
    cache = TLSCache(storage, ttl=60)
    storage.record_host_tls("plain.test", "mx1.plain.test", False, False, "")
    assert not cache.none_offer_starttls("plain.test", ["mx1.plain.test", "mx2.plain.test"])
    storage.record_host_tls("plain.test", "mx2.plain.test", False, False, "")
    assert cache.none_offer_starttls("plain.test", ["MX1.plain.test", "mx2.plain.test"])
    clock.advance(61)
    assert not cache.none_offer_starttls("plain.test", ["mx1.plain.test", "mx2.plain.test"])


def test_sts_policy_round_trips_with_every_field(storage: Storage) -> None:
    storage.put_sts_policy("Cache.Test", POLICY)
    assert storage.get_sts_policy("cache.test") == POLICY


def test_sts_policy_put_again_replaces_the_old_one(storage: Storage) -> None:
    storage.put_sts_policy("cache.test", POLICY)
    newer = CachedSTSPolicy("def", "none", (), 60, POLICY.fetched + 5)
    storage.put_sts_policy("cache.test", newer)
    assert storage.get_sts_policy("cache.test") == newer


def test_sts_policy_delete_forgets_it(storage: Storage) -> None:
    storage.put_sts_policy("cache.test", POLICY)
    storage.delete_sts_policy("CACHE.test")
    assert storage.get_sts_policy("cache.test") is None


def test_unknown_domain_has_no_sts_policy(storage: Storage) -> None:
    assert storage.get_sts_policy("nothing.test") is None


def test_sts_cache_returns_a_policy_until_max_age_has_passed(storage: Storage,
                                                              clock: FakeClock) -> None:
    cache = STSCache(storage, clock=clock)
    policy = STSPolicy("abc", STSMode.ENFORCE, ["mx.a.test", "*.b.test"], 3600)
    cache.put("Cache.Test", policy)
    clock.advance(3599)
    assert cache.get("cache.test") == policy
    clock.advance(1)
    assert cache.get("cache.test") is None


def test_sts_cache_treats_a_mode_it_does_not_know_as_no_policy(storage: Storage) -> None:
    storage.put_sts_policy("new.test", CachedSTSPolicy("x", "stricter", (), 3600,
                                                       storage.clock()))
    assert STSCache(storage, clock=storage.clock).get("new.test") is None


def test_knowledge_survives_reopening(storage: Storage, reopen: Callable[[], Storage]) -> None:
    storage.put_sts_policy("cache.test", POLICY)
    storage.record_host_tls("tls.test", "mx.tls.test", True, True, "")
    again = reopen()
    assert again.get_sts_policy("cache.test") == POLICY
    assert [h.host for h in again.host_tls_since("tls.test", 0)] == ["mx.tls.test"]
