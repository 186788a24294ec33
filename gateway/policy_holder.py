"""The active policy, swapped only for a policy that loaded cleanly."""

from __future__ import annotations

import logging
from pathlib import Path

from gateway.policy import Policy, PolicyError, load_policy

log = logging.getLogger("sealgate.policy")


class PolicyHolder:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.current = load_policy(directory)

    def __call__(self) -> Policy:
        return self.current

    def reload(self) -> bool:
        """Load the files again; on error keep the old policy active and log why."""
        try:
            self.current = load_policy(self.directory)
        except (PolicyError, OSError) as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc)
            return False
        log.info("policy reloaded from %s", self.directory)
        return True
