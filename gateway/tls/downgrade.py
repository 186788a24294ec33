"""Downgrade detection: an MX host seen with working STARTTLS within `downgrade_window` that
now offers none (or whose TLS handshake now breaks), or whose certificate verified then and
does not now, may have an attacker in the path stripping STARTTLS or presenting his own
certificate. No standard covers it (RFC 3207 STARTTLS is strippable by design; MTA-STS and
DANE protect only the domains that publish them), so Sealgate remembers each host.

While a host is downgraded:
- confidential mail does not go to it (pickup, or another MX host), for as long as the
  memory says the host did better within the window;
- other mail waits for `downgrade_hold` from the first downgraded sighting, then goes with
  ordinary opportunistic TLS (a host that really dropped STARTTLS must not stop mail for long);
- an alert goes to `alerts.to`, the log and the metric, once per host and day.

The memory is per host, whatever domain it serves, in the KnowledgeStore, so every queue
runner and node shares it. `sealgate tls forget HOST` clears it after a legitimate change.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from gateway.ops import metrics
from gateway.storage.protocols import HostSecurity, KnowledgeStore

__all__ = ["Downgrade", "DowngradeGuard", "DowngradeKind", "DowngradeSettings"]

log = logging.getLogger("sealgate.tls")

_REWRITE_AFTER = 60.0   # seconds before an unchanged secure sighting of a host is written again
_MAX_REMEMBERED = 10_000


class DowngradeKind(enum.Enum):
    NO_STARTTLS = "no-starttls"   # no STARTTLS offered, or the handshake broke
    CERTIFICATE = "certificate"   # the certificate verified before and does not now


@dataclass(frozen=True)
class DowngradeSettings:
    window: float = 30 * 86400.0  # how long a host's STARTTLS (and verification) is remembered
    hold: float = 3600.0          # how long ordinary mail waits after a downgrade began


@dataclass(frozen=True)
class Downgrade:
    host: str
    kind: DowngradeKind
    last_good: float   # when the host last did what it no longer does
    since: float       # when this downgrade was first seen: the hold runs from it
    hold_until: float

    def held(self, now: float) -> bool:
        return now < self.hold_until

    @property
    def detail(self) -> str:
        before = "offered STARTTLS" if self.kind is DowngradeKind.NO_STARTTLS else \
            "presented a certificate that verified"
        now = "offers no working STARTTLS" if self.kind is DowngradeKind.NO_STARTTLS else \
            "presents one that does not"
        return f"TLS downgrade: {self.host} {before} on {_when(self.last_good)}, now {now}"


Alert = Callable[[Downgrade], None]


class DowngradeGuard:
    """Judges each new session's TLS against the host's memory, and keeps the memory."""

    def __init__(self, store: KnowledgeStore, settings: DowngradeSettings,
                 alert: Alert | None = None) -> None:
        self.store = store
        self.settings = settings
        self.alert = alert
        self._written: dict[str, tuple[tuple[bool, bool], float]] = {}
        self._alerted: set[tuple[str, str]] = set()

    def sighting(self, host: str, starttls: bool, verified: bool) -> Downgrade | None:
        """What a new session to HOST showed: STARTTLS working (and the certificate
        VERIFIED, by the session or after it). The downgrade it reveals, or None."""
        host = host.lower()
        if starttls and verified:  # the best a host can do: nothing to compare
            self._record(host, starttls, verified)
            return None
        known = self.store.host_security(host)
        downgrade = self._judge(host, known, starttls, verified)
        if downgrade is None:
            if starttls or known is not None:
                self._record(host, starttls, verified)
            return None
        self._written.pop(host, None)  # the next secure sighting must be written at once
        since = self.store.mark_downgraded(host, downgrade.kind.value)
        downgrade = Downgrade(host, downgrade.kind, downgrade.last_good, since,
                              since + self.settings.hold)
        self._alert_once(downgrade)
        return downgrade

    def _judge(self, host: str, known: HostSecurity | None, starttls: bool,
               verified: bool) -> Downgrade | None:
        if known is None:
            return None
        remembered_from = self.store.clock() - self.settings.window
        if not starttls and (known.starttls_seen or 0) > remembered_from:
            assert known.starttls_seen is not None
            return Downgrade(host, DowngradeKind.NO_STARTTLS, known.starttls_seen, 0, 0)
        if starttls and not verified and (known.verified_seen or 0) > remembered_from:
            assert known.verified_seen is not None
            return Downgrade(host, DowngradeKind.CERTIFICATE, known.verified_seen, 0, 0)
        return None

    def _record(self, host: str, starttls: bool, verified: bool) -> None:
        """Written when the facts change, else at most once a minute: a commit per message
        would be a commit per message."""
        now = time.monotonic()
        written = self._written.get(host)
        if written is not None and written[0] == (starttls, verified) \
                and now - written[1] < _REWRITE_AFTER:
            return
        self.store.record_host_security(host, starttls, verified)
        if len(self._written) >= _MAX_REMEMBERED:
            self._written.clear()
        self._written[host] = ((starttls, verified), now)

    def _alert_once(self, downgrade: Downgrade) -> None:
        """Once per host and day across every process and node (the claim is in storage)."""
        day = datetime.fromtimestamp(self.store.clock(), timezone.utc).strftime("%Y-%m-%d")
        if (downgrade.host, day) in self._alerted:
            return
        if len(self._alerted) >= _MAX_REMEMBERED:
            self._alerted.clear()
        self._alerted.add((downgrade.host, day))
        if not self.store.claim_downgrade_alert(downgrade.host, day):
            return
        log.warning("%s; confidential mail avoids it, other mail waits until %s", downgrade.detail,
                    _when(downgrade.hold_until),
                    extra={"event": "tls-downgrade", "host": downgrade.host,
                           "reason": downgrade.kind.value})
        metrics.tls_downgrade(downgrade.kind.value)
        if self.alert is None:
            return
        try:
            self.alert(downgrade)
        except Exception as exc:  # the delivery decision stands without the alert mail
            log.error("the TLS downgrade alert about %s could not be queued: %s",
                      downgrade.host, exc)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
