"""The supervisor of `sealgate serve`: one process holding the store lock and the bound
sockets, with its worker processes under it (`python -m gateway.workers smtp|delivery N`,
as `ps` shows them):

- smtp.processes SMTP listeners, all accepting on the one SMTP socket they inherit;
- delivery.processes queue runners, claiming work from the store under leases;
- the portal, the expiry of stored messages and the policy watch run in the supervisor.

It restarts a worker that exits (backoff doubling from RESTART_MIN to RESTART_MAX, reset
once a worker ran for STABLE seconds), ending at once the leases of a runner it reaped and
forgetting the sessions of a listener it reaped. A policy reload (SIGHUP, or a changed
file) is checked here first; if it loads, the shared policy generation moves on and SIGHUP
is passed to every worker, so each listener reloads before its next classification.
SIGTERM/SIGINT: the portal and the listeners stop accepting, the runners let deliveries in
flight finish up to delivery.shutdown_timeout, then whatever is left is killed. Workers die
with the supervisor (PR_SET_PDEATHSIG), and they share its store lock, so no next `serve`
can start while one of them still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import uvicorn

from gateway.classify.holder import PolicyHolder
from gateway.config import Config, parse_duration
from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.ops.http import start_ops
from gateway.ops.metrics import process_dead
from gateway.ops.systemd import sd_notify
from gateway.storage.lock import StoreLock
from gateway.storage.protocols import Storage
from gateway.tlsrpt.schedule import start_reporting
from gateway.vault.expiry import Retention, expire_forever
from gateway.workers.handoff import STARTUP_BLOCKED, Handoff, encode_handoff, worker_owner
from gateway.workers.limits import clear_region, shared_counters
from gateway.workers.shared import SharedGeneration, shared_number
from gateway.workers.wake import Waker, wake_pair
from pickup.app import create_app

log = logging.getLogger("sealgate")
RESTART_MIN = 0.5   # seconds before the first restart of a worker that exited
RESTART_MAX = 30.0
STABLE = 60.0       # a worker that ran this long gets the shortest backoff again
KILL_GRACE = 5.0    # beyond shutdown_timeout, before workers still running are killed


def worker_count(configured: int) -> int:
    """0 means one per CPU this process may run on."""
    if configured > 0:
        return configured
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Worker:
    kind: str   # "smtp" | "delivery"
    index: int  # 1..n within its kind
    process: asyncio.subprocess.Process | None = None
    handoff: Handoff | None = None
    ready: bool = False
    started: asyncio.Event = field(default_factory=asyncio.Event)  # ready, or gave up, once

    @property
    def name(self) -> str:
        return f"{self.kind} worker {self.index}"


class _PortalServer(uvicorn.Server):
    """uvicorn inside our loop; signals are ours, so shutdown stops the workers too."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Supervisor:
    config: Config
    store: Storage
    lock: StoreLock
    smtp_socket: socket.socket
    portal_socket: socket.socket
    metrics_socket: socket.socket | None = None  # [metrics] listen: /metrics, /healthz, /readyz
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop_requested = asyncio.Event()
        self.wake_rx, self.wake_tx = wake_pair()
        smtp_processes = worker_count(self.config.smtp.processes)
        self.limits_fd = shared_counters(smtp_processes)
        self.policy_fd = shared_number("sealgate-policy-generation")
        self.policy_generation = SharedGeneration(self.policy_fd)
        self.policy = PolicyHolder(self.config.policy_dir)
        self.workers = ([Worker("smtp", n + 1) for n in range(smtp_processes)]
                        + [Worker("delivery", n + 1)
                           for n in range(worker_count(self.config.delivery.processes))])

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_requested.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_policy)
        keepers = [asyncio.create_task(self.keep(w)) for w in self.workers]
        # "ready" (and a portal that answers) only once every worker serves or failed once.
        await self.first_start()
        portal = self.portal()
        portal_task = asyncio.create_task(portal.serve(sockets=[self.portal_socket]))
        expiry = asyncio.create_task(expire_forever(self.store,
                                                    Retention.of(self.config.delivery)))
        watch = asyncio.create_task(keep_running("policy watch", self.watch_policy, 2.0,
                                                 RepeatedErrors(log)))
        sts_refresh = asyncio.create_task(self.refresh_sts_policies())
        reports = start_reporting(self.config, self.store)  # [tlsrpt] enabled: daily reports
        ops = start_ops(self)
        listeners = sum(w.kind == "smtp" for w in self.workers)
        log.info("sealgate ready: SMTP on %s, portal on %s (%d SMTP listeners, %d queue"
                 " runners)", self.config.smtp.listen, self.config.pickup.listen, listeners,
                 len(self.workers) - listeners)
        sd_notify("READY=1")
        await self.stop_requested.wait()
        sd_notify("STOPPING=1")
        log.info("shutting down: no new mail is accepted; deliveries in flight may finish")
        portal.should_exit = True
        self.smtp_socket.close()  # the listeners close their copies: then nothing accepts
        self.signal_workers(signal.SIGTERM)
        await self.wait_for_workers(keepers)
        for task in (expiry, watch, sts_refresh, *reports):
            task.cancel()
        await asyncio.gather(expiry, watch, sts_refresh, *reports, portal_task,
                             return_exceptions=True)
        if ops is not None:
            await ops.stop()
        log.info("stopped")

    async def refresh_sts_policies(self) -> None:
        """Cached MTA-STS policies fetched again before they expire (gateway/tls/mta_sts.py)."""
        if self.config.delivery.mta_sts:
            from gateway.serve import refresh_sts_policies

            await refresh_sts_policies(self.config, self.store)

    async def first_start(self) -> None:
        """Until every worker serves (or failed once: it is being restarted), or a stop."""
        waiting = [asyncio.ensure_future(self.stop_requested.wait())]
        waiting += [asyncio.ensure_future(w.started.wait()) for w in self.workers]
        while not waiting[0].done() and not all(w.done() for w in waiting[1:]):
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        for future in waiting:
            future.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    def portal(self) -> _PortalServer:
        proxies = self.config.pickup.proxy_networks()
        return _PortalServer(uvicorn.Config(
            create_app(self.config, self.store, Waker(os.dup(self.wake_tx.fileno())).wake),
            log_level="warning", lifespan="off", access_log=False, log_config=None,
            # X-Forwarded-For only from pickup.trusted_proxies: else any client could
            # forge its recorded address.
            proxy_headers=bool(proxies), forwarded_allow_ips=[str(n) for n in proxies]))

    # -- workers -----------------------------------------------------------------------

    async def keep(self, worker: Worker) -> None:
        """Run WORKER until the stop; start it again whenever it exits before that."""
        loop = asyncio.get_running_loop()
        backoff = RESTART_MIN
        while not self.stop_requested.is_set():
            started = loop.time()
            process, ready = await self.spawn(worker)
            if await ready:
                worker.ready = True
            worker.started.set()
            code = await process.wait()
            worker.ready = False
            self.after_exit(worker, process.pid)
            if self.stop_requested.is_set():
                return
            if loop.time() - started >= STABLE:
                backoff = RESTART_MIN
            log.error("%s (pid %d) %s; starting it again in %.1f s", worker.name, process.pid,
                      _how_it_ended(code), backoff)
            with contextlib.suppress(TimeoutError):  # a stop during the backoff: no restart
                await asyncio.wait_for(self.stop_requested.wait(), backoff)
            backoff = min(backoff * 2, RESTART_MAX)

    async def spawn(self, worker: Worker
                    ) -> tuple[asyncio.subprocess.Process, asyncio.Future[bool]]:
        """Start WORKER; returns the process and a future: True once it serves, False if it
        exited before."""
        smtp = worker.kind == "smtp"
        ready_rx, ready_tx = os.pipe()
        handoff = Handoff(self.config, worker.kind, worker.index, os.getpid(), self.lock.owner,
                          self.lock.fd, self.wake_rx.fileno(), self.wake_tx.fileno(), ready_tx,
                          self.smtp_socket.fileno() if smtp else -1,
                          self.limits_fd if smtp else -1, self.policy_fd if smtp else -1)
        inherited = [self.lock.fd, handoff.wake_rx, handoff.wake_tx, ready_tx]
        inherited += [handoff.listen_fd, handoff.limits_fd, handoff.policy_fd] if smtp else []
        # Started from the event loop's (main) thread: PR_SET_PDEATHSIG follows the thread
        # that forked, and this one lives as long as the supervisor. The signal mask is
        # inherited: the worker gets STARTUP_BLOCKED only once it has its handlers.
        signal.pthread_sigmask(signal.SIG_BLOCK, STARTUP_BLOCKED)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.workers", worker.kind, str(worker.index),
                stdin=asyncio.subprocess.PIPE, pass_fds=inherited,
                env={**os.environ, "SEALGATE_SUPERVISOR_PID": str(os.getpid())})
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STARTUP_BLOCKED)
            os.close(ready_tx)
        ready = _read_ready(ready_rx)
        assert process.stdin is not None
        process.stdin.write(encode_handoff(handoff))
        with contextlib.suppress(ConnectionError):  # it died at once: keep() sees the exit
            await process.stdin.drain()
        process.stdin.close()
        worker.process, worker.handoff = process, handoff
        return process, ready

    def after_exit(self, worker: Worker, pid: int) -> None:
        """A reaped worker is certainly dead: end its leases (its deliveries are due again
        now, not when the leases run out) and forget its SMTP sessions."""
        worker.process = None
        process_dead(pid)
        if worker.handoff is None:
            return
        try:
            if worker.kind == "delivery":
                if taken := self.store.expire_leases(worker_owner(worker.handoff, pid)):
                    log.info("%d deliveries of %s (pid %d) are due again", taken, worker.name,
                             pid)
            else:
                clear_region(self.limits_fd, worker.index - 1)
        except Exception as exc:  # noqa: BLE001 - the leases still run out on their own
            log.error("cleaning up after %s (pid %d) failed: %s: %s", worker.name, pid,
                      type(exc).__name__, exc)

    def signal_workers(self, sig: int) -> int:
        sent = 0
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(sig)
                    sent += 1
        return sent

    async def watch_policy(self) -> None:
        if self.policy.changed_on_disk():
            self.reload_policy()

    def reload_policy(self) -> None:
        """Check the policy files; if they load, every listener follows (else all keep
        the previous policy, and the error, with file and line, is logged once, here)."""
        if not self.policy.try_load():
            return
        self.policy_generation.bump()  # before the log line: after it, nobody uses the old
        workers = self.signal_workers(signal.SIGHUP)
        log.info("policy reloaded from %s (passed to %d workers)", self.policy.directory,
                 workers)

    async def wait_for_workers(self, keepers: list[asyncio.Task[None]]) -> None:
        """Up to shutdown_timeout (the runners' own drain) plus a grace; then kill."""
        timeout = parse_duration(self.config.delivery.shutdown_timeout) + KILL_GRACE
        _, pending = await asyncio.wait(keepers, timeout=timeout)
        if pending:
            log.warning("%d workers still running %.0f s after the stop were killed",
                        self.signal_workers(signal.SIGKILL), timeout)
            await asyncio.gather(*pending, return_exceptions=True)


def _read_ready(fd: int) -> asyncio.Future[bool]:
    """True when a byte arrives on the pipe FD, False at its end (the worker exited)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[bool] = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 1)
        except OSError:
            data = b""
        loop.remove_reader(fd)
        os.close(fd)
        if not ready.done():
            ready.set_result(bool(data))

    loop.add_reader(fd, readable)
    return ready


def _how_it_ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"
