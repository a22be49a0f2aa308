"""The staff chain end to end, through both transports.

Every message goes over real HTTP: aiogram to the fake Bot API server, vkbottle to the fake VK
server. Both transports share one real core and one real SQLite file; everything the core
queues for somebody else (task cards, the question, the answer) is delivered by the real
`OutboxSender` through those same transports. Staff join as in production: an invite code is
created in the database, and the staff member sends `/start CODE` to the bot.

Waiting is deterministic, never a sleep:
- Telegram: an outer middleware on the dispatcher reports when aiogram has finished an update
  (the handler renders its replies before it returns);
- VK: a spy on `core.handle` reports when an event was handled, then `transport.drain()`
  waits until its replies went out;
- the outbox: `await sender.sweep()` after each step that queues notifications.

The two chains:
1. the citizen in VK; the head and the executor in Telegram (the issue's main chain);
2. the citizen in Telegram, the head in VK, the executor in Telegram: the same chain with the
   citizen in Telegram, and staff on both messengers (photos cross VK → Telegram in the first
   chain and Telegram → VK in the second).
Before delegating, the head opens a fresh card with `/task NUMBER`: the buttons under the
question were drawn while the item waited for the citizen.

Then the abuse probes: forged callbacks from citizens, another block's head and a foreign
executor, and `/bind_summary_group` from a non-chairman; each is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.settings import Settings
from bot.telegram import TelegramTransport
from bot.vk import VKTransport
from handlers.context import Services
from handlers.core import Core
from handlers.events import Event, Response
from handlers.i18n import translator
from handlers.staff.invites import create_invite
from scheduler.limits import Limits, RateLimiter
from scheduler.outbox import OutboxSender
from storage.models import (
    Account,
    DialogState,
    GroupBinding,
    Item,
    ItemEvent,
    OutboxMessage,
    Staff,
)
from tests.fakes import telegram_api, vk_api
from tests.fakes.telegram_api import FakeTelegramServer
from tests.fakes.vk_api import PEER_ID_OFFSET, FakeVKServer
from tests.support.telegram_harness import Processed

GROUP_ID = 7
VK_TOKEN = "vk-chain-token"
NUMBER = "2026-000001"
REPORT = translator("ru")("menu.report")
REFUSED = translator("ru")("staff.refused")
CHAIRMAN_ONLY = translator("ru")("bind.chairman_only")
REPORT_TEXT = "Не горит уличное освещение у дома 5 по ул. Ленина"
QUESTION = "Уточните, пожалуйста, номер подъезда"
CLARIFICATION = "Второй подъезд, фонарь над входом"
ANSWER = "Лампы заменены 25.11, освещение работает"
EXECUTOR = "Инженер Петров"
CHAIN = ["register", "route", "take", "ask_citizen", "citizen_replied", "delegate",
         "submit_answer", "approve"]
# Distinct bytes for each photo, so every re-upload can be traced back to its source.
VK_PHOTO = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")
TG_PHOTO = b"\xff\xd8\xff\xe0" + b"citizen-photo" * 40 + b"\xff\xd9"
ANSWER_PHOTO = b"\xff\xd8\xff\xe0" + b"answer-photo" * 40 + b"\xff\xd9"
# Telegram allows about one message per second in a chat; the sender's real limiter would
# make every four-message card take three seconds. The limits are not under test here.
NO_WAITING = {platform: Limits(per_second=1000, per_chat_interval=0.0, group_per_minute=1000)
              for platform in ("telegram", "vk")}


# ---------------------------------------------------------------------------------------------
# Harness


class Handled:
    """Wraps core.handle to know, without sleeping, when a VK event has been handled."""

    def __init__(self, core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        self._changed = asyncio.Event()
        original = core.handle

        async def handle(event: Event) -> Response:
            try:
                return await original(event)
            finally:
                self.keys.append(event.update_key)
                self._changed.set()

        monkeypatch.setattr(core, "handle", handle)

    async def wait(self, update_key: str, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while update_key not in self.keys:
                self._changed.clear()
                await self._changed.wait()


@dataclass
class Shown:
    """One message as the person sees it in their client, whatever the messenger."""

    text: str
    buttons: list[tuple[str, str]]  # (label, payload) of the callback buttons
    photos: list[bytes]
    message_id: int | None = None  # Telegram: the message a callback is attached to


def joined(messages: list[Shown]) -> str:
    return "\n---\n".join(m.text for m in messages)


def photos_of(messages: list[Shown]) -> list[bytes]:
    return [photo for m in messages for photo in m.photos]


def tg_shown(record: telegram_api.SentRecord) -> Shown:
    result = record.result if isinstance(record.result, dict) else {}
    rows = (record.reply_markup or {}).get("inline_keyboard") or []
    buttons = [(b["text"], b["callback_data"]) for row in rows for b in row
               if "callback_data" in b]
    if record.method == "sendMediaGroup":
        photos = [m.data for m in record.media if m.data is not None]
    else:
        photos = [record.photo] if isinstance(record.photo, bytes) else []
    # The fake keeps the text as the client shows it, after HTML parsing.
    text = str(result.get("text") or result.get("caption") or "")
    return Shown(text, buttons, photos, record.message_id)


def vk_shown(record: vk_api.SentRecord) -> Shown:
    buttons = [(a["label"], a["payload"]["p"]) for a in record.buttons()
               if isinstance(a.get("payload"), dict) and "p" in a["payload"]]
    return Shown(record.text or "", buttons, list(record.photos))


class Person(ABC):
    """Somebody talking to the bot from their messenger: say(), click(), press()."""

    name: str
    last: list[Shown]
    notice: str | None  # the callback answer (Telegram) or snackbar (VK) of the last press

    @abstractmethod
    def inbox(self) -> list[Shown]:
        """Everything the bot sent to this person's private chat, in order."""

    @abstractmethod
    async def start(self) -> list[Shown]: ...

    @abstractmethod
    async def say(self, text: str | None = None, *,
                  photo: bytes | None = None) -> list[Shown]: ...

    @abstractmethod
    async def press(self, payload: str, message_id: int | None = None) -> list[Shown]:
        """A callback with this payload: a real button's, or a forged one."""

    @abstractmethod
    async def in_group(self, text: str) -> list[Shown]:
        """Send a message in a group chat with the bot; returns what the group was shown."""

    async def click(self, label: str) -> list[Shown]:
        """Press the newest button whose label contains `label`, as the client would."""
        for message in reversed(self.inbox()):
            for text, payload in message.buttons:
                if label in text:
                    return await self.press(payload, message.message_id)
        raise AssertionError(f"{self.name}: no button {label!r}; last: {self.texts()}")

    def mark(self) -> int:
        return len(self.inbox())

    def since(self, mark: int) -> list[Shown]:
        return self.inbox()[mark:]

    def texts(self) -> str:
        return joined(self.last)

    def _keep(self, mark: int) -> list[Shown]:
        self.last = self.since(mark)
        return self.last


