"""Durable delivery through the real Telegram transport and the fake Bot API server."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.telegram import TelegramTransport
from handlers.events import ChatRef, Platform, Reply
from handlers.outbox import enqueue
from scheduler.outbox import OutboxSender
from storage.models import Account, OutboxMessage
from tests.fakes.telegram_api import FakeTelegramServer


@pytest.fixture
async def tg():
    async with FakeTelegramServer() as server:
        yield server


@pytest.fixture
async def transport(tg, core, tmp_path):
    settings = Settings(telegram_token="123:TEST", telegram_api_url=tg.base_url,
                        data_dir=tmp_path / "data", _env_file=None)
    transport = TelegramTransport(settings, core)
    await transport.start()
    yield transport
    await transport.stop()


async def queue(services, chat_id: str, text: str, audience: str = "staff") -> None:
    async with services.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, chat_id), Reply(text), audience=audience,
                now=services.now())


async def statuses(services) -> Counter[str]:
    async with services.sessions() as session:
        return Counter((await session.scalars(select(OutboxMessage.status))).all())


def delivered(tg, chat_id: int) -> list[str]:
    return [r.text for r in tg.sent if r.method == "sendMessage" and r.chat_id == chat_id]


async def drain(sender: OutboxSender, clock, rounds: int = 40, step: float = 60) -> None:
    for _ in range(rounds):
        await sender.sweep()
        counts = await statuses(sender.services)
        if not counts.get("pending"):
            return
        clock.advance(seconds=step)
    raise AssertionError(f"not drained: {counts}")


async def test_429_then_500_then_recovery_exactly_once_and_in_order(tg, transport, services,
                                                                   clock):
    for i in range(5):
        await queue(services, "101", f"A{i}")
    for i in range(3):
        await queue(services, "202", f"B{i}")
    tg.fail_next("sendMessage", status=429, retry_after=1, times=1)
    tg.fail_next("sendMessage", status=500, times=4)
    sender = OutboxSender(services, {"telegram": transport})
    await drain(sender, clock)
    assert delivered(tg, 101) == [f"A{i}" for i in range(5)]
    assert delivered(tg, 202) == [f"B{i}" for i in range(3)]
    assert await statuses(services) == Counter({"sent": 8})
    assert any(f.error_code == 429 for f in tg.failed)
    assert sum(f.error_code == 500 for f in tg.failed) == 4


async def test_a_citizen_who_blocked_the_bot_is_marked_at_once(tg, transport, services,
                                                              citizen):
    await citizen.send("/start")
    tg.block_user(501)
    await queue(services, "501", "Ответ по вашему сообщению", audience="citizen")
    sender = OutboxSender(services, {"telegram": transport})
    await sender.sweep()
    assert (await statuses(services))["undeliverable"] == 1
    async with services.sessions() as session:
        account = await session.scalar(select(Account).where(Account.user_id == "501"))
    assert account.blocked_bot_at is not None


async def test_messages_failing_for_a_day_are_marked_failed(tg, transport, services, clock):
    await queue(services, "303", "staff notice")
    sender = OutboxSender(services, {"telegram": transport})
    tg.fail_next("sendMessage", status=500, times=1000)
    for _ in range(30):
        await sender.sweep()
        clock.advance(hours=1)
    assert (await statuses(services))["failed"] == 1


async def test_a_thousand_notifications_keep_to_the_limits(tg, transport, services):
    async with services.sessions() as session, session.begin():
        for chat in range(1000):
            enqueue(session, ChatRef(Platform.TELEGRAM, str(10_000 + chat)), Reply(f"n{chat}"),
                    audience="staff", now=services.now())
    sender = OutboxSender(services, {"telegram": transport})
    started = time.monotonic()
    while (await statuses(services)).get("pending"):
        await sender.sweep()
    elapsed = time.monotonic() - started
    stamps = sorted(r.timestamp for r in tg.sent if r.method == "sendMessage")
    assert len(stamps) == 1000
    # No one-second window holds more than Telegram's 30 messages.
    window_max = max(sum(1 for s in stamps[i:i + 40] if s - stamps[i] < 1.0)
                     for i in range(len(stamps)))
    assert window_max <= 30
    per_chat = Counter(r.chat_id for r in tg.sent if r.method == "sendMessage")
    assert per_chat.most_common(1)[0][1] == 1
    print(f"\n1000 notifications: {elapsed:.1f} s, {1000 / elapsed:.1f} messages/s, "
          f"max {window_max} in any second")


async def test_vk_repeat_of_an_outbox_row_is_dropped_by_vk(core, services, tmp_path,
                                                          monkeypatch):
    """A crash between the send and the mark re-sends the row: VK's random_id drops it."""
    from bot.vk import VKTransport
    from tests.fakes.vk_api import FakeVKServer

    monkeypatch.chdir(tmp_path)
    async with FakeVKServer(group_id=7) as vk:
        settings = Settings(vk_token="vk-token", vk_group_id=7, vk_api_url=vk.api_url,
                            data_dir=tmp_path / "data", _env_file=None)
        transport = VKTransport(settings, core)
        await transport.start()
        try:
            for _ in range(2):
                await transport.send("4242", Reply("Ответ по вашему сообщению"), dedupe_id=17)
            await transport.send("4242", Reply("Другое сообщение"), dedupe_id=18)
        finally:
            await transport.stop()
        assert [r.text for r in vk.messages_to(4242)] == ["Ответ по вашему сообщению",
                                                          "Другое сообщение"]


async def test_mcu_jobs_run_outbox_delivers_what_is_due_now(tg, services, sqlite_url, tmp_path,
                                                           monkeypatch, capsys):
    """The CLI flushes through the real transport; a held row stays held."""
    import asyncio
    from datetime import timedelta

    from bot.cli import main

    await queue(services, "7", "due now")
    async with services.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, "7"), Reply("at nine"), audience="staff",
                now=services.now(), not_before=services.now() + timedelta(days=365))
    for name, value in {"MCU_DATABASE_URL": sqlite_url, "MCU_DATA_DIR": str(tmp_path / "data"),
                        "MCU_TELEGRAM_TOKEN": "123:TEST",
                        "MCU_TELEGRAM_API_URL": tg.base_url}.items():
        monkeypatch.setenv(name, value)
    assert await asyncio.to_thread(main, ["jobs", "run", "outbox"]) == 0
    assert "outbox: 1 message(s) delivered now" in capsys.readouterr().out
    assert [r.text for r in tg.messages_to(7)] == ["due now"]
    assert await statuses(services) == Counter({"sent": 1, "pending": 1})
