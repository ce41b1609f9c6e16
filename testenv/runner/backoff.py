"""The kubelet's back-off for restarting crashed containers and retrying image pulls.

A crashed container is restarted at once the first time; then the wait doubles from `initial` up
to `maximum` (10 s and 300 s in the kubelet). A container that ran longer than `reset_after`
starts over. Image pulls wait `initial` before the first retry already.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackoffPolicy:
    initial: float = 10.0
    maximum: float = 300.0
    reset_after: float = 600.0


class Backoff:
    def __init__(self, policy: BackoffPolicy, *, immediate_first: bool = True) -> None:
        self._policy = policy
        self._immediate_first = immediate_first
        self._next: float | None = None  # None: first retry

    def delay(self, ran_for: float = 0.0) -> float:
        """Seconds to wait before the next attempt, given how long the last attempt ran."""
        if ran_for >= self._policy.reset_after:
            self._next = None
        if self._next is None and self._immediate_first:
            self._next = self._policy.initial
            return 0.0
        if self._next is None:
            self._next = self._policy.initial
        current = self._next
        self._next = min(current * 2, self._policy.maximum)
        return current
