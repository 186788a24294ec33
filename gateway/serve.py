"""`sealgate serve`: SMTP listener, queue runner, portal and expiry in one process.

It first takes the store's lock (one `serve` per store), then requeues what a previous
owner left half-done. SIGTERM/SIGINT: stop accepting SMTP, stop claiming new work, let
deliveries in flight finish (up to delivery.shutdown_timeout), then exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from gateway.config import Config, ConfigError, parse_duration, parse_hostport
from gateway.delivery.dkim import load_signer
from gateway.delivery.deliverer import Deliverer, DeliverySettings
from gateway.delivery.mx import MXResolver, make_resolver
from gateway.vault.expiry import expire_forever
from gateway.storage.lock import lock_store
from gateway.vault.stage import PickupStage
from gateway.classify.holder import PolicyHolder
from gateway.queue.runner import QueueRunner, RetrySettings
from gateway.tls.mta_sts import MTASTSResolver, STSCache
from gateway.tls.knowledge import TLSCache
from gateway.inbound.server import RelayHandler, smtp_factory
from gateway.storage.store import Store, new_owner_id, open_store
from pickup.app import create_app

log = logging.getLogger("sealgate")


class _PortalServer(uvicorn.Server):
    """uvicorn inside our loop; signals are ours, so shutdown closes SMTP and the store too."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_runner(config: Config, store: Store) -> QueueRunner:
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
    store.lease = parse_duration(config.delivery.lease)
    tls_cache = TLSCache(store, parse_duration(config.delivery.tls_cache_ttl))
    mta_sts = None
    if config.delivery.mta_sts:
        mta_sts = MTASTSResolver(resolver.resolver, STSCache(store), clock=store.clock,
                                 https_port=config.delivery.mta_sts_port,
                                 ca_file=config.delivery.ca_file)
    deliverer = Deliverer(resolver, settings, tls_cache, mta_sts, config.delivery.dane)
    return QueueRunner(store, deliverer, PickupStage(config, store), retry,
                       load_signer(config), config.dkim.sign_relayed)


class ListenError(ConfigError):
    """A listen address that cannot be bound; the message names the key."""


def listening_socket(listen: str, key: str) -> socket.socket:
    """A bound, listening socket for LISTEN. No SO_REUSEPORT: another program (or another
    store's gateway) on the same port must be an error, not a silent share."""
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
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise ListenError(f"{key}: cannot listen on {listen}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


async def serve(config: Config) -> None:
    owner = new_owner_id()
    lock = lock_store(config.storage_dir, owner)  # before anything is bound or any row touched
    try:
        store = open_store(config.storage_dir, owner=owner)
        try:
            await _serve(config, store, lock.previous_owner)
        finally:
            store.close()
    finally:
        lock.release()


def _recover(store: Store, previous_owner: str) -> None:
    """What the last run left: its claims are due again, its half-written files go."""
    if taken := store.expire_leases(previous_owner):
        log.info("%d deliveries interrupted by the last stop are due again", taken)
    if removed := store.clean_spool_debris():
        log.info("removed %d unfinished or orphaned spool files", removed)


async def _serve(config: Config, store: Store, previous_owner: str) -> None:
    _recover(store, previous_owner)
    policy = PolicyHolder(config.policy_dir)
    runner = build_runner(config, store)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, policy.reload)

    handler = RelayHandler(config, store, policy, runner.wake)
    # Both ports are bound before anything runs, so a port in use is one line and an exit,
    # never a half-started gateway that says "ready".
    smtp_socket = listening_socket(config.smtp.listen, "smtp.listen")
    portal_socket = listening_socket(config.pickup.listen, "pickup.listen")
    smtp = await loop.create_server(smtp_factory(config, handler), sock=smtp_socket)
    portal = _PortalServer(uvicorn.Config(create_app(config, store, runner.wake),
                                          log_level="warning", lifespan="off",
                                          access_log=False,
                                          # X-Forwarded-For only from pickup.trusted_proxies:
                                          # else any client could forge its recorded address.
                                          proxy_headers=bool(config.pickup.trusted_proxies),
                                          forwarded_allow_ips=[
                                              str(n) for n in config.pickup.proxy_networks()]))
    delivering = asyncio.create_task(runner.run())
    background = [asyncio.create_task(expire_forever(store)), asyncio.create_task(policy.watch())]
    portal_task = asyncio.create_task(portal.serve(sockets=[portal_socket]))
    log.info("sealgate ready: SMTP on %s, portal on %s", config.smtp.listen, config.pickup.listen)
    await stop.wait()
    log.info("shutting down: no new mail is accepted; deliveries in flight may finish")
    smtp.close()
    portal.should_exit = True
    runner.stop()
    await asyncio.gather(delivering, return_exceptions=True)
    for task in background:
        task.cancel()
    await asyncio.gather(*background, portal_task, return_exceptions=True)
    with contextlib.suppress(TimeoutError):  # sessions still open are cut at exit
        await asyncio.wait_for(smtp.wait_closed(), 5)
    log.info("stopped")
