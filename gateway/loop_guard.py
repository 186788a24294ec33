"""Background loops that survive any exception: each failure is logged once, repeats of the
same failure are counted and summarised at most every few minutes, and the loop goes on.

A full disk, a locked database or a bug in one turn must not stop delivery for good; nor
may it flood the log with one line per turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

REPEAT_INTERVAL = 300.0  # seconds between reminders that a failure is still happening
MAX_TRACKED = 100  # distinct failures remembered per task (the oldest is forgotten first)


@dataclass
class _Failure:
    first_logged: float
    last_logged: float
    repeats: int = 0  # since the last line logged


class RepeatedErrors:
    """Rate-limits the logging of identical errors (same task, type and message)."""

    def __init__(self, log: logging.Logger, interval: float = REPEAT_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval = interval
        self.clock = clock
        self._failing: dict[str, dict[tuple[str, str], _Failure]] = {}

    def failed(self, what: str, exc: BaseException) -> None:
        """WHAT failed with EXC: logged the first time, then once per interval with a count."""
        key = (type(exc).__name__, str(exc))
        now = self.clock()
        failures = self._failing.setdefault(what, {})
        failure = failures.get(key)
        if failure is None:
            if len(failures) >= MAX_TRACKED:
                del failures[next(iter(failures))]
            failures[key] = _Failure(now, now)
            self.log.error("%s failed: %s: %s (retrying; repeats are summarised every %d s)",
                           what, key[0], key[1], self.interval)
            self.log.debug("%s failed", what, exc_info=exc)
            return
        failure.repeats += 1
        if now - failure.last_logged >= self.interval:
            self.log.error("%s still failing: %s: %s (%d more times since %.0f s ago)",
                           what, key[0], key[1], failure.repeats, now - failure.last_logged)
            failure.last_logged, failure.repeats = now, 0

    def succeeded(self, what: str) -> None:
        """WHAT worked: if it had been failing, say that it recovered."""
        failures = self._failing.pop(what, None)
        if failures:
            self.log.info("%s works again", what)


async def keep_running(what: str, turn: Callable[[], Awaitable[object]], interval: float,
                       errors: RepeatedErrors) -> None:
    """Await TURN every INTERVAL seconds forever; an exception in a turn never ends the loop."""
    while True:
        try:
            await turn()
        except Exception as exc:
            errors.failed(what, exc)
        else:
            errors.succeeded(what)
        await asyncio.sleep(interval)
