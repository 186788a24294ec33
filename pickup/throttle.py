"""Failed sign-ins, counted per account and per client address in the storage: the count
survives a restart and is shared by every portal process.

An account key is counted whether or not the address has an account, so a paused sign-in
tells an attacker nothing about which addresses exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.storage.protocols import PortalStore

WINDOW = 15 * 60.0
ACCOUNT_LIMIT = 10  # wrong passwords per address and window, then that address waits
CLIENT_LIMIT = 30   # per client address: many accounts tried from one place


@dataclass(frozen=True)
class Paused:
    reason: str  # "account" or "client"


def account_key(address: str) -> str:
    return f"account:{address}"


def client_key(client: str) -> str:
    return f"client:{client}"


class LoginThrottle:
    def __init__(self, store: PortalStore, window: float = WINDOW,
                 account_limit: int = ACCOUNT_LIMIT, client_limit: int = CLIENT_LIMIT) -> None:
        self.store = store
        self.window = window
        self.limits = {"account": account_limit, "client": client_limit}

    def paused(self, address: str, client: str) -> Paused | None:
        since = self.store.clock() - self.window
        for kind, key in (("client", client_key(client)), ("account", account_key(address))):
            if self.store.count_login_failures(key, since) >= self.limits[kind]:
                return Paused(kind)
        return None

    def record_failure(self, address: str, client: str) -> None:
        self.store.record_login_failures([account_key(address), client_key(client)], self.window)

    def clear_account(self, address: str) -> None:
        """After a right password or a new one: the owner is back, the count starts again.
        The client's count stays: one good account must not launder guesses at others."""
        self.store.clear_login_failures(account_key(address))
