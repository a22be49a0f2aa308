"""The VK transport end to end: real vkbottle over HTTP to the fake VK server, the real core,
a real SQLite file. Waiting is event-driven: a spy on the core says when an update was handled
and `transport.drain()` when its replies went out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import func, select

from bot.settings import Settings
from bot.vk import VKTransport
from handlers.citizen.payloads import CancelReport, ChooseTopic
from handlers.clock import ManualClock
from handlers.context import Services
from handlers.core import Core
from handlers.events import (
    Button,
    DeliveryError,
    Event,
    Location,
    OutgoingDocument,
    OutgoingPhoto,
    Reply,
    Response,
)
from storage.models import Attachment, Citizen, Consent, DialogState, Item
from tests.conftest import make_services
from tests.fakes.vk_api import PEER_ID_OFFSET, FakeVKServer, SentRecord

GROUP_ID = 7
TOKEN = "vk-test-token"
USER = 1001
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
REPORT_TEXT = "Во дворе дома <5> & *подвал* затоплен_ [срочно]"


class CoreSpy:
    """Wraps core.handle to know, without sleeping, when an update has been handled."""

    def __init__(self, core: Core, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handled: list[tuple[Event, Response]] = []
        self._changed = asyncio.Event()
        original = core.handle

        async def handle(event: Event) -> Response:
            response = await original(event)
            self.handled.append((event, response))
            self._changed.set()
            return response

        monkeypatch.setattr(core, "handle", handle)

    def count(self, update_key: str) -> int:
        return sum(1 for event, _ in self.handled if event.update_key == update_key)

    async def wait_handled(self, update_key: str, times: int = 1, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while self.count(update_key) < times:
                self._changed.clear()
                await self._changed.wait()


class VKUser:
    """A citizen in the VK client: sends messages, presses buttons, reads what came back."""

    def __init__(self, vk: FakeVKServer, transport: VKTransport, spy: CoreSpy,
                 user_id: int = USER, client_info: dict[str, Any] | None = None) -> None:
        self.vk, self.transport, self.spy = vk, transport, spy
        self.user_id = user_id
        self.client_info = client_info
        self.history: list[SentRecord] = []
        self.last: list[SentRecord] = []
        self.answers: list[SentRecord] = []  # messages.sendMessageEventAnswer records

    async def send(self, text: str = "", **kwargs: Any) -> list[SentRecord]:
        mark = len(self.vk.sent)
        if self.client_info is not None:
            kwargs.setdefault("client_info", self.client_info)
        update_key = self.vk.user_message(self.user_id, text, **kwargs)
        return await self._settle(update_key, mark)

    async def press(self, payload: dict[str, Any]) -> list[SentRecord]:
        mark = len(self.vk.sent)
        callback_id = self.vk.press_callback(self.user_id, payload)
        return await self._settle(self.vk.update(callback_id)["event_id"], mark)

    async def click(self, label_part: str) -> list[SentRecord]:
        """Press the newest button whose label contains `label_part`, as the client would."""
        for record in reversed(self.history):
            for action in record.buttons():
                if label_part in action.get("label", ""):
                    if action["type"] == "callback":
                        return await self.press(action["payload"])
                    return await self.send(action["label"], payload=action.get("payload"))
        raise AssertionError(f"no button with {label_part!r}; last: {self.texts()}")

    async def _settle(self, update_key: str, mark: int) -> list[SentRecord]:
        await self.spy.wait_handled(update_key)
        await self.transport.drain()
        records = [r for r in self.vk.sent[mark:] if r.peer_id == self.user_id]
        self.answers += [r for r in records if r.method == "messages.sendMessageEventAnswer"]
        self.last = [r for r in records if r.method == "messages.send"]
        self.history += self.last
        return self.last

    def texts(self) -> str:
        return "\n---\n".join(r.text or "" for r in self.last)


async def count(services: Services, model: type) -> int:
    async with services.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
async def vk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVKServer]:
    monkeypatch.chdir(tmp_path)  # whatever vkbottle writes to the cwd stays out of the repo
    async with FakeVKServer(group_id=GROUP_ID, token=TOKEN) as server:
        server.set_user(USER, "Анна", "Петрова")
        yield server


def make_settings(tmp_path: Path, vk: FakeVKServer, **extra: Any) -> Settings:
    return Settings(_env_file=None, vk_token=TOKEN, vk_group_id=GROUP_ID,  # type: ignore[call-arg]
                    vk_api_url=vk.api_url, data_dir=tmp_path / "data", **extra)


@pytest.fixture
def settings(tmp_path: Path, vk: FakeVKServer) -> Settings:
    return make_settings(tmp_path, vk)


@pytest.fixture
def spy(core: Core, monkeypatch: pytest.MonkeyPatch) -> CoreSpy:
    return CoreSpy(core, monkeypatch)


@pytest.fixture
async def transport(settings: Settings, core: Core, spy: CoreSpy,
                    vk: FakeVKServer) -> AsyncIterator[VKTransport]:
    transport = VKTransport(settings, core)
    await transport.start()
    try:
        await vk.wait_for_poller()
        yield transport
    finally:
        await transport.stop()


@pytest.fixture
def user(vk: FakeVKServer, transport: VKTransport, spy: CoreSpy) -> VKUser:
    return VKUser(vk, transport, spy)


async def agree(user: VKUser) -> None:
    await user.send("Начать", payload={"command": "start"})  # VK's own start button
    await user.click("Согласен")


# ---------------------------------------------------------------------------------------------
# 1. The whole report


async def test_full_report_from_start_to_number(user: VKUser, vk: FakeVKServer,
                                               services: Services, settings: Settings) -> None:
    [consent] = await user.send("Начать", payload={"command": "start"})
    title, _, body = (consent.text or "").partition("\n\n")
    assert title.startswith("Здравствуйте!") and "согласие" in body
    assert consent.keyboard is not None and consent.keyboard["inline"] is True
    assert all(b["type"] == "callback" for b in consent.buttons())

    await user.click("Согласен")
    assert user.answers[-1].event_data == {"type": "show_snackbar", "text": "Согласие записано"}
    menu = user.last[-1].keyboard
    assert menu is not None and menu["inline"] is False and menu["one_time"] is False
    async with services.sessions() as session:
        person = await session.scalar(select(Citizen))
    assert person is not None and person.name == "Анна Петрова"  # users.get, after consent

    await user.send("📝 Сообщить о проблеме")  # a text button of the persistent menu
    await user.click("Жилищно")
    assert "Опишите проблему" in user.texts()
    await user.send(f"  {REPORT_TEXT}  ")
    assert "фото" in user.texts().lower()
    await user.send(photo=PNG)
    assert "1 из 5" in user.texts()
    async with services.sessions() as session:
        stored = await session.scalar(select(Attachment))
    assert stored is not None and stored.mime == "image/png"
    stored_file = services.files.path(stored.path)
    assert stored_file.is_relative_to(settings.data_dir) and stored_file.read_bytes() == PNG

    await user.click("Готово")
    [confirm] = await user.send(geo=(53.5739, 142.9478))
    assert (confirm.text or "").startswith("Проверьте сообщение\n\n")
    assert REPORT_TEXT in (confirm.text or "")  # verbatim: VK has no markup to escape
    assert "Фото: 1" in (confirm.text or "")

    await user.click("Отправить")
    assert "2026-000001" in user.texts()
    assert user.last[-1].keyboard is not None and user.last[-1].keyboard["inline"] is False
    async with services.sessions() as session:
        item = await session.scalar(select(Item))
    assert item is not None and item.text == REPORT_TEXT and item.channel == "vk"
    assert (item.latitude, item.longitude) == (53.5739, 142.9478)
    assert vk.failed == []
    assert not (Path.cwd() / ".vkbottle").exists()
    assert (settings.data_dir / "vkbottle" / "bot-polling" / f"{GROUP_ID}.json").exists()


# ---------------------------------------------------------------------------------------------
# 2. A restart in the middle of the dialog


async def test_restart_continues_the_dialog(user: VKUser, vk: FakeVKServer, settings: Settings,
                                            sqlite_url: str, clock: ManualClock,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    await agree(user)
    await user.send("Не горит уличный фонарь у школы № 1")
    await user.click("Энергетика")
    assert "фото" in user.texts().lower()
    await user.transport.stop()

    services = await make_services(sqlite_url, settings.data_dir, clock)
    transport = VKTransport(settings, Core(services))
    user.spy = CoreSpy(transport.core, monkeypatch)
    user.transport = transport
    await transport.start()
    try:
        await vk.wait_for_poller()
        await user.click("Пропустить")  # a button sent before the restart still works
        assert "Где это?" in user.texts()
        [confirm] = await user.send("ул. Ленина, 10")
        assert "Не горит уличный фонарь у школы № 1" in (confirm.text or "")
        assert "ул. Ленина, 10" in (confirm.text or "")
    finally:
        await transport.stop()
        await services.sessions.kw["bind"].dispose()


# ---------------------------------------------------------------------------------------------
# 3. The same update twice


async def test_duplicate_update_is_processed_once(user: VKUser, vk: FakeVKServer,
                                                  spy: CoreSpy) -> None:
    await agree(user)
    mark = len(vk.sent)
    update_key = vk.user_message(USER, "/help")
    await spy.wait_handled(update_key)
    vk.inject_raw(vk.update(update_key))  # VK may deliver an update twice
    await spy.wait_handled(update_key, times=2)
    await user.transport.drain()
    [reply] = vk.sent[mark:]
    assert reply.peer_id == USER and "Что умеет этот бот" in (reply.text or "")


# ---------------------------------------------------------------------------------------------
# 4. Bad inputs


async def test_bad_inputs_get_clear_answers(user: VKUser, services: Services) -> None:
    await agree(user)
    await user.send(sticker=True)
    assert "Стикер здесь не принимается" in user.texts()
    await user.send(audio_message=True)
    assert "Голосовое сообщение здесь не принимается" in user.texts()
    await user.send(doc=True)
    assert "Файл здесь не принимается" in user.texts()

    await user.send("ж" * 100_000)
    assert "4000" in user.texts()
    assert all(len(r.text or "") <= 4096 for r in user.last)
    assert await count(services, Item) == 0
    async with services.sessions() as session:
        dialog = await session.scalar(select(DialogState))
    assert dialog is not None and "text" not in (dialog.data or {})

    await user.send("/foo")
    assert "/foo" in user.texts() and "/help" in user.texts()

    await user.press({"p": "topic:housing"})  # a topic button of an old message
    assert "не действует" in user.texts()
    assert user.answers[-1].event_data == {"type": "show_snackbar",
                                           "text": "Эта кнопка устарела"}
    await user.press({"cmd": "not ours"})  # somebody else's payload is just as stale
    assert "не действует" in user.texts()
    assert await count(services, Item) == 0


async def test_client_without_callback_buttons_gets_text_buttons(
        vk: FakeVKServer, transport: VKTransport, spy: CoreSpy, services: Services) -> None:
    old_client = {"button_actions": ["text", "open_link"], "keyboard": True,
                  "inline_keyboard": True, "lang_id": 3}
    user = VKUser(vk, transport, spy, client_info=old_client)
    [consent] = await user.send("Начать")
    assert {b["type"] for b in consent.buttons()} == {"text"}
    assert "Hello" in (consent.text or "")  # lang_id 3: the English catalogue
    await user.click("agree")
    assert await count(services, Consent) == 1


# ---------------------------------------------------------------------------------------------
# 5. Group chats


async def test_group_chat_message_from_non_staff_gets_no_reply(vk: FakeVKServer,
                                                               transport: VKTransport,
                                                               spy: CoreSpy) -> None:
    chat = PEER_ID_OFFSET + 1
    update_key = vk.user_message(USER, "привет всем", peer_id=chat)
    await spy.wait_handled(update_key)
    await transport.drain()
    [(event, response)] = spy.handled
    assert event.is_private is False and event.chat.chat_id == str(chat)
    assert response.replies == []
    assert vk.messages_to(chat) == [] and vk.failed == []


# ---------------------------------------------------------------------------------------------
# 6. The Callback API receiver


async def test_callback_api_receiver(tmp_path: Path, vk: FakeVKServer, core: Core,
                                     spy: CoreSpy) -> None:
    settings = make_settings(tmp_path, vk, vk_callback_enabled=True,
                             vk_callback_host="127.0.0.1", vk_callback_port=0,
                             vk_callback_confirmation="c0nf1rm", vk_callback_secret="s3cret")
    transport = VKTransport(settings, core)
    await transport.start()
    try:
        url = transport.callback_url
        assert url is not None and url.endswith("/vk/callback")
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json={"type": "confirmation",
                                            "group_id": GROUP_ID}) as resp:
                assert resp.status == 200 and await resp.text() == "c0nf1rm"

            forged_key = vk.user_message(USER, "/help")
            forged = {**vk.update(forged_key), "secret": "wrong"}
            async with http.post(url, json=forged) as resp:
                assert resp.status == 403
            missing = vk.update(forged_key)
            async with http.post(url, json=missing) as resp:
                assert resp.status == 403

            update_key = vk.user_message(USER, "Начать")
            async with http.post(url, json={**vk.update(update_key), "secret": "s3cret"}) as resp:
                assert resp.status == 200 and await resp.text() == "ok"
        reply = await vk.wait_for(lambda r: r.peer_id == USER)
        assert "согласие" in (reply.text or "")
        await transport.drain()
        assert [event.update_key for event, _ in spy.handled] == [update_key]
        assert vk.long_poll_requests == 0
    finally:
        await transport.stop()


# ---------------------------------------------------------------------------------------------
# 7. send(): errors and rendering


async def test_send_maps_vk_errors(transport: VKTransport, vk: FakeVKServer) -> None:
    vk.fail_next("messages.send", code=6)
    with pytest.raises(DeliveryError) as too_many:
        await transport.send(str(USER), Reply("Ответ"))
    assert too_many.value.retry_after == 1.0 and not too_many.value.permanent

    vk.forbid_peer(USER)
    with pytest.raises(DeliveryError) as blocked:
        await transport.send(str(USER), Reply("Ответ"))
    assert blocked.value.blocked and not blocked.value.permanent
    vk.allow_peer(USER)

    vk.fail_next("messages.send", code=10)
    with pytest.raises(DeliveryError) as internal:
        await transport.send(str(USER), Reply("Ответ"))
    error = internal.value
    assert (error.retry_after, error.permanent, error.blocked) == (None, False, False)

    vk.fail_next("messages.send", code=100)
    with pytest.raises(DeliveryError) as invalid:
        await transport.send(str(USER), Reply("Ответ"))
    assert invalid.value.permanent

    assert transport.api is not None
    real_url, transport.api.API_URL = transport.api.API_URL, "http://127.0.0.1:9/method/"
    with pytest.raises(DeliveryError) as unreachable:
        await transport.send(str(USER), Reply("Ответ"))
    assert not (unreachable.value.permanent or unreachable.value.blocked)

    # A proxy's HTTP 502 page is not JSON: vkbottle alone would retry it forever.
    async def bad_gateway(_request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>502 Bad Gateway</html>")

    app = web.Application()
    app.router.add_route("*", "/method/{name}", bad_gateway)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        transport.api.API_URL = f"http://127.0.0.1:{port}/method/"
        with pytest.raises(DeliveryError) as gateway:
            await asyncio.wait_for(transport.send(str(USER), Reply("Ответ")), 2)
        assert not (gateway.value.permanent or gateway.value.blocked)
    finally:
        await runner.cleanup()
    transport.api.API_URL = real_url

    await transport.send(str(USER), Reply("Ответ"))
    assert [r.text for r in vk.messages_to(USER)] == ["Ответ"]


async def test_failed_direct_reply_is_logged_without_text_and_handling_goes_on(
        user: VKUser, vk: FakeVKServer, caplog: pytest.LogCaptureFixture) -> None:
    vk.forbid_peer(USER)
    await user.send("Начать")
    assert user.last == []
    failures = [r.getMessage() for r in caplog.records if r.name == "scheduler.outbox"]
    assert failures == ["delivery of outbox row 1 failed (undeliverable): VK error 901"]
    assert not any(str(USER) in r.getMessage() for r in caplog.records)
    assert not any("согласие" in r.getMessage() for r in caplog.records)
    vk.allow_peer(USER)
    await user.send("Начать")
    assert "согласие" in user.texts()


async def test_send_uploads_photos_document_and_location(transport: VKTransport,
                                                         vk: FakeVKServer,
                                                         tmp_path: Path) -> None:
    first, second, report = tmp_path / "1.png", tmp_path / "2.png", tmp_path / "r.txt"
    first.write_bytes(PNG)
    second.write_bytes(PNG + b"2")
    report.write_bytes(b"report body\n")
    await transport.send(str(USER), Reply(
        "Фото по сообщению", title="№ 2026-000001",
        photos=[OutgoingPhoto(first), OutgoingPhoto(second)],
        document=OutgoingDocument(report, "report.txt"),
        location=Location(53.5739, 142.9478),
        buttons=[[Button("Открыть карту", "x", url="https://yandex.ru/maps")]]))
    [message] = vk.messages_to(USER)
    assert message.text == "№ 2026-000001\n\nФото по сообщению"
    assert message.photos == [PNG, PNG + b"2"] and message.docs == [b"report body\n"]
    assert (message.lat, message.long) == (53.5739, 142.9478)
    assert message.buttons() == [{"type": "open_link", "label": "Открыть карту",
                                  "link": "https://yandex.ru/maps"}]
    assert message.random_id and 0 < message.random_id < 2**31


async def test_send_splits_long_text_and_keeps_buttons_on_the_last_part(
        transport: VKTransport, vk: FakeVKServer) -> None:
    lines = [f"Строка {i:04d}:" + " текст" * 10 for i in range(200)]
    long_label = "Очень длинная подпись кнопки, которая не влезает в сорок символов"
    await transport.send(str(USER), Reply("\n".join(lines), buttons=[[Button(long_label, "a:1")]]))
    parts = vk.messages_to(USER)
    assert len(parts) > 1 and all(len(p.text or "") <= 4000 for p in parts)
    assert "\n".join(p.text or "" for p in parts).split("\n") == lines
    assert [p.keyboard is not None for p in parts] == [False] * (len(parts) - 1) + [True]
    [button] = parts[-1].buttons()
    assert len(button["label"]) == 40 and button["payload"] == {"p": "a:1"}

    await transport.send(str(USER), Reply("Меню", menu=[["📝 Сообщить о проблеме"], ["A", "B"]]))
    await transport.send(str(USER), Reply("Пока", remove_menu=True))
    menu, removed = vk.messages_to(USER)[-2:]
    assert menu.keyboard == {"one_time": False, "inline": False, "buttons": [
        [{"action": {"type": "text", "label": "📝 Сообщить о проблеме"}}],
        [{"action": {"type": "text", "label": "A"}}, {"action": {"type": "text", "label": "B"}}]]}
    assert removed.keyboard is not None
    assert removed.keyboard["buttons"] == [] and removed.keyboard["one_time"] is True


# ---------------------------------------------------------------------------------------------
# 8. The topic keyboard


async def test_topic_keyboard_is_a_valid_vk_keyboard(user: VKUser, vk: FakeVKServer,
                                                     services: Services) -> None:
    await agree(user)
    [topics] = await user.send("📝 Сообщить о проблеме")
    keyboard = topics.keyboard
    assert keyboard is not None
    # 16 topics and «Отменить» exceed the inline limit (10): a one-time keyboard instead.
    assert keyboard["inline"] is False and keyboard["one_time"] is True
    buttons = topics.buttons()
    assert len(buttons) == len(services.org.topics) + 1 == 17
    assert all(b["type"] == "callback" and len(b["label"]) <= 40 for b in buttons)
    assert {b["payload"]["p"] for b in buttons} >= {ChooseTopic("housing").pack(),
                                                    CancelReport().pack()}
    assert vk.failed == []  # the fake validates keyboards as strictly as VK


async def test_text_first_shows_the_suggested_topics_first(user: VKUser, vk: FakeVKServer,
                                                          services: Services) -> None:
    from tests.support.topics import ready_suggester

    services.topics = ready_suggester(services.org)
    await agree(user)
    [screen] = await user.send("Во дворе разбита дорога и не горит свет")
    labels = [b["label"] for b in screen.buttons()]
    assert labels[:2] == ["⭐ Дорожная деятельность", "⭐ Энергетика"]
    assert len(labels) == 17  # every topic, one tap away
    await user.click("⭐ Энергетика")
    assert "фото" in user.texts().lower()

    await user.send("/cancel")
    [question] = await user.send("Не горит фонарь у подъезда дома 7 по Советской")
    assert "Похоже, это Энергетика — верно?" in (question.text or "")
    assert [b["label"] for b in question.buttons()][:2] == ["Да", "Выбрать другую"]
    await user.click("Выбрать другую")
    assert user.last[-1].buttons()[0]["label"] == "⭐ Энергетика"
    assert vk.failed == []  # the keyboards are valid VK keyboards
