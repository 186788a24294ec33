"""The storage interface, as typed Protocols by concern.

Everything that crosses these Protocols is a value object (a frozen dataclass or an enum):
no SQL, no connection, no row and no file path. Each method is one unit of work: it reads
or changes what it names in one transaction, so a caller never holds a transaction open
and a back-end (SQLite + files today, PostgreSQL next) is free in how it keeps the data.

Times are seconds since the epoch on the storage's own clock (`clock`), which tests
replace with a fake one; limits (how long a code lives, how many a day) are passed in by
the caller, which owns the rules, while the back-end checks and writes them atomically.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from gateway.queue.model import Mode

Clock = Callable[[], float]

__all__ = [
    "Attempt", "AttemptRecord", "AuditEvent", "AuditStore", "CachedSTSPolicy", "CodeCheck",
    "CodeLimits", "CodeRedemption", "CodeSend", "Credentials", "EnvelopeDSN", "HostSecurity",
    "HostTLS", "IncomingMessage",
    "KnowledgeStore", "MessageStatus", "MessageStream", "NewUser", "Pickup", "PickupStore",
    "PortalCounts", "PortalStore", "QueueInspection", "QueueStore", "QueuedRecipient",
    "RecipientStatus", "Report", "ReportTargetFailure", "ResetLimits", "ResetLink", "Route",
    "STSFetchFailure", "SenderLink", "SenderLinkStore", "Session", "Settlement",
    "StagedPickup", "Storage", "TLSReportStore", "TLSSessionCount", "User",
    "WaitingRecipient",
]


# -- portal accounts ------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    address: str
    first_name: str
    last_name: str
    time_zone: str = "UTC"
    language: str = ""  # the portal language chosen ("en", "es"); "" = not chosen yet

    @property
    def display_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.address


@dataclass(frozen=True)
class Credentials:
    """A user with the stored password hash, for checking a password; never shown."""

    user: User
    password_hash: str


@dataclass(frozen=True)
class NewUser:
    address: str
    first_name: str
    last_name: str
    password_hash: str
    time_zone: str = "UTC"
    language: str = ""


@dataclass(frozen=True)
class Session:
    user: User
    last_seen: float


class CodeSend(enum.Enum):
    SENT = "sent"
    WAIT = "wait"    # asked again within the resend interval
    LIMIT = "limit"  # the daily limit is reached


class CodeCheck(enum.Enum):
    OK = "ok"
    WRONG = "wrong"            # try again
    INVALID = "invalid"        # none outstanding, expired, used, or out of attempts
    REGISTERED = "registered"  # the address has an account already: sign in instead


@dataclass(frozen=True)
class CodeLimits:
    lifetime: float         # seconds a code stays valid
    resend_interval: float  # no new code within this many seconds of the previous one
    daily_limit: int        # codes per address per 24 h
    max_attempts: int       # wrong tries before a code stops working


@dataclass(frozen=True)
class CodeRedemption:
    outcome: CodeCheck
    attempts_left: int


@dataclass(frozen=True)
class ResetLink:
    address: str
    pickup_id: str  # the message the request came from, to return to; may be empty


@dataclass(frozen=True)
class ResetLimits:
    lifetime: float  # seconds a link stays valid
    interval: float  # one link per this many seconds per address
    daily_limit: int


@dataclass(frozen=True)
class PortalCounts:
    """How much portal state exists: for metrics, admins, and tests that check nothing
    was left behind."""

    users: int
    sessions: int
    open_codes: int    # verification codes not used, expired or spent
    open_resets: int   # reset links not used or expired
    login_failures: int


class PortalStore(Protocol):
    """Accounts, sessions, verification codes, password resets and sign-in throttling.
    Addresses are passed normalised (stripped, lower case); secrets only as hashes."""

    clock: Clock

    def get_user(self, address: str) -> User | None: ...
    def get_credentials(self, address: str) -> Credentials | None: ...
    def replace_password_hash(self, address: str, password_hash: str) -> None:
        """The same password hashed with new parameters: sessions stay."""
    def set_password(self, address: str, password_hash: str) -> None:
        """A new password; it ends every session of the account."""
    def set_time_zone(self, address: str, zone: str) -> None: ...
    def set_language(self, address: str, language: str) -> None: ...

    def issue_code(self, address: str, code_hash: str, limits: CodeLimits) -> CodeSend:
        """Store a new code (earlier ones stop working) unless LIMITS say wait."""
    def redeem_code(self, user: NewUser, code_hash: str, limits: CodeLimits) -> CodeRedemption:
        """Check the newest code of USER's address and, when it matches, create USER (and end
        any session of the address) in the same unit of work."""
    def redeem_sign_in_code(self, address: str, code_hash: str,
                            limits: CodeLimits) -> CodeRedemption:
        """Check the newest code of ADDRESS, which has an account, and spend it when it
        matches (OK): signing in by code. Changes no account; INVALID when ADDRESS has none."""

    def start_session(self, token_hash: str, address: str, idle_timeout: float,
                      replacing: str | None = None) -> None:
        """A session for ADDRESS; ends the session REPLACING (a token hash) and idle ones."""
    def find_session(self, token_hash: str) -> Session | None: ...
    def touch_session(self, token_hash: str) -> None: ...
    def end_session(self, token_hash: str) -> None: ...
    def end_all_sessions(self, address: str) -> None: ...

    def issue_reset(self, token_hash: str, address: str, pickup_id: str,
                    limits: ResetLimits) -> bool:
        """Store a reset link (earlier ones stop working); False when ADDRESS has no account
        or LIMITS say no more links for now."""
    def peek_reset(self, token_hash: str) -> ResetLink | None: ...
    def redeem_reset(self, token_hash: str, password_hash: str) -> ResetLink | None:
        """Spend the link and set the new password (ending every session) in one unit."""

    def count_login_failures(self, key: str, since: float) -> int: ...
    def record_login_failures(self, keys: Sequence[str], window: float) -> None:
        """One failure now for each of KEYS; failures older than WINDOW are forgotten."""
    def clear_login_failures(self, key: str) -> None: ...

    def portal_counts(self) -> PortalCounts: ...


# -- pickups and threads --------------------------------------------------------------------


@dataclass(frozen=True)
class Pickup:
    id: str
    message_id: str
    sender: str
    recipient: str
    created: float
    expires: float
    read_at: float | None
    size: int
    kind: str = "message"          # "message" from the gateway, "reply" written in the portal
    thread_id: str | None = None   # for a reply: the message it answers
    replied_at: float | None = None
    key_id: str = ""               # the key ring's key that wraps its data key

    @property
    def state(self) -> str:
        if self.replied_at:
            return "replied"
        return "read" if self.read_at else "unread"


class MessageStream(Protocol):
    """A stored message read in chunks. Each chunks() call reads it again from the start and
    raises crypto.DecryptionError at its end if the stored copy changed since it was opened:
    what it yielded is good only once it ended without an error."""

    size: int

    def chunks(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...
    def __enter__(self) -> MessageStream: ...
    def __exit__(self, *_exc: object) -> None: ...


class PickupStore(Protocol):
    """Messages stored encrypted for pickup, and the portal replies kept in their thread."""

    clock: Clock

    def store_pickup(self, message_id: str, sender: str, recipient: str, expires: float, *,
                     pickup_id: str | None = None) -> str:
        """Encrypt the spooled message MESSAGE_ID for RECIPIENT; returns the pickup id."""
    def store_reply(self, root_id: str, queue_id: str, author: str, to: str, size: int) -> str:
        """Encrypt the spooled reply QUEUE_ID into ROOT_ID's thread, mark the root replied,
        and queue the reply for TO through the internal relay, in one unit of work."""
    def get_pickup(self, pickup_id: str) -> Pickup | None:
        """The pickup while it has not expired."""
    def list_pickups(self, recipient: str | None = None) -> list[Pickup]: ...
    def inbox(self, recipient: str) -> list[Pickup]:
        """Current messages (not replies) for RECIPIENT, newest first."""
    def thread_replies(self, root_id: str, owner: str) -> list[Pickup]:
        """Current replies in ROOT_ID's thread written by OWNER, oldest first."""
    def open_pickup(self, pickup_id: str) -> bytes:
        """The decrypted message; KeyError when gone, crypto.DecryptionError when tampered."""
    def open_pickup_stream(self, pickup_id: str) -> MessageStream:
        """The decrypted message as a stream, whatever its size; its tag has verified when
        this returns (KeyError when gone, crypto.DecryptionError when tampered)."""
    def mark_pickup_read(self, pickup_id: str) -> None: ...
    def destroy_conversation(self, pickup_id: str) -> int: ...
    def destroy_pickup(self, pickup_id: str) -> bool: ...
    def expired_pickups(self) -> list[str]: ...


