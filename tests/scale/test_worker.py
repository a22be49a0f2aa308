"""`mcu worker` in copies on one PostgreSQL: one scheduler leader and a takeover when it dies,
Telegram's per-bot limit held by the deployment as a whole, one chat's rows once and in order.

Real `mcu worker` processes, a real PostgreSQL started by the tests, the fake Bot API over real
HTTP answering 429 past 30 sends a second. Each test prints its figures.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from itertools import pairwise

import pytest
from sqlalchemy import select

from handlers.core import Core
from storage.models import Item, OutboxMessage
from tests.conftest import SAKHALIN
from tests.drills.harness import Drill, eventually, figure
from tests.fakes.telegram_api import FakeTelegramServer
from tests.scale.worker_harness import (  # noqa: F401  (fixtures)
    TELEGRAM_PER_SECOND,
    advisory_locks,
    all_day_org,
    leaders,
    limited_tg_fixture,
    max_in_window,
    queue_notifications,
    services_for,
    start_worker,
    wait_quiet,
)
from tests.support.chat import ChatClient, join_as
from tests.test_staff_core import report

HEAD = "1001"
DUE_TODAY = "Сегодня последний день"  # the reminder on the morning of the due day
TAKEOVER_BOUND = 30.0  # seconds (issue 13)


async def due_later_today(services, number: str) -> None:  # type: ignore[no-untyped-def]
    """The item's answer is due later today: its due-day reminder is due from now on."""
    now = datetime.now(SAKHALIN)
    end_of_day = now.replace(hour=23, minute=59, second=0, microsecond=0)
    if end_of_day - now < timedelta(minutes=2):
        pytest.skip("too close to local midnight for a reminder due later today")
    async with services.sessions() as session, session.begin():
        item = await session.scalar(select(Item).where(Item.number == number))
        assert item is not None
        item.answer_due = min(now + timedelta(hours=2), end_of_day)


async def numbers(services) -> list[str]:  # type: ignore[no-untyped-def]
    async with services.sessions() as session:
        return list((await session.scalars(select(Item.number).order_by(Item.id))).all())


def reminders_to_head(tg: FakeTelegramServer, number: str) -> int:
    return sum(1 for r in tg.messages_to(int(HEAD)) if r.method == "sendMessage"
               and DUE_TODAY in (r.body or "") and number in (r.body or ""))


