"""internal.domains: mail to the organization's own domains and DSNs to its senders go to
internal.relay; a DSN that cannot be delivered reaches the postmaster or the log, never
another DSN."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
import uuid
from pathlib import Path

import pytest

from gateway.classify.internal import is_internal, route_for
from gateway.classify.policy import Decision
from gateway.config import Config, ConfigError, load_config
from gateway.delivery.deliverer import INTERNAL
from gateway.queue.runner import DSN_REASON, POSTMASTER_REASON
from gateway.storage.store import Route, Store
from tests.conftest import assert_no_mail, make_message, wait_for_mail
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.portal_fixtures import clock, store
from tests.runner_rounds import run_rounds

__all__ = ["clock", "store"]  # shared fixtures, used here by name

MESSAGE = b"From: doctor@clinic.test\r\nSubject: Referral\r\n\r\nPrivate body\r\n"
NOWHERE = "no-such-domain.test"  # NXDOMAIN in the fake DNS: every delivery there bounces


@pytest.fixture
def config(runner_config: Config, gateway_settings: GatewaySettings) -> Config:
    """The shared runner config, with the internal relay; clinic.test is internal (it has no
    MX: only the internal relay reaches it)."""
    runner_config.internal.relay = gateway_settings.relay
    runner_config.internal.domains = ["clinic.test"]
    return runner_config


def decision(rcpt: str, mode: str = "require-tls") -> Decision:
    return Decision(rcpt, True, "subject tag [secure]", mode, "policy.toml:3")


def queued_with_reason(store: Store, rcpt: str, reason: str) -> list[str]:
    """The messages Sealgate wrote to RCPT for REASON (its reports), in any state."""
    return [m.id for m in store.messages_to(rcpt)
            if any(r.rcpt == rcpt and r.reason == reason for r in m.recipients)]


def test_recipient_in_an_internal_domain_is_routed_to_the_internal_relay() -> None:
    route = route_for("nurse@clinic.test", decision("nurse@clinic.test"), ["clinic.test"])
    assert route.mode == INTERNAL and route.confidential


def test_recipient_elsewhere_keeps_the_policy_mode() -> None:
    route = route_for("x@tls.test", decision("x@tls.test"), ["clinic.test"])
    assert route.mode == "require-tls"


def test_wildcard_internal_domain_covers_the_domain_and_its_subdomains() -> None:
    assert is_internal("a@clinic.test", ["*.clinic.test"])
    assert is_internal("a@lab.clinic.test", ["*.clinic.test"])
    assert not is_internal("a@notclinic.test", ["*.clinic.test"])


def test_dsn_to_a_sender_in_an_internal_domain_goes_to_the_internal_relay(
        config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    sender = f"{unique}@clinic.test"
    store.enqueue(sender, [Route(f"x@{NOWHERE}")], MESSAGE, client="127.0.0.1")
    run_rounds(config, store, 2)
    [dsn] = [m for m in mx_hosts["relay"].messages if sender in m.rcpt_tos]
    assert dsn.mail_from == "<>" and b"Undelivered Mail" in dsn.content


def test_undeliverable_dsn_is_reported_to_the_postmaster(
        config: Config, store: Store, mx_hosts: dict[str, FakeMX], unique: str) -> None:
    config.alerts.to = f"postmaster-{unique}@clinic.test"
    store.enqueue(f"someone@{NOWHERE}", [Route(f"x@{NOWHERE}")], MESSAGE, client="127.0.0.1")
    run_rounds(config, store, 3)  # bounce -> DSN bounces -> postmaster copy delivered
    [dsn_id] = queued_with_reason(store, f"someone@{NOWHERE}", DSN_REASON)
    [copy] = [m for m in mx_hosts["relay"].messages if config.alerts.to in m.rcpt_tos]
    report = email.message_from_bytes(copy.content, policy=email.policy.default)
    assert copy.mail_from == "<>" and dsn_id in str(report["Subject"])


def test_undeliverable_dsn_without_alerts_to_is_logged_as_a_double_bounce(
        config: Config, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.enqueue(f"someone@{NOWHERE}", [Route(f"x@{NOWHERE}")], MESSAGE, client="127.0.0.1")
    with caplog.at_level(logging.WARNING, logger="sealgate.queue"):
        run_rounds(config, store, 3)
    [dsn_id] = queued_with_reason(store, f"someone@{NOWHERE}", DSN_REASON)
    assert f"double bounce: {dsn_id}" in caplog.text
    assert store.message_count() == 2  # the original and its DSN: no postmaster copy


def test_postmaster_copy_that_bounces_is_only_logged(
        config: Config, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    config.alerts.to = f"postmaster@{NOWHERE}"
    store.enqueue(f"someone@{NOWHERE}", [Route(f"x@{NOWHERE}")], MESSAGE, client="127.0.0.1")
    with caplog.at_level(logging.WARNING, logger="sealgate.queue"):
        run_rounds(config, store, 5)
    [copy_id] = queued_with_reason(store, config.alerts.to, POSTMASTER_REASON)
    assert f"double bounce: {copy_id}" in caplog.text and "itself a postmaster copy" in caplog.text
    assert store.message_count() == 3  # original, DSN, copy


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sealgate.toml"
    path.write_text(text)
    return path


def test_config_key_internal_domains_is_read_as_a_list(tmp_path: Path) -> None:
    text = '[internal]\ndomains = ["clinic.test", "*.org.test"]\n'
    config = load_config(write_config(tmp_path, text))
    assert config.internal.domains == ["clinic.test", "*.org.test"]


def test_config_refuses_an_internal_domain_that_is_not_a_domain(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"internal\.domains: 'clinic test'"):
        load_config(write_config(tmp_path, '[internal]\ndomains = ["clinic test"]\n'))


def test_config_refuses_an_alerts_to_that_is_not_an_address(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"alerts\.to: 'postmaster'"):
        load_config(write_config(tmp_path, '[alerts]\nto = "postmaster"\n'))


def test_config_refuses_a_shutdown_timeout_that_is_not_a_duration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"delivery\.shutdown_timeout"):
        load_config(write_config(tmp_path, '[delivery]\nshutdown_timeout = "soon"\n'))


def test_mail_to_an_internal_domain_over_smtp_is_handed_to_the_internal_relay(
        gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX], tmp_path: Path) -> None:
    settings = dataclasses.replace(gateway_settings, extra={
        **gateway_settings.extra, "internal": {"domains": ["tls.test"]}})
    gateway = GatewayProcess(tmp_path / "gw", settings)
    gateway.start()
    try:
        rcpt = f"colleague{uuid.uuid4().hex[:8]}@tls.test"
        gateway.send(make_message("doctor@clinic.test", rcpt, "[secure] Internal note"))
        arrived = wait_for_mail(mx_hosts["relay"], rcpt)
        assert b"Internal note" in arrived.content
        assert_no_mail(mx_hosts["tls"], rcpt)
    finally:
        gateway.stop()