@dataclass
class Chain:
    services: Services
    tg: FakeTelegramServer
    vk: FakeVKServer
    telegram: TelegramTransport
    vk_transport: VKTransport
    processed: Processed
    handled: Handled
    sender: OutboxSender

    async def deliver(self) -> int:
        """Run the outbox sender until nothing is due; every queued row must have gone out."""
        total = 0
        while sent := await self.sender.sweep():
            total += sent
        async with self.services.sessions() as session:
            stuck = (await session.scalars(
                select(OutboxMessage).where(OutboxMessage.status != "sent"))).all()
        assert not stuck, [(r.platform, r.chat_id, r.status, r.last_error) for r in stuck]
        return total

    async def join(self, person: Person, role: str, block: str | None = None) -> int:
        """The staff member joins through the messenger with a fresh invite; their staff id."""
        services = self.services
        async with services.sessions() as session, session.begin():
            invite = await create_invite(session, services.org, role, block, person.name,
                                         services.now())
        replies = await person.say(f"/start {invite.code}")
        assert "Добро пожаловать" in joined(replies), joined(replies)
        async with services.sessions() as session:
            staff = await session.scalar(select(Staff).where(Staff.name == person.name))
        assert staff is not None
        return staff.id


@dataclass
class TgPerson(Person):
    chain: Chain
    user_id: int
    name: str
    first_name: str = ""
    last: list[Shown] = field(default_factory=list)
    notice: str | None = None

    def inbox(self) -> list[Shown]:
        return [tg_shown(r) for r in self.chain.tg.messages_to(self.user_id)
                if r.method.startswith("send")]

    async def start(self) -> list[Shown]:
        return await self.say("/start")

    async def say(self, text: str | None = None, *, photo: bytes | None = None) -> list[Shown]:
        mark = self.mark()
        update_id = self.chain.tg.user_message(self.user_id, text, photo=photo,
                                               first_name=self.first_name or self.name)
        await self.chain.processed.wait(update_id)
        return self._keep(mark)

    async def press(self, payload: str, message_id: int | None = None) -> list[Shown]:
        mark, answered = self.mark(), len(self.chain.tg.calls("answerCallbackQuery"))
        update_id = self.chain.tg.press_button(self.user_id, payload, message_id=message_id)
        await self.chain.processed.wait(update_id)
        [answer] = self.chain.tg.calls("answerCallbackQuery")[answered:]
        self.notice = answer.text
        return self._keep(mark)

    async def in_group(self, text: str) -> list[Shown]:
        group = -100_777
        mark = len(self.chain.tg.messages_to(group))
        update_id = self.chain.tg.user_message(self.user_id, text, chat_id=group,
                                               chat_type="group", first_name=self.name)
        await self.chain.processed.wait(update_id)
        return [tg_shown(r) for r in self.chain.tg.messages_to(group)[mark:]]


