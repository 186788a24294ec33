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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # store.py builds on the SQLite parts, which use the values below
    from gateway.storage.store import Pickup, QueuedRecipient, Report, Route

Clock = Callable[[], float]

__all__ = [
    "Attempt", "AuditEvent", "AuditStore", "CachedSTSPolicy", "CodeCheck", "CodeLimits",
    "CodeRedemption", "CodeSend", "Credentials", "HostTLS", "KnowledgeStore", "MessageStatus",
    "MessageStream",
    "NewUser", "PickupStore", "PortalCounts", "PortalStore", "QueueInspection", "QueueStore",
    "RecipientStatus", "ResetLimits", "ResetLink", "Session", "Storage", "User",
    "WaitingRecipient",
]


# -- portal accounts ------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    address: str
    first_name: str
    last_name: str
    time_zone: str = "UTC"

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

    def issue_code(self, address: str, code_hash: str, limits: CodeLimits) -> CodeSend:
        """Store a new code (earlier ones stop working) unless LIMITS say wait."""
    def redeem_code(self, user: NewUser, code_hash: str, limits: CodeLimits) -> CodeRedemption:
        """Check the newest code of USER's address and, when it matches, create USER (and end
        any session of the address) in the same unit of work."""

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


@dataclass(frozen=True)
class MessageStatus:
    id: str
    sender: str
    received: float
    size: int
    client: str
    smtputf8: bool
    recipients: tuple[RecipientStatus, ...]


class QueueInspection(Protocol):
    """Read-only views of the queue, for `sealgate queue` and monitoring."""

    def waiting_recipients(self) -> list[WaitingRecipient]:
        """Recipients still queued, deferred or being delivered, oldest message first."""
    def queued_message(self, message_id: str) -> MessageStatus | None:
        """One message with each recipient's state and every delivery attempt."""
    def message_count(self) -> int: ...


# -- the queue (declared as it is today; the integrator settles its final shape) ------------


class QueueStore(Protocol):
    clock: Clock

    def enqueue(self, sender: str, routes: list[Route], content: bytes | Sequence[bytes],
                client: str = "", message_id: str | None = None,
                smtputf8: bool = False) -> str: ...
    def spool(self, content: bytes | Sequence[bytes], message_id: str | None = None) -> str: ...
    def spool_stream(self, chunks: Iterable[bytes]) -> tuple[str, int]: ...
    def read_spool(self, message_id: str) -> bytes: ...
    def read_spool_headers(self, message_id: str) -> bytes: ...
    def claim_due(self, limit: int = 500, per_domain: int | None = None
                  ) -> list[QueuedRecipient]: ...
    def renew_leases(self) -> int: ...
    def release_claims(self, message_id: str, rcpts: list[str]) -> None: ...
    def settle(self, message_id: str, replies: dict[str, str], state: str,
               next_attempt: float | None = None, report: Report | None = None) -> list[str]: ...
    def next_due_time(self) -> float | None: ...
    def flush(self) -> int: ...
    def delete_message(self, message_id: str) -> bool: ...
    def record_attempts(self, message_id: str, attempts: Sequence[Attempt]) -> None:
        """Add to the delivery history that `queue show` prints (one commit for all)."""


@runtime_checkable
class Storage(PortalStore, PickupStore, KnowledgeStore, AuditStore, QueueInspection,
              QueueStore, Protocol):
    """Everything a back-end provides; `open_storage` returns one."""

    def close(self) -> None: ...
