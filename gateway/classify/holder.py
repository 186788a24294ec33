"""The active policy, swapped only for a policy that loaded cleanly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from gateway.loop_guard import RepeatedErrors, keep_running
from gateway.classify.policy import Policy, PolicyError, load_policy

log = logging.getLogger("sealgate.policy")


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    try:
        files = sorted(directory.glob("*.toml"))
        return tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    except OSError:
        return ()


class PolicyHolder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen = _signature(directory)
        self.current = load_policy(directory)

    async def watch(self, interval: float = 2.0) -> None:
        """Reload when a policy file is added, removed or changed; never stops over an error."""
        await asyncio.sleep(interval)
        await keep_running("policy watch", self._check, interval, RepeatedErrors(log))

    async def _check(self) -> None:
        if _signature(self.directory) != self._seen:
            self.reload()

    def __call__(self) -> Policy:
        return self.current

    def reload(self) -> bool:
        """Load the files again; on error keep the old policy active and log why."""
        self._seen = _signature(self.directory)
        try:
            self.current = load_policy(self.directory)
        except (PolicyError, OSError) as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc)
            return False
        log.info("policy reloaded from %s", self.directory)
        return True
