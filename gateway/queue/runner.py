"""The queue runner: claims due recipients from the store, groups them per message and
domain (one SMTP transaction each), and settles every recipient's state.

It never stops over an exception: a turn that fails (a full disk, a locked database) is
logged once and tried again; an outcome that cannot be recorded yet is kept and recorded
later, so the message is neither lost nor sent twice. On stop it claims nothing new and
lets deliveries in flight finish, up to `shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from gateway.classify.internal import report_route
from gateway.delivery.deliverer import (
    REQUIREMENT_FOR_MODE,
    Deliverer,
    DomainResult,
    HostAttempt,
    Outcome,
    TLSRequirement,
)
from gateway.delivery.dkim import DKIMSigner
from gateway.delivery.dsn_options import DSNRequest
from gateway.loop_guard import RepeatedErrors
from gateway.ops import metrics
from gateway.ops.logs import outcome
from gateway.queue.dsn import build_dsn
from gateway.queue.model import Mode, State
from gateway.queue.notify_request import (
    dsn_request,
    wants_delay,
    wants_failure,
    wants_receipt,
)
from gateway.queue.receipt import HandedOver, StoredForPickup, build_receipt
from gateway.storage.protocols import (
    Attempt,
    AttemptRecord,
    QueuedRecipient,
    QueueStore,
    Report,
    Settlement,
)
from gateway.vault.notify import human_date
from gateway.vault.stage import NOTIFICATION_REASON, PickupStage
from gateway.vault.unnotified import (
    NotificationRecords,
    Unnotified,
    build_unnotified_report,
    pickup_of_notification,
    record_outcome,
)

log = logging.getLogger("sealgate.queue")
GroupKey = tuple[str, str]
DSN_REASON = "delivery status notification"
POSTMASTER_REASON = "postmaster copy of an undeliverable bounce"
MAX_BUFFERED_ATTEMPTS = 20_000  # attempt history kept in memory while the store refuses writes
MAX_CLAIM = 500  # groups claimed at once by process_due (tests, `queue flush` in-process)
# What to do (log, wake) once a settlement is recorded, given the recipients it settled.
Settled = Callable[[list[str]], None]


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
    internal_domains: tuple[str, ...] = ()  # DSNs to senders there go to internal_relay
    alerts_to: str = ""                     # postmaster copies of double bounces; "": log only
    shutdown_timeout: float = 30.0          # how long a stop waits for deliveries in flight


class QueueRunner:
    def __init__(self, store: QueueStore, deliverer: Deliverer, pickup: PickupStage,
                 retry: RetrySettings, signer: DKIMSigner | None = None,
                 sign_relayed: bool = False) -> None:
        self.store = store
        self.signer = signer
        self.sign_relayed = sign_relayed
        self.deliverer = deliverer
        # Keep as many idle connections per host as deliveries may run to it at once: with
        # fewer, each burst closed the extra connections and the next opened them again
        # (a TLS handshake each; ~10% of a TLS runner's work with the pool's default of 4).
        pool = deliverer.pool
        pool.max_idle_per_key = max(pool.max_idle_per_key,
                                    min(retry.concurrency, retry.per_domain_concurrency))
        self.pickup = pickup
        self.retry = retry
        # Where a notification's outcome is written and its pickup's sender found.
        self.records = store if isinstance(store, NotificationRecords) else None
        self.errors = RepeatedErrors(log)
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._in_flight: set[GroupKey] = set()
        self._unsettled: dict[GroupKey, tuple[list[QueuedRecipient], DomainResult]] = {}
        self._slots = asyncio.Semaphore(retry.concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._attempt_rows: list[AttemptRecord] = []
        self._renewed = 0.0  # monotonic time of the last lease renewal

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing new; run() returns once deliveries in flight are done (or timed out)."""
        self._stopping = True
        self.wake()

    async def run(self) -> None:
        try:
            while not self._stopping:
                self._wakeup.clear()
                await self._turn()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), self.retry.poll_interval)
                except TimeoutError:
                    pass
            await self._drain()
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._guarded_async("writing the attempt history", self._flush_attempts)
            await self._guarded_async("writing TLS report counts", self._flush_tls_sessions)
            await self.deliverer.close()

    async def _turn(self) -> None:
        """One loop turn; no exception leaves it. Every write goes through the store's writer
        thread (group commit): no commit runs on the event loop."""
        await self._guarded_async("claiming due mail", self.dispatch_due)
        if self._in_flight and self._renewal_due():
            await self._guarded_async("renewing delivery claims", self._renew)
        await self._settle_parked()
        await self._guarded_async("writing the attempt history", self._flush_attempts)
        if (sessions := self.deliverer.tls_sessions) is not None:
            sessions.flush_if_due()  # TLS report counts, batched: not a write per delivery
        try:
            await self.deliverer.pool.close_idle()
        except Exception as exc:
            self.errors.failed("closing idle connections", exc)

    def _renewal_due(self) -> bool:
        """Renew well before the lease runs out, but not on every turn: a busy runner turns
        hundreds of times a second, and each renewal is a commit."""
        loop = asyncio.get_running_loop()
        return loop.time() - self._renewed >= self.store.lease / 4

    async def _renew(self) -> None:
        await asyncio.wrap_future(self.store.submit_renew_leases())
        self._renewed = asyncio.get_running_loop().time()

    async def _guarded_async(self, what: str, step: Callable[[], Awaitable[None]]) -> None:
        try:
            await step()
        except Exception as exc:
            self.errors.failed(what, exc)
        else:
            self.errors.succeeded(what)

    def _guarded(self, what: str, step: object) -> None:
        try:
            step()  # type: ignore[operator]
        except Exception as exc:
            self.errors.failed(what, exc)
        else:
            self.errors.succeeded(what)

    async def _drain(self) -> None:
        """Let deliveries in flight finish, up to shutdown_timeout; the rest are cancelled
        (their claims are due again at the next start)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry.shutdown_timeout
        if self._tasks:
            log.info("waiting up to %.0f s for %d deliveries in flight",
                     self.retry.shutdown_timeout, len(self._tasks))
        while (self._tasks or self._unsettled) and (left := deadline - loop.time()) > 0:
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=min(left, 1.0))
            await self._settle_parked()
            if self._unsettled and not self._tasks:
                await asyncio.sleep(min(left, self.retry.poll_interval))
        if self._tasks or self._unsettled:
            log.warning("%d deliveries still in flight after %.0f s were stopped; they are due"
                        " again at the next start", len(self._tasks) + len(self._unsettled),
                        self.retry.shutdown_timeout)
            # Our leases end now: another runner, or the next start, takes the work over.
            self._guarded("ending the leases of stopped deliveries",
                          lambda: self.store.expire_leases(self.store.owner))

    async def process_due(self) -> None:
        """Deliver everything due now and wait for it (tests, and `queue flush` in-process)."""
        await self.dispatch_due(MAX_CLAIM)
        while self._tasks:
            await asyncio.gather(*list(self._tasks))
        await self._settle_parked()
        await self._flush_attempts()
        await self._flush_tls_sessions()

    async def _flush_tls_sessions(self) -> None:
        sessions = self.deliverer.tls_sessions
        if sessions is not None and (written := sessions.flush()) is not None:
            await asyncio.wrap_future(written)

    async def close(self) -> None:
        await self.deliverer.close()

    async def dispatch_due(self, limit: int | None = None) -> None:
        """Claim due groups and start their deliveries: no more than there are free slots
        (LIMIT: that many), so that other runners get the rest."""
        if self._stopping:
            return
        free = limit if limit is not None else self.retry.concurrency - len(self._in_flight)
        if free <= 0:
            return
        groups: dict[GroupKey, list[QueuedRecipient]] = defaultdict(list)
        claimed = await asyncio.wrap_future(
            self.store.submit_claim(free, self.retry.per_domain_concurrency))
        for item in claimed:
            groups[(item.message_id, item.domain)].append(item)
        for key, items in groups.items():
            self._in_flight.add(key)
            task = asyncio.create_task(self._process(key, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _process(self, key: GroupKey, items: list[QueuedRecipient]) -> None:
        parked = False
        try:
            async with self._slots:  # the per-domain cap is in the claim, across runners
                if self._stopping:  # claimed before the stop, not started: give it back
                    self.store.release_claims(key[0], [i.rcpt for i in items])
                    return
                result = await self._attempt(key, items)
                parked = not await self._try_settle(key, items, result,
                                                    self._attempts_of(items, result))
        except Exception as exc:  # only release_claims gets here; the leases expire
            self.errors.failed("giving back claims at stop", exc)
        finally:
            if not parked:
                self._in_flight.discard(key)
            self.wake()  # a slot is free: claim more now, not at the next poll

    async def _attempt(self, key: GroupKey, items: list[QueuedRecipient]) -> DomainResult:
        """Deliver the group; an unexpected error is a temporary failure (never a lost message)."""
        try:
            result = await self._deliver_group(items)
        except Exception as exc:  # the deferral logged below names the queue id
            self.errors.failed("delivering mail", exc)
            result = DomainResult(Outcome.TEMPORARY, "4.3.0 internal error")
        return result

    async def _try_settle(self, key: GroupKey, items: list[QueuedRecipient],
                          result: DomainResult, attempts: list[AttemptRecord] | None = None
                          ) -> bool:
        """Record the outcome, with ATTEMPTS (its history) in the same commit; when the store
        refuses (full disk), keep the outcome to record later and the history to flush."""
        try:
            await self._settle(items, result, attempts or [])
        except Exception as exc:
            self.errors.failed("recording delivery outcomes", exc)
            self._unsettled[key] = (items, result)
            self._keep_attempts(attempts or [])
            return False
        self.errors.succeeded("recording delivery outcomes")
        return True

    async def _settle_parked(self) -> None:
        """Try again to record the outcomes the store refused before (only the recipients
        still claimed by us: part of a group may have been recorded before the failure)."""
        for key, (items, result) in list(self._unsettled.items()):
            try:
                claimed = set(self.store.still_claimed(key[0], [i.rcpt for i in items]))
            except Exception as exc:
                self.errors.failed("recording delivery outcomes", exc)
                return
            remaining = [i for i in items if i.rcpt in claimed]
            if not remaining or await self._try_settle(key, remaining, result):
                del self._unsettled[key]
                self._in_flight.discard(key)

    async def _deliver_group(self, items: list[QueuedRecipient]) -> DomainResult:
        first = items[0]
        if first.mode == Mode.PICKUP:
            return DomainResult(Outcome.TLS_UNAVAILABLE, "policy: always pickup",
                                attempts=[HostAttempt("", "", "policy: always pickup",
                                                      tls_failure="policy")])
        content = await asyncio.to_thread(self.store.read_spool, first.message_id)
        if self.signer is not None and (not first.client or self.sign_relayed):
            content = self.signer.sign(content)
        rcpts = [i.rcpt for i in items]
        dsn: DSNRequest = dsn_request(items)
        if first.mode == Mode.INTERNAL:
            return await self.deliverer.relay(*self.retry.internal_relay, first.sender, rcpts,
                                              content, dsn=dsn)
        if first.mode == Mode.TLS_OPTIONAL:  # mail Sealgate wrote with "TLS-Required: No"
            return await self.deliverer.deliver(first.domain, first.sender, rcpts, content,
                                                TLSRequirement.OPPORTUNISTIC,
                                                smtputf8=first.smtputf8, dsn=dsn,
                                                domain_policies=False)
        # "TLS-Required: No" never relaxes confidential mail (RFC 8689 5 leaves it to us).
        return await self.deliverer.deliver(first.domain, first.sender, rcpts, content,
                                            REQUIREMENT_FOR_MODE[first.mode],
                                            smtputf8=first.smtputf8, dsn=dsn,
                                            requiretls=first.requiretls,
                                            domain_policies=not (first.tls_optional
                                                                 and not first.confidential))

    def _attempts_of(self, items: list[QueuedRecipient], result: DomainResult
                     ) -> list[AttemptRecord]:
        """The attempt history of RESULT, written in the commit that settles it."""
        now = self.store.clock()
        rows = [AttemptRecord(i.message_id, Attempt(
                    i.rcpt, now, a.host, a.address, a.reply[:1000], a.tls_version, a.cipher,
                    a.cert_subject, a.cert_issuer, a.verified, a.tls_failure or ""))
                for a in result.attempts for i in items]
        return rows or [
            AttemptRecord(i.message_id, Attempt(i.rcpt, now, "", "", result.reply[:1000], None,
                                                None, "", "", False, ""))
            for i in items]

    def _keep_attempts(self, rows: list[AttemptRecord]) -> None:
        """Keep history for a later flush (the newest, if the store stays full long)."""
        self._attempt_rows = (self._attempt_rows + rows)[-MAX_BUFFERED_ATTEMPTS:]

    def flush_attempts(self) -> None:
        """Write the buffered attempt history now (blocking: not for the event loop)."""
        rows, self._attempt_rows = self._attempt_rows, []
        if rows:
            try:
                self.store.submit_attempts(rows).result()
            except BaseException:
                self._attempt_rows = (rows + self._attempt_rows)[-MAX_BUFFERED_ATTEMPTS:]
                raise

    async def _flush_attempts(self) -> None:
        rows, self._attempt_rows = self._attempt_rows, []
        if rows:
            try:
                await asyncio.wrap_future(self.store.submit_attempts(rows))
            except BaseException:
                self._attempt_rows = (rows + self._attempt_rows)[-MAX_BUFFERED_ATTEMPTS:]
                raise

    async def _settle(self, items: list[QueuedRecipient], result: DomainResult,
                      attempts: list[AttemptRecord]) -> None:
        """Record the outcome of every recipient of the group, its reports and ATTEMPTS in
        one unit of the store's group commit (one savepoint: all or none), awaited here."""
        first = items[0]
        by_rcpt = {i.rcpt: i for i in items}
        if result.outcome is Outcome.TLS_UNAVAILABLE and (first.confidential
                                                          or first.mode == Mode.PICKUP):
            self._keep_attempts(attempts)  # flushed at the end of this turn
            await self._to_pickup(items, result.tls_reason)
            return
        plan: list[tuple[Settlement, Settled]] = []
        if result.outcome is Outcome.DELIVERED:
            self._bounce(plan, first, {r: v for r, v in result.refused.items() if r in by_rcpt},
                         by_rcpt)
            delivered = [r for r in result.accepted if r in by_rcpt]
            self._record(plan, first, delivered, State.DELIVERED, result.reply,
                         self._receipt_for_delivered([by_rcpt[r] for r in delivered], result))
            self._defer(plan, [i for i in items if i.rcpt in result.deferred], result)
        elif result.outcome is Outcome.PERMANENT:
            self._bounce(plan, first,
                         {i.rcpt: result.refused.get(i.rcpt, result.reply) for i in items},
                         by_rcpt)
        else:
            self._defer(plan, items, result)
        # Read before the commit: settling the notification may remove its spool.
        notified_pickup = await self._notified_pickup(first)
        outcomes = await self._commit_plan(plan, attempts)
        if notified_pickup is not None:
            await self._guarded_async("telling senders about their notifications",
                                      lambda: self._notification_settled(notified_pickup,
                                                                         outcomes))

    async def _commit_plan(self, plan: list[tuple[Settlement, Settled]],
                           attempts: list[AttemptRecord]
                           ) -> list[tuple[Settlement, list[str]]]:
        settled = await asyncio.wrap_future(
            self.store.submit_settlements([settlement for settlement, _ in plan], attempts))
        for (_, then), rcpts in zip(plan, settled, strict=True):
            then(rcpts)
        return [(settlement, rcpts) for (settlement, _), rcpts in zip(plan, settled, strict=True)]

    # -- the original sender of a notification's pickup ------------------------------------

    async def _notified_pickup(self, first: QueuedRecipient) -> str | None:
        """The pickup a notification group is about (None for any other mail)."""
        if first.reason != NOTIFICATION_REASON or first.client or self.records is None:
            return None
        try:
            headers = await asyncio.to_thread(self.store.read_spool_headers, first.message_id)
        except FileNotFoundError:
            return None
        return pickup_of_notification(headers)

    async def _notification_settled(self, pickup_id: str,
                                    outcomes: list[tuple[Settlement, list[str]]]) -> None:
        """Record what became of the notification in the pickup's trail and, when the
        recipient cannot be told, queue the report its sender is owed."""
        records = self.records
        assert records is not None  # _notified_pickup found a pickup id only with records
        for settlement, settled in outcomes:
            for rcpt in settled:
                owed = await asyncio.to_thread(
                    record_outcome, records, pickup_id, settlement.state,
                    settlement.replies[rcpt], settlement.report is not None)
                if owed is not None:
                    await asyncio.to_thread(self._queue_unnotified, owed)
                    self.wake()

    def _queue_unnotified(self, owed: Unnotified) -> None:
        report = build_unnotified_report(
            reporting_mta=self.retry.reporting_mta, report=owed,
            expires_text=human_date(owed.pickup.expires))
        route = report_route(owed.pickup.sender, DSN_REASON, self.retry.internal_domains)
        queue_id = self.store.enqueue("", [route], report)
        log.info("%s: told %s that %s was not notified (%s)", owed.pickup.message_id,
                 owed.pickup.sender, owed.pickup.recipient, queue_id,
                 extra=outcome("sender-told-unnotified", owed.pickup.message_id,
                               [owed.pickup.recipient], owed.reply))

    def _record(self, plan: list[tuple[Settlement, Settled]], first: QueuedRecipient,
                rcpts: list[str], state: str, reply: str, report: Report | None = None) -> None:
        if not rcpts:
            return

        def then(settled: list[str]) -> None:
            if settled:
                log.info("%s to %s: %s (%s)", first.message_id, ",".join(settled), state, reply,
                         extra=outcome(state, first.message_id, settled, reply))
            if settled and report is not None:
                self.wake()

        plan.append((Settlement(first.message_id, dict.fromkeys(rcpts, reply), state,
                                report=report), then))

    def _receipt_for_delivered(self, items: list[QueuedRecipient], result: DomainResult
                               ) -> Report | None:
        """The receipt for those of ITEMS that asked for one (NOTIFY=SUCCESS, or the policy),
        telling how the copy left: queued with their settlement."""
        wanted = [i for i in items if wants_receipt(i)]
        took = result.delivered_by
        if not wanted or took is None:
            return None
        first = wanted[0]
        copies = [HandedOver(i.rcpt, took.host, took.address, took.reply, took.tls_version,
                             took.cipher, took.authentication, not result.next_hop_dsn,
                             i.orcpt) for i in wanted]
        receipt = build_receipt(reporting_mta=self.retry.reporting_mta, sender=first.sender,
                                queue_id=first.message_id,
                                original=self._original_headers(first), arrival=first.received,
                                copies=copies, envid=first.dsn.envid)
        return Report("", report_route(first.sender, DSN_REASON, self.retry.internal_domains),
                      receipt)

    def _bounce(self, plan: list[tuple[Settlement, Settled]], first: QueuedRecipient,
                failures: dict[str, str],
                items: dict[str, QueuedRecipient] | None = None) -> None:
        """Settle FAILURES as bounced and, in the same transaction, queue the report: a DSN to
        the sender (for the recipients whose NOTIFY asks for failures), or for a bounce that
        bounced, a postmaster copy (never a DSN to <>). ITEMS: the claimed recipients."""
        if not failures:
            return
        items = items or {first.rcpt: first}
        told = {r: v for r, v in failures.items() if not first.sender
                or wants_failure(items.get(r, first))}
        report = self._bounce_report(first, told, items) if told else None

        def then(settled: list[str]) -> None:
            for rcpt in settled:
                log.info("%s to %s: bounced (%s)", first.message_id, rcpt, failures[rcpt],
                         extra=outcome("bounced", first.message_id, [rcpt], failures[rcpt]))
            if settled and not first.sender:
                self._log_double_bounce(first, settled, failures, report)
            if report is not None:
                self.wake()

        plan.append((Settlement(first.message_id, failures, State.BOUNCED, report=report), then))

    def _bounce_report(self, first: QueuedRecipient, failures: dict[str, str],
                       items: dict[str, QueuedRecipient]) -> Report | None:
        if first.sender:
            reported = [items.get(r, first) for r in failures]
            # RET=FULL returns the body only when no reported copy is confidential.
            full = first.dsn.ret == "FULL" and not any(i.confidential for i in reported)
            return self._report(first, first.sender, DSN_REASON, failures, delayed=False,
                                orcpts={i.rcpt: i.orcpt for i in reported if i.orcpt},
                                full=full)
        if self.retry.alerts_to and first.reason != POSTMASTER_REASON:
            return self._report(first, self.retry.alerts_to, POSTMASTER_REASON, failures,
                                double_bounce=True)
        return None

    def _log_double_bounce(self, first: QueuedRecipient, settled: list[str],
                           failures: dict[str, str], report: Report | None) -> None:
        told = f"postmaster copy to {self.retry.alerts_to}" if report else "no report sent"
        if first.reason == POSTMASTER_REASON:
            told = "it was itself a postmaster copy: no report sent"
        for rcpt in settled:
            log.warning("double bounce: %s (null sender) to %s undeliverable: %s (%s)",
                        first.message_id, rcpt, failures[rcpt], told,
                        extra=outcome("double-bounce", first.message_id, [rcpt],
                                      failures[rcpt], report=told))

    def _report(self, first: QueuedRecipient, to: str, reason: str, failures: dict[str, str],
                delayed: bool = False, double_bounce: bool = False,
                orcpts: dict[str, str] | None = None, full: bool = False) -> Report:
        dsn = build_dsn(reporting_mta=self.retry.reporting_mta, sender=to,
                        queue_id=first.message_id, original=self._original_headers(first, full),
                        failures=failures, arrival=first.received, delayed=delayed,
                        double_bounce=double_bounce, envid=first.dsn.envid if not double_bounce
                        else "", orcpts=orcpts, full=full)
        return Report("", report_route(to, reason, self.retry.internal_domains), dsn)

    def _original_headers(self, first: QueuedRecipient, full: bool = False) -> bytes:
        """The header section of FIRST's message; with FULL, the whole message."""
        try:
            if full:
                return self.store.read_spool(first.message_id)
            return self.store.read_spool_headers(first.message_id)
        except FileNotFoundError:  # the report goes out without them rather than never
            log.error("%s: spool file missing; reporting without the original headers",
                      first.message_id)
            return b""

    def _crossed_delay_warning(self, item: QueuedRecipient) -> bool:
        """Warn once: on the first deferral at or past delay_warning (the previous attempt,
        if any, was before it)."""
        threshold = self.retry.delay_warning
        return bool(threshold) and (item.updated - item.received < threshold
                                    <= self.store.clock() - item.received)

    def _defer(self, plan: list[tuple[Settlement, Settled]], items: list[QueuedRecipient],
               result: DomainResult) -> None:
        for item in items:
            reply = result.deferred.get(item.rcpt, result.reply)
            if self.store.clock() - item.received >= self.retry.lifetime:
                self._bounce(plan, item, {item.rcpt: f"4.4.7 delivery time expired: {reply}"})
                continue
            report = None
            if item.sender and wants_delay(item) and self._crossed_delay_warning(item):
                report = self._report(item, item.sender, DSN_REASON, {item.rcpt: reply},
                                      delayed=True,
                                      orcpts={item.rcpt: item.orcpt} if item.orcpt else None)
            plan.append((Settlement(item.message_id, {item.rcpt: reply}, State.DEFERRED,
                                    self._next_attempt(item), report=report),
                         self._deferred_then(item, reply, report is not None)))

    def _deferred_then(self, item: QueuedRecipient, reply: str, reported: bool) -> Settled:
        def then(settled: list[str]) -> None:
            if settled:
                log.info("%s to %s: deferred (%s)", item.message_id, item.rcpt, reply,
                         extra=outcome("deferred", item.message_id, [item.rcpt], reply))
            if reported:
                self.wake()

        return then

    def _next_attempt(self, item: QueuedRecipient) -> float:
        delay = min(self.retry.initial * 2 ** item.attempts, self.retry.maximum)
        return float(self.store.clock() + delay)

    async def _to_pickup(self, items: list[QueuedRecipient], reason: str) -> None:
        for item in items:
            receipt = self._pickup_receipt if wants_receipt(item) else None
            stored = await asyncio.to_thread(self.pickup.store_for_pickup, item.message_id,
                                             item.sender, item.rcpt, item.received, reason,
                                             partial(receipt, item) if receipt else None)
            if stored is None:
                log.warning("%s to %s: not stored for pickup: its claim was taken over",
                            item.message_id, item.rcpt,
                            extra=outcome("pickup-lease-lost", item.message_id, [item.rcpt]))
                continue
            log.info("%s to %s: stored for pickup (%s)", item.message_id, item.rcpt, reason,
                     extra=outcome("stored-for-pickup", item.message_id, [item.rcpt], reason))
            metrics.pickup_stored()
        self.wake()  # the notifications just queued

    def _pickup_receipt(self, item: QueuedRecipient, expires: float) -> Report:
        """The receipt for ITEM's copy, stored for pickup until EXPIRES (blocking: it reads
        the original's header section; called by the pickup stage in its worker thread)."""
        receipt = build_receipt(reporting_mta=self.retry.reporting_mta, sender=item.sender,
                                queue_id=item.message_id,
                                original=self._original_headers(item), arrival=item.received,
                                copies=[StoredForPickup(item.rcpt, expires, item.orcpt)],
                                envid=item.dsn.envid,
                                note=self.pickup.receipt_note(item.message_id, item.sender,
                                                              expires))
        return Report("", report_route(item.sender, DSN_REASON, self.retry.internal_domains),
                      receipt)
