"""The active policy, swapped only for a policy that loaded cleanly.

Under `serve` the supervisor watches the policy files (and takes SIGHUP); when a reload
succeeded there, it bumps a generation number shared with every SMTP listener process
(gateway.workers.shared.SharedGeneration). A listener compares that number before each
classification, so once the supervisor has logged "policy reloaded", no listener decides
with the old policy any more.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Protocol

from gateway.classify.policy import Policy, PolicyError, load_policy
from gateway.loop_guard import RepeatedErrors, keep_running

log = logging.getLogger("sealgate.policy")


class Generation(Protocol):
    @property
    def value(self) -> int: ...


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = sorted(directory.glob("*.toml"))
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    except OSError:
        return ()


class PolicyHolder:
    def __init__(self, directory: Path, generation: Generation | None = None) -> None:
        self.directory = directory
        self.generation = generation
        self._generation_seen = generation.value if generation is not None else 0
        self._seen = _signature(directory)
        self.current = load_policy(directory)

    async def watch(self, interval: float = 2.0) -> None:
        """Reload when a policy file is added, removed or changed; never stops over an error."""
        await asyncio.sleep(interval)
        await keep_running("policy watch", self._check, interval, RepeatedErrors(log))

    async def _check(self) -> None:
        if self.changed_on_disk():
            self.reload()

    def changed_on_disk(self) -> bool:
        return _signature(self.directory) != self._seen

    def __call__(self) -> Policy:
        self.follow()
        return self.current

    def follow(self) -> None:
        """Reload if the shared generation moved on (a reload succeeded elsewhere)."""
        if self.generation is not None and self.generation.value != self._generation_seen:
            self._generation_seen = self.generation.value
            self.reload()

    def try_load(self) -> bool:
        """Load the files again; on error keep the old policy active and log why."""
        self._seen = _signature(self.directory)
        try:
            self.current = load_policy(self.directory)
        except (PolicyError, OSError) as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc)
            return False
        return True

    def reload(self) -> bool:
        if not self.try_load():
            return False
        log.info("policy reloaded from %s", self.directory)
        return True