# -- the sender's receipt link ------------------------------------------------------------


@dataclass(frozen=True)
class SenderLink:
    """The capability that shows the sender of MESSAGE_ID (a queue id: its pickups, one per
    recipient, share it) their message's status and lets them revoke it. Only the hash of
    its secret is stored; it stops working at EXPIRES, when the message expires."""

    link_id: str       # looked up by this (not secret); the secret is compared in constant time
    secret_hash: str
    message_id: str
    sender: str        # the envelope sender it was issued to, as stored on the pickups
    created: float
    expires: float
    revoked_at: float | None = None  # when the sender revoked the message through it


class SenderLinkStore(Protocol):
    """Sender links, and the pickups of one message that a sender link shows."""

    clock: Clock

    def put_sender_link(self, link: SenderLink) -> None:
        """Store LINK (a new link_id)."""
    def get_sender_link(self, link_id: str) -> SenderLink | None:
        """The link while it has not expired."""
    def mark_sender_link_revoked(self, link_id: str) -> None:
        """Record that the message was revoked through the link (the first time counts)."""
    def message_pickups(self, message_id: str) -> list[Pickup]:
        """The current pickups (never replies) stored from queue message MESSAGE_ID, by
        recipient."""
    def forget_expired_sender_links(self) -> int:
        """Delete links past their expiry; how many."""


