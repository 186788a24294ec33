"""The aggregate report (RFC 8460 4.4) built from counted sessions, and the recorder that
counts them in memory and writes them in batches."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.storage import open_storage
from gateway.storage.protocols import Storage, TLSSessionCount
from gateway.tls.mta_sts import STSMode, STSPolicy
from gateway.tlsrpt.report import ReportHeader, build_report
from gateway.tlsrpt.results import (
    NO_POLICY,
    ResultType,
    Session,
    SessionRecorder,
    sts_policy,
)
from tests.tlsrpt import assert_valid_report, policy_entry, report_of_gzip

HEADER = ReportHeader("Clinic Example", "tlsrpt@clinic.test", "gateway.clinic.test")
ENFORCE = sts_policy(STSPolicy("id1", STSMode.ENFORCE, ["mx.tls.test"], 86400))
DAY_START = 1_764_547_200.0  # 2025-12-01T00:00:00Z


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Storage]:
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    opened = open_storage(config, clock=lambda: DAY_START + 3600)
    yield opened
    opened.close()


def counts(store: Storage) -> list[TLSSessionCount]:
    return store.tls_sessions("tls.test", "2025-12-01")


def test_recorded_sessions_reach_the_store_only_with_a_batch(store: Storage) -> None:
    recorder = SessionRecorder(store, flush_interval=3600)
    recorder.record("tls.test", [Session(ENFORCE, ResultType.SUCCESS)])
    recorder.record("tls.test", [Session(ENFORCE, ResultType.SUCCESS)])
    assert counts(store) == []
    written = recorder.flush()
    assert written is not None
    written.result()
    [row] = counts(store)
    assert (row.policy_type, row.result_type, row.count) == ("sts", "success", 2)


def test_a_batch_the_store_refuses_is_kept_for_the_next(tmp_path: Path) -> None:
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    closed = open_storage(config, clock=lambda: DAY_START)
    closed.close()  # its writer is gone: every batch is refused
    recorder = SessionRecorder(closed, flush_interval=3600)
    recorder.record("tls.test", [Session(ENFORCE, ResultType.SUCCESS)])
    refused = recorder.flush()
    assert refused is not None and refused.exception() is not None
    reopened = open_storage(config, clock=lambda: DAY_START)
    try:
        recorder.store = reopened
        deadline = time.monotonic() + 5  # the refused counts come back from the writer thread
        while (written := recorder.flush()) is None:
            assert time.monotonic() < deadline, "the refused counts were not kept"
            time.sleep(0.01)
        written.result()
        assert [r.count for r in reopened.tls_sessions("tls.test", "2025-12-01")] == [1]
    finally:
        reopened.close()


def build(store: Storage) -> dict[str, object]:
    return build_report(HEADER, "tls.test", "2025-12-01", counts(store)).document


def test_a_report_follows_the_rfc_schema_with_summary_and_failure_details(
        store: Storage) -> None:
    failure = Session(ENFORCE, ResultType.CERTIFICATE_EXPIRED, "mx.tls.test", "127.0.0.2",
                      "127.0.0.1", "certificate has expired")
    recorder = SessionRecorder(store)
    recorder.record("tls.test", [Session(ENFORCE, ResultType.SUCCESS)] * 3 + [failure] * 2
                    + [Session(NO_POLICY, ResultType.SUCCESS)])
    written = recorder.flush()
    assert written is not None
    written.result()
    document = build(store)
    assert_valid_report(document)
    sts = policy_entry(document, "sts")
    assert sts["summary"] == {"total-successful-session-count": 3,
                              "total-failure-session-count": 2}
    assert sts["failure-details"] == [{
        "result-type": "certificate-expired", "sending-mta-ip": "127.0.0.1",
        "receiving-mx-hostname": "mx.tls.test", "receiving-ip": "127.0.0.2",
        "failed-session-count": 2, "failure-reason-code": "certificate has expired"}]
    assert sts["policy"]["mx-host"] == ["mx.tls.test"]
    none = policy_entry(document, "no-policy-found")
    assert "policy-string" not in none["policy"] and "failure-details" not in none


def test_a_report_covers_the_whole_utc_day_and_names_the_reporter(store: Storage) -> None:
    store.add_tls_sessions([TLSSessionCount("2025-12-01", "tls.test", "no-policy-found", (),
                                            (), "success")])
    document = build(store)
    assert document["date-range"] == {"start-datetime": "2025-12-01T00:00:00Z",
                                      "end-datetime": "2025-12-01T23:59:59Z"}
    assert (document["organization-name"], document["contact-info"]) == (
        "Clinic Example", "tlsrpt@clinic.test")


def test_the_gzipped_report_and_its_file_name_follow_rfc_8460_section_5_3(
        store: Storage) -> None:
    store.add_tls_sessions([TLSSessionCount("2025-12-01", "tls.test", "no-policy-found", (),
                                            (), "success")])
    report = build_report(HEADER, "tls.test", "2025-12-01", counts(store))
    assert report_of_gzip(report.gzipped()) == report.document
    submitter, domain, begin, end, unique = report.filename(
        "gateway.clinic.test").removesuffix(".json.gz").split("!")
    assert (submitter, domain, int(begin), int(end)) == (
        "gateway.clinic.test", "tls.test", int(DAY_START), int(DAY_START) + 86400)
    assert unique and unique in report.report_id


def test_a_schema_violation_is_caught_by_the_schema_check() -> None:
    with pytest.raises(AssertionError, match="policies"):
        assert_valid_report({"organization-name": "x", "contact-info": "y",
                             "report-id": "z", "policies": [],
                             "date-range": {"start-datetime": "2025-12-01T00:00:00Z",
                                            "end-datetime": "2025-12-01T23:59:59Z"}})
