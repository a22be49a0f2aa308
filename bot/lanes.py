"""Per-user order for every transport: lanes and the acknowledgement floor.

A messenger numbers its updates; one user's updates must be handled in that order, while
different users run concurrently. The order is fixed here, when an update is received and
before any library routing or filter runs (aiogram runs plain filters in a thread, so tasks
reach a handler in random order). The acknowledgement floor says how far the messenger may
forget updates: only past the ones that were fully handled, so a crash loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


class Lanes:
    """Jobs with the same key run one at a time in submission order; keys run concurrently.

    A lane's worker exists only while the lane has work, so idle users cost nothing.
    """

    def __init__(self, concurrency: int = 64) -> None:
        self._queues: dict[Hashable, deque[tuple[Job, asyncio.Future[None]]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._gate = asyncio.Semaphore(concurrency)
        self._closed = False

    def submit(self, key: Hashable, job: Job) -> asyncio.Future[None]:
        """Queue `job` behind the key's earlier jobs; the future resolves when it has run."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.cancel()
            return done
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            worker = asyncio.create_task(self._run(key, queue), name=f"lane-{key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append((job, done))
        return done

    async def _run(self, key: Hashable, queue: deque[tuple[Job, asyncio.Future[None]]]) -> None:
        try:
            while queue:
                job, done = queue[0]
                try:
                    async with self._gate:
                        await job()
                except asyncio.CancelledError:
                    done.cancel()
                    raise
                except Exception as error:  # one bad update must not stop the user's lane
                    log.exception("lane job failed")
                    if not done.done():
                        done.set_exception(error)
                        done.exception()  # retrieved: the lane already logged it
                else:
                    if not done.done():
                        done.set_result(None)
                queue.popleft()
        finally:
            for _, done in queue:
                done.cancel()
            self._queues.pop(key, None)

    async def drain(self, timeout: float) -> bool:
        """Wait for the queued jobs to finish; True when all did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._workers:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._workers), timeout=remaining)
        return True

    async def close(self, timeout: float) -> None:
        """Refuse new jobs, let the running ones finish for `timeout`, cancel the rest."""
        self._closed = True
        if not await self.drain(timeout):
            for worker in list(self._workers):
                worker.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)


class AckFloor:
    """Which received updates are still being handled, by their messenger sequence number.

    `floor()` is the first number that must not be forgotten yet: the lowest one in flight,
    or one past the highest seen. `fresh(n)` tells a re-delivered update (in flight or already
    handled above the floor) from a new one, so a re-delivery is never handled twice here;
    after a restart the database's processed-update marks do the same.
    """

    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._handled: set[int] = set()  # handled, but above the lowest one in flight
        self._highest: int | None = None
        self.changed = asyncio.Event()

    def fresh(self, number: int) -> bool:
        return (number not in self._in_flight and number not in self._handled
                and number >= self.floor())

    def received(self, number: int) -> None:
        self._in_flight.add(number)
        self._highest = number if self._highest is None else max(self._highest, number)

    def handled(self, number: int) -> None:
        self._in_flight.discard(number)
        floor = self.floor()
        self._handled = {n for n in self._handled | {number} if n >= floor}
        self.changed.set()

    def in_flight(self) -> int:
        return len(self._in_flight)

    def floor(self) -> int:
        if self._in_flight:
            return min(self._in_flight)
        return (self._highest + 1) if self._highest is not None else 0
