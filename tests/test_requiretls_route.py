"""`sealgate route` says what REQUIRETLS (--requiretls) and a "TLS-Required: No" field do
to a message, as the SMTP side and delivery treat it."""

from __future__ import annotations

import json
from typing import Any

from tests.gateway_process import GatewayProcess


def route(gateway: GatewayProcess, *args: str) -> dict[str, Any]:
    shown = gateway.cli("route", "--from", "doctor@clinic.test", "--no-dns", "--json", *args)
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


def test_requiretls_routes_ordinary_mail_as_confidential_verified_tls(
        gateway: GatewayProcess) -> None:
    shown = route(gateway, "--to", "pat@tls.test", "--subject", "Hello", "--requiretls")
    assert (shown["confidential"], shown["mode"]) == (True, "require-verified-tls")
    assert shown["why"].startswith("REQUIRETLS (RFC 8689)")
    assert "to a host offering REQUIRETLS" in shown["tls_required"]


def test_tls_required_no_relaxes_ordinary_mail(gateway: GatewayProcess) -> None:
    shown = route(gateway, "--to", "pat@tls.test", "--subject", "Hello",
                  "--header", "TLS-Required: No")
    assert shown["tls_required"] == ("TLS-Required: No: the domain's MTA-STS and DANE are not"
                                     " applied to this message")


def test_tls_required_no_is_ignored_for_confidential_mail(gateway: GatewayProcess) -> None:
    shown = route(gateway, "--to", "pat@tls.test", "--subject", "[secure] Results",
                  "--header", "TLS-Required: No")
    assert shown["tls_required"].startswith("TLS-Required: No ignored: confidential mail")


def test_route_shows_the_requiretls_line(gateway: GatewayProcess) -> None:
    shown = gateway.cli("route", "--from", "doctor@clinic.test", "--to", "pat@tls.test",
                        "--no-dns", "--requiretls")
    assert "requiretls:   yes: relayed only to MX hosts found securely" in shown.stdout