async def test_one_leader_and_a_takeover_within_30_s_with_the_reminder_sent_once(
        world: Drill, tg: FakeTelegramServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two workers: exactly one leads the scheduler. The leader is SIGKILLed; a reminder falls
    due while nobody leads; the other worker takes over within 30 s and the reminder is sent
    once. A reminder the first leader already sent is not sent again by the second."""
    org = all_day_org(world.tmp_path)
    world.extra_env["MCU_ORG_FILE"] = str(org)
    services = services_for(world, org)
    core = Core(services)
    try:
        await join_as(core, "head", "housing", user_id=HEAD, name="Начальник отдела ЖКХ")
        await report(ChatClient(core, user_id="7001", name="Житель"))
        [first] = await numbers(services)
        await due_later_today(services, first)

        workers = [await start_worker(world, "worker-1"), await start_worker(world, "worker-2")]
        await eventually(lambda: len(leaders(workers)) == 1, 30, "a leader is elected")
        [leader] = leaders(workers)
        [standby] = [w for w in workers if w is not leader]
        assert await advisory_locks(world) == 1
        await eventually(lambda: reminders_to_head(tg, first) >= 1, 60,
                         "the first leader's catch-up reminded the head")

        await leader.kill()
        killed = time.monotonic()
        # While nobody leads, another item's reminder falls due.
        await report(ChatClient(core, user_id="7002", name="Жительница"),
                     text="Не горит фонарь во дворе дома 8 по ул. Дзержинского")
        second = (await numbers(services))[-1]
        await due_later_today(services, second)

        await eventually(lambda: bool(leaders([standby])), TAKEOVER_BOUND + 5,
                         "the standby took over")
        takeover = time.monotonic() - killed
        await eventually(lambda: reminders_to_head(tg, second) >= 1, 60,
                         "the new leader reminded the head")
        await wait_quiet(tg, quiet=6)  # the new leader's catch-up has run; anything twice?
        counts = (reminders_to_head(tg, first), reminders_to_head(tg, second))
        locks = await advisory_locks(world)
        figure(capsys, f"2 workers: 1 leader; leader SIGKILLed, the other led after "
                       f"{takeover:.1f} s (bound {TAKEOVER_BOUND:.0f} s); reminders sent "
                       f"{counts[0]} (before the kill) and {counts[1]} (due during the "
                       f"takeover); advisory locks held: {locks}")
        assert takeover <= TAKEOVER_BOUND, world.logs()
        assert counts == (1, 1), world.logs()
        assert locks == 1
    finally:
        await services.sessions.kw["bind"].dispose()


async def test_a_thousand_notifications_through_two_workers_stay_within_30_per_second(
        world: Drill, tg: FakeTelegramServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 notifications to 1,000 chats through two workers: each delivered once, and the
    fake Bot API never sees more than 30 sends in any one-second window (nor answers 429)."""
    chats = [200_000 + n for n in range(1000)]
    await start_worker(world, "worker-1")
    await start_worker(world, "worker-2")
    await queue_notifications(world, chats, "Уведомление {n}")
    await eventually(lambda: len(tg.calls("sendMessage")) >= len(chats), 300,
                     "1,000 notifications delivered")
    await wait_quiet(tg, quiet=4)
    sends = tg.calls("sendMessage")
    moments = [r.timestamp for r in sends]
    per_chat = {chat: 0 for chat in chats}
    for record in sends:
        per_chat[int(record.chat_id)] += 1  # type: ignore[arg-type]
    worst = max_in_window(moments)
    throttled = sum(1 for r in tg.failed if r.error_code == 429)
    span = max(moments) - min(moments)
    rate = (len(moments) - 1) / span if span > 0 else float("inf")
    async with world.sessions() as session:
        pending = len((await session.scalars(select(OutboxMessage.id).where(
            OutboxMessage.status != "sent"))).all())
    figure(capsys, f"1,000 notifications through 2 workers: {len(sends)} sends to "
                   f"{sum(1 for n in per_chat.values() if n)} chats in {span:.1f} s "
                   f"({rate:.1f}/s overall); at most {worst} in any one-second window "
                   f"(limit {TELEGRAM_PER_SECOND}); {throttled} answers 429; {pending} rows "
                   f"not sent")
    assert set(per_chat.values()) == {1}, world.logs()
    assert worst <= TELEGRAM_PER_SECOND
    assert throttled == 0
    assert pending == 0


async def test_one_chat_with_twenty_rows_and_two_workers_gets_each_once_in_order(
        world: Drill, tg: FakeTelegramServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    chat = 300_001
    await start_worker(world, "worker-1")
    await start_worker(world, "worker-2")
    await queue_notifications(world, [chat] * 10, "Сообщение {n:02d}")
    await eventually(lambda: len(tg.messages_to(chat)) >= 3, 60, "the first rows went out")
    # More rows while the chat is being served: whichever worker sweeps next may take them.
    await queue_notifications(world, [chat] * 10, "Сообщение {n:02d}", first=11)
    await eventually(lambda: len(tg.messages_to(chat)) >= 20, 120, "20 rows delivered")
    await wait_quiet(tg, quiet=4)
    records = [r for r in tg.messages_to(chat) if r.method == "sendMessage"]
    bodies = [r.body for r in records]
    gaps = [b.timestamp - a.timestamp for a, b in pairwise(records)]
    expected = [f"Сообщение {n:02d}" for n in range(1, 21)]
    figure(capsys, f"one chat, 20 rows, 2 workers: {len(bodies)} delivered, in order: "
                   f"{bodies == expected}; the shortest gap between two sends "
                   f"{min(gaps):.2f} s")
    assert bodies == expected, world.logs()

