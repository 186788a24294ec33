"""The retry rule of a failed MTA-STS policy fetch, one for every back-end: failures of the
same policy id in a row double the wait (from FIRST up to MAX); a new id starts again."""

from __future__ import annotations


def next_sts_retry(previous: tuple[str, int] | None, policy_id: str, now: float,
                   first: float, most: float) -> tuple[int, float]:
    """(failures in a row, retry time) after a failed fetch of POLICY_ID; PREVIOUS: the
    stored (policy id, failures), if any."""
    failures = previous[1] + 1 if previous is not None and previous[0] == policy_id else 1
    return failures, now + min(first * 2 ** (failures - 1), most)
