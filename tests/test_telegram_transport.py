"""The Telegram transport end to end: a real aiogram Bot over HTTP to the fake Bot API server,
the real core and a real SQLite file.

Waiting is deterministic: an outer middleware on the dispatcher reports when aiogram has
finished an update (the handler renders its replies before returning), so each step waits for
exactly its own update and never sleeps.
"""

from __future__ import annotations

import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageText
from sqlalchemy import func, select

from bot.bootstrap import build_services
from bot.settings import Settings
from bot.telegram import TelegramTransport, delivery_error
from bot.telegram_client import fetch_username
from bot.telegram_render import html_chunks
from handlers.clock import ManualClock
from handlers.core import Core
from handlers.events import Button, DeliveryError, OutgoingPhoto, Reply
from handlers.i18n import translator
from storage.db import create_engine
from storage.models import Attachment, DialogState, Item, ProcessedUpdate
from tests.fakes.telegram_api import FakeTelegramServer, SentRecord
from tests.support.telegram_harness import Processed

TRICKY = "Во дворе <b>дом</b> & *подвал* _затоплен_ [срочно]"
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 16 + b"\xff\xd9"
REPORT = translator("ru")("menu.report")


# ---------------------------------------------------------------------------------------------
# Harness


@asynccontextmanager
async def running(settings: Settings, core: Core,
                  tg: FakeTelegramServer) -> AsyncIterator[tuple[TelegramTransport, Processed]]:
    transport = TelegramTransport(settings, core)
    processed = Processed()
    transport.dp.update.outer_middleware(processed)
    await transport.start()
    try:
        await tg.wait_polling()
        yield transport, processed
    finally:
        await transport.stop()


def visible(record: SentRecord) -> str:
    """What the Telegram client shows (the fake stores text after HTML parsing)."""
    return str(record.result.get("text") or record.result.get("caption") or "")


def shown(records: list[SentRecord]) -> str:
    return "\n---\n".join(visible(r) for r in records)


def inline_buttons(record: SentRecord) -> list[dict[str, str]]:
    rows = (record.reply_markup or {}).get("inline_keyboard") or []
    return [button for row in rows for button in row]


@dataclass
class TgUser:
    """A Telegram user talking to the bot: send(text) / click(button) like a person would."""

    tg: FakeTelegramServer
    processed: Processed
    user_id: int
    language_code: str = "ru"
    first_name: str = "Анна"

    async def say(self, text: str | None = None, **content: Any) -> list[SentRecord]:
        mark = len(self.tg.sent)
        update_id = self.tg.user_message(self.user_id, text, first_name=self.first_name,
                                         language_code=self.language_code, **content)
        await self.processed.wait(update_id)
        return self._since(mark)

    async def click(self, label: str) -> list[SentRecord]:
        message_id, data = self.button(label)
        return await self.press(data, message_id)

    async def press(self, data: str, message_id: int) -> list[SentRecord]:
        mark = len(self.tg.sent)
        update_id = self.tg.press_button(self.user_id, data, message_id=message_id)
        await self.processed.wait(update_id)
        return self._since(mark)

    def button(self, label: str) -> tuple[int, str]:
        """(message id, callback data) of the newest button whose text contains `label`."""
        for record in reversed(self.tg.messages_to(self.user_id)):
            for button in inline_buttons(record):
                if label in button["text"] and "callback_data" in button:
                    assert record.message_id is not None
                    return record.message_id, button["callback_data"]
        raise AssertionError(f"no button {label!r}")

    def notices(self) -> list[str | None]:
        return [r.text for r in self.tg.calls("answerCallbackQuery")]

    def _since(self, mark: int) -> list[SentRecord]:
        return [r for r in self.tg.sent[mark:] if r.chat_id == self.user_id]


async def agree(user: TgUser) -> None:
    await user.say("/start")
    await user.click("Согласен")


async def count(services: Any, model: Any) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server
    assert not server.internal_errors


@pytest.fixture
def settings(tg: FakeTelegramServer, tmp_path: Path, sqlite_url: str) -> Settings:
    # Same data_dir and database as the conftest `services`, so both sides see one store.
    return Settings(_env_file=None, telegram_token=tg.token,  # type: ignore[call-arg]
                    telegram_api_url=tg.base_url, data_dir=tmp_path / "data",
                    database_url=sqlite_url)


