"""A queue runner driven in the test's own process: the rounds of delivery, one after the
other, each delivering what the previous one queued (bounces, DSNs, reports)."""

from __future__ import annotations

import asyncio

from gateway.config import Config
from gateway.serve import build_runner
from gateway.storage.store import Store


def run_rounds(config: Config, store: Store, rounds: int) -> None:
    """Process what is due ROUNDS times with one runner built as `serve` builds it."""
    async def main() -> None:
        runner = build_runner(config, store)
        try:
            for _ in range(rounds):
                await runner.process_due()
        finally:
            await runner.close()
    asyncio.run(main())