# -- TLS and MTA-STS knowledge --------------------------------------------------------------


@dataclass(frozen=True)
class HostTLS:
    host: str
    starttls: bool
    verified: bool
    seen: float
    detail: str


@dataclass(frozen=True)
class CachedSTSPolicy:
    """An MTA-STS policy as fetched (RFC 8461), with when it was fetched."""

    policy_id: str
    mode: str  # as published; the reader decides what an unknown mode means
    mx_patterns: tuple[str, ...]
    max_age: int
    fetched: float


@dataclass(frozen=True)
class HostSecurity:
    """What an MX host's sessions showed over time, per host (whatever domain it serves),
    for downgrade detection: when it last did STARTTLS, when its certificate last verified,
    and the downgrade it is in (when it began, and the day an alert about it last went)."""

    host: str
    starttls_seen: float | None
    verified_seen: float | None
    downgraded_since: float | None = None
    downgrade_detail: str = ""
    alerted_day: str = ""


@dataclass(frozen=True)
class STSFetchFailure:
    """Failed MTA-STS policy fetches of one domain in a row (the negative cache): for which
    TXT id, how many, the last reason, and when the next fetch may be tried."""

    domain: str
    policy_id: str
    failures: int
    detail: str
    retry_at: float


class KnowledgeStore(Protocol):
    """What deliveries and probes learned about MX hosts' TLS, and cached MTA-STS policies.
    Domains and hosts are matched case-insensitively."""

    clock: Clock

    def record_host_tls(self, domain: str, host: str, starttls: bool, verified: bool,
                        detail: str) -> None: ...
    def host_tls_since(self, domain: str, since: float) -> list[HostTLS]: ...
    def get_sts_policy(self, domain: str) -> CachedSTSPolicy | None: ...
    def put_sts_policy(self, domain: str, policy: CachedSTSPolicy) -> None: ...
    def delete_sts_policy(self, domain: str) -> None: ...
    def sts_policies_to_refresh(self, now: float, fraction: float) -> list[str]:
        """Domains whose cached policy is still valid at NOW but has lived more than FRACTION
        of its max_age: the ones to fetch again before they expire."""
    def record_sts_failure(self, domain: str, policy_id: str, detail: str,
                           first_delay: float, max_delay: float) -> STSFetchFailure:
        """One more failed fetch of DOMAIN's policy POLICY_ID: the next may be tried after
        FIRST_DELAY, doubled per failure in a row, at most MAX_DELAY (a new id starts over)."""
    def sts_failure(self, domain: str) -> STSFetchFailure | None: ...
    def clear_sts_failure(self, domain: str) -> None: ...
    def record_host_security(self, host: str, starttls: bool, verified: bool) -> None:
        """A session that was no downgrade: STARTTLS (and VERIFIED) seen now; a downgrade the
        host was in is over."""
    def mark_downgraded(self, host: str, detail: str) -> float:
        """HOST is seen downgraded (DETAIL says how); returns when this downgrade began (the
        first such sighting since it last was not downgraded)."""
    def host_security(self, host: str) -> HostSecurity | None: ...
    def claim_downgrade_alert(self, host: str, day: str) -> bool:
        """True for the first caller on DAY (of every process and node) for HOST: that
        caller sends the alert."""
    def forget_host(self, host: str) -> bool:
        """Forget everything learned about HOST's TLS (its downgrade memory and its TLS
        cache rows); False when nothing was known."""
    def forget_stale_hosts(self, seen_before: float) -> int:
        """Forget the TLS cache rows and downgrade memory of hosts not seen since
        SEEN_BEFORE (before the TLS cache's TTL and the downgrade window both): they no
        longer decide anything. How many rows went."""


