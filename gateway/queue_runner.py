"""The queue runner: claims due recipients from the store, groups them per message and
domain (one SMTP transaction each), and settles every recipient's state."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass

from gateway.dkim_signer import DKIMSigner
from gateway.delivery import (INTERNAL, REQUIREMENT_FOR_MODE, Deliverer, DomainResult, HostAttempt,
                              Outcome)
from gateway.dsn import build_dsn
from gateway.pickup_stage import PickupStage
from gateway.store import BOUNCED, DEFERRED, DELIVERED, QueuedRecipient, Route, Store

log = logging.getLogger("sealgate.queue")
GroupKey = tuple[str, str]


@dataclass(frozen=True)
class RetrySettings:
    initial: float = 300.0
    maximum: float = 4000.0
    lifetime: float = 5 * 86400.0
    poll_interval: float = 1.0
    concurrency: int = 20
    per_domain_concurrency: int = 5
    delay_warning: float = 4 * 3600.0  # 0: never warn
    reporting_mta: str = "localhost"
    internal_relay: tuple[str, int] = ("127.0.0.1", 25)


class QueueRunner:
    def __init__(self, store: Store, deliverer: Deliverer, pickup: PickupStage,
                 retry: RetrySettings, signer: DKIMSigner | None = None,
                 sign_relayed: bool = False) -> None:
        self.store = store
        self.signer = signer
        self.sign_relayed = sign_relayed
        self.deliverer = deliverer
        self.pickup = pickup
        self.retry = retry
        self._wakeup = asyncio.Event()
        self._in_flight: set[GroupKey] = set()
        self._slots = asyncio.Semaphore(retry.concurrency)
        self._domain_slots: dict[str, asyncio.Semaphore] = defaultdict(
            lambda: asyncio.Semaphore(retry.per_domain_concurrency))
        self._tasks: set[asyncio.Task[None]] = set()
        self._attempt_rows: list[tuple[object, ...]] = []

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                self.dispatch_due()
                self.flush_attempts()
                await self.deliverer.pool.close_idle()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.retry.poll_interval)
                except TimeoutError:
                    pass
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.flush_attempts()
            await self.deliverer.close()

    async def process_due(self) -> None:
        """Deliver everything due now and wait for it (tests, and `queue flush` in-process)."""
        self.dispatch_due()
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        self.flush_attempts()

    async def close(self) -> None:
        await self.deliverer.close()

    def dispatch_due(self) -> None:
        groups: dict[GroupKey, list[QueuedRecipient]] = defaultdict(list)
        for item in self.store.claim_due(skip=self._in_flight):
            groups[(item.message_id, item.domain)].append(item)
        for key, items in groups.items():
            self._in_flight.add(key)
            task = asyncio.create_task(self._process(key, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, key: GroupKey, items: list[QueuedRecipient]) -> None:
        try:
            async with self._slots, self._domain_slots[key[1]]:
                await self._deliver_group(items)
        except Exception:
            # Never lose the message over a bug: it stays queued and is retried.
            log.exception("delivery of %s to %s failed unexpectedly", *key)
            self._defer(items, DomainResult(Outcome.TEMPORARY, "4.3.0 internal error"))
        finally:
            self._in_flight.discard(key)

    async def _deliver_group(self, items: list[QueuedRecipient]) -> None:
        first = items[0]
        if first.mode == "pickup":
            self._record_attempts(items, DomainResult(Outcome.TLS_UNAVAILABLE, "policy: always pickup",
                                                      attempts=[HostAttempt("", "", "policy: always pickup",
                                                                            tls_failure="policy")]))
            await self._to_pickup(items, "policy")
            return
        content = await asyncio.to_thread(self.store.read_spool, first.message_id)
        if self.signer is not None and (not first.client or self.sign_relayed):
            content = self.signer.sign(content)
        rcpts = [i.rcpt for i in items]
        if first.mode == INTERNAL:
            result = await self.deliverer.relay(*self.retry.internal_relay, first.sender, rcpts, content)
        else:
            result = await self.deliverer.deliver(first.domain, first.sender, rcpts, content,
                                                  REQUIREMENT_FOR_MODE[first.mode],
                                                  smtputf8=first.smtputf8)
        self._record_attempts(items, result)
        await self._settle(items, result)

    def _record_attempts(self, items: list[QueuedRecipient], result: DomainResult) -> None:
        """Buffer the attempt history; flush_attempts writes it in one commit per loop turn
        (history, not queue state: the queue rows are committed at once)."""
        now = self.store.clock()
        rows = [(i.message_id, i.rcpt, now, a.host, a.address, a.reply[:1000], a.tls_version,
                 a.cipher, a.cert_subject, a.cert_issuer, int(a.verified), a.tls_failure or "")
                for a in result.attempts for i in items]
        self._attempt_rows += rows or [
            (i.message_id, i.rcpt, now, "", "", result.reply[:1000], None, None, "", "", 0, "")
            for i in items]

    def flush_attempts(self) -> None:
        rows, self._attempt_rows = self._attempt_rows, []
        if not rows:
            return
        with self.store.transaction() as db:
            db.executemany(
                "INSERT INTO attempts (message_id, rcpt, at, host, address, reply, tls_version, cipher,"
                " cert_subject, cert_issuer, verified, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    async def _settle(self, items: list[QueuedRecipient], result: DomainResult) -> None:
        first = items[0]
        if result.outcome is Outcome.TLS_UNAVAILABLE and first.confidential:
            await self._to_pickup(items, result.tls_reason)
            return
        if result.outcome is Outcome.DELIVERED:
            self._bounce(first, result.refused)
            self._record(first, result.accepted, DELIVERED, result.reply)
            self._defer([i for i in items if i.rcpt in result.deferred], result)
        elif result.outcome is Outcome.PERMANENT:
            self._bounce(first, {i.rcpt: result.refused.get(i.rcpt, result.reply) for i in items})
        else:
            self._defer(items, result)

    def _record(self, first: QueuedRecipient, rcpts: list[str], state: str, reply: str) -> None:
        if rcpts:
            log.info("%s to %s: %s (%s)", first.message_id, ",".join(rcpts), state, reply)
            self.store.set_recipient_state(first.message_id, rcpts, state, reply)

    def _bounce(self, first: QueuedRecipient, failures: dict[str, str]) -> None:
        """Settle FAILURES as bounced and tell the sender with a DSN (never to the null sender)."""
        if not failures:
            return
        self._send_dsn(first, failures, delayed=False)
        for rcpt, reply in failures.items():
            self._record(first, [rcpt], BOUNCED, reply)

    def _send_dsn(self, first: QueuedRecipient, failures: dict[str, str], delayed: bool) -> None:
        if not first.sender:
            return  # never answer a bounce with a bounce
        dsn = build_dsn(reporting_mta=self.retry.reporting_mta, sender=first.sender,
                        queue_id=first.message_id,
                        original=self.store.read_spool_headers(first.message_id),
                        failures=failures, arrival=first.received, delayed=delayed)
        self.store.enqueue("", [Route(first.sender, reason="delivery status notification")], dsn)
        self.wake()

    def _crossed_delay_warning(self, item: QueuedRecipient) -> bool:
        """Warn once: on the first deferral at or past delay_warning (the previous attempt,
        if any, was before it)."""
        threshold = self.retry.delay_warning
        return bool(threshold) and (item.updated - item.received < threshold
                                    <= self.store.clock() - item.received)

    def _defer(self, items: list[QueuedRecipient], result: DomainResult) -> None:
        for item in items:
            reply = result.deferred.get(item.rcpt, result.reply)
            if self.store.clock() - item.received >= self.retry.lifetime:
                self._bounce(item, {item.rcpt: f"4.4.7 delivery time expired: {reply}"})
                continue
            if self._crossed_delay_warning(item):
                self._send_dsn(item, {item.rcpt: reply}, delayed=True)
            log.info("%s to %s: deferred (%s)", item.message_id, item.rcpt, reply)
            self.store.set_recipient_state(item.message_id, [item.rcpt], DEFERRED, reply,
                                           self._next_attempt(item))

    def _next_attempt(self, item: QueuedRecipient) -> float:
        delay = min(self.retry.initial * 2 ** item.attempts, self.retry.maximum)
        return self.store.clock() + delay

    async def _to_pickup(self, items: list[QueuedRecipient], reason: str) -> None:
        for item in items:
            await asyncio.to_thread(self.pickup.store_for_pickup, item.message_id, item.sender,
                                    item.rcpt, item.received, reason)
            log.info("%s to %s: stored for pickup (%s)", item.message_id, item.rcpt, reason)
        self.wake()  # the notifications just queued