@dataclass
class VkPerson(Person):
    chain: Chain
    user_id: int
    name: str
    last: list[Shown] = field(default_factory=list)
    notice: str | None = None

    def __post_init__(self) -> None:
        first, _, last = self.name.partition(" ")
        self.chain.vk.set_user(self.user_id, first, last)

    def inbox(self) -> list[Shown]:
        return [vk_shown(r) for r in self.chain.vk.messages_to(self.user_id)]

    async def start(self) -> list[Shown]:
        return await self._send("Начать", payload={"command": "start"})  # VK's start button

    async def say(self, text: str | None = None, *, photo: bytes | None = None) -> list[Shown]:
        return await self._send(text or "", photo=photo)

    async def _send(self, text: str, **extra: Any) -> list[Shown]:
        mark = self.mark()
        await self._settle(self.chain.vk.user_message(self.user_id, text, **extra))
        return self._keep(mark)

    async def press(self, payload: str, message_id: int | None = None) -> list[Shown]:
        vk = self.chain.vk
        mark = self.mark()
        answered = len(vk.messages_to(self.user_id, method="messages.sendMessageEventAnswer"))
        callback_id = vk.press_callback(self.user_id, {"p": payload})
        await self._settle(vk.update(callback_id)["event_id"])
        [answer] = vk.messages_to(self.user_id,
                                  method="messages.sendMessageEventAnswer")[answered:]
        self.notice = (answer.event_data or {}).get("text")
        return self._keep(mark)

    async def in_group(self, text: str) -> list[Shown]:
        chat = PEER_ID_OFFSET + 1
        mark = len(self.chain.vk.messages_to(chat))
        await self._settle(self.chain.vk.user_message(self.user_id, text, peer_id=chat))
        return [vk_shown(r) for r in self.chain.vk.messages_to(chat)[mark:]]

    async def _settle(self, update_key: str) -> None:
        await self.chain.handled.wait(update_key)
        await self.chain.vk_transport.drain()