# -- audit ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEvent:
    pickup_id: str  # what the event is about: a pickup id or, for queue actions, a queue id
    at: float
    event: str
    client: str
    detail: str


class AuditStore(Protocol):
    def audit(self, pickup_id: str, event: str, client: str = "", detail: str = "") -> None: ...
    def audit_events(self, pickup_id: str) -> list[AuditEvent]:
        """Every event about PICKUP_ID, oldest first."""


# -- key-encryption keys --------------------------------------------------------------------


@dataclass(frozen=True)
class KeyUsage:
    """One key-encryption key and what it still wraps."""
    key_id: str
    pickups: int                # stored messages (expired or not) whose data key it wraps
    last_expiry: float | None   # when the last of them expires; None when there is none


KEY_DESTROYED = "key-destroyed"  # the audit event of a destroyed KEK, about "key:<id>"


class KeyStore(Protocol):
    """The key-encryption keys that wrap the pickups' data keys (gateway/vault/crypto.py)."""

    def key_usage(self) -> list[KeyUsage]:
        """Every KEK there is, by key id."""
    def rotate_keys(self) -> int:
        """New KEKs for pickups stored from now on; returns the new generation."""
    def destroy_key(self, key_id: str, client: str, detail: str) -> bool:
        """Destroy KEY_ID wherever it is kept and audit it (KEY_DESTROYED about
        "key:<id>", by CLIENT, with DETAIL); False when there was no such key."""
    def key_destructions(self) -> list[AuditEvent]:
        """The audit events of every KEK destroyed, oldest first."""
    def retire_epochs(self, now: float) -> None:
        """Make sure nothing this node keeps could rebuild a destroyed KEK: where KEKs are
        kept wrapped (PostgreSQL), move the keys that unwrap them past the epochs that are
        gone, so that an old dump of the database stays unreadable too."""


# -- queue inspection for admins ------------------------------------------------------------


@dataclass(frozen=True)
class WaitingRecipient:
    message_id: str
    rcpt: str
    state: str
    attempts: int
    next_attempt: float
    last_reply: str
    mode: str
    sender: str
    received: float


@dataclass(frozen=True)
class Attempt:
    rcpt: str
    at: float
    host: str
    address: str
    reply: str
    tls_version: str | None
    cipher: str | None
    cert_subject: str
    cert_issuer: str
    verified: bool
    reason: str


@dataclass(frozen=True)
class RecipientStatus:
    rcpt: str
    domain: str
    confidential: bool
    mode: str
    reason: str
    state: str
    attempts: int
    next_attempt: float
    last_reply: str
    updated: float
    attempt_history: tuple[Attempt, ...] = field(default=())
    claimed_by: str = ""  # the owner delivering it (state `delivering`), else empty


@dataclass(frozen=True)
class MessageStatus:
    id: str
    sender: str
    received: float
    size: int
    client: str
    smtputf8: bool
    recipients: tuple[RecipientStatus, ...]
    requiretls: bool = False    # received with REQUIRETLS (RFC 8689)
    tls_optional: bool = False  # "TLS-Required: No" honoured (RFC 8689 5)


class QueueInspection(Protocol):
    """Read-only views of the queue, for `sealgate queue` and monitoring."""

    def waiting_recipients(self) -> list[WaitingRecipient]:
        """Recipients still queued, deferred or being delivered, oldest message first."""
    def queued_message(self, message_id: str) -> MessageStatus | None:
        """One message with each recipient's state and every delivery attempt."""
    def messages_to(self, rcpt: str) -> list[MessageStatus]:
        """Every message with RCPT (matched exactly) among its recipients, whatever their
        states, oldest first; as queued_message shows them."""
    def message_count(self) -> int: ...


