"""Relay policy in thin hooks: who may relay, envelope checks, and the acceptance of one
message as its DATA streams in (classify the header section as soon as it is complete,
stream the body to the spool, queue it in the next group commit).

A 250 to DATA is sent only after the message is fsync'ed in the spool and its queue rows
are committed, so an accepted message survives a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import ipaddress
import logging
import math
import shutil
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dns.exception
import dns.reversename
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.classify.body_scan import BodyScan
from gateway.classify.internal import route_for
from gateway.classify.policy import (
    Decision,
    HeaderSection,
    Policy,
    decide,
    read_header_section,
    strip_subject_tags,
)
from gateway.config import Config, parse_duration
from gateway.delivery.mx import make_resolver
from gateway.inbound import codes
from gateway.inbound.esmtp_params import GatewayEnvelope, RecipientDSN
from gateway.inbound.headers import (
    HELO_UNSAFE,
    protocol_name,
    received_date,
    received_header,
    rewrite_subject,
    tls_comment,
)
from gateway.inbound.requiretls import (
    KEYWORD,
    TLS_REQUIRED,
    requiretls_route,
    strip_tls_required,
    tls_required_no,
)
from gateway.ops.metrics import accepted, refused
from gateway.storage import is_storage_full, storage_errors
from gateway.storage.ids import new_queue_id
from gateway.storage.protocols import EnvelopeDSN, IncomingMessage, Route, Storage

log = logging.getLogger("sealgate.smtp")
_HEAD_END = b"\r\n\r\n"
_REMEMBERED_CLIENTS = 4096


class FreeSpace:
    """Free space in a directory, measured off the event loop. With plenty to spare, a
    measurement stands for a short while (statvfs on every MAIL cost a thread hop each);
    near the limit, and for every refusal, a fresh one decides, so a disk that fills is
    noticed at once and mail is taken again as soon as space is freed."""

    STANDS_FOR = 0.25  # seconds
    # More than a 1 Gbit/s link can bring in STANDS_FOR: then the reading cannot be wrong.
    SPARE = 64 * 1024 * 1024

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.free = 0
        self.measured_at = -math.inf
        self._measuring: asyncio.Future[None] | None = None

    async def at_least(self, needed: int) -> bool:
        loop = asyncio.get_running_loop()
        if self.free >= needed + self.SPARE and loop.time() - self.measured_at < self.STANDS_FOR:
            return True
        if self._measuring is None:  # concurrent MAILs share one measurement
            self._measuring = asyncio.ensure_future(self._measure())
        await asyncio.shield(self._measuring)
        return self.free >= needed

    async def _measure(self) -> None:
        try:
            started = asyncio.get_running_loop().time()
            self.free = (await asyncio.to_thread(shutil.disk_usage, self.directory)).free
            self.measured_at = started
        finally:
            self._measuring = None


class RelayHandler:
    def __init__(self, config: Config, store: Storage, policy: Callable[[], Policy],
                 on_queued: Callable[[], None]) -> None:
        self.config = config
        self.store = store
        self.policy = policy
        self.on_queued = on_queued
        self.networks = config.smtp.networks()
        self.resolver = make_resolver(config.dns.nameservers, parse_duration(config.dns.timeout))
        self.resolver.cache = None  # a client's name is looked up afresh for each connection
        # One look-up per SMTP session, not per message (as Postfix's smtpd): the client's
        # address cannot change within a connection, and the look-up cost about a quarter of
        # a listener's event-loop time when every message paid for it.
        self._client_names: weakref.WeakKeyDictionary[Session, asyncio.Future[str | None]] = \
            weakref.WeakKeyDictionary()
        self._relay_allowed: dict[str, bool] = {}  # by client address; networks are fixed
        self.free_space = FreeSpace(config.storage_dir)

    def may_relay(self, session: Session) -> bool:
        """Asked at every MAIL and RCPT: the answer per address is remembered."""
        ip = _client_ip(session)
        allowed = self._relay_allowed.get(ip)
        if allowed is None:
            if len(self._relay_allowed) >= _REMEMBERED_CLIENTS:
                self._relay_allowed.clear()
            allowed = self._relay_allowed[ip] = self._in_allowed_networks(ip)
        return allowed

    def _in_allowed_networks(self, ip: str) -> bool:
        try:
            peer = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped:
            peer = peer.ipv4_mapped
        return any(peer in network for network in self.networks)

    async def storage_is_short(self, mail_options: list[str]) -> bool:
        """Less free space in the storage dir than the declared SIZE plus the reserve."""
        declared = next((int(o[5:]) for o in mail_options
                         if o.startswith("SIZE=") and o[5:].isdigit()), 0)
        return not await self.free_space.at_least(declared + self.config.smtp.min_free_space)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not self.may_relay(session):
            return refused(codes.RELAY_DENIED, "mail")
        if address == "<>":  # aiosmtpd's spelling of the null reverse-path (bounces)
            address = ""
        if not address.isascii() and not envelope.smtp_utf8:
            return refused(codes.NEEDS_SMTPUTF8, "mail")
        if await self.storage_is_short(mail_options):
            log.warning("refusing mail from %s: storage is short", _client_ip(session))
            return refused(codes.INSUFFICIENT_STORAGE, "mail")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return codes.OK_SENDER

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.may_relay(session):
            return refused(codes.RELAY_DENIED, "rcpt")
        local, _, domain = address.rpartition("@")
        if not address.isascii() and not envelope.smtp_utf8:
            return refused(codes.NEEDS_SMTPUTF8, "rcpt")
        if domain.startswith("["):
            return refused(codes.ADDRESS_LITERAL, "rcpt")
        if "%" in local or "!" in local:
            return refused(codes.ROUTING_LOCAL_PART, "rcpt")
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return refused(codes.TOO_MANY_RECIPIENTS, "rcpt")
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return codes.OK_RECIPIENT

    def begin_data(self, server: SMTP, session: Session, envelope: Envelope) -> Acceptance:
        """The acceptance of the message whose DATA starts now."""
        return Acceptance(self, session, envelope)

    def session_client_name(self, session: Session, ip: str) -> asyncio.Future[str | None]:
        """The client's name for SESSION, looked up once (when its first message starts)."""
        found = self._client_names.get(session)
        if found is None or found.cancelled():
            found = asyncio.ensure_future(self.client_name(ip))
            self._client_names[session] = found
        return found

    async def client_name(self, ip: str) -> str | None:
        """The client's forward-confirmed reverse DNS name, or None."""
        try:
            answer = await self.resolver.resolve(dns.reversename.from_address(ip), "PTR")
            name = str(answer[0].target).rstrip(".")
            kind = "AAAA" if ":" in ip else "A"
            forward = await self.resolver.resolve(name, kind)
        except (dns.exception.DNSException, ValueError, IndexError):
            return None
        if ip not in {r.address for r in forward}:
            return None
        return HELO_UNSAFE.sub("_", name)[:255]