# ---------------------------------------------------------------------------------------------
# 1. The whole report through Telegram


async def test_full_report_from_start_to_number(tg: FakeTelegramServer, settings: Settings,
                                                core: Core, services: Any) -> None:
    async with running(settings, core, tg) as (transport, processed):
        anna = TgUser(tg, processed, 501)
        start = await anna.say("/start")
        # Consent: the menu removal rides on the head, the inline buttons on the question.
        assert [r.method for r in start] == ["sendMessage", "sendMessage"]
        assert start[0].reply_markup == {"remove_keyboard": True}
        assert start[0].text is not None and start[0].text.startswith("<b>Здравствуйте!")
        assert "согласие" in visible(start[1]).lower()
        assert any("Согласен" in b["text"] for b in inline_buttons(start[1]))

        thanks = await anna.click("Согласен")
        menu = thanks[-1].reply_markup or {}
        assert menu.get("is_persistent") is True and menu.get("resize_keyboard") is True
        assert [REPORT] in [[b["text"] for b in row] for row in menu["keyboard"]]

        topics = await anna.say(REPORT)
        assert "тематику" in shown(topics)
        assert "Опишите" in shown(await anna.click("Жилищно"))
        assert "фото" in shown(await anna.say(TRICKY)).lower()
        assert "1 из 5" in shown(await anna.say(photo=PHOTO))
        await anna.click("Готово")
        confirm = (await anna.say(location=(53.5739, 142.9478)))[-1]
        # Plain text in the core, escaped on the wire, shown verbatim by the client.
        assert confirm.text is not None and confirm.text.startswith("<b>Проверьте сообщение</b>\n")
        assert html.escape(TRICKY, quote=False) in confirm.text
        assert TRICKY in visible(confirm)
        assert confirm.parse_mode == "HTML"

        done = await anna.click("Отправить")
        assert "2026-000001" in shown(done)
        assert "Сообщение зарегистрировано" in shown(done)
        # Every press was answered, so no client spinner is left turning.
        assert len(anna.notices()) == 4
        assert "Согласие записано" in anna.notices()

        assert transport.username == "mcu_okha_bot"
    assert [c["command"] for c in tg.commands[("default", "")]] == [
        "start", "help", "cancel", "privacy", "forget", "lang"]
    assert tg.commands[("default", "en")][0]["description"].startswith("Start")

    async with services.sessions() as session:
        item = await session.scalar(select(Item))
        photo = await session.scalar(select(Attachment))
    assert item is not None and photo is not None
    assert item.text == TRICKY and item.number == "2026-000001"
    assert (item.latitude, item.longitude) == (53.5739, 142.9478)
    stored = services.files.path(photo.path)
    assert stored.is_relative_to(settings.data_dir) and stored.read_bytes() == PHOTO
    assert (photo.width, photo.height, photo.item_id) == (1280, 960, item.id)
    assert photo.source_file_id is not None and photo.source_file_id.startswith("FAKE-photo")


# ---------------------------------------------------------------------------------------------
# 2. A restart in the middle of the dialog


async def test_restart_mid_dialog_continues_at_the_same_step(
        tg: FakeTelegramServer, settings: Settings, core: Core, clock: ManualClock,
        sqlite_url: str) -> None:
    async with running(settings, core, tg) as (_, processed):
        anna = TgUser(tg, processed, 502)
        await agree(anna)
        await anna.say(REPORT)
        await anna.click("Жилищно")
        await anna.say(TRICKY)

    engine = create_engine(sqlite_url)
    try:
        services = build_services(settings, engine, clock)
        async with services.sessions() as session:
            state = await session.scalar(select(DialogState))
        assert state is not None and state.state == "report_photos"
        assert state.data["text"] == TRICKY
        async with running(settings, Core(services), tg) as (_, processed):
            anna.processed = processed
            assert "место" in shown(await anna.click("Пропустить")).lower()
            confirm = await anna.click("Пропустить")
            assert TRICKY in shown(confirm)
            assert "2026-000001" in shown(await anna.click("Отправить"))
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------------
# 3. The same update delivered twice


