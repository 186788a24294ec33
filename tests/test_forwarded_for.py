"""Which client address the portal records (audit trail, sign-in throttle) when a request
carries X-Forwarded-For: only a reverse proxy listed in pickup.trusted_proxies may name the
client; anyone else who sends the header is recorded by the address they connect from."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from gateway.config import ConfigError, load_config
from gateway.storage.store import Store
from tests.conftest import make_message
from tests.fakes.mx_host import FakeMX
from tests.gateway_process import GatewayProcess, GatewaySettings
from tests.journey import opened_storage, stored_pickups
from tests.portal_fixtures import TestClient, app, clock, config, csrf, store, wakes

__all__ = ["app", "clock", "config", "store", "wakes"]

FORGED = "203.0.113.7"
PROXY = "127.0.0.1"
OUTSIDER = "127.0.0.9"  # connects directly, not through the proxy


@pytest.fixture(scope="module")
def proxied_gateway(gateway_settings: GatewaySettings, mx_hosts: dict[str, FakeMX],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway behind a reverse proxy on 127.0.0.1."""
    extra = {**gateway_settings.extra, "pickup": {"trusted_proxies": [PROXY]}}
    process = GatewayProcess(tmp_path_factory.mktemp("proxied"),
                             dataclasses.replace(gateway_settings, extra=extra))
    process.start()
    yield process
    process.stop()


def stored_pickup(gateway: GatewayProcess, recipient: str) -> str:
    """Send a message that policy keeps for pickup (patients.test); its pickup id."""
    gateway.send(make_message("doctor@clinic.test", recipient, "[secure] Results"))
    return stored_pickups(gateway, recipient)[0].id


def portal_client(gateway: GatewayProcess, source: str = PROXY,
                  forged: str = FORGED) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=gateway.portal_url, transport=transport, timeout=30,
                        headers={"X-Forwarded-For": forged})


def audited_clients(gateway: GatewayProcess, recipient: str) -> str:
    """Ask for a verification code (an audited step); the admin's audit listing of it."""
    pickup_id = stored_pickup(gateway, recipient)
    with portal_client(gateway) as client:
        start = client.get(f"/m/{pickup_id}")
        assert start.status_code == 200
        asked = client.post(f"/m/{pickup_id}/code", data={"csrf_token": csrf(start)})
        assert asked.status_code == 303
    listing = gateway.cli("pickup", "audit", pickup_id)
    assert listing.returncode == 0 and "code-sent" in listing.stdout, listing
    return listing.stdout


def throttled_clients(gateway: GatewayProcess, source: str = PROXY,
                      forged: str = FORGED) -> set[str]:
    """One wrong password; which of SOURCE and FORGED the sign-in throttle counts it for."""
    with portal_client(gateway, source, forged) as client:
        form = client.get("/login")
        failed = client.post("/login", data={"csrf_token": csrf(form), "password": "wrong guess",
                                             "address": "nobody@patients.test"})
        assert failed.status_code == 400
    with opened_storage(gateway.storage_dir) as storage:
        return {address for address in (source, forged)
                if storage.count_login_failures(f"client:{address}", since=0)}


def test_forged_forwarded_for_is_not_in_the_audit_trail(gateway: GatewayProcess,
                                                        unique: str) -> None:
    listing = audited_clients(gateway, f"{unique}@patients.test")
    assert FORGED not in listing
    assert re.search(r"code-sent\s+127\.0\.0\.1\b", listing), listing


def test_forged_forwarded_for_is_not_what_the_throttle_counts(gateway: GatewayProcess) -> None:
    counted = throttled_clients(gateway)
    assert FORGED not in counted and PROXY in counted


def test_trusted_proxy_names_the_client_in_the_audit_trail(proxied_gateway: GatewayProcess,
                                                           unique: str) -> None:
    listing = audited_clients(proxied_gateway, f"{unique}@patients.test")
    assert re.search(rf"code-sent\s+{re.escape(FORGED)}\b", listing), listing


def test_trusted_proxy_names_the_client_to_the_throttle(proxied_gateway: GatewayProcess) -> None:
    assert FORGED in throttled_clients(proxied_gateway)


def test_forwarded_for_past_the_proxy_is_not_believed(proxied_gateway: GatewayProcess) -> None:
    """Behind a proxy, a client that reaches the portal directly still cannot forge."""
    forged = "198.51.100.9"
    counted = throttled_clients(proxied_gateway, OUTSIDER, forged)
    assert OUTSIDER in counted and forged not in counted


def test_portal_reads_no_client_address_from_headers(app: Starlette, store: Store) -> None:
    """Without uvicorn's proxy middleware, no header the portal itself sees changes the
    address it records."""
    headers = {"X-Forwarded-For": FORGED, "X-Real-IP": FORGED, "Forwarded": f"for={FORGED}",
               "True-Client-IP": FORGED, "CF-Connecting-IP": FORGED, "X-Client-IP": FORGED}
    with TestClient(app, headers=headers) as client:
        form = client.get("/login")
        client.post("/login", data={"csrf_token": csrf(form), "password": "wrong guess",
                                    "address": "nobody@patients.test"})
    assert store.count_login_failures("client:testclient", since=0) == 1
    assert store.count_login_failures(f"client:{FORGED}", since=0) == 0


@pytest.mark.parametrize("entry", ["*", "proxy.example", "10.0.0.300", 1])
def test_trusted_proxies_must_be_addresses_or_networks(tmp_path: Path, entry: object) -> None:
    path = tmp_path / "sealgate.toml"
    value = f'"{entry}"' if isinstance(entry, str) else str(entry)
    path.write_text(f"[pickup]\ntrusted_proxies = [{value}]\n")
    with pytest.raises(ConfigError, match="pickup.trusted_proxies"):
        load_config(path)


def test_trusted_proxies_accept_addresses_and_networks(tmp_path: Path) -> None:
    path = tmp_path / "sealgate.toml"
    path.write_text('[pickup]\ntrusted_proxies = ["127.0.0.1", "10.1.2.3/8", "::1"]\n')
    networks = load_config(path).pickup.proxy_networks()
    assert [str(n) for n in networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
