"""Self-test of the fake Bot API: a real aiogram Bot/Dispatcher talks to it over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)

from tests.fakes.telegram_api import FakeTelegramServer

# Minimal PNG signature + junk: the fake never decodes images, only moves bytes.
PHOTO_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def keyboard(*datas: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=d, callback_data=d)] for d in datas]
    )


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    async with FakeTelegramServer() as server:
        yield server
    assert not server.internal_errors


@pytest.fixture
async def bot(tg: FakeTelegramServer) -> AsyncIterator[Bot]:
    session = AiohttpSession(api=TelegramAPIServer.from_base(tg.base_url))
    bot = Bot(token=tg.token, session=session)
    yield bot
    await bot.session.close()  # no-op if the dispatcher already closed it


@asynccontextmanager
async def polling(dp: Dispatcher, bot: Bot, tg: FakeTelegramServer) -> AsyncIterator[None]:
    task = asyncio.create_task(dp.start_polling(bot, handle_signals=False, polling_timeout=1))
    try:
        await tg.wait_polling()  # dispatcher is up and parked in getUpdates
        yield
    finally:
        if not task.done():
            await dp.stop_polling()
        await task


async def test_text_message_gets_reply_via_long_polling(tg: FakeTelegramServer, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Здравствуйте!", reply_markup=keyboard("yes"))

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot, tg):
        polls_before = tg.get_updates_calls
        await asyncio.sleep(0.3)
        # Idle long poll stays parked: at most one re-poll after a 1 s timeout.
        assert tg.get_updates_calls - polls_before <= 1

        update_id = tg.user_message(42, "/start")
        record = await tg.wait_for(lambda r: r.method == "sendMessage")

    assert record.chat_id == 42
    assert record.text == "Здравствуйте!"
    assert record.reply_markup == {"inline_keyboard": [[{"text": "yes", "callback_data": "yes"}]]}
    assert record.result["from"] == {
        "id": 1000,
        "is_bot": True,
        "first_name": tg.first_name,
        "username": "mcu_okha_bot",
    }
    assert record.result["reply_markup"] == record.reply_markup
    assert tg.messages_to(42) == [record]
    assert update_id in tg.delivered
    assert [r.method for r in tg.sent] == ["getMe", "sendMessage"]


async def test_callback_press_answers_and_edits(tg: FakeTelegramServer, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer("Выберите район", reply_markup=keyboard("pick:1", "pick:2"))

    @router.callback_query(F.data.startswith("pick:"))
    async def picked(query: CallbackQuery) -> None:
        await query.answer("Принято")
        assert isinstance(query.message, Message)
        await query.message.edit_text(f"Вы выбрали {query.data}")

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot, tg):
        tg.user_message(42, "/start")
        menu = await tg.wait_for(lambda r: r.method == "sendMessage")
        tg.press_button(42, "pick:2")
        edit = await tg.wait_for(lambda r: r.method == "editMessageText")

    (answer,) = tg.calls("answerCallbackQuery")
    assert answer.text == "Принято"
    assert answer.callback_query_id
    assert edit.chat_id == 42
    assert edit.message_id == menu.message_id
    assert edit.text == "Вы выбрали pick:2"
    assert "reply_markup" not in edit.result  # keyboard removed by the edit
    assert [r.method for r in tg.messages_to(42)] == ["sendMessage", "editMessageText"]


async def test_photo_is_downloadable_by_handler(tg: FakeTelegramServer, bot: Bot) -> None:
    received: list[bytes] = []
    router = Router()

    @router.message(F.photo)
    async def on_photo(message: Message, bot: Bot) -> None:
        assert message.photo is not None
        buffer = await bot.download(message.photo[-1])
        assert buffer is not None
        received.append(buffer.read())
        await message.answer(f"Фото получено: {message.caption}")

    @router.message(F.location)
    async def on_location(message: Message) -> None:
        assert message.location is not None
        await message.answer_location(message.location.latitude, message.location.longitude)

    dp = Dispatcher()
    dp.include_router(router)
    async with polling(dp, bot, tg):
        tg.user_message(7, "Яма на дороге", photo=PHOTO_BYTES)
        reply = await tg.wait_for(lambda r: r.method == "sendMessage")
        tg.user_message(7, location=(53.5739, 142.9478))
        location = await tg.wait_for(lambda r: r.method == "sendLocation")

    assert received == [PHOTO_BYTES]
    assert reply.text == "Фото получено: Яма на дороге"
    assert (location.latitude, location.longitude) == (53.5739, 142.9478)
    assert location.result["location"]["latitude"] == pytest.approx(53.5739)
    assert [r.method for r in tg.calls("getFile")] == ["getFile"]
    assert len(tg.downloads) == 1


async def test_retry_after_and_server_error(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.fail_next("sendMessage", status=429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as exc_info:
        await bot.send_message(5, "Новости")
    assert exc_info.value.retry_after == 3
    assert tg.sent == []
    assert [(r.method, r.error_code) for r in tg.failed] == [("sendMessage", 429)]
    assert tg.failed[0].description == "Too Many Requests: retry after 3"

    message = await bot.send_message(5, "Новости")  # the rule is used up
    assert message.text == "Новости"

    tg.fail_next(status=500, times=2)  # any method
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_chat_action(5, "typing")
    assert await bot.send_chat_action(5, "typing") is True
    assert len(tg.failed) == 3


async def test_forbidden_for_blocked_user(tg: FakeTelegramServer, bot: Bot) -> None:
    tg.block_user(9)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(9, "Привет")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_photo(9, BufferedInputFile(PHOTO_BYTES, "p.png"))
    assert await bot.send_message(10, "Другому") is not None  # other chats unaffected

    tg.unblock_user(9)
    await bot.send_message(9, "Снова можно")
    tg.fail_next("sendMessage", status=403)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(9, "Опять нельзя")

    assert [r.chat_id for r in tg.failed] == [9, 9, 9]
    assert [r.text for r in tg.messages_to(9)] == ["Снова можно"]


async def test_uploads_media_group_photo_and_document(tg: FakeTelegramServer, bot: Bot) -> None:
    first, second = PHOTO_BYTES + b"1", PHOTO_BYTES + b"2"
    messages = await bot.send_media_group(
        11,
        media=[
            InputMediaPhoto(media=BufferedInputFile(first, "a.png"), caption="Первое"),
            InputMediaPhoto(media=BufferedInputFile(second, "b.png")),
        ],
    )
    assert len(messages) == 2
    assert messages[0].media_group_id == messages[1].media_group_id is not None
    (record,) = tg.calls("sendMediaGroup")
    assert [item.data for item in record.media] == [first, second]
    assert [item.filename for item in record.media] == ["a.png", "b.png"]
    assert [item.caption for item in record.media] == ["Первое", None]
    assert all(item.media.startswith("attach://") for item in record.media)
    assert messages[1].photo is not None
    downloaded = await bot.download(messages[1].photo[-1])
    assert downloaded is not None and downloaded.read() == second

    # Re-sending by file_id is recorded as the id string, not bytes.
    assert messages[0].photo is not None
    file_id = messages[0].photo[-1].file_id
    await bot.send_photo(11, file_id, caption="Повтор")
    assert tg.calls("sendPhoto")[0].photo == file_id

    doc = await bot.send_document(11, BufferedInputFile(b"a;b\n1;2\n", "report.csv"))
    (doc_record,) = tg.calls("sendDocument")
    assert doc_record.document == b"a;b\n1;2\n"
    assert doc_record.filename == "report.csv"
    assert doc.document is not None and doc.document.file_name == "report.csv"


async def test_long_poll_offsets_and_duplicates(tg: FakeTelegramServer, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert time.monotonic() - started >= 0.9  # really waited

    pending = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_polling()
    started = time.monotonic()
    update_id = tg.user_message(1, "привет")
    updates = await pending
    assert time.monotonic() - started < 0.5  # woken by the injection, not the timeout
    assert [u.update_id for u in updates] == [update_id]
    assert updates[0].message is not None and updates[0].message.text == "привет"

    # Unconfirmed updates are delivered again; offset confirms them.
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [update_id]
    assert await bot.get_updates(offset=update_id + 1, timeout=0) == []

    raw = {
        "update_id": update_id,
        "message": {
            "message_id": 99,
            "date": int(time.time()),
            "chat": {"id": 1, "type": "private", "first_name": "Ivan"},
            "from": {"id": 1, "is_bot": False, "first_name": "Ivan"},
            "text": "привет",
        },
    }
    assert tg.inject_raw(raw) == update_id
    duplicate = await bot.get_updates(offset=update_id + 1, timeout=0)
    assert [u.update_id for u in duplicate] == [update_id]
    assert tg.delivered == [update_id] * 3

    assert tg.user_message(1, "дальше") == update_id + 1  # counter stays monotonic


async def test_second_poller_terminates_first_with_conflict(
    tg: FakeTelegramServer, bot: Bot
) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_polling()
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramConflictError):
        await first


async def test_injected_update_kinds_parse_in_aiogram(tg: FakeTelegramServer, bot: Bot) -> None:
    ids = {
        kind: tg.user_message(3, **{kind: True})
        for kind in ("sticker", "voice", "video_note", "document", "contact", "poll")
    }
    group_id = tg.user_message(3, "всем привет", chat_id=-100500, chat_type="supergroup")
    button_id = tg.press_button(3, "menu")  # no bot message yet: a stub is attached
    with pytest.raises(ValueError, match="one content kind"):
        tg.user_message(3, photo=b"x", sticker=True)

    updates = {u.update_id: u for u in await bot.get_updates(timeout=0)}
    messages = {kind: updates[i].message for kind, i in ids.items()}
    assert all(m is not None and getattr(m, kind) for kind, m in messages.items())
    group = updates[group_id].message
    assert group is not None and group.chat.type == "supergroup" and group.chat.id == -100500
    query = updates[button_id].callback_query
    assert query is not None and query.data == "menu" and query.message is not None

    document = messages["document"]
    assert document is not None and document.document is not None
    downloaded = await bot.download(document.document)
    assert downloaded is not None and downloaded.read() == b"%PDF-1.4 fake"


async def test_misc_methods_and_raw_http(tg: FakeTelegramServer, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username) == (1000, "mcu_okha_bot")
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    commands = [BotCommand(command="start", description="Начать")]
    assert await bot.set_my_commands(commands) is True
    assert tg.commands[("default", "")] == [{"command": "start", "description": "Начать"}]
    assert (await bot.get_chat(42)).type == "private"
    assert await bot.send_chat_action(42, "typing") is True
    assert tg.messages_to(42) == []  # chat actions are not messages

    async with aiohttp.ClientSession() as http:
        url = f"{tg.base_url}/bot{tg.token}"
        async with http.post(f"{url}/frobnicate") as resp:
            assert resp.status == 404
            assert await resp.json() == {
                "ok": False,
                "error_code": 404,
                "description": "Not Found: method not found",
            }
        async with http.post(f"{url}/sendmessage", json={"chat_id": 42, "text": "json"}) as resp:
            assert (await resp.json())["result"]["text"] == "json"
        async with http.get(f"{url}/getMe") as resp:
            assert (await resp.json())["result"]["id"] == 1000
        async with http.get(f"{tg.base_url}/file/bot{tg.token}/photos/nope.jpg") as resp:
            assert resp.status == 404
    assert tg.failed[-1].method == "frobnicate"
    assert tg.messages_to(42)[-1].text == "json"


async def test_validation_mirrors_real_api(tg: FakeTelegramServer, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="can't parse entities"):
        await bot.send_message(1, "<b>жирный", parse_mode="HTML")
    with pytest.raises(TelegramBadRequest, match='Unsupported start tag "br"'):
        await bot.send_message(1, "строка<br>строка", parse_mode="HTML")
    ok = await bot.send_message(1, "<b>a</b> &lt; b", parse_mode="HTML")
    assert ok.text == "a < b"
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text(
            "<b>a</b> &lt; b", chat_id=1, message_id=ok.message_id, parse_mode="HTML"
        )
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=1, message_id=12345)
    with pytest.raises(TelegramBadRequest, match="message is too long"):
        await bot.send_message(1, "я" * 4097)
    with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
        await bot.send_message(1, "x", reply_markup=keyboard("d" * 65))
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("nope")
    assert len(tg.sent) == 1


async def test_instances_are_isolated_token_and_upload_limit() -> None:
    async with (
        FakeTelegramServer(username="first_bot") as one,
        FakeTelegramServer(username="second_bot", token="1000:RIGHT", max_upload_size=4096) as two,
    ):
        assert one.base_url != two.base_url
        bot_one, bot_two = one.make_bot(), two.make_bot()
        wrong = Bot("1000:WRONG", session=AiohttpSession(api=two.api_server))
        try:
            assert (await bot_one.get_me()).username == "first_bot"
            assert (await bot_two.get_me()).username == "second_bot"
            await bot_one.send_message(1, "только первому")
            with pytest.raises(TelegramEntityTooLarge):
                await bot_two.send_document(1, BufferedInputFile(b"x" * 10_000, "big.bin"))
            with pytest.raises(TelegramUnauthorizedError):
                await wrong.get_me()
        finally:
            await asyncio.gather(
                bot_one.session.close(), bot_two.session.close(), wrong.session.close()
            )
        assert [r.method for r in one.sent] == ["getMe", "sendMessage"]
        assert [r.method for r in two.sent] == ["getMe"]
        assert [r.error_code for r in two.failed] == [413]


async def test_fail_window_fails_every_method_until_it_ends(tg: FakeTelegramServer,
                                                            bot: Bot) -> None:
    window = tg.fail_for(status=500)  # open-ended: the test ends it
    with pytest.raises(TelegramServerError):
        await bot.send_message(5, "Новости")
    with pytest.raises(TelegramServerError):
        await bot.get_updates(timeout=0)  # getUpdates too: the whole API is down
    update_id = tg.user_message(5, "Привет")
    with pytest.raises(TelegramServerError):
        await bot.get_updates(timeout=0)
    assert window.failures == 3 and window.active()
    tg.end_failures()
    assert window.finished and window.duration is not None
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [update_id]
    assert (await bot.send_message(5, "Новости")).text == "Новости"


async def test_fail_window_429_carries_retry_after_and_expires(tg: FakeTelegramServer,
                                                               bot: Bot) -> None:
    window = tg.fail_for(0.3, status=429, retry_after=2)
    with pytest.raises(TelegramRetryAfter) as exc_info:
        await bot.send_chat_action(5, "typing")
    assert exc_info.value.retry_after == 2
    await asyncio.sleep(0.35)
    assert not window.active()
    assert await bot.send_chat_action(5, "typing") is True


async def test_fail_window_opens_once_updates_were_handed_out(tg: FakeTelegramServer,
                                                              bot: Bot) -> None:
    first = tg.user_message(5, "раз")
    window = tg.fail_for(status=500, once_delivered=[first])
    assert not window.started
    assert await bot.send_message(5, "ещё можно") is not None
    assert [u.update_id for u in await bot.get_updates(timeout=0)] == [first]
    assert window.active()  # opened the moment the batch was handed out
    with pytest.raises(TelegramServerError):
        await bot.send_message(5, "уже нельзя")
    window.end()
    assert await bot.send_message(5, "снова можно") is not None


async def test_a_parked_long_poll_fails_when_the_window_opens(tg: FakeTelegramServer,
                                                              bot: Bot) -> None:
    parked = asyncio.create_task(bot.get_updates(timeout=5))
    await tg.wait_polling()
    tg.fail_for(status=502)
    tg.user_message(5, "во время сбоя")
    with pytest.raises(TelegramServerError):
        await parked
    tg.end_failures()
    assert len(await bot.get_updates(timeout=0)) == 1


async def test_rate_limit_answers_429_past_the_limit_in_one_second(tg: FakeTelegramServer,
                                                                  bot: Bot) -> None:
    tg.rate_limit(3, retry_after=2)
    for i in range(3):
        await bot.send_message(42, f"m{i}")
    await bot.get_me()  # not a message: never limited
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(42, "one too many")
    assert caught.value.retry_after == 2 and tg.rate_limited == 1
    assert [r.text for r in tg.messages_to(42)] == ["m0", "m1", "m2"]
    tg.rate_limit(None)
    await bot.send_message(42, "m3")
