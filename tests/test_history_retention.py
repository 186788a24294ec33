"""Settled queue history is forgotten after delivery.history_retention (30 days by default),
never before a message could still be retried, and the expiry turn does the forgetting."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config, ConfigError, load_config
from gateway.storage import open_storage
from gateway.storage.protocols import Route
from gateway.vault.expiry import Retention, housekeeping
from tests.storage.helpers import FakeClock

DAY = 86400.0


def config_with(tmp_path: Path, delivery: str) -> Path:
    path = tmp_path / "sealgate.toml"
    path.write_text(f'[storage]\ndir = "var"\n[delivery]\n{delivery}\n')
    return path


def test_history_is_kept_thirty_days_by_default() -> None:
    assert Config().delivery.history_retention == "30d"


def test_a_retention_shorter_than_the_queue_lifetime_is_refused(tmp_path: Path) -> None:
    path = config_with(tmp_path, 'history_retention = "1d"\nmax_queue_lifetime = "5d"')
    with pytest.raises(ConfigError, match="history_retention must be at least"):
        load_config(path)


def test_the_expiry_turn_forgets_settled_history_past_its_retention(tmp_path: Path) -> None:
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    clock = FakeClock()
    storage = open_storage(config, clock)
    try:
        message_id = storage.enqueue("doctor@clinic.test", [Route("a@one.test")], b"M\r\n")
        storage.claim_due()
        storage.settle(message_id, {"a@one.test": "250 2.0.0 OK"}, "delivered")
        clock.advance(31 * DAY)
        housekeeping(storage, Retention(history=30 * DAY, host_knowledge=30 * DAY))
        assert storage.queued_message(message_id) is None
    finally:
        storage.close()


def test_host_knowledge_is_kept_for_the_longer_of_tls_cache_ttl_and_downgrade_window() -> None:
    config = Config()
    config.delivery.tls_cache_ttl, config.delivery.downgrade_window = "40d", "30d"
    assert Retention.of(config.delivery).host_knowledge == 40 * DAY


def test_the_expiry_turn_forgets_hosts_not_seen_within_the_downgrade_window(
        tmp_path: Path) -> None:
    config = Config()
    config.storage.dir = str(tmp_path / "var")
    clock = FakeClock()
    storage = open_storage(config, clock)
    try:
        storage.record_host_security("mx.gone.test", starttls=True, verified=True)
        clock.advance(29 * DAY)
        storage.record_host_security("mx.here.test", starttls=True, verified=True)
        clock.advance(2 * DAY)
        housekeeping(storage, Retention.of(config.delivery))
        assert storage.host_security("mx.gone.test") is None
        assert storage.host_security("mx.here.test") is not None
    finally:
        storage.close()