# -- the queue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnvelopeDSN:
    """What the sender asked of delivery status notifications for a whole message
    (RFC 3461 4.3, 4.4): RET "FULL", "HDRS" or "" (not given); ENVID decoded, "" if none."""

    ret: str = ""
    envid: str = ""


@dataclass(frozen=True)
class Route:
    """How one recipient is to be handled, decided at accept time by the policy."""

    rcpt: str
    confidential: bool = False
    mode: str = "opportunistic"
    reason: str = ""
    # RFC 3461 4.1, 4.2: NOTIFY "" (not given), "NEVER" or a comma list of SUCCESS, FAILURE,
    # DELAY; ORCPT "addr-type;address" (decoded), "" if none.
    notify: str = ""
    orcpt: str = ""
    receipt: bool = False  # the policy asks for a receipt ([confidential] receipts = true)

    @property
    def domain(self) -> str:
        return self.rcpt.rpartition("@")[2].lower()


@dataclass(frozen=True)
class QueuedRecipient:
    """A recipient claimed for delivery, with what its message says about it."""

    message_id: str
    sender: str
    rcpt: str
    domain: str
    confidential: bool
    mode: Mode
    attempts: int
    received: float
    client: str = ""      # the SMTP client's address; empty for mail Sealgate wrote itself
    updated: float = 0.0  # time of the previous attempt
    reason: str = ""      # why the route was chosen; for mail Sealgate wrote, what it is
    smtputf8: bool = False  # received with SMTPUTF8: the next hop must offer it (RFC 6531)
    notify: str = ""      # as Route.notify
    orcpt: str = ""       # as Route.orcpt
    receipt: bool = False  # as Route.receipt
    dsn: EnvelopeDSN = field(default_factory=EnvelopeDSN)  # the message's RET and ENVID
    requiretls: bool = False  # received with MAIL ... REQUIRETLS (RFC 8689): relayed only so
    tls_optional: bool = False  # "TLS-Required: No" (RFC 8689 5) honoured for this message


@dataclass(frozen=True)
class Report:
    """Mail Sealgate writes about a message (a DSN, a postmaster copy, a pickup
    notification), queued together with the outcome it reports so that neither exists
    without the other."""

    sender: str
    route: Route
    content: bytes


