"""The rate limiter in a simulated clock: no one-second window at the messenger's side ever
holds more than the limit, whatever the request latencies."""

from __future__ import annotations

import asyncio
import heapq
import random

from scheduler.limits import Limits, RateLimiter


class SimulatedTime:
    """A clock that moves only when somebody sleeps, one sleeper at a time."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def busiest_window(stamps: list[float]) -> int:
    stamps = sorted(stamps)
    return max(sum(1 for s in stamps[i:] if s - stamps[i] < 1.0) for i in range(len(stamps)))


async def test_no_second_at_the_messenger_holds_more_than_the_limit() -> None:
    time = SimulatedTime()
    limiter = RateLimiter({"telegram": Limits(28, 1.0, 20)}, clock=time.clock, sleep=time.sleep)
    rng = random.Random(7)
    received: list[float] = []

    async def notify(chat: int) -> None:
        async with limiter.slot("telegram", str(chat)):
            latency = rng.uniform(0.0, 0.4)  # the request may arrive any time until it is done
            received.append(time.now + rng.uniform(0.0, latency))
            await time.sleep(latency)

    await asyncio.gather(*(notify(chat) for chat in range(300)))
    assert len(received) == 300
    assert busiest_window(received) <= 28


async def test_one_chat_is_spaced_and_a_pause_holds_everything() -> None:
    time = SimulatedTime()
    limiter = RateLimiter({"telegram": Limits(28, 1.0, 20)}, clock=time.clock, sleep=time.sleep)
    sent: list[float] = []
    for _ in range(3):
        async with limiter.slot("telegram", "42"):
            sent.append(time.now)
    assert sent[1] - sent[0] >= 1.0 and sent[2] - sent[1] >= 1.0
    limiter.pause("telegram", 5.0)
    paused_at = time.now
    async with limiter.slot("telegram", "43"):
        assert time.now >= paused_at + 5.0


async def test_a_direct_reply_is_not_spaced_but_counts_toward_the_total() -> None:
    time = SimulatedTime()
    limiter = RateLimiter({"telegram": Limits(2, 1.0, 20)}, clock=time.clock, sleep=time.sleep)
    for _ in range(2):
        async with limiter.slot("telegram", "42", direct=True):
            pass
    assert time.now == 0.0  # two replies at once: no per-chat spacing
    async with limiter.slot("telegram", "42", direct=True):
        assert time.now >= 1.0  # the third waits for the window


async def test_chat_wait_says_how_long_a_chat_is_held_by_its_own_limits() -> None:
    time = SimulatedTime()
    limiter = RateLimiter({"telegram": Limits(28, 1.0, 2)}, clock=time.clock, sleep=time.sleep)
    assert limiter.chat_wait("telegram", "42") == 0.0
    async with limiter.slot("telegram", "42"):
        pass
    time.now += 0.25
    assert limiter.chat_wait("telegram", "42") == 0.75
    assert limiter.chat_wait("telegram", "42", direct=True) == 0.0  # a reply is not spaced
    assert limiter.chat_wait("telegram", "43") == 0.0  # another chat is free
    for _ in range(2):  # a group's minute: two messages allowed in this test
        async with limiter.slot("telegram", "-7", group=True):
            pass
    assert 58.0 < limiter.chat_wait("telegram", "-7", group=True) <= 60.0



class VirtualTime:
    """Sleepers wake in the order of their wake-up times; the clock jumps to the next one
    whenever every task is waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._count = 0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self._count += 1
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), self._count, woken))
        await woken

    async def run(self, *tasks: asyncio.Task[None]) -> None:
        while not all(task.done() for task in tasks):
            for _ in range(20):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                self.now, _, woken = heapq.heappop(self._sleepers)
                woken.set_result(None)
        await asyncio.gather(*tasks)


async def test_the_total_is_shared_in_the_order_the_messages_asked() -> None:
    # A head's card queued during a burst of receipts goes in its turn: a message that asked
    # later never takes the slot of one that waits already.
    time = VirtualTime()
    limiter = RateLimiter({"telegram": Limits(2, 1.0, 20)}, clock=time.clock, sleep=time.sleep)
    order: list[str] = []

    async def notify(chat: str, asks_at: float, takes: float) -> None:
        await time.sleep(asks_at)
        async with limiter.slot("telegram", chat):
            order.append(chat)
            await time.sleep(takes)

    tasks = [asyncio.create_task(notify(chat, at, 0.5))
             for chat, at in (("a", 0.0), ("b", 0.0), ("card", 0.1), ("r1", 0.2), ("r2", 0.46))]
    await time.run(*tasks)
    assert order == ["a", "b", "card", "r1", "r2"]
