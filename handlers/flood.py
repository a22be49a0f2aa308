"""Per-user flood control: a sliding window, so one noisy user never slows the others."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FloodGuard:
    def __init__(self, limit: int, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._warned: set[tuple[str, str]] = set()

    def allow(self, key: tuple[str, str]) -> bool:
        now = self._clock()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            return False
        hits.append(now)
        self._warned.discard(key)
        if len(self._hits) > 10_000:  # forget idle users so memory stays bounded
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
        return True

    def first_refusal(self, key: tuple[str, str]) -> bool:
        """True once per burst, so the polite reply is not itself a flood."""
        if key in self._warned:
            return False
        self._warned.add(key)
        return True