@dataclass(frozen=True)
class Settlement:
    """One outcome to record: STATE for the recipients in REPLIES (each with its reply),
    NEXT_ATTEMPT for a deferral, and REPORT queued with it."""

    message_id: str
    replies: dict[str, str]
    state: str
    next_attempt: float | None = None
    report: Report | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One delivery attempt of one recipient of MESSAGE_ID, for its history."""

    message_id: str
    attempt: Attempt


@dataclass(frozen=True)
class StagedPickup:
    """A claimed recipient to store for pickup: the message MESSAGE_ID encrypted for RCPT
    under PICKUP_ID (chosen by the caller: the notification links to it), the recipient
    settled as stored with REPLY, and NOTIFICATION queued, all in one unit of work."""

    message_id: str
    sender: str
    rcpt: str
    expires: float
    pickup_id: str
    reply: str
    notification: Report
    receipt: Report | None = None  # a receipt for the sender (DSN success), queued with it


class IncomingMessage(Protocol):
    """A message being received, filled chunk by chunk and handed to submit_enqueue. add()
    only buffers (cheap on an event loop); spill() writes what is buffered (blocking: from
    a worker thread) and is due whenever needs_spill says so, so that a large message is
    never whole in memory. One owner at a time: the receiver, then the storage."""

    size: int

    @property
    def needs_spill(self) -> bool: ...
    def add(self, chunk: bytes | memoryview) -> None: ...
    def spill(self) -> None: ...
    def discard(self) -> None:
        """Leave nothing of it behind (the message was refused or the client went away)."""


class QueueStore(Protocol):
    """The mail queue: messages with their recipients, claimed by one runner at a time
    under a lease, and settled by the runner holding it.

    A recipient is queued or deferred until due, then claimed by OWNER (`delivering`)
    until LEASE seconds pass without a renewal: then another owner may take it over,
    and the first one's settlement changes nothing. A message's content (its spool) stays
    until no recipient needs it. The submit_* methods are the same units of work as their
    blocking twins, handed to the back-end's writer: their futures resolve once the work
    is durable (SQLite shares one commit among everything submitted meanwhile); the
    blocking ones are for callers off the hot path (tests, admin commands)."""

    clock: Clock
    owner: str    # names this process (and worker) on the claims it makes
    lease: float  # seconds a claim holds unless renewed

    # -- accepting --
    def incoming_spool(self, message_id: str) -> IncomingMessage:
        """An empty message to fill as it arrives, then to submit_enqueue under MESSAGE_ID."""
    def submit_enqueue(self, sender: str, routes: list[Route], spool: IncomingMessage,
                       client: str = "", smtputf8: bool = False,
                       dsn: EnvelopeDSN | None = None, requiretls: bool = False,
                       tls_optional: bool = False) -> Future[str]:
        """Queue SPOOL (from incoming_spool) for ROUTES; the future holds the queue id once
        content and recipients are durable (say 250 then), or the error: then nothing of
        the message is left. REQUIRETLS, TLS_OPTIONAL: as QueuedRecipient gives them back."""
    def enqueue(self, sender: str, routes: list[Route], content: bytes | Iterable[bytes],
                client: str = "", message_id: str | None = None,
                smtputf8: bool = False, dsn: EnvelopeDSN | None = None,
                requiretls: bool = False, tls_optional: bool = False) -> str:
        """submit_enqueue() of CONTENT (bytes, or chunks in order), waited for."""
    def spool_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Store CHUNKS (consumed once, never held whole) as the content of a message not
        queued yet, under a new queue id; returns the id and the size. Queued later (a
        portal reply: store_reply), or removed with delete_message."""

    # -- reading content (FileNotFoundError: no content kept under that id) --
    def read_spool(self, message_id: str) -> bytes: ...
    def read_spool_chunks(self, message_id: str) -> Iterator[bytes]:
        """The content in chunks, for a message too large to hold whole."""
    def read_spool_headers(self, message_id: str) -> bytes:
        """Only the header section: never the (maybe huge) body."""

    # -- claims --
    def claim_due(self, limit: int = 500, per_domain: int | None = None
                  ) -> list[QueuedRecipient]:
        """Claim due work for OWNER, atomically: up to LIMIT (message, domain) groups of
        recipients queued or deferred and due, or claimed by another owner whose lease ran
        out. With PER_DOMAIN, a domain gets no more groups than fit beside the live claims
        of every owner on it, so the cap holds across processes."""
    def submit_claim(self, limit: int = 500, per_domain: int | None = None
                     ) -> Future[list[QueuedRecipient]]: ...
    def still_claimed(self, message_id: str, rcpts: list[str]) -> list[str]:
        """Those of RCPTS of MESSAGE_ID that OWNER still holds."""
    def renew_leases(self) -> int:
        """Extend every claim OWNER holds; how many."""
    def submit_renew_leases(self) -> Future[int]: ...
    def release_claims(self, message_id: str, rcpts: list[str]) -> None:
        """Give back claims not worked on: due again, attempts unchanged."""
    def expire_leases(self, owner: str) -> int:
        """End now the claims of OWNER and its workers (owner ids "OWNER/..."), known to be
        dead, so that others take them over at once; how many."""

    # -- outcomes --
    def settle(self, message_id: str, replies: dict[str, str], state: str,
               next_attempt: float | None = None, report: Report | None = None) -> list[str]:
        """One Settlement, waited for: the recipients settled now."""
    def submit_settlements(self, settlements: Sequence[Settlement],
                           attempts: Sequence[AttemptRecord] = ()
                           ) -> Future[list[list[str]]]:
        """Record SETTLEMENTS, their reports and ATTEMPTS as one unit: all or none. Only
        recipients OWNER still holds are settled (a stale owner's outcome changes nothing),
        and a settlement that settles nobody queues no report. The future holds, per
        settlement, the recipients settled; by then content no recipient needs is gone."""
    def record_attempts(self, message_id: str, attempts: Sequence[Attempt]) -> None:
        """Add to the delivery history that `queue show` prints (one unit for all)."""
    def submit_attempts(self, attempts: Sequence[AttemptRecord]) -> Future[None]: ...
    def stage_pickup(self, staged: StagedPickup) -> str | None:
        """Store STAGED's message encrypted for pickup, settle its recipient as `pickup` and
        queue the notification, in one unit of work and only while OWNER holds the
        recipient's claim. Returns the pickup id, or None when the claim was lost: then
        nothing was stored (the owner holding it now stores its own pickup, one only).
        Blocking (encrypts the whole message): call from a worker thread."""

    # -- admin --
    def next_due_time(self) -> float | None: ...
    def flush(self) -> int:
        """Make every queued and deferred recipient due now; how many."""
    def delete_message(self, message_id: str) -> bool:
        """Remove the message, its recipients and content; False when there was none."""
    def prune_history(self, settled_before: float) -> int:
        """Forget messages received and settled (every recipient delivered, stored for
        pickup or bounced) before SETTLED_BEFORE: their rows and delivery history, which
        `queue show` prints; how many messages. Stored pickups are not touched: they have
        their own expiry."""
    def clean_spool_debris(self, min_age: float = 60.0, tmp_min_age: float = 0.0) -> int:
        """Remove content a crash or a full disk left behind: unfinished writes older than
        TMP_MIN_AGE, and content no pending recipient needs older than MIN_AGE (younger
        content may belong to a message being accepted right now); how many."""


