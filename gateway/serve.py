"""`sealgate serve`: wiring only. It takes the store's lock (one `serve` per store), binds
the SMTP and portal sockets (a port in use is one line and an exit, never a half-started
gateway), ends the leases the previous run left, and hands over to the supervisor
(gateway/supervisor.py) with its SMTP listener and queue-runner processes.
"""

from __future__ import annotations

import logging
import socket

from gateway.config import Config, ConfigError, parse_duration, parse_hostport
from gateway.delivery.deliverer import Deliverer, DeliverySettings
from gateway.delivery.dkim import load_signer
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.delivery.nexthop import PolicyNexthops
from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.ops.metrics import start_multiprocess
from gateway.queue.runner import QueueRunner, RetrySettings
from gateway.storage import open_storage
from gateway.storage.ids import new_owner_id
from gateway.storage.lock import lock_storage
from gateway.storage.protocols import QueueStore, Storage
from gateway.tls.downgrade import DowngradeGuard, DowngradeSettings
from gateway.tls.downgrade_alert import DowngradeMailer
from gateway.tls.knowledge import TLSCache
from gateway.tls.mta_sts import MTASTSResolver, STSCache
from gateway.tlsrpt.results import SessionRecorder
from gateway.vault.stage import PickupStage

log = logging.getLogger("sealgate")


def build_runner(config: Config, store: Storage) -> QueueRunner:
    resolver = MXResolver(make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout)))
    settings = DeliverySettings(port=config.delivery.port, helo_name=config.smtp.hostname,
                                ca_file=config.delivery.ca_file,
                                timeout=parse_duration(config.delivery.connect_timeout))
    retry = RetrySettings(
        initial=parse_duration(config.delivery.retry_initial),
        maximum=parse_duration(config.delivery.retry_max),
        lifetime=parse_duration(config.delivery.max_queue_lifetime),
        poll_interval=parse_duration(config.delivery.poll_interval),
        concurrency=config.delivery.concurrency,
        per_domain_concurrency=config.delivery.per_domain_concurrency,
        delay_warning=parse_duration(config.delivery.delay_warning),
        reporting_mta=config.smtp.hostname,
        internal_relay=parse_hostport(config.internal.relay, "internal.relay", 25),
        internal_domains=tuple(config.internal.domains),
        alerts_to=config.alerts.to,
        shutdown_timeout=parse_duration(config.delivery.shutdown_timeout),
    )
    tls_cache = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl))
    mta_sts = sts_resolver(config, store, resolver) if config.delivery.mta_sts else None
    deliverer = Deliverer(resolver, settings, tls_cache, mta_sts, config.delivery.dane,
                          nexthops=PolicyNexthops(config.policy_dir),
                          downgrade=downgrade_guard(config, store))
    if config.tlsrpt.enabled:
        deliverer.tls_sessions = SessionRecorder(store)
    return QueueRunner(store, deliverer, PickupStage(config, store, links=store), retry,
                       load_signer(config), config.dkim.sign_relayed)


def sts_resolver(config: Config, store: Storage,
                 resolver: MXResolver | None = None) -> MTASTSResolver:
    """MTA-STS with the storage's cache (and negative cache), for delivery and the refresh."""
    if resolver is None:
        resolver = MXResolver(make_resolver(config.dns.nameservers,
                                            parse_duration(config.dns.timeout)))
    return MTASTSResolver(resolver.resolver, STSCache(store), clock=store.clock,
                          https_port=config.delivery.mta_sts_port,
                          ca_file=config.delivery.ca_file)


async def refresh_sts_policies(config: Config, store: Storage) -> None:
    """The supervisor's task: cached MTA-STS policies near expiry fetched again, every
    delivery.mta_sts_refresh (one task per node; the cache is shared)."""
    refresher = sts_resolver(config, store)
    interval = parse_duration(config.delivery.mta_sts_refresh, "delivery.mta_sts_refresh")

    async def turn() -> None:
        if refreshed := await refresher.refresh_due():
            log.info("refreshed %d cached MTA-STS policies before their expiry", refreshed)

    await keep_running("refreshing MTA-STS policies", turn, interval, RepeatedErrors(log))


def downgrade_guard(config: Config, store: Storage) -> DowngradeGuard | None:
    """delivery.downgrade_protection: the guard, with alerts to alerts.to when it is set."""
    if not config.delivery.downgrade_protection:
        return None
    alert = None
    if config.alerts.to:
        alert = DowngradeMailer(store, to=config.alerts.to, alert_from=config.notify.from_,
                                gateway=config.smtp.hostname,
                                internal_domains=config.internal.domains)
    settings = DowngradeSettings(
        window=parse_duration(config.delivery.downgrade_window, "delivery.downgrade_window"),
        hold=parse_duration(config.delivery.downgrade_hold, "delivery.downgrade_hold"))
    return DowngradeGuard(store, settings, alert)


class ListenError(ConfigError):
    """A listen address that cannot be bound; the message names the key."""


def bound_socket(listen: str, key: str) -> socket.socket:
    """A socket bound to LISTEN; whoever serves on it listens (the SMTP listeners'
    acceptor, the portal's create_server), so the port answers only once a server is
    behind it. No SO_REUSEPORT: another program (or another store's gateway) on the same
    port must be an error, not a silent share; our own listener processes share it by
    inheriting this one socket."""
    host, port = parse_hostport(listen, key)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, IndexError) as exc:
        raise ListenError(f"{key}: cannot listen on {listen}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ListenError(f"{key}: cannot listen on {listen}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve(config: Config) -> None:
    from gateway.supervisor import Supervisor  # it imports the portal: only when serving

    owner = new_owner_id()
    lock = lock_storage(config, owner)  # before anything is bound or any row touched
    try:
        check_before_start(config)
        store = open_storage(config, owner=owner)
        try:
            # Both ports are bound before any worker starts.
            smtp_socket = bound_socket(config.smtp.listen, "smtp.listen")
            smtp_socket.set_inheritable(True)
            portal_socket = bound_socket(config.pickup.listen, "pickup.listen")
            metrics_socket = (bound_socket(config.metrics.listen, "metrics.listen")
                              if config.metrics.listen else None)
            if metrics_socket is not None:  # before any worker: they inherit its directory
                start_multiprocess(config.storage_dir / "metrics")
            _recover(store, lock.previous_owner)
            await Supervisor(config, store, lock, smtp_socket, portal_socket,
                             metrics_socket).run()
        finally:
            store.close()
    finally:
        lock.release()


def check_before_start(config: Config) -> None:
    """What the workers load at their start, loaded once here: a broken policy, DKIM key or
    SMTP certificate stops `serve` with one clear line, instead of workers failing and being
    restarted over and over."""
    from gateway.classify.holder import PolicyHolder
    from gateway.inbound.server import server_tls_context

    PolicyHolder(config.policy_dir)
    load_signer(config)
    server_tls_context(config)


def _recover(store: QueueStore, previous_owner: str) -> None:
    """What the last run left: its leases end now (it is dead: we hold its lock), its
    half-written files go."""
    if taken := store.expire_leases(previous_owner):
        log.info("%d deliveries interrupted by the last stop are due again", taken)
    if removed := store.clean_spool_debris():
        log.info("removed %d unfinished or orphaned spool files", removed)