@pytest.fixture
async def chain(tmp_path: Path, sqlite_url: str, core: Core, services: Services,
                monkeypatch: pytest.MonkeyPatch,
                caplog: pytest.LogCaptureFixture) -> AsyncIterator[Chain]:
    monkeypatch.chdir(tmp_path)  # whatever vkbottle writes to the cwd stays out of the repo
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(FakeTelegramServer())
        vk = await stack.enter_async_context(FakeVKServer(group_id=GROUP_ID, token=VK_TOKEN))
        # The same data dir and database as the conftest `services` (and so the core).
        settings = Settings(_env_file=None,  # type: ignore[call-arg]
                            telegram_token=tg.token, telegram_api_url=tg.base_url,
                            vk_token=VK_TOKEN, vk_group_id=GROUP_ID, vk_api_url=vk.api_url,
                            data_dir=tmp_path / "data", database_url=sqlite_url)
        handled = Handled(core, monkeypatch)
        telegram = TelegramTransport(settings, core)
        processed = Processed()
        telegram.dp.update.outer_middleware(processed)
        vk_transport = VKTransport(settings, core)
        sender = OutboxSender(services, {"telegram": telegram, "vk": vk_transport},
                              limiter=RateLimiter(NO_WAITING))
        await telegram.start()
        stack.push_async_callback(telegram.stop)
        await vk_transport.start()
        stack.push_async_callback(vk_transport.stop)
        await tg.wait_polling()
        await vk.wait_for_poller()
        yield Chain(services, tg, vk, telegram, vk_transport, processed, handled, sender)
        # Every call either fake received was valid for the real API, and nothing failed on
        # the way (a core crash, a reply or an outbox row that could not be rendered).
        assert tg.failed == [] and not tg.internal_errors
        assert vk.failed == []
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []


async def item(services: Services, number: str = NUMBER) -> Item:
    async with services.sessions() as session:
        found = await session.scalar(select(Item).where(Item.number == number))
    assert found is not None
    return found


async def history(services: Services) -> list[str]:
    async with services.sessions() as session:
        return list((await session.scalars(select(ItemEvent.action)
                                           .order_by(ItemEvent.id))).all())


async def report(citizen: Person, photo: bytes | None = None) -> None:
    """Consent, topic «Энергетика» (the housing block), text, a photo or none, no place."""
    await citizen.start()
    await citizen.click("Согласен")
    await citizen.say(REPORT)
    await citizen.click("Энергетика")
    assert "Опишите" in citizen.texts()
    await citizen.say(REPORT_TEXT)
    if photo is not None:
        await citizen.say(photo=photo)
        assert "1 из 5" in citizen.texts()
        await citizen.click("Готово")
    else:
        await citizen.click("Пропустить")
    await citizen.click("Пропустить")  # the place
    assert REPORT_TEXT in citizen.texts()
    await citizen.click("Отправить")
    assert NUMBER in citizen.texts(), citizen.texts()


# ---------------------------------------------------------------------------------------------
# The whole chain


