"""Contract: each MX host's downgrade memory and the MTA-STS negative cache and refresh list
(KnowledgeStore)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.storage.protocols import CachedSTSPolicy, Storage
from tests.storage.helpers import FakeClock


def test_a_secure_sighting_records_when_starttls_and_verification_were_seen(
        storage: Storage, clock: FakeClock) -> None:
    storage.record_host_security("MX.Secure.test", starttls=True, verified=True)
    known = storage.host_security("mx.secure.test")
    assert known is not None
    assert (known.host, known.starttls_seen, known.verified_seen) == (
        "mx.secure.test", clock.now, clock.now)
    assert known.downgraded_since is None


def test_an_unverified_sighting_keeps_when_the_host_last_verified(
        storage: Storage, clock: FakeClock) -> None:
    storage.record_host_security("mx.test", starttls=True, verified=True)
    verified_at = clock.now
    clock.advance(100)
    storage.record_host_security("mx.test", starttls=True, verified=False)
    known = storage.host_security("mx.test")
    assert known is not None and (known.starttls_seen, known.verified_seen) == (
        clock.now, verified_at)


def test_a_downgrade_begins_at_its_first_sighting(storage: Storage, clock: FakeClock) -> None:
    storage.record_host_security("mx.test", starttls=True, verified=False)
    began = clock.now
    assert storage.mark_downgraded("mx.test", "no STARTTLS") == began
    clock.advance(60)
    assert storage.mark_downgraded("MX.test", "no STARTTLS again") == began
    known = storage.host_security("mx.test")
    assert known is not None
    assert (known.downgraded_since, known.downgrade_detail) == (began, "no STARTTLS again")


def test_a_secure_sighting_ends_the_downgrade(storage: Storage, clock: FakeClock) -> None:
    storage.record_host_security("mx.test", starttls=True, verified=False)
    storage.mark_downgraded("mx.test", "no STARTTLS")
    clock.advance(10)
    storage.record_host_security("mx.test", starttls=True, verified=False)
    known = storage.host_security("mx.test")
    assert known is not None and known.downgraded_since is None
    clock.advance(10)
    assert storage.mark_downgraded("mx.test", "no STARTTLS") == clock.now


def test_a_downgrade_alert_is_claimed_once_per_host_and_day(
        storage: Storage, reopen: Callable[..., Storage]) -> None:
    storage.mark_downgraded("mx.test", "no STARTTLS")
    other_node = reopen()
    assert storage.claim_downgrade_alert("mx.test", "2026-12-02")
    assert not other_node.claim_downgrade_alert("MX.test", "2026-12-02")
    assert other_node.claim_downgrade_alert("mx.test", "2026-12-03")
    known = storage.host_security("mx.test")
    assert known is not None and known.alerted_day == "2026-12-03"


def test_no_alert_is_claimed_for_a_host_nothing_is_known_about(storage: Storage) -> None:
    assert not storage.claim_downgrade_alert("unknown.test", "2026-12-02")


def test_forgetting_a_host_clears_its_memory_and_its_tls_cache_rows(storage: Storage) -> None:
    storage.record_host_security("mx.test", starttls=True, verified=True)
    storage.record_host_tls("a.test", "mx.test", True, True, "")
    storage.record_host_tls("a.test", "mx2.test", True, True, "")
    assert storage.forget_host("MX.test")
    assert storage.host_security("mx.test") is None
    assert [h.host for h in storage.host_tls_since("a.test", 0)] == ["mx2.test"]
    assert not storage.forget_host("mx.test")


def test_sts_failures_in_a_row_back_off_exponentially_up_to_the_limit(
        storage: Storage, clock: FakeClock) -> None:
    delays = []
    for _ in range(5):
        failure = storage.record_sts_failure("Fail.test", "id1", "HTTP 500", 60, 300)
        delays.append(failure.retry_at - clock.now)
    assert delays == [60, 120, 240, 300, 300]
    assert storage.sts_failure("fail.test") == failure
    assert (failure.failures, failure.detail, failure.policy_id) == (5, "HTTP 500", "id1")


def test_an_sts_failure_for_a_new_policy_id_starts_over(storage: Storage,
                                                          clock: FakeClock) -> None:
    storage.record_sts_failure("fail.test", "id1", "timeout", 60, 300)
    storage.record_sts_failure("fail.test", "id1", "timeout", 60, 300)
    failure = storage.record_sts_failure("fail.test", "id2", "timeout", 60, 300)
    assert (failure.failures, failure.retry_at) == (1, clock.now + 60)


def test_clearing_an_sts_failure_forgets_it(storage: Storage) -> None:
    storage.record_sts_failure("fail.test", "id1", "timeout", 60, 300)
    storage.clear_sts_failure("FAIL.test")
    assert storage.sts_failure("fail.test") is None


def test_policies_are_due_for_refresh_after_a_fraction_of_max_age_until_expiry(
        storage: Storage, clock: FakeClock) -> None:
    now = clock.now
    storage.put_sts_policy("young.test", CachedSTSPolicy("a", "enforce", ("mx",), 1000, now))
    storage.put_sts_policy("old.test", CachedSTSPolicy("b", "enforce", ("mx",), 1000, now - 800))
    storage.put_sts_policy("gone.test", CachedSTSPolicy("c", "enforce", ("mx",), 1000,
                                                        now - 1000))
    assert storage.sts_policies_to_refresh(now, 0.75) == ["old.test"]


def test_hosts_not_seen_since_the_cutoff_are_forgotten(storage: Storage,
                                                       clock: FakeClock) -> None:
    storage.record_host_security("mx.old.test", starttls=True, verified=True)
    storage.record_host_tls("old.test", "mx.old.test", True, True, "")
    clock.advance(100)
    cutoff = clock.now
    clock.advance(100)
    storage.record_host_security("mx.new.test", starttls=True, verified=False)
    storage.record_host_tls("new.test", "mx.new.test", True, False, "")
    assert storage.forget_stale_hosts(cutoff) == 2
    assert storage.host_security("mx.old.test") is None
    assert storage.host_tls_since("old.test", 0) == []
    assert storage.host_security("mx.new.test") is not None
    assert [h.host for h in storage.host_tls_since("new.test", 0)] == ["mx.new.test"]


def test_a_host_seen_secure_after_the_cutoff_is_kept_while_it_is_downgraded(
        storage: Storage, clock: FakeClock) -> None:
    cutoff = clock.now
    clock.advance(10)
    storage.record_host_security("mx.test", starttls=True, verified=True)
    storage.mark_downgraded("mx.test", "no-starttls")
    assert storage.forget_stale_hosts(cutoff) == 0
    known = storage.host_security("mx.test")
    assert known is not None and known.downgraded_since is not None
