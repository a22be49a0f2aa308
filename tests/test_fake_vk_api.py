"""Self-test of tests/fakes/vk_api.py driven by a real vkbottle Bot over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pydantic
import pytest
from vkbottle import (
    API,
    AiohttpClient,
    Callback,
    DocMessagesUploader,
    GroupEventType,
    Keyboard,
    PhotoMessageUploader,
    VKAPIError,
)
from vkbottle.bot import Bot, BotLabeler, Message, MessageEvent

from tests.fakes.vk_api import PEER_ID_OFFSET, FakeVKServer

GROUP_ID = 1
TOKEN = "test-group-token"
USER = 1001
# Smallest valid PNG; content only matters for the byte-equality checks.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
async def vk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeVKServer]:
    # BotPolling always writes .vkbottle/bot-polling/<group_id>.json under Path.cwd().
    monkeypatch.chdir(tmp_path)
    async with FakeVKServer(group_id=GROUP_ID, token=TOKEN) as server:
        yield server


@pytest.fixture
async def api(vk: FakeVKServer) -> AsyncIterator[API]:
    # Own (non-singleton) client so the session is closed here, not at interpreter exit.
    api = API(TOKEN, http_client=AiohttpClient())
    api.API_URL = vk.api_url  # API.request() reads self.API_URL, so the instance wins
    yield api
    await api.http_client.close()


@contextlib.asynccontextmanager
async def running_bot(
    vk: FakeVKServer, api: API, labeler: BotLabeler, **bot_kwargs: Any
) -> AsyncIterator[Bot]:
    bot = Bot(api=api, labeler=labeler, **bot_kwargs)
    polling = asyncio.create_task(bot.run_polling())
    listening = asyncio.create_task(vk.wait_for_poller())
    try:
        await asyncio.wait({polling, listening}, return_when=asyncio.FIRST_COMPLETED)
        if polling.done():
            polling.result()  # surface a startup failure instead of a poller timeout
        listening.result()
        yield bot
    finally:
        for task in (listening, polling):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await listening


async def test_text_message_answer_with_callback_keyboard(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()
    seen: list[Message] = []

    @labeler.message(text="hi")
    async def greet(message: Message) -> None:
        seen.append(message)
        keyboard = Keyboard(inline=True).add(Callback("Confirm", {"cmd": "confirm"}))
        await message.answer("Hello!", keyboard=keyboard.get_json())

    async with running_bot(vk, api, labeler):
        vk.user_message(USER, "hi")
        reply = await vk.wait_for(lambda r: r.peer_id == USER)

    assert reply.method == "messages.send"
    assert reply.text == "Hello!"
    assert reply.random_id == 0
    assert reply.conversation_message_id == 2  # user's message took cmid 1
    assert reply.keyboard is not None and reply.keyboard["inline"] is True
    assert reply.buttons() == [
        {"type": "callback", "label": "Confirm", "payload": {"cmd": "confirm"}}
    ]
    assert vk.messages_to(USER) == [reply]
    message = seen[0]
    assert message.from_id == USER and message.group_id == GROUP_ID
    assert message.client_info is not None and message.client_info.inline_keyboard is True


async def test_callback_button_gets_event_answer(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()
    payloads: list[dict[str, Any] | None] = []

    @labeler.raw_event(GroupEventType.MESSAGE_EVENT, dataclass=MessageEvent)
    async def on_callback(event: MessageEvent) -> None:
        payloads.append(event.payload)
        await event.show_snackbar("Confirmed")

    async with running_bot(vk, api, labeler):
        callback_id = vk.press_callback(USER, {"cmd": "confirm"}, conversation_message_id=2)
        answer = await vk.wait_for(lambda r: r.method == "messages.sendMessageEventAnswer")

    assert payloads == [{"cmd": "confirm"}]
    assert answer.event_id == callback_id
    assert answer.user_id == USER and answer.peer_id == USER
    assert answer.event_data == {"type": "show_snackbar", "text": "Confirmed"}
    # The update has its own unique event_id, distinct from the callback's.
    update = vk.update(callback_id)
    assert update["event_id"] != callback_id and update["object"]["event_id"] == callback_id


async def test_bot_downloads_largest_photo_size(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()
    downloaded: asyncio.Future[tuple[str, bytes]] = asyncio.get_running_loop().create_future()

    @labeler.message(attachment="photo")
    async def on_photo(message: Message) -> None:
        photo = (message.get_photo_attachments() or [])[0]
        largest = max(photo.sizes or [], key=lambda s: s.width * s.height)
        url = str(largest.url)
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            downloaded.set_result((url, await resp.read()))

    async with running_bot(vk, api, labeler):
        event_id = vk.user_message(USER, photo=PNG)
        url, data = await asyncio.wait_for(downloaded, 5)

    assert data == PNG
    assert vk.downloads == [url]
    sizes = vk.update(event_id)["object"]["message"]["attachments"][0]["photo"]["sizes"]
    assert url == sizes[-1]["url"]  # largest is listed last, as in VK


async def test_uploaded_photo_and_doc_resolve_to_bytes(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()
    report = b"report body\n"

    @labeler.message(text="photo")
    async def send_photo(message: Message) -> None:
        attachment = await PhotoMessageUploader(message.ctx_api).upload(
            PNG, peer_id=message.peer_id
        )
        await message.answer("Here", attachment=attachment)

    @labeler.message(text="doc")
    async def send_doc(message: Message) -> None:
        attachment = await DocMessagesUploader(message.ctx_api).upload(
            report, peer_id=message.peer_id, title="report.txt"
        )
        await message.answer(attachment=attachment)

    async with running_bot(vk, api, labeler):
        vk.user_message(USER, "photo")
        photo_msg = await vk.wait_for(lambda r: r.text == "Here")
        vk.user_message(USER, "doc")
        doc_msg = await vk.wait_for(lambda r: bool(r.docs))

    assert re.fullmatch(rf"photo-{GROUP_ID}_\d+_[0-9a-f]+", photo_msg.attachment or "")
    assert photo_msg.photos == [PNG] and photo_msg.photo == PNG
    assert re.fullmatch(rf"doc-{GROUP_ID}_\d+_[0-9a-f]+", doc_msg.attachment or "")
    assert doc_msg.docs == [report]


async def test_incoming_attachments_parse_in_vkbottle(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()
    seen: list[Message] = []

    @labeler.message()
    async def collect(message: Message) -> None:
        seen.append(message)
        await message.answer("ok")

    chat = PEER_ID_OFFSET + 7
    async with running_bot(vk, api, labeler):
        vk.user_message(
            USER,
            "where",
            peer_id=chat,
            payload={"cmd": "geo"},
            geo=(53.58, 142.94),
            sticker=True,
            audio_message=True,
            doc=True,
        )
        await vk.wait_for(lambda r: r.peer_id == chat)

    message = seen[0]
    assert message.chat_id == 7 and message.id == 0  # bots see id=0 in chats
    assert message.get_payload_json() == {"cmd": "geo"}
    assert message.geo is not None and message.geo.coordinates is not None
    assert message.geo.coordinates.latitude == 53.58
    types = [a.type.value for a in message.attachments or []]
    assert types == ["sticker", "audio_message", "doc"]
    assert [d.title for d in message.get_doc_attachments() or []] == ["document.pdf"]


@pytest.mark.parametrize("code", [6, 10, 901])
async def test_injected_error_surfaces_as_vkapierror(vk: FakeVKServer, api: API, code: int) -> None:
    vk.fail_next("messages.send", code=code)

    with pytest.raises(VKAPIError[code]) as exc_info:
        await api.messages.send(peer_id=USER, random_id=0, message="x")

    assert exc_info.value.code == code
    assert exc_info.value.request_params["method"] == "messages.send"
    assert [(f.method, f.error_code, f.reason) for f in vk.failed] == [
        ("messages.send", code, "injected")
    ]
    # vkbottle does not retry: exactly one call reached the server, nothing was sent.
    assert [c.method for c in vk.calls] == ["messages.send"]
    assert vk.sent == []
    assert await api.messages.send(peer_id=USER, random_id=0, message="x") > 0


async def test_unknown_method_and_validation_errors(vk: FakeVKServer, api: API) -> None:
    with pytest.raises(VKAPIError[3]):
        await api.request("messages.doMagic", {})
    with pytest.raises(VKAPIError[100], match="random_id"):
        await api.request("messages.send", {"peer_id": USER, "message": "x"})
    with pytest.raises(VKAPIError[911]):
        await api.messages.send(peer_id=USER, random_id=0, message="x", keyboard="{oops")
    with pytest.raises(VKAPIError[100], match="not found"):
        await api.messages.send(peer_id=USER, random_id=0, attachment="photo-1_1")
    assert {f.reason for f in vk.failed} == {"invalid"}

    # A repeated non-zero random_id returns the first message and is not re-sent.
    first = await api.messages.send(peer_id=USER, random_id=77, message="once")
    assert await api.messages.send(peer_id=USER, random_id=77, message="once") == first
    assert len(vk.messages_to(USER)) == 1


async def test_blocked_peer(vk: FakeVKServer, api: API) -> None:
    vk.forbid_peer(USER)
    with pytest.raises(VKAPIError[901]):
        await api.messages.send(peer_id=USER, random_id=0, message="x")

    # peer_ids form (used by Message.answer): VK puts the error in the item, no message_id.
    raw = await api.request("messages.send", {"peer_ids": USER, "random_id": 0, "message": "x"})
    assert raw["response"] == [
        {"peer_id": USER, "error": {"code": 901, "description": vk.failed[0].error_msg}}
    ]
    # vkbottle 4.11 requires message_id in that item, so answer() fails validation.
    with pytest.raises(pydantic.ValidationError):
        await api.messages.send(peer_ids=[USER], random_id=0, message="x")
    assert vk.sent == []


async def test_long_poll_key_refresh_and_duplicate_delivery(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()

    @labeler.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo {message.text}")

    async with running_bot(vk, api, labeler):
        vk.fail_long_poll(2)  # the pending poll gets {"failed": 2}
        first = vk.user_message(USER, "one")
        await vk.wait_for(lambda r: r.text == "echo one")
        vk.inject_raw(vk.update(first))  # VK may deliver the same update twice
        await vk.wait_for(lambda r: r.text == "echo one", after=1)

    servers = [c for c in vk.calls if c.method == "groups.getLongPollServer"]
    assert len(servers) == 2  # vkbottle re-fetched the key after failed=2
    assert [r.text for r in vk.sent] == ["echo one", "echo one"]  # no dedup by default


async def test_dual_mode_deduplicates_by_event_id(vk: FakeVKServer, api: API) -> None:
    labeler = BotLabeler()

    @labeler.message()
    async def echo(message: Message) -> None:
        await message.answer(f"echo {message.text}")

    async with running_bot(vk, api, labeler, dual_mode=True):
        first = vk.user_message(USER, "one")
        await vk.wait_for(lambda r: r.text == "echo one")
        vk.inject_raw(vk.update(first))
        vk.user_message(USER, "two")
        await vk.wait_for(lambda r: r.text == "echo two")

    assert [r.text for r in vk.sent] == ["echo one", "echo two"]


async def test_polling_state_file_goes_to_cwd(vk: FakeVKServer, api: API, tmp_path: Path) -> None:
    labeler = BotLabeler()
    state = tmp_path / ".vkbottle" / "bot-polling" / f"{GROUP_ID}.json"

    async with running_bot(vk, api, labeler):
        vk.user_message(USER, "anything")
        for _ in range(100):
            if state.exists():
                break
            await asyncio.sleep(0.02)

    assert state.exists()


async def test_users_groups_and_rate_limit(api: API) -> None:
    async with FakeVKServer(group_id=5, token=TOKEN, rps_limit=1) as vk:
        api.API_URL = vk.api_url
        vk.set_user(USER, "Ivan", "Petrov")
        users = await api.users.get(user_ids=[USER])
        assert (users[0].first_name, users[0].last_name) == ("Ivan", "Petrov")
        with pytest.raises(VKAPIError[6]):
            await api.groups.get_by_id()
        assert vk.failed[0].reason == "rate_limit"
        await asyncio.sleep(1.05)
        groups = await api.groups.get_by_id()
        assert groups.groups is not None and groups.groups[0].id == 5


async def test_error_6_window_on_every_method(vk: FakeVKServer, api: API) -> None:
    window = vk.fail_for(code=6)
    with pytest.raises(VKAPIError[6]):
        await api.messages.send(peer_id=USER, random_id=11, message="x")
    with pytest.raises(VKAPIError[6]):
        await api.groups.get_by_id()
    assert window.failures == 2 and vk.sent == []
    vk.end_failures()
    assert not window.active() and window.duration >= 0
    first = await api.messages.send(peer_id=USER, random_id=11, message="x")
    # A repeated random_id is dropped by VK: the same message id, nothing sent twice.
    assert await api.messages.send(peer_id=USER, random_id=11, message="x") == first
    assert [r.text for r in vk.sent] == ["x"]


async def test_error_6_window_expires_by_itself(vk: FakeVKServer, api: API) -> None:
    vk.fail_for(0.2, code=6, methods="messages.send")
    with pytest.raises(VKAPIError[6]):
        await api.messages.send(peer_id=USER, random_id=12, message="y")
    await asyncio.sleep(0.25)
    assert await api.messages.send(peer_id=USER, random_id=12, message="y") > 0