class Acceptance:
    """One message as its content arrives (checked and unstuffed by the DATA reader): the
    header section is kept until it is complete, then classified and written with the
    Received field to the spool; the body follows it there in large pieces. finish()
    queues it in the next group commit and gives the reply to DATA."""

    def __init__(self, handler: RelayHandler, session: Session, envelope: Envelope) -> None:
        self.handler = handler
        self.session = session
        self.envelope = envelope
        self.queue_id = new_queue_id()
        self.head = bytearray()
        self.spool: IncomingMessage | None = None  # set once the header section is complete
        self.decisions: list[Decision] = []
        # With [[rule]]s on the body: the scan fed as the body streams, and what the final
        # decision (at the end of data) needs besides it.
        self.body_scan: BodyScan | None = None
        self._classified: tuple[Policy, HeaderSection] | None = None
        self.receipts = False  # the policy's [confidential] receipts, when classified
        self.message_id = ""  # the Message-ID field, for the log
        self.requiretls = KEYWORD in envelope.mail_options  # MAIL ... REQUIRETLS (RFC 8689)
        self.tls_optional = False  # "TLS-Required: No", unless REQUIRETLS overrides it
        self.refusal: str | None = None  # a reply decided before the end of data
        self.failure: BaseException | None = None  # what kept us from storing the message
        self.ip = str(session.peer[0]) if isinstance(session.peer, tuple) else ""
        # Looked up while the message arrives: the Received field needs it.
        self._client_name = handler.session_client_name(session, self.ip)

    async def add(self, piece: bytes) -> None:
        if self.refusal is not None or self.failure is not None:
            return  # read to the end, store nothing
        try:
            if self.spool is None:
                await self._add_to_head(piece)
            else:
                self.spool.add(piece)
                await self._scan(piece)
            if self.spool is not None and self.spool.needs_spill:
                await asyncio.to_thread(self.spool.spill)
        except Exception as exc:  # noqa: BLE001 - answered at the end of data, not mid-stream
            self.failure = exc
            self._drop_spool()

    async def _add_to_head(self, piece: bytes) -> None:
        searched = max(len(self.head) - 3, 0)
        self.head += piece
        if self.head.startswith(b"\r\n"):  # the message starts with its body
            end = 0
        else:
            found = self.head.find(_HEAD_END, searched)
            if found < 0:
                return
            end = found + 2
        head, body = bytes(self.head[:end]), bytes(self.head[end:])
        self.head = bytearray()
        await self._start_spool(head)
        assert self.spool is not None
        self.spool.add(body)
        await self._scan(body)

    async def _scan(self, piece: bytes) -> None:
        """Feed the body scan; what may take milliseconds runs off the event loop."""
        scan = self.body_scan
        if scan is None:
            return
        if scan.heavy(len(piece)):
            await asyncio.to_thread(scan.feed, piece)
        else:
            scan.feed(piece)

    async def _start_spool(self, head: bytes) -> None:
        """Classify HEAD (the whole header section) and begin the spool file with it."""
        section = read_header_section(head)
        if not section.fields:
            self.refusal = codes.NO_HEADERS
            return
        self.message_id = next((f.unfolded.strip() for f in section.named("message-id")), "")
        policy = self.handler.policy()
        self.receipts = policy.receipts
        sender = self.envelope.mail_from or ""
        # The header-only decision (tag stripping needs it now); with body rules it is taken
        # again at the end of data with what the body scan found.
        self.decisions = [decide(policy, section, rcpt, sender=sender)
                          for rcpt in self.envelope.rcpt_tos]
        if policy.needs_body:
            self.body_scan = BodyScan(policy.content_rules, policy.scan.scan_limit, head)
            self._classified = (policy, section)
        if policy.strip_tags and any(d.confidential for d in self.decisions):
            head = rewrite_subject(head, lambda s: strip_subject_tags(policy, s))
        head = self._tls_required(section, policy, head)
        self.spool = self.handler.store.incoming_spool(self.queue_id)
        self.spool.add(await self._received_field() + head)

    def _tls_required(self, section: HeaderSection, policy: Policy, head: bytes) -> bytes:
        """Note "TLS-Required: No" (RFC 8689 5; REQUIRETLS wins over it) and remove it from
        mail that is, or may yet turn, confidential: body rules decide only at the end of
        data, and confidential mail must never carry it on."""
        if not section.named(TLS_REQUIRED):
            return head
        self.tls_optional = tls_required_no(section) and not self.requiretls
        if self.requiretls or policy.needs_body or any(d.confidential for d in self.decisions):
            return strip_tls_required(head)
        return head

    async def _received_field(self) -> bytes:
        config = self.handler.config
        # Shielded: a message given up while waiting must not cancel the session's look-up.
        client_name = await asyncio.shield(self._client_name)
        return received_header(
            helo=self.session.host_name or "", client_name=client_name,
            client_ip=self.ip, hostname=config.smtp.hostname,
            protocol=protocol_name(self.session, self.envelope), queue_id=self.queue_id,
            rcpts=self.envelope.rcpt_tos, tls=tls_comment(self.session),
            date=received_date())

    async def finish(self, problem: str | None) -> str:
        """The reply to DATA, once the end of data was read; PROBLEM: the content's fault
        found by the reader (it decides the reply before anything else)."""
        if problem is None and self.refusal is None and self.failure is None \
                and self.spool is None:  # no empty line: the message is all header section
            try:
                await self._start_spool(bytes(self.head))
            except Exception as exc:  # noqa: BLE001 - answered below
                self.failure = exc
        reply = problem or self.refusal
        if reply is not None or self.failure is not None:
            self.abort()
            return refused(reply or self._failure_reply(self.failure), "data")
        assert self.spool is not None
        await self._decide_with_body()
        return await self._queue(self.spool)

    async def _decide_with_body(self) -> None:
        """The final decision, before the 250: the body scan's findings added."""
        scan = self.body_scan
        if scan is None or self._classified is None:
            return
        policy, section = self._classified
        content = await asyncio.to_thread(scan.close) if scan.heavy(0) else scan.close()
        self.body_scan = None
        self.decisions = [decide(policy, section, rcpt, sender=self.envelope.mail_from or "",
                                 content=content) for rcpt in self.envelope.rcpt_tos]

    async def _queue(self, spool: IncomingMessage) -> str:
        routes = self._with_dsn([route_for(d.recipient, d, self.handler.config.internal.domains)
                                 for d in self.decisions])
        if self.requiretls:
            routes = [requiretls_route(r) for r in routes]
        dsn = self.envelope.dsn if isinstance(self.envelope, GatewayEnvelope) else EnvelopeDSN()
        if dsn.ret == "FULL" and (self.requiretls or any(d.confidential for d in self.decisions)):
            # Fail closed: confidential for one recipient is confidential content for all,
            # so no report (ours or a next hop's) may carry it back.
            dsn = dataclasses.replace(dsn, ret="HDRS")
        future = self.handler.store.submit_enqueue(
            self.envelope.mail_from or "", routes, spool, self.ip,
            smtputf8=self.envelope.smtp_utf8, dsn=dsn, requiretls=self.requiretls,
            tls_optional=self.tls_optional)
        self.spool = None  # the writer owns it now, and removes it if it fails
        try:
            await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 - every failure gets a clean SMTP answer
            return refused(self._failure_reply(exc), "data")
        log.info("%s accepted from %s: %s -> %s", self.queue_id, self.ip,
                 self.envelope.mail_from,
                 ", ".join(f"{d.recipient} ({d.mode})" for d in self.decisions),
                 extra={"event": "accepted", "queue_id": self.queue_id,
                        "message_id": self.message_id, "client": self.ip,
                        "sender": self.envelope.mail_from or "",
                        "recipient": [d.recipient for d in self.decisions],
                        "mode": [str(d.mode) for d in self.decisions],
                        "tls": tls_comment(self.session)})
        accepted([str(d.mode) for d in self.decisions])
        self.handler.on_queued()
        return codes.QUEUED.format(queue_id=self.queue_id)

    def _with_dsn(self, routes: list[Route]) -> list[Route]:
        """ROUTES (in RCPT order) with each recipient's NOTIFY and ORCPT, and the receipt
        the policy asks for confidential mail (never for a null sender: nobody to tell)."""
        asked = (self.envelope.rcpt_dsn if isinstance(self.envelope, GatewayEnvelope)
                 else [])
        asked = asked + [RecipientDSN()] * (len(routes) - len(asked))
        receipts = self.receipts and bool(self.envelope.mail_from)
        return [dataclasses.replace(route, notify=dsn.notify, orcpt=dsn.orcpt,
                                    receipt=receipts and route.confidential)
                for route, dsn in zip(routes, asked, strict=False)]

    def _failure_reply(self, exc: BaseException | None) -> str:
        """452 when the disk is full, 451 otherwise: one line for the admin, no traceback."""
        if exc is not None and _is_disk_full(exc):
            log.warning("could not queue a message from %s: storage is full (%s)", self.ip, exc)
            return codes.INSUFFICIENT_STORAGE
        log.error("could not queue a message from %s: %s: %s", self.ip,
                  type(exc).__name__, exc)
        if isinstance(exc, (OSError, *storage_errors())):
            return codes.STORE_FAILED
        return codes.INTERNAL_ERROR

    def abort(self) -> None:
        """Nothing of this message is kept (refused, failed, or the client went away). The
        client's name is the session's: its look-up goes on for the next message."""
        self._drop_spool()

    def _drop_spool(self) -> None:
        if self.spool is not None:
            self.spool.discard()
            self.spool = None


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return is_storage_full(exc)


def _client_ip(session: Session) -> str:
    """aiosmtpd types Session.peer loosely; for TCP it is the (address, port, ...) tuple."""
    peer: Any = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""