async def test_duplicate_update_is_processed_once(tg: FakeTelegramServer, settings: Settings,
                                                  core: Core, services: Any) -> None:
    raw = {
        "update_id": 777,
        "message": {
            "message_id": 50,
            "date": int(time.time()),
            "chat": {"id": 601, "type": "private", "first_name": "Ivan"},
            "from": {"id": 601, "is_bot": False, "first_name": "Ivan", "language_code": "ru"},
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    async with running(settings, core, tg) as (transport, processed):
        tg.inject_raw(raw)
        tg.inject_raw(raw)
        await processed.wait(777)
        await transport.drain()
    assert tg.delivered.count(777) >= 2  # in one batch, or again while the first was handled
    assert len(tg.messages_to(601)) == 1
    assert await count(services, ProcessedUpdate) == 1


# ---------------------------------------------------------------------------------------------
# 4. What the bot does not accept gets a clear Russian answer


async def test_bad_inputs_get_a_clear_answer(tg: FakeTelegramServer, settings: Settings,
                                             core: Core, services: Any) -> None:
    async with running(settings, core, tg) as (_, processed):
        ivan = TgUser(tg, processed, 503, first_name="Иван")
        await agree(ivan)
        kinds = {"sticker": "Стикер", "voice": "Голосовое сообщение",
                 "video_note": "Видеосообщение", "document": "Файл", "contact": "Контакт",
                 "poll": "Опрос"}
        for kind, name in kinds.items():
            answer = shown(await ivan.say(**{kind: True}))
            assert f"{name} здесь не принимается" in answer, kind

        huge = "я" * 50_000  # 100 kB of UTF-8
        answer = shown(await ivan.say(huge))
        assert "4000" in answer and "50000" in answer
        assert await count(services, Item) == 0
        async with services.sessions() as session:
            state = await session.scalar(select(DialogState))
        assert state is not None and "text" not in (state.data or {})

        answer = shown(await ivan.say("/foo"))
        assert "/foo" in answer and "/help" in answer

        await ivan.say(REPORT)
        old_topics, payload = ivan.button("Жилищно")
        await ivan.click("Жилищно")
        stale = await ivan.press(payload, old_topics)  # the topic step is over
        assert "не действует" in shown(stale)
        assert ivan.notices()[-1] == "Эта кнопка устарела"
        assert await count(services, Item) == 0
    # Every reply was valid HTML for Telegram; nothing was rejected.
    assert tg.failed == []


# ---------------------------------------------------------------------------------------------
# 5. Group chats


async def test_group_message_from_non_staff_gets_no_reply(tg: FakeTelegramServer,
                                                          settings: Settings,
                                                          core: Core) -> None:
    async with running(settings, core, tg) as (_, processed):
        first = tg.user_message(504, "привет всем", chat_id=-100500, chat_type="group")
        second = tg.user_message(504, "/start", chat_id=-100500, chat_type="group")
        await processed.wait(first)
        await processed.wait(second)
    assert tg.messages_to(-100500) == []
    assert tg.messages_to(504) == []


# ---------------------------------------------------------------------------------------------
# 6. send(): error mapping and rendering for the outbox


async def test_send_maps_errors_for_the_outbox(tg: FakeTelegramServer, settings: Settings,
                                               core: Core) -> None:
    async with running(settings, core, tg) as (transport, _):
        tg.fail_next("sendMessage", status=429, retry_after=7)
        with pytest.raises(DeliveryError) as caught:
            await transport.send("42", Reply("Новости"))
        assert caught.value.retry_after == 7
        assert not caught.value.blocked and not caught.value.permanent

        tg.fail_next("sendMessage", status=403)
        with pytest.raises(DeliveryError) as caught:
            await transport.send("42", Reply("Новости"))
        assert caught.value.blocked

        tg.block_user(43)
        with pytest.raises(DeliveryError) as caught:
            await transport.send("43", Reply("Новости"))
        assert caught.value.blocked

        tg.fail_next("sendMessage", status=500)
        with pytest.raises(DeliveryError) as caught:
            await transport.send("42", Reply("Новости"))
        error = caught.value
        assert (error.retry_after, error.blocked, error.permanent) == (None, False, False)

        tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
        with pytest.raises(DeliveryError) as caught:
            await transport.send("42", Reply("Новости"))
        assert caught.value.permanent and not caught.value.blocked

        await transport.send("42", Reply("Дошло"))
        assert [visible(r) for r in tg.messages_to(42)] == ["Дошло"]


def test_library_errors_map_to_delivery_terms() -> None:
    not_modified = TelegramBadRequest(
        EditMessageText(text="x", chat_id=1, message_id=1),
        "Bad Request: message is not modified: specified new message content …")
    assert delivery_error(not_modified) is None
    for transient in (TimeoutError(), aiohttp.ClientConnectionError("reset")):
        mapped = delivery_error(transient)
        assert mapped is not None and not mapped.permanent and not mapped.blocked


async def test_send_photos_album_and_long_text(tg: FakeTelegramServer, settings: Settings,
                                               core: Core, tmp_path: Path) -> None:
    payloads = [PHOTO + bytes([i]) for i in range(3)]
    paths = []
    for i, data in enumerate(payloads):
        path = tmp_path / f"photo{i}.jpg"
        path.write_bytes(data)
        paths.append(path)
    line = "Строка {:03d}: <тег> & «кавычки» " + "ы" * 70
    long_text = "\n".join(line.format(i) for i in range(100))
    assert len(long_text) >= 10_000

    async with running(settings, core, tg) as (transport, _):
        await transport.send("45", Reply("Три фото к ответу",
                                         photos=[OutgoingPhoto(p) for p in paths]))
        await transport.send("46", Reply(long_text, title="Отчёт",
                                         buttons=[[Button("Понятно", "ok")]]))
        await transport.send("47", Reply("", photos=[OutgoingPhoto(paths[0], "Яма & <лужа>")]))

    album, text = tg.messages_to(45)
    assert album.method == "sendMediaGroup"
    assert [m.data for m in album.media] == payloads
    assert (text.method, visible(text)) == ("sendMessage", "Три фото к ответу")

    pieces = tg.messages_to(46)
    assert len(pieces) >= 3 and all(r.method == "sendMessage" for r in pieces)
    assert "\n".join(visible(r) for r in pieces) == "Отчёт\n" + long_text
    assert [bool(inline_buttons(r)) for r in pieces] == [False] * (len(pieces) - 1) + [True]

    (single,) = tg.messages_to(47)
    assert single.method == "sendPhoto" and single.photo == payloads[0]
    assert visible(single) == "Яма & <лужа>"


def test_chunks_never_cut_markup() -> None:
    text = "&<>" * 3000  # escapes to 5 × 4 × 3000 characters: many chunks
    chunks = html_chunks(text, title="Заголовок", monospace=True)
    assert all(len(c) <= 4096 and c.endswith("</pre>") for c in chunks)
    assert chunks[0].startswith("<b>Заголовок</b>\n<pre>")
    rebuilt = "".join(html.unescape(c.removeprefix("<b>Заголовок</b>\n")[5:-6]) for c in chunks)
    assert rebuilt == text


# ---------------------------------------------------------------------------------------------
# 7. Only the update types the bot handles are requested


async def test_allowed_updates_are_message_and_callback_query(tg: FakeTelegramServer,
                                                              settings: Settings,
                                                              core: Core) -> None:
    async with running(settings, core, tg) as (transport, processed):
        assert sorted(transport.dp.resolve_used_update_types()) == ["callback_query", "message"]
        edited = tg.inject_raw({"edited_message": {
            "message_id": 1, "date": int(time.time()), "edit_date": int(time.time()),
            "chat": {"id": 505, "type": "private", "first_name": "Ivan"},
            "from": {"id": 505, "is_bot": False, "first_name": "Ivan"}, "text": "изменено"}})
        help_id = tg.user_message(505, "/help")
        await processed.wait(help_id)
    assert help_id in tg.delivered and edited not in tg.delivered


async def test_fetch_username_for_the_cli(tg: FakeTelegramServer, settings: Settings) -> None:
    assert await fetch_username(settings) == "mcu_okha_bot"


# ---------------------------------------------------------------------------------------------
# 8. Languages


async def test_language_switch_and_english_from_the_start(tg: FakeTelegramServer,
                                                          settings: Settings,
                                                          core: Core) -> None:
    async with running(settings, core, tg) as (_, processed):
        anna = TgUser(tg, processed, 506)
        await agree(anna)
        await anna.say("/lang")
        changed = await anna.click("English")
        assert "Language: English" in shown(changed)
        menu = changed[-1].reply_markup or {}
        assert ["📝 Report a problem"] in [[b["text"] for b in row] for row in menu["keyboard"]]
        assert "What this bot does" in shown(await anna.say("/help"))

        john = TgUser(tg, processed, 507, language_code="en", first_name="John")
        start = shown(await john.say("/start"))
        assert "consent" in start.lower() and "согласие" not in start.lower()
        assert john.button("I agree")  # the consent buttons are English too


# ---------------------------------------------------------------------------------------------
# Robustness: order, failed replies


async def test_updates_of_one_user_are_handled_in_arrival_order(
        tg: FakeTelegramServer, settings: Settings, core: Core, services: Any) -> None:
    async with running(settings, core, tg) as (_, processed):
        anna = TgUser(tg, processed, 508)
        await agree(anna)
        await anna.say(REPORT)
        await anna.click("Жилищно")
        mark = len(tg.sent)
        # The photo needs two HTTP round trips to download; the text right after it must not
        # overtake it.
        photo_id = tg.user_message(508, photo=PHOTO)
        text_id = tg.user_message(508, TRICKY)
        await processed.wait(photo_id)
        await processed.wait(text_id)
    replies = [visible(r) for r in tg.sent[mark:] if r.chat_id == 508]
    assert replies[0].startswith("Фото сохранено") and "1 из 5" in replies[1]
    assert await count(services, Attachment) == 1


async def test_failed_reply_does_not_break_the_handler(tg: FakeTelegramServer,
                                                       settings: Settings, core: Core) -> None:
    async with running(settings, core, tg) as (_, processed):
        anna = TgUser(tg, processed, 509)
        await anna.say("/start")
        tg.fail_next("sendMessage", status=400, description="Bad Request: chat not found")
        assert await anna.click("Согласен") == []  # the reply was refused…
        assert anna.notices() == ["Согласие записано"]  # …but the spinner was stopped
        assert "Что умеет этот бот" in shown(await anna.say("/help"))  # and the bot lives on


async def test_album_with_caption_keeps_text_and_every_photo(
        tg: FakeTelegramServer, settings: Settings, core: Core, services: Any) -> None:
    async with running(settings, core, tg) as (_, processed):
        anna = TgUser(tg, processed, 510)
        await agree(anna)
        # Telegram delivers an album as one update per photo, the caption on the first only.
        await anna.say(TRICKY, photo=PHOTO)
        await anna.say(photo=PHOTO)
        await anna.say(photo=PHOTO)
    async with services.sessions() as session:
        state = await session.scalar(select(DialogState))
    assert state is not None and state.data.get("text") == TRICKY
    assert len(state.data.get("photos", [])) == 3


# ---------------------------------------------------------------------------------------------
# Topic suggestions on the wire


async def test_text_first_shows_the_suggested_topics_first(tg: FakeTelegramServer,
                                                          settings: Settings, core: Core,
                                                          services: Any) -> None:
    from tests.support.topics import ready_suggester

    services.topics = ready_suggester(services.org)
    async with running(settings, core, tg) as (_transport, processed):
        anna = TgUser(tg, processed, 502)
        await agree(anna)
        [screen] = await anna.say("Во дворе разбита дорога и не горит свет")
        rows = (screen.reply_markup or {})["inline_keyboard"]
        assert [[b["text"] for b in row] for row in rows[:2]] == [
            ["⭐ Дорожная деятельность"], ["⭐ Энергетика"]]
        assert len(inline_buttons(screen)) == 17  # the other topics on the same screen
        assert "⭐" in visible(screen)

        await anna.say("/cancel")
        [question] = await anna.say("Не горит фонарь у подъезда дома 7 по Советской")
        assert "Похоже, это Энергетика — верно?" in visible(question)
        assert [b["text"] for b in inline_buttons(question)][:2] == ["Да", "Выбрать другую"]
        await anna.click("Да")
        await anna.click("Пропустить")
        await anna.click("Пропустить")
        assert "2026-000001" in shown(await anna.click("Отправить"))
    async with services.sessions() as session:
        item = await session.scalar(select(Item))
    assert item is not None and item.topic == item.suggested_topic == "energy"
