"""Cards in a burst: several new-item cards due at once in one staff chat go out as one digest.

Through the real core (citizens report with the chat client, the head joins with an invite),
the real outbox sender and the real transports against the fake Telegram and VK servers.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.settings import Settings
from bot.telegram import TelegramTransport
from handlers.clock import ManualClock
from handlers.context import Services
from handlers.core import Core
from handlers.events import ChatRef, DigestEntry, Platform, Reply
from handlers.outbox import enqueue
from handlers.staff.digest import fitting
from handlers.staff.payloads import CardAction, CardOp
from scheduler.digest import plan
from scheduler.limits import Limits, RateLimiter
from scheduler.outbox import OutboxSender
from storage.models import GroupBinding, Item, OutboxMessage
from tests.conftest import DEFAULT_START, make_services
from tests.fakes.telegram_api import FakeTelegramServer, SentRecord
from tests.support.chat import ChatClient, join_as

HEAD = 1001
# The chat's one message a second, without the total (the citizens' replies go out at once).
TELEGRAM_CHAT_LIMIT = {"telegram": Limits(per_second=1000, per_chat_interval=1.0,
                                          group_per_minute=20)}
NO_SPACING = {"telegram": Limits(per_second=1000, per_chat_interval=0.0, group_per_minute=1000),
              "vk": Limits(per_second=1000, per_chat_interval=0.0, group_per_minute=1000)}


async def report(core: Core, user_id: str, *, photos: int = 0,
                 text: str = "Не горит уличный фонарь, темно во дворе") -> None:
    citizen = ChatClient(core, user_id=user_id, name=f"Житель {user_id}")
    await citizen.send("/start")
    await citizen.click("Согласен")
    await citizen.send(text)
    await citizen.click("Энергетика")
    if photos:
        await citizen.send(photos=photos)
        await citizen.click("Готово")
    else:
        await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    await citizen.click("Отправить")
    assert "зарегистрировано" in citizen.texts(), citizen.texts()


async def ready_to_confirm(core: Core, user_id: str) -> ChatClient:
    """A citizen at the last step of a report, one press from confirming."""
    citizen = ChatClient(core, user_id=user_id, name=f"Житель {user_id}")
    await citizen.send("/start")
    await citizen.click("Согласен")
    await citizen.send("Не горит уличный фонарь, темно во дворе")
    await citizen.click("Энергетика")
    await citizen.click("Пропустить")
    await citizen.click("Пропустить")
    return citizen


async def reports(core: Core, count: int, first: int = 501, **kwargs: Any) -> None:
    for user in range(first, first + count):
        await report(core, str(user), **kwargs)


async def numbers(services: Services) -> dict[str, int]:
    async with services.sessions() as session:
        return {item.number: item.id for item in (await session.scalars(
            select(Item).order_by(Item.id))).all()}


async def rows_to(services: Services, chat_id: str) -> list[OutboxMessage]:
    async with services.sessions() as session:
        return list((await session.scalars(select(OutboxMessage).where(
            OutboxMessage.chat_id == chat_id).order_by(OutboxMessage.id))).all())


def shown(tg: FakeTelegramServer, chat_id: int = HEAD) -> list[SentRecord]:
    return [r for r in tg.messages_to(chat_id) if r.method.startswith("send")]


def callbacks(record: SentRecord) -> list[tuple[str, str]]:
    rows = (record.reply_markup or {}).get("inline_keyboard", [])
    return [(b["text"], b["callback_data"]) for row in rows for b in row]


def is_digest(record: SentRecord) -> bool:
    return "Новые сообщения" in (record.text or "")


# ---------------------------------------------------------------------------------------------
# Telegram

@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server


async def telegram(tg: FakeTelegramServer, core: Core, tmp_path: Path) -> TelegramTransport:
    settings = Settings(telegram_token="123:TEST", telegram_api_url=tg.base_url,
                        data_dir=tmp_path / "data", _env_file=None)
    transport = TelegramTransport(settings, core)
    await transport.start()
    return transport


@pytest.fixture
async def transport(tg: FakeTelegramServer, core: Core,
                    tmp_path: Path) -> AsyncIterator[TelegramTransport]:
    transport = await telegram(tg, core, tmp_path)
    yield transport
    await transport.stop()


@pytest.fixture
async def head(core: Core) -> ChatClient:
    return await join_as(core, "head", "housing", user_id=str(HEAD), name="Начальник ЖКХ")


async def test_five_cards_due_at_once_are_one_digest_and_a_button_opens_a_card(
        tg, transport, core, services, head):
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
    await sender.sweep()  # the head's welcome
    before = len(shown(tg))
    await reports(core, 5)
    await sender.sweep()

    [digest] = shown(tg)[before:]
    assert is_digest(digest) and "(5)" in (digest.text or "")
    items = await numbers(services)
    assert all(number in (digest.text or "") for number in items)
    assert "Энергетика" in (digest.text or "")
    assert callbacks(digest) == [(f"№ {number}", CardAction(CardOp.CARD, item_id).pack())
                                 for number, item_id in items.items()]
    cards = [row for row in await rows_to(services, str(HEAD)) if row.item_id is not None]
    assert len(cards) == 5
    assert all(row.status == "sent" and row.payload.get("redacted") for row in cards)
    assert all("digest" not in row.payload and row.payload["text"] == "" for row in cards)

    # The third button opens the third card, with its actions, as a reply to the press.
    number, item_id = list(items.items())[2]
    tg.press_button(HEAD, CardAction(CardOp.CARD, item_id).pack(), message_id=digest.message_id)
    card = await tg.wait_for(lambda r: r.chat_id == HEAD and not is_digest(r)
                             and f"№ {number}" in (r.text or ""))
    assert "Тематика: Энергетика" in (card.text or "") and "Житель 503" in (card.text or "")
    assert "Взять в работу" in " ".join(text for text, _ in callbacks(card))


async def test_a_single_card_stays_a_card(tg, transport, core, services, head):
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
    await sender.sweep()
    before = len(shown(tg))
    await reports(core, 1)
    await sender.sweep()
    [card] = shown(tg)[before:]
    assert not is_digest(card)
    assert "№ 2026-000001" in (card.text or "") and "Новое сообщение" in (card.text or "")
    assert "Взять в работу" in " ".join(text for text, _ in callbacks(card))


async def test_cards_with_photos_merge_whole(tg, transport, core, services, head):
    """A card of several messages (its text, the photos, the actions) is merged whole."""
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
    await sender.sweep()
    before = len(shown(tg))
    await reports(core, 2, photos=1)
    assert len([r for r in await rows_to(services, str(HEAD)) if r.item_id]) == 6
    await sender.sweep()
    [digest] = shown(tg)[before:]
    assert is_digest(digest) and "(2)" in (digest.text or "")
    assert all(row.status == "sent" for row in await rows_to(services, str(HEAD)))


async def test_a_failing_digest_is_retried_whole_and_nothing_is_doubled(
        tg, transport, core, services, head, clock):
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
    await sender.sweep()
    before = len(shown(tg))
    await reports(core, 4)
    tg.fail_next("sendMessage", status=500, chat_id=HEAD)
    await sender.sweep()
    cards = [row for row in await rows_to(services, str(HEAD)) if row.item_id is not None]
    assert {(row.status, row.attempts) for row in cards} == {("pending", 1)}
    assert len({row.next_attempt_at for row in cards}) == 1  # retried together
    assert shown(tg)[before:] == []

    await report(core, "601")  # a fifth card arrives while the digest waits for its retry
    clock.advance(minutes=1)
    await sender.sweep()
    digests = [r for r in shown(tg)[before:] if is_digest(r)]
    assert len(digests) == 1 and "(5)" in (digests[0].text or "")
    assert len(shown(tg)[before:]) == 1
    cards = [row for row in await rows_to(services, str(HEAD)) if row.item_id is not None]
    assert [row.status for row in cards] == ["sent"] * 5
    assert await sender.sweep() == 0  # nothing left to send twice
    assert len(shown(tg)[before:]) == 1


async def test_a_digest_refused_for_good_becomes_single_cards(tg, transport, core, services,
                                                             head):
    """A digest the messenger rejects (400) is not tried again: its cards go one by one."""
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(NO_SPACING))
    await sender.sweep()
    before = len(shown(tg))
    await reports(core, 3)
    tg.fail_next("sendMessage", status=400, chat_id=HEAD, description="Bad Request: odd")
    await sender.sweep()
    assert shown(tg)[before:] == []
    await sender.sweep()
    texts = [r.text or "" for r in shown(tg)[before:]]
    assert len(texts) == 3 and not any("Новые сообщения" in text for text in texts)
    assert all(f"2026-00000{n}" in text for n, text in zip((1, 2, 3), texts, strict=True))
    cards = [row for row in await rows_to(services, str(HEAD)) if row.item_id is not None]
    assert [row.status for row in cards] == ["sent"] * 3


async def test_a_row_between_cards_keeps_its_place(tg, transport, core, services, head):
    sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(NO_SPACING))
    await sender.sweep()
    before = len(shown(tg))
    await reports(core, 2, first=501)
    async with services.sessions() as session, session.begin():
        enqueue(session, ChatRef(Platform.TELEGRAM, str(HEAD)), Reply("Напоминание о сроке"),
                audience="staff", now=services.now())
    await reports(core, 3, first=601)
    await sender.sweep()
    texts = [r.text or "" for r in shown(tg)[before:]]
    assert len(texts) == 3
    assert "(2)" in texts[0] and "2026-000001" in texts[0] and "2026-000003" not in texts[0]
    assert texts[1] == "Напоминание о сроке"
    assert "(3)" in texts[2] and all(f"2026-00000{n}" in texts[2] for n in (3, 4, 5))


@pytest.mark.parametrize("served", ["by the sweep", "right after the turn"])
async def test_the_first_card_goes_at_once_and_the_rest_follow_as_a_digest(
        tg, transport, core, services, head, served):
    """The running sender: the head gets the first card of a burst at once; the cards that
    arrive while the chat's one-message-a-second limit holds go out together after it.
    `mcu run` serves the head's chat right after each turn, never waking the sweep (which
    sleeps 30 s here)."""
    sender = OutboxSender(services, {"telegram": transport}, idle_interval=30,
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
    if served == "by the sweep":
        services.on_outbox = sender.wake
    else:
        services.on_chats = sender.serve_chats
    citizens = [await ready_to_confirm(core, str(user)) for user in range(501, 506)]
    await sender.start()
    try:
        await citizens[0].click("Отправить")
        first = await tg.wait_for(lambda r: r.chat_id == HEAD and "2026-000001" in (r.text or ""))
        assert not is_digest(first)
        await asyncio.gather(*(citizen.click("Отправить") for citizen in citizens[1:]))
        await tg.wait_for(lambda r: r.chat_id == HEAD and "2026-000005" in (r.text or ""),
                          timeout=20)
        await tg.wait_for(lambda r: r.chat_id == HEAD and all(
            any(f"2026-00000{n}" in (m.text or "") for m in shown(tg)) for n in (2, 3, 4, 5)),
            timeout=20)
    finally:
        await sender.stop()
    after = [r for r in shown(tg) if r.timestamp > first.timestamp]
    assert after and is_digest(after[0])
    # The chat's limit held: about a second between two messages (measured where the fake
    # received them, so a slow first request may shorten a gap a little).
    stamps = [first.timestamp, *(r.timestamp for r in after)]
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(stamps))
    assert sum((r.text or "").count("2026-00000") for r in after) == 4  # each card once


async def test_a_digest_takes_the_cards_on_sqlite_and_postgresql(db_url, tmp_path, tg):
    """The merge marks its rows in one statement: the same on both databases."""
    services = await make_services(db_url, tmp_path / "data", ManualClock(DEFAULT_START))
    core = Core(services)
    transport = await telegram(tg, core, tmp_path)
    try:
        await join_as(core, "head", "housing", user_id=str(HEAD))
        sender = OutboxSender(services, {"telegram": transport},
                          limiter=RateLimiter(TELEGRAM_CHAT_LIMIT))
        await sender.sweep()
        before = len(shown(tg))
        await reports(core, 3)
        await sender.sweep()
        [digest] = shown(tg)[before:]
        assert is_digest(digest) and "(3)" in (digest.text or "")
        cards = [row for row in await rows_to(services, str(HEAD)) if row.item_id is not None]
        assert [(row.status, row.attempts) for row in cards] == [("sent", 1)] * 3
    finally:
        await transport.stop()
        await services.sessions.kw["bind"].dispose()


# ---------------------------------------------------------------------------------------------
# VK

VK_HEAD = 4242


@pytest.fixture
async def vk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    from tests.fakes.vk_api import FakeVKServer

    monkeypatch.chdir(tmp_path)  # whatever vkbottle writes to the cwd stays out of the repo
    async with FakeVKServer(group_id=7) as server:
        yield server


@pytest.fixture
async def vk_transport(vk: Any, core: Core, tmp_path: Path) -> AsyncIterator[Any]:
    from bot.vk import VKTransport

    settings = Settings(vk_token="vk-token", vk_group_id=7, vk_api_url=vk.api_url,
                        data_dir=tmp_path / "data", _env_file=None)
    transport = VKTransport(settings, core)
    await transport.start()
    await vk.wait_for_poller()
    yield transport
    await transport.stop()


def vk_shown(vk: Any, peer: int = VK_HEAD) -> list[Any]:
    return [r for r in vk.sent if r.method == "messages.send" and r.peer_id == peer]


async def test_vk_digests_hold_ten_and_a_button_opens_the_card(vk, vk_transport, core,
                                                               services):
    await join_as(core, "head", "housing", user_id=str(VK_HEAD), platform="vk")
    sender = OutboxSender(services, {"vk": vk_transport})
    await sender.sweep()
    before = len(vk_shown(vk))
    await reports(core, 12)
    await sender.sweep()
    first, second = vk_shown(vk)[before:]
    assert "Новые сообщения (10)" in (first.text or "")
    assert "Новые сообщения (2)" in (second.text or "")
    items = list((await numbers(services)).items())
    assert [b["label"] for b in first.buttons()] == [f"№ {n}" for n, _ in items[:10]]
    assert first.keyboard is not None and first.keyboard["inline"] is True
    assert all(f"№ {n}" in (second.text or "") for n, _ in items[10:])

    number, item_id = items[11]
    payload = CardAction(CardOp.CARD, item_id).pack()
    assert {"p": payload} in [b["payload"] for b in second.buttons()]
    vk.press_callback(VK_HEAD, {"p": payload})
    card = await vk.wait_for(lambda r: r.method == "messages.send" and r.peer_id == VK_HEAD
                             and f"№ {number}" in (r.text or "") and "Тематика" in (r.text or ""))
    assert "Взять в работу" in " ".join(card.button_labels())


# ---------------------------------------------------------------------------------------------
# The plan alone: which rows merge


def row(row_id: int, item_id: int | None, part: int = 0, parts: int = 1, *,
        parts_sent: int = 0, audience: str = "staff") -> OutboxMessage:
    payload = Reply(f"row {row_id}").to_json()
    if item_id is not None:
        payload["digest"] = DigestEntry(item_id, f"2026-{item_id:06d}", f"line {item_id}", "ru",
                                        part, parts).to_json()
    when = DEFAULT_START.replace(tzinfo=None)
    return OutboxMessage(id=row_id, platform="telegram", chat_id="1", audience=audience,
                         payload=payload, status="pending", attempts=0, created_at=when,
                         not_before=when, next_attempt_at=when, parts_sent=parts_sent)


def merged(rows: list[OutboxMessage], cap_text: int = 4096) -> list[int] | None:
    digest = plan(rows, DEFAULT_START.replace(tzinfo=None), "telegram", cap_text)
    return None if digest is None else [r.id for r in digest.rows]


def test_the_plan_takes_whole_cards_from_the_head_of_the_queue():
    # Two cards of two messages each, interleaved (two transactions at once), then a notice.
    assert merged([row(1, 10, 0, 2), row(2, 11, 0, 2), row(3, 10, 1, 2), row(4, 11, 1, 2),
                   row(5, None), row(6, 12)]) == [1, 2, 3, 4]
    assert merged([row(5, None), row(6, 12), row(7, 13)]) is None  # not its turn yet
    assert merged([row(1, 10), row(2, None), row(3, 11)]) is None  # one card, then a notice
    # A card whose start went out alone is finished as it is.
    assert merged([row(1, 10, 1, 2), row(2, 11), row(3, 12)]) is None
    assert merged([row(1, 10, parts_sent=1), row(2, 11), row(3, 12)]) is None
    # An unfinished card at the end stays out; what remains is one card: no digest.
    assert merged([row(1, 10), row(2, 11, 0, 2)]) is None
    assert merged([row(1, 10), row(2, 11), row(3, 12, 0, 2)]) == [1, 2]
    # A citizen's chat is never merged.
    assert merged([row(1, 10, audience="citizen"), row(2, 11, audience="citizen")]) is None


def test_the_plan_keeps_to_the_cap_and_the_text_limit():
    rows = [row(i, 100 + i) for i in range(1, 61)]
    assert merged(rows) == list(range(1, 51))  # Telegram: 50 to a digest
    entries = [DigestEntry.from_json(r.payload["digest"]) for r in rows]
    fits = fitting(entries, 600)  # type: ignore[arg-type]
    assert 2 <= fits < 50 and merged(rows, cap_text=600) == list(range(1, fits + 1))
    long = [row(i, 100 + i) for i in range(1, 61)]
    for r in long:
        r.payload["digest"]["line"] = "№ 2026-000001 — " + "Ж" * 84  # the longest line
    assert merged(long) == list(range(1, 38))  # 37 lines of 100 fit in Telegram's 4,096


async def test_the_group_of_a_block_gets_a_digest_without_buttons(core, services, head):
    async with services.sessions() as session, session.begin():
        session.add(GroupBinding(purpose="block", block_id="housing", platform="telegram",
                                 chat_id="-100500", bound_at=services.now()))
    await reports(core, 3)
    sent: list[Reply] = []

    class Collecting:
        async def send(self, chat_id: str, reply: Reply, **_: Any) -> None:
            if chat_id == "-100500":
                sent.append(reply)

    await OutboxSender(services, {"telegram": Collecting()}).sweep()
    [digest] = sent
    assert digest.title is not None and "(3)" in digest.title and digest.buttons == []
    assert "Нажмите" not in digest.text and "2026-000003" in digest.text


async def test_a_digest_claims_all_its_rows_or_none(services):
    """Another process holding one of the rows: the digest claims nothing and leaves the
    chat to it."""
    async with services.sessions() as session, session.begin():
        rows = [enqueue(session, ChatRef(Platform.TELEGRAM, "1"), Reply(f"card {n}"),
                        audience="staff", now=services.now()) for n in range(3)]
    ids = [r.id for r in rows]
    sender = OutboxSender(services, {})
    assert await sender._claim(ids[1], services.now())  # the other process
    assert not await sender._claim_all(ids, services.now())
    async with services.sessions() as session:
        leases = [(await session.get(OutboxMessage, i)).claimed_until for i in ids]
    assert leases[0] is None and leases[1] is not None and leases[2] is None
    assert await sender._claim_all([ids[0], ids[2]], services.now())