async def run_chain(chain: Chain, citizen: Person, head: Person, executor: Person,
                    citizen_photo: bytes, channel: str) -> None:
    services = chain.services
    await chain.join(head, "head", "housing")
    await chain.join(executor, "executor", "housing")

    # A citizen reports; the task card reaches the head, with the citizen's photo re-uploaded.
    await report(citizen, citizen_photo)
    mark = head.mark()
    assert await chain.deliver() >= 3  # the card: text with the lead, the photo, the actions
    card = head.since(mark)
    assert "Новое сообщение для вашего блока" in card[0].text
    assert f"№ {NUMBER}" in joined(card) and REPORT_TEXT in joined(card)
    assert citizen.name in joined(card)  # the head may see who wrote
    assert photos_of(card) == [citizen_photo]
    assert any("Взять в работу" in label for label, _ in card[-1].buttons)

    # The head takes it and asks the citizen a question.
    await head.click("Взять в работу")
    assert "взято в работу" in head.texts()
    await head.click("Уточнить у заявителя")
    assert "Напишите вопрос" in head.texts()
    await head.say(QUESTION)
    assert "отправлен заявителю" in head.texts()
    mark = citizen.mark()
    assert await chain.deliver() == 1
    [question] = citizen.since(mark)
    # The title should name the item: see test_question_to_the_citizen_names_the_item.
    assert "Вопрос по сообщению" in question.text and QUESTION in question.text
    assert any("Ответить на вопрос" in label for label, _ in question.buttons)

    # The citizen answers with a plain message; the answer comes back to the head.
    await citizen.say(CLARIFICATION)
    assert "передан" in citizen.texts()
    mark = head.mark()
    assert await chain.deliver() == 1
    [clarification] = head.since(mark)
    assert "Заявитель ответил" in clarification.text and CLARIFICATION in clarification.text

    # The head delegates to the block's executor, who gets the card.
    await head.say(f"/task {NUMBER}")
    await head.click("Назначить исполнителя")
    assert "Кому поручить" in head.texts()
    await head.click(EXECUTOR)
    assert "поручено" in head.texts()
    mark = executor.mark()
    await chain.deliver()
    assigned = executor.since(mark)
    assert f"Вам поручено сообщение № {NUMBER}" in assigned[0].text
    assert photos_of(assigned) == [citizen_photo]

    # The executor answers with a photo and a text; the head gets it for approval.
    await executor.click("Ответить")
    assert "Напишите ответ" in executor.texts()
    await executor.say(photo=ANSWER_PHOTO)
    assert "Вложение к ответу" in executor.texts()
    await executor.say(ANSWER)
    assert "на утверждение" in executor.texts()
    mark = head.mark()
    await chain.deliver()
    approval = head.since(mark)
    assert "ждёт утверждения" in approval[0].text and ANSWER in approval[0].text
    assert (await item(services)).status == "on_approval"

    # The head approves; the answer, with the executor's photo, reaches the citizen.
    await head.click("Утвердить")
    assert "утверждён и отправлен" in head.texts()
    mark = citizen.mark()
    assert await chain.deliver() == 1
    answer = citizen.since(mark)  # Telegram: the photo, then the text; VK: one message
    assert f"Ответ по сообщению № {NUMBER}" in joined(answer) and ANSWER in joined(answer)
    assert photos_of(answer) == [ANSWER_PHOTO]

    current = await item(services)
    assert (current.status, current.channel, current.answer_text) == ("answered", channel, ANSWER)
    assert current.first_reaction_at is not None and current.answered_at is not None
    assert await history(services) == CHAIN


async def test_chain_citizen_in_vk(chain: Chain) -> None:
    """The citizen in VK; the head and the executor in Telegram."""
    citizen = VkPerson(chain, 2001, "Анна Петрова")
    head = TgPerson(chain, 1001, "Начальник отдела ЖКХ", first_name="Олег")
    executor = TgPerson(chain, 1002, EXECUTOR, first_name="Пётр")
    await run_chain(chain, citizen, head, executor, VK_PHOTO, channel="vk")
    # Nothing for the citizen went to Telegram, nothing for the staff to VK.
    assert chain.tg.messages_to(2001) == []
    assert chain.vk.messages_to(1001) == [] and chain.vk.messages_to(1002) == []


async def test_chain_citizen_in_telegram(chain: Chain) -> None:
    """The citizen in Telegram, the head in VK, the executor in Telegram."""
    citizen = TgPerson(chain, 501, "Анна")
    head = VkPerson(chain, 2101, "Олег Начальников")
    executor = TgPerson(chain, 1002, EXECUTOR, first_name="Пётр")
    await run_chain(chain, citizen, head, executor, TG_PHOTO, channel="telegram")
    assert chain.vk.messages_to(501) == [] and chain.tg.messages_to(2101) == []


async def test_question_to_the_citizen_names_the_item(chain: Chain) -> None:
    citizen = VkPerson(chain, 2001, "Анна Петрова")
    head = TgPerson(chain, 1001, "Начальник отдела ЖКХ")
    await chain.join(head, "head", "housing")
    await report(citizen)
    await chain.deliver()
    await head.click("Взять в работу")
    await head.click("Уточнить у заявителя")
    await head.say(QUESTION)
    mark = citizen.mark()
    await chain.deliver()
    [question] = citizen.since(mark)
    assert question.text.startswith(f"Вопрос по сообщению № {NUMBER}\n"), question.text


# ---------------------------------------------------------------------------------------------
# Abuse probes


