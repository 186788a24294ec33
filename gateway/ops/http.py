"""The supervisor's operations endpoint (`[metrics] listen`): /metrics (Prometheus text,
every process's counters added up, queue gauges read at scrape time), /healthz (the
supervisor answers) and /readyz (store writable, policy loaded, queue runners turning)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.classify.holder import PolicyHolder
from gateway.ops import health, metrics
from gateway.storage.protocols import PickupStore, QueueInspection

if TYPE_CHECKING:
    from gateway.supervisor import Supervisor

QUEUE_STATES = ("queued", "deferred", "delivering")


class Inspectable(QueueInspection, PickupStore, Protocol):
    """What a scrape reads: the queue and the stored pickups (the Store is both)."""


@dataclass
class OpsState:
    store: Inspectable
    storage_dir: Path
    policy: PolicyHolder
    metrics_dir: Path
    runners: Callable[[], list[str]]  # names of the queue runners that should beat


class ScrapeCollector(Collector):
    """Gauges computed when Prometheus asks, through the storage Protocols' read methods."""

    def __init__(self, state: OpsState) -> None:
        self.state = state

    def collect(self) -> Iterable[Metric]:
        now = time.time()
        depth = GaugeMetricFamily(metrics.QUEUE_RECIPIENTS,
                                  "Recipients waiting in the queue, by state", labels=["state"])
        oldest = GaugeMetricFamily(metrics.QUEUE_OLDEST_AGE,
                                   "Age of the oldest message waiting, by state",
                                   labels=["state"])
        counts = dict.fromkeys(QUEUE_STATES, 0)
        received: dict[str, float] = {}
        for waiting in self.state.store.waiting_recipients():
            counts[waiting.state] = counts.get(waiting.state, 0) + 1
            received[waiting.state] = min(received.get(waiting.state, now), waiting.received)
        for state, count in counts.items():
            depth.add_metric([state], count)
            oldest.add_metric([state], max(0.0, now - received.get(state, now)))
        yield depth
        yield oldest
        stored = GaugeMetricFamily(metrics.PICKUPS_STORED,
                                   "Messages stored for pickup, by state", labels=["state"])
        by_state: dict[str, int] = {}
        for pickup in self.state.store.list_pickups():
            by_state[pickup.state] = by_state.get(pickup.state, 0) + 1
        for state, count in sorted(by_state.items()):
            stored.add_metric([state], count)
        yield stored
        beats = GaugeMetricFamily(metrics.RUNNER_HEARTBEAT_AGE,
                                  "Seconds since each queue runner's last heartbeat",
                                  labels=["runner"])
        for name in self.state.runners():
            age = health.heartbeat_age(self.state.metrics_dir, name, now)
            beats.add_metric([name], age if age is not None else float("inf"))
        yield beats


def readiness_problems(state: OpsState) -> list[str]:
    problems = []
    if (why := health.store_writable(state.storage_dir)) is not None:
        problems.append(why)
    try:
        state.store.message_count()
    except Exception as exc:  # noqa: BLE001 - the answer is the problem, not a 500
        problems.append(f"the store cannot be read: {type(exc).__name__}: {exc}")
    if getattr(state.policy, "current", None) is None:
        problems.append(f"no policy loaded from {state.policy.directory}")
    for name in state.runners():
        age = health.heartbeat_age(state.metrics_dir, name)
        if age is None or age > health.STALE_AFTER:
            seen = "never" if age is None else f"{age:.0f} s ago"
            problems.append(f"queue runner {name} is not turning (last heartbeat {seen})")
    return problems


def create_ops_app(state: OpsState) -> Starlette:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(state.metrics_dir))  # type: ignore[no-untyped-call]
    registry.register(ScrapeCollector(state))

    async def scrape(request: Request) -> Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        problems = await asyncio.to_thread(readiness_problems, state)
        return JSONResponse({"ready": not problems, "problems": problems},
                            status_code=503 if problems else 200)

    return Starlette(routes=[Route("/metrics", scrape), Route("/healthz", healthz),
                             Route("/readyz", readyz)])


class _Server(uvicorn.Server):
    """uvicorn inside the supervisor's loop; the supervisor handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class OpsEndpoint:
    """The endpoint serving on its bound SOCK (bound in serve.py, like the others)."""

    def __init__(self, sock: socket.socket, state: OpsState) -> None:
        self.server = _Server(uvicorn.Config(create_ops_app(state), log_level="warning",
                                             lifespan="off", access_log=False,
                                             log_config=None))
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.gather(self.task, return_exceptions=True)


def start_ops(supervisor: Supervisor) -> OpsEndpoint | None:
    """The endpoint of SUPERVISOR, if `[metrics] listen` is set."""
    if supervisor.metrics_socket is None:
        return None
    state = OpsState(supervisor.store, supervisor.config.storage_dir, supervisor.policy,
                     Path(os.environ[metrics.MULTIPROC_ENV]),
                     lambda: [f"delivery-{w.index}" for w in supervisor.workers
                              if w.kind == "delivery"])
    return OpsEndpoint(supervisor.metrics_socket, state)
