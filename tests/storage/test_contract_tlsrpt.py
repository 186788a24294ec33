"""Contract: delivery sessions counted for TLS reports, reports done, and the back-off of
report addresses (TLSReportStore)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from gateway.storage.protocols import Storage, TLSSessionCount
from tests.storage.helpers import FakeClock

STS = TLSSessionCount("2026-12-01", "tls.test", "sts",
                      ("version: STSv1", "mode: enforce", "mx: mx.tls.test", "max_age: 86400"),
                      ("mx.tls.test",), "success")
FAILED = replace(STS, result_type="certificate-expired", sending_ip="127.0.0.1",
                 receiving_mx="mx.tls.test", receiving_ip="127.0.0.7",
                 detail="certificate has expired")


def test_session_counts_of_the_same_key_add_up(storage: Storage) -> None:
    storage.add_tls_sessions([STS, STS])
    storage.add_tls_sessions([replace(STS, count=3)])
    [row] = storage.tls_sessions("tls.test", "2026-12-01")
    assert row == replace(STS, count=5)


def test_failures_are_counted_apart_from_successes_with_their_details(storage: Storage) -> None:
    storage.add_tls_sessions([STS, FAILED, FAILED])
    rows = storage.tls_sessions("tls.test", "2026-12-01")
    assert sorted(rows, key=lambda r: r.result_type) == [replace(FAILED, count=2), STS]


def test_the_newest_failure_detail_is_kept(storage: Storage) -> None:
    storage.add_tls_sessions([FAILED])
    storage.add_tls_sessions([replace(FAILED, detail="certificate expired yesterday")])
    [row] = storage.tls_sessions("tls.test", "2026-12-01")
    assert (row.count, row.detail) == (2, "certificate expired yesterday")


def test_sessions_are_kept_per_domain_and_day(storage: Storage) -> None:
    storage.add_tls_sessions([STS, replace(STS, day="2026-12-02"),
                              replace(STS, policy_domain="Other.Test")])
    assert storage.tls_sessions("tls.test", "2026-12-01") == [STS]
    assert [r.policy_domain for r in storage.tls_sessions("other.test", "2026-12-01")] == [
        "other.test"]


def test_a_policy_without_strings_reads_back_empty(storage: Storage) -> None:
    none = TLSSessionCount("2026-12-01", "tls.test", "no-policy-found", (), (), "success")
    storage.add_tls_sessions([none])
    assert storage.tls_sessions("tls.test", "2026-12-01") == [none]


def test_submitted_counts_are_there_once_the_future_resolves(storage: Storage) -> None:
    storage.submit_tls_sessions([STS]).result()
    assert storage.tls_sessions("tls.test", "2026-12-01") == [STS]


def test_unreported_days_are_those_before_the_day_given_and_not_marked(
        storage: Storage) -> None:
    storage.add_tls_sessions([STS, replace(STS, policy_domain="b.test"),
                              replace(STS, day="2026-12-02")])
    assert storage.unreported_tls_days("2026-12-02") == [("b.test", "2026-12-01"),
                                                         ("tls.test", "2026-12-01")]
    storage.mark_tls_reported("tls.test", "2026-12-01", "sent")
    assert storage.unreported_tls_days("2026-12-03") == [("b.test", "2026-12-01"),
                                                         ("tls.test", "2026-12-02")]


def test_pruning_forgets_counts_and_marks_of_older_days(storage: Storage) -> None:
    storage.add_tls_sessions([STS, FAILED, replace(STS, day="2026-12-02")])
    storage.mark_tls_reported("tls.test", "2026-12-01", "sent")
    assert storage.prune_tls_sessions("2026-12-02") == 2
    assert storage.tls_sessions("tls.test", "2026-12-01") == []
    assert storage.unreported_tls_days("2026-12-03") == [("tls.test", "2026-12-02")]


def test_report_target_failures_count_up_until_cleared(storage: Storage,
                                                       clock: FakeClock) -> None:
    target = "mailto:tlsrpt@tls.test"
    assert storage.report_target_failure(target) is None
    first = storage.record_report_target_failure(target, clock.now + 3600, "refused")
    second = storage.record_report_target_failure(target, clock.now + 7200, "timed out")
    assert (first.failures, second.failures) == (1, 2)
    assert storage.report_target_failure(target) == second
    assert (second.retry_at, second.detail) == (clock.now + 7200, "timed out")
    storage.clear_report_target_failure(target)
    assert storage.report_target_failure(target) is None


def test_a_report_claimed_by_one_process_cannot_be_claimed_by_another(
        storage: Storage, reopen: Callable[..., Storage], clock: FakeClock) -> None:
    other = reopen()
    assert storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)
    assert not other.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)


def test_a_claimed_report_is_not_listed_as_unreported_until_the_claim_runs_out(
        storage: Storage, clock: FakeClock) -> None:
    storage.add_tls_sessions([STS])
    storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)
    assert storage.unreported_tls_days("2026-12-02") == []
    clock.advance(600)
    assert storage.unreported_tls_days("2026-12-02") == [("tls.test", "2026-12-01")]
    assert storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)


def test_a_released_claim_leaves_the_report_to_the_next_run(storage: Storage,
                                                            clock: FakeClock) -> None:
    storage.add_tls_sessions([STS])
    storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)
    storage.release_tls_report("tls.test", "2026-12-01")
    assert storage.unreported_tls_days("2026-12-02") == [("tls.test", "2026-12-01")]


def test_a_report_done_cannot_be_claimed_again(storage: Storage, clock: FakeClock) -> None:
    storage.add_tls_sessions([STS])
    storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)
    storage.mark_tls_reported("tls.test", "2026-12-01", "sent")
    clock.advance(3600)
    assert not storage.claim_tls_report("tls.test", "2026-12-01", clock.now + 600)
    storage.release_tls_report("tls.test", "2026-12-01")  # only a claim is released
    assert storage.unreported_tls_days("2026-12-02") == []