async def snapshot(services: Services) -> tuple[Any, ...]:
    """Everything a successful action would change."""
    async with services.sessions() as session:
        current = await session.scalar(select(Item).where(Item.number == NUMBER))
        assert current is not None
        counts = [await session.scalar(select(func.count()).select_from(model))
                  for model in (ItemEvent, GroupBinding)]
        # The refusals themselves are replies; any other queued message would be a leak.
        notices = select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.audience.not_in(("reply", "group_reply")))
        counts.append(await session.scalar(notices))
        # A new account starts idle; any other dialog state is somebody mid-action.
        busy = (await session.execute(select(DialogState.account_id, DialogState.state)
                                      .where(DialogState.state != "idle")
                                      .order_by(DialogState.account_id))).all()
    return (current.status, current.block_id, current.taken_by_id, current.executor_id,
            current.answer_text, current.draft_answer_text, *counts, [tuple(r) for r in busy])


async def test_abuse_probes_over_the_transports(chain: Chain,
                                                caplog: pytest.LogCaptureFixture) -> None:
    services = chain.services
    head = TgPerson(chain, 1001, "Начальник отдела ЖКХ")
    stranger = TgPerson(chain, 1010, "Начальник отдела образования")
    executor = VkPerson(chain, 2102, "Инженер Сидоров")
    await chain.join(head, "head", "housing")
    stranger_id = await chain.join(stranger, "head", "education")
    executor_id = await chain.join(executor, "executor", "housing")
    citizen = TgPerson(chain, 501, "Анна")
    await report(citizen)
    await chain.deliver()
    item_id = (await item(services)).id
    before = await snapshot(services)
    caplog.set_level(logging.WARNING, logger="mcu.authz")

    # 1. A citizen injects a callback «Ответить» with the item's id: in Telegram, and in VK.
    replies = await citizen.press(f"s:answer:{item_id}")
    assert joined(replies) == REFUSED and citizen.notice == REFUSED
    vk_citizen = VkPerson(chain, 2001, "Анна Петрова")
    replies = await vk_citizen.press(f"s:answer:{item_id}")
    assert joined(replies) == REFUSED and vk_citizen.notice == REFUSED

    # 2. The head of another block presses «Взять в работу» with this block's item id.
    replies = await stranger.press(f"s:take:{item_id}")
    assert joined(replies) == REFUSED and stranger.notice == REFUSED
    await stranger.say(f"/task {NUMBER}")
    assert REPORT_TEXT not in stranger.texts()

    # 3. An executor acts on an item that is not theirs (it was never assigned to them).
    for op in ("take", "answer", "approve"):
        replies = await executor.press(f"s:{op}:{item_id}")
        assert joined(replies) == REFUSED and executor.notice == REFUSED

    # 4. A non-chairman sends /bind_summary_group in a group chat: the head in a Telegram
    #    group, the citizen in a VK chat.
    assert [m.text for m in await head.in_group("/bind_summary_group")] == [CHAIRMAN_ONLY]
    assert [m.text for m in await vk_citizen.in_group("/bind_summary_group")] == [CHAIRMAN_ONLY]

    # Nothing changed: the item, its history, the outbox, the bindings, the dialogs.
    assert await snapshot(services) == before
    assert await chain.deliver() == 0
    # Refusals are logged with the actor's id and without any message text.
    refusals = [r.getMessage() for r in caplog.records if r.name == "mcu.authz"]
    assert any(f"by staff {stranger_id} on item {item_id}" in m for m in refusals), refusals
    assert any(f"by staff {executor_id} on item {item_id}" in m for m in refusals), refusals
    assert any("bind_summary_group by staff" in m for m in refusals), refusals
    assert sum("by staff None" in m for m in refusals) >= 3, refusals  # two citizens, one chat
    assert not any(REPORT_TEXT in m for m in refusals)
    async with services.sessions() as session:
        accounts = (await session.scalars(select(Account).where(Account.staff_id.is_not(None))
                                          )).all()
    assert len(accounts) == 3  # nobody became staff by pressing staff buttons