# -- TLS reporting (RFC 8460) ---------------------------------------------------------------


@dataclass(frozen=True)
class TLSSessionCount:
    """COUNT delivery sessions of one UTC DAY ("2026-12-02") to POLICY_DOMAIN, checked
    against one policy (POLICY_TYPE "sts", "tlsa" or "no-policy-found", its POLICY_STRING
    lines and MX_HOST patterns), that ended in RESULT_TYPE ("success" or a failure type of
    RFC 8460 4.3), with the failure's addresses and names ("" for successes). DETAIL is the
    newest failure reason in words (failure-reason-code). Counts of the same key add up."""

    day: str
    policy_domain: str
    policy_type: str
    policy_string: tuple[str, ...]
    mx_host: tuple[str, ...]
    result_type: str
    sending_ip: str = ""
    receiving_mx: str = ""
    receiving_ip: str = ""
    detail: str = ""
    count: int = 1


@dataclass(frozen=True)
class ReportTargetFailure:
    """A report address (a rua URI) that failed FAILURES times in a row: not tried again
    before RETRY_AT."""

    target: str
    failures: int
    retry_at: float
    detail: str


class TLSReportStore(Protocol):
    """Delivery sessions counted per policy domain and day for TLS reports, which (domain,
    day) pairs were reported, and the back-off of report addresses that failed."""

    clock: Clock

    def submit_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> Future[None]:
        """Add COUNTS (one unit for all; the writer shares its commit with other work)."""
    def add_tls_sessions(self, counts: Sequence[TLSSessionCount]) -> None:
        """submit_tls_sessions(), waited for."""
    def tls_sessions(self, policy_domain: str, day: str) -> list[TLSSessionCount]:
        """Every count of POLICY_DOMAIN on DAY."""
    def unreported_tls_days(self, before_day: str) -> list[tuple[str, str]]:
        """(policy domain, day) pairs with sessions on a day before BEFORE_DAY that were not
        marked reported and are not claimed now, oldest day first."""
    def claim_tls_report(self, policy_domain: str, day: str, until: float) -> bool:
        """Claim the sending of POLICY_DOMAIN's report for DAY until UNTIL, atomically across
        nodes; False when it is done or another claim still holds."""
    def release_tls_report(self, policy_domain: str, day: str) -> None:
        """Give up a claim without a report done: the next run tries again."""
    def mark_tls_reported(self, policy_domain: str, day: str, outcome: str) -> None:
        """POLICY_DOMAIN's report for DAY is done (sent, or nobody to send it to)."""
    def prune_tls_sessions(self, before_day: str) -> int:
        """Forget counts and report marks of days before BEFORE_DAY; how many counts."""
    def report_target_failure(self, target: str) -> ReportTargetFailure | None: ...
    def record_report_target_failure(self, target: str, retry_at: float,
                                     detail: str) -> ReportTargetFailure:
        """One more failure of TARGET in a row."""
    def clear_report_target_failure(self, target: str) -> None:
        """TARGET took a report: its failures are forgotten."""


@runtime_checkable
class Storage(PortalStore, PickupStore, KnowledgeStore, AuditStore, KeyStore, QueueInspection,
              QueueStore, SenderLinkStore, TLSReportStore, Protocol):
    """Everything a back-end provides; `open_storage` returns one."""

    def close(self) -> None: ...
