"""The VK transport: a thin translator between VK community messages and the neutral core.

VK update (Bots Long Poll or Callback API) → neutral event → `core.handle` → `Response` →
VK API calls. Nothing here decides what to answer; it only knows how VK spells things.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from vkbottle import (
    API,
    AiohttpClient,
    Callback,
    DocMessagesUploader,
    GroupEventType,
    Keyboard,
    OpenLink,
    PhotoMessageUploader,
    Text,
    VKAPIError,
)
from vkbottle.api.request_rescheduler import ABCRequestRescheduler
from vkbottle.bot import Bot, BotLabeler

from bot.channel import Channel, Draft, PhotoTooLarge, failure
from bot.lanes import AckFloor, Lanes
from bot.lease import run_while_holding
from bot.settings import Settings
from handlers.core import Core
from handlers.events import (
    Button,
    ButtonPress,
    ChatRef,
    DeliveryError,
    IncomingDocument,
    IncomingMessage,
    IncomingPhoto,
    Location,
    Platform,
    Progress,
    Reply,
    Response,
    Unsupported,
    UserRef,
)
from scheduler.outbox import OutboxSender

log = logging.getLogger(__name__)

PEER_ID_OFFSET = 2_000_000_000  # peer ids from here on are group chats
TEXT_LIMIT = 4000  # VK allows 4096; keep a margin
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
ATTACHMENTS_PER_MESSAGE = 10
LABEL_LIMIT = 40
SNACKBAR_LIMIT = 90
INLINE_LIMITS = (6, 10)  # rows, buttons
KEYBOARD_LIMITS = (10, 40)
ROW_LIMIT = 5
LANG_IDS = {0: "ru", 3: "en"}  # VK client_info.lang_id → our locales
LONG_POLL_WAIT = 25  # seconds
POLL_PAUSE_MIN, POLL_PAUSE_MAX = 0.5, 5.0  # back-off while the long poll fails
CALLBACK_ANSWER_WITHIN = 20.0  # seconds; VK re-sends an event it got no "ok" for

# VK error codes (https://dev.vk.com/ru/reference/errors).
TOO_MANY_REQUESTS = 6
BLOCKED_CODES = frozenset({7, 900, 901, 902})  # denied, blacklist, no permission, privacy
# 1 "unknown error, try later", 9 "flood control" and 10 "internal error" pass with time.
TRANSIENT_CODES = frozenset({1, 9, 10})

# Photo size letters from small to large, for photos whose sizes carry no dimensions.
_SIZE_RANK = {letter: rank for rank, letter in enumerate("smxopqryzw")}
_UNSUPPORTED = {
    "sticker": Unsupported.STICKER,
    "graffiti": Unsupported.STICKER,
    "audio_message": Unsupported.VOICE,
    "doc": Unsupported.DOCUMENT,
    "video": Unsupported.VIDEO,
    "video_message": Unsupported.VIDEO_NOTE,
    "audio": Unsupported.AUDIO,
    "poll": Unsupported.POLL,
}
# "link" is VK's preview of a URL inside the text: the text itself is the content.
_IGNORED_ATTACHMENTS = frozenset({"photo", "link"})

UpdateHandler = Callable[[dict[str, Any]], Awaitable[None]]


class VKUnavailable(Exception):
    """VK answered with something that is not JSON (an HTTP 5xx page from a proxy)."""


class _FailFast(ABCRequestRescheduler):
    """vkbottle's default rescheduler retries a non-JSON answer forever with growing sleeps,
    which would freeze a reply or the outbox; we fail and let our callers retry."""

    async def reschedule(self, ctx_api: Any, method: str, data: dict[str, Any],
                         recent_response: Any) -> dict[str, Any]:
        raise VKUnavailable(f"{method}: VK answered with a non-JSON response")


def build_labeler(on_update: UpdateHandler) -> BotLabeler:
    """A fresh labeler per bot: a module-level one would be shared between bots and tests."""
    labeler = BotLabeler()

    async def route(update: dict[str, Any]) -> None:
        update.pop("ctx_api", None)  # vkbottle adds its API to the raw dict
        await on_update(update)

    labeler.raw_event([GroupEventType.MESSAGE_NEW, GroupEventType.MESSAGE_EVENT],
                      dict)(route)
    return labeler


@dataclass(frozen=True)
class _ClientCaps:
    """What the user's VK client said it can show (client_info of message_new)."""

    callbacks: bool = True
    inline: bool = True
    language: str | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> _ClientCaps:
        actions = info.get("button_actions")
        return cls(
            callbacks=True if actions is None else "callback" in actions,
            inline=bool(info.get("inline_keyboard", True)),
            language=LANG_IDS.get(info["lang_id"]) if isinstance(info.get("lang_id"), int)
            else None,
        )


def delivery_error(error: BaseException) -> DeliveryError:
    """Map a failed VK call to the neutral error the outbox understands."""
    if isinstance(error, DeliveryError):
        return error
    if isinstance(error, VKAPIError):
        code = int(error.code)
        if code == TOO_MANY_REQUESTS:
            return DeliveryError(f"VK error {code}", retry_after=1.0)
        if code in BLOCKED_CODES:
            return DeliveryError(f"VK error {code}", blocked=True)
        if code in TRANSIENT_CODES:
            return DeliveryError(f"VK error {code}")
        return DeliveryError(f"VK error {code}", permanent=True)
    if isinstance(error, (aiohttp.ClientError, TimeoutError, OSError, VKUnavailable)):
        return DeliveryError(f"VK unreachable: {type(error).__name__}")
    return DeliveryError(f"VK delivery failed: {type(error).__name__}")


def _label(text: str) -> str:
    return text if len(text) <= LABEL_LIMIT else text[:LABEL_LIMIT - 1] + "…"


def _rows_of_five(rows: list[list[Button]]) -> list[list[Button]]:
    return [row[i:i + ROW_LIMIT] for row in rows for i in range(0, len(row), ROW_LIMIT)]


def buttons_keyboard(rows: list[list[Button]], caps: _ClientCaps) -> str:
    """Inline when it fits VK's inline limits, otherwise a one-time keyboard under the input."""
    rows = _rows_of_five([row for row in rows if row])
    total = sum(len(row) for row in rows)
    inline = caps.inline and len(rows) <= INLINE_LIMITS[0] and total <= INLINE_LIMITS[1]
    if not inline and (len(rows) > KEYBOARD_LIMITS[0] or total > KEYBOARD_LIMITS[1]):
        flat = [button for row in rows for button in row]
        if len(flat) > KEYBOARD_LIMITS[1]:
            log.warning("VK keyboard of %d buttons cut to %d", len(flat), KEYBOARD_LIMITS[1])
        flat = flat[:KEYBOARD_LIMITS[1]]
        rows = [flat[i:i + ROW_LIMIT] for i in range(0, len(flat), ROW_LIMIT)]
    keyboard = Keyboard(one_time=not inline, inline=inline)
    for row in rows:
        keyboard.row()
        for button in row:
            label = _label(button.text)
            if button.url:
                keyboard.add(OpenLink(button.url, label))
            elif caps.callbacks:
                keyboard.add(Callback(label, {"p": button.payload}))
            else:  # old clients: a text button whose payload comes back with the message
                keyboard.add(Text(label, {"p": button.payload}))
    return keyboard.get_json()


def menu_keyboard(menu: list[list[str]]) -> str:
    keyboard = Keyboard(one_time=False, inline=False)
    rows = [row[i:i + ROW_LIMIT] for row in menu for i in range(0, len(row), ROW_LIMIT)]
    for row in rows[:KEYBOARD_LIMITS[0]]:
        keyboard.row()
        for text in row:
            keyboard.add(Text(_label(text)))
    return keyboard.get_json()


def empty_keyboard() -> str:
    return Keyboard(one_time=True).get_json()


def compose_text(reply: Reply) -> str:
    """VK has no markup: the title is a line of its own, monospace stays as is."""
    parts = [part for part in (reply.title, reply.text) if part]
    parts += [photo.caption for photo in reply.photos if photo.caption]
    return "\n\n".join(parts)


def split_message(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Cut at a paragraph break, else a line break, else a space; never inside a word when
    avoidable. Only the separator at a cut is dropped, so monospace layout survives."""
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit + 1]
        for separator in ("\n\n", "\n", " "):
            cut = window.rfind(separator)
            if cut >= limit // 2:
                pieces.append(text[:cut])
                text = text[cut + len(separator):]
                break
        else:
            pieces.append(text[:limit])
            text = text[limit:]
    if text:
        pieces.append(text)
    return pieces


def image_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "image/jpeg"


def largest_size(photo: dict[str, Any]) -> dict[str, Any] | None:
    sizes = [s for s in photo.get("sizes") or [] if s.get("url")]
    if isinstance(photo.get("orig_photo"), dict) and photo["orig_photo"].get("url"):
        sizes.append(photo["orig_photo"])
    if not sizes:
        return None
    return max(sizes, key=lambda s: ((s.get("width") or 0) * (s.get("height") or 0),
                                     _SIZE_RANK.get(str(s.get("type")), -1)))


def _callback_payload(raw: Any) -> str | None:
    """Our buttons carry {"p": "<payload>"}; anything else is not our button."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, dict) and isinstance(raw.get("p"), str):
        return raw["p"]
    return None


def random_id(dedupe_id: int | None, part: int) -> int:
    """VK drops a repeated random_id for the same peer: an outbox row retried after a crash
    between the send and the mark is then delivered once. Direct replies get a random one."""
    if dedupe_id is None:
        return secrets.randbelow(2**31 - 1) + 1
    return (dedupe_id * 16 + part) % (2**31 - 1) + 1


class VKTransport:
    platform = Platform.VK

    def __init__(self, settings: Settings, core: Core, outbox: OutboxSender | None = None) -> None:
        if settings.vk_token is None:
            raise ValueError("MCU_VK_TOKEN is not set")
        self.settings = settings
        self.core = core
        self.api: API | None = None
        self._http: AiohttpClient | None = None
        self._bot: Bot | None = None
        self._polling_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._clients: dict[int, _ClientCaps] = {}  # by peer id
        self._names: dict[int, str] = {}  # by user id
        self.outbox = outbox or OutboxSender(core.services, {self.platform: self})
        self.channel = Channel(core, self.outbox, self._send_direct)
        self.lanes = Lanes()
        self.cursor = PollCursor(settings.data_dir / "vkbottle" / "bot-polling")

    def use_outbox(self, outbox: OutboxSender) -> None:
        self.outbox = self.channel.outbox = outbox

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.open_for_sending()
        settings = self.settings
        self._bot = Bot(api=self.api, labeler=build_labeler(self._on_update))
        if settings.vk_callback_enabled:
            await self._start_callback_server()
        else:
            # One process polls a community at a time, so one user's events keep their order.
            self._polling_task = asyncio.create_task(
                run_while_holding(self.core.services, f"vk-poller:{settings.vk_group_id}",
                                  self._poll), name="vk-polling")
            self._polling_task.add_done_callback(self._polling_ended)

    async def open_for_sending(self) -> None:
        """The API client alone: enough to deliver (and what `start` builds on)."""
        settings = self.settings
        assert settings.vk_token is not None
        # Long-poll requests set their own timeout; this one bounds every other call.
        self._http = AiohttpClient(timeout=aiohttp.ClientTimeout(total=60, connect=10))
        api = API(settings.vk_token.get_secret_value(), http_client=self._http,
                  request_rescheduler=_FailFast())
        if settings.vk_api_url:
            api.API_URL = settings.vk_api_url  # read per request from the instance
        self.api = api
        # vkbottle logs request data (message texts) at DEBUG: never let them reach the logs.
        vk_logger = logging.getLogger("vkbottle")
        if vk_logger.getEffectiveLevel() < logging.INFO:
            vk_logger.setLevel(logging.INFO)

    async def stop(self) -> None:
        if self._polling_task is not None:
            self._polling_task.cancel()
            await asyncio.gather(self._polling_task, return_exceptions=True)
            self._polling_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.lanes.close(timeout=10.0)
        await self.cursor.save()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the events received so far are handled (tests; graceful stop)."""
        return await self.lanes.drain(timeout)

    @staticmethod
    def _polling_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("VK long polling stopped: %s", failure(task.exception()))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ Bots Long Poll

    async def _poll(self) -> None:
        """Bots Long Poll whose saved `ts` only passes events already handled: after a crash
        the unfinished events come again, and the processed-update marks drop repeats."""
        pause = POLL_PAUSE_MIN
        server: dict[str, Any] | None = None
        while True:
            try:
                if server is None:
                    server = await self._long_poll_server()
                    self.cursor.start(await self.cursor.load() or str(server["ts"]))
                data = await self._check(server)
            except Exception as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from error
                log.warning("VK long poll failed (%s); retrying in %.1fs",
                            type(error).__name__, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, POLL_PAUSE_MAX)
                continue
            pause = POLL_PAUSE_MIN
            failed = data.get("failed")
            if failed == 1:  # the history is gone: what was not fetched cannot be had
                log.error("VK long poll history lost; continuing from the newest events")
                self.cursor.jump(str(data.get("ts")))
                continue
            if failed in (2, 3):  # the key expired (2) or the server lost our state (3)
                server = None
                continue
            updates = [u for u in data.get("updates") or [] if isinstance(u, dict)]
            for update, number in zip(updates, self.cursor.batch(str(data.get("ts")),
                                                                 len(updates)), strict=True):
                self.lanes.submit(lane_key(update),
                                  functools.partial(self._handle_event, update, number))
            await self.cursor.save()

    async def _long_poll_server(self) -> dict[str, Any]:
        assert self.api is not None
        group_id = self.settings.vk_group_id
        if group_id is None:
            groups = (await self.api.request("groups.getById", {}))["response"]
            groups = groups.get("groups", groups) if isinstance(groups, dict) else groups
            group_id = int(groups[0]["id"])
        self.cursor.group_id = group_id
        return (await self.api.request("groups.getLongPollServer",
                                       {"group_id": group_id}))["response"]

    async def _check(self, server: dict[str, Any]) -> dict[str, Any]:
        assert self._http is not None
        return await self._http.request_json(
            url=server["server"], method="POST",
            params={"act": "a_check", "key": server["key"], "ts": self.cursor.ts,
                    "wait": LONG_POLL_WAIT},
            timeout=aiohttp.ClientTimeout(total=LONG_POLL_WAIT + 15))

    async def _handle_event(self, update: dict[str, Any], number: int | None) -> None:
        try:
            assert self._bot is not None
            await self._bot.process_event(update, self.api)
        except Exception as error:
            log.error("VK %s event failed: %s", update.get("type"), failure(error))
        finally:
            if number is not None:
                self.cursor.handled(number)

    # ------------------------------------------------------------------ Callback API

    @property
    def callback_url(self) -> str | None:
        """Where the Callback API receiver listens (its real port when configured as 0)."""
        if self._runner is None or not self._runner.addresses:
            return None
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}{self.settings.vk_callback_path}"

    async def _start_callback_server(self) -> None:
        app = web.Application()
        app.router.add_post(self.settings.vk_callback_path, self._on_callback_request)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.vk_callback_host,
                           self.settings.vk_callback_port)
        await site.start()
        log.info("VK Callback API receiver listens on %s", self.callback_url)

    async def _on_callback_request(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="bad request")
        if not isinstance(body, dict):
            return web.Response(status=400, text="bad request")
        settings = self.settings
        group_id = body.get("group_id")
        if settings.vk_group_id is not None and group_id is not None \
                and str(group_id) != str(settings.vk_group_id):
            return web.Response(status=403, text="wrong group")
        secret = settings.vk_callback_secret.get_secret_value() \
            if settings.vk_callback_secret else ""
        given = body.pop("secret", None)
        # VK may omit the secret on the confirmation request, never on events.
        if secret and (given is not None or body.get("type") != "confirmation") \
                and not hmac.compare_digest(str(given or "").encode(), secret.encode()):
            log.warning("VK callback with a wrong secret refused")
            return web.Response(status=403, text="forbidden")
        if body.get("type") == "confirmation":
            if settings.vk_callback_confirmation is None:
                log.error("VK asks for confirmation but MCU_VK_CALLBACK_CONFIRMATION is not set")
                return web.Response(status=503, text="not configured")
            return web.Response(text=settings.vk_callback_confirmation.get_secret_value())
        if body.get("type") in (GroupEventType.MESSAGE_NEW, GroupEventType.MESSAGE_EVENT) \
                and self._bot is not None:
            # "ok" once the event is handled (VK re-sends an event it got no "ok" for, and
            # the processed-update marks drop the repeat); a slow one is answered anyway.
            done = self.lanes.submit(lane_key(body),
                                     functools.partial(self._handle_event, body, None))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(done), CALLBACK_ANSWER_WITHIN)
        return web.Response(text="ok")


    # ------------------------------------------------------------------ VK → core
    # These run inside the user's lane, so their order is already fixed.

    async def _on_update(self, update: dict[str, Any]) -> None:
        kind = update.get("type")
        if kind == GroupEventType.MESSAGE_NEW:
            await self._on_message(update)
        elif kind == GroupEventType.MESSAGE_EVENT:
            await self._on_button(update)

    async def _on_message(self, update: dict[str, Any]) -> None:
        obj = update.get("object") or {}
        message = obj.get("message") or {}
        peer_id, from_id = _int(message.get("peer_id")), _int(message.get("from_id"))
        if from_id <= 0 or peer_id <= 0 or message.get("action"):
            return  # other communities and chat service messages (joins, renames...)
        if isinstance(obj.get("client_info"), dict):
            self._clients[peer_id] = _ClientCaps.from_info(obj["client_info"])
        await self.channel.process(await self._message_draft(update, message, peer_id,
                                                             from_id))

    async def _message_draft(self, update: dict[str, Any], message: dict[str, Any],
                             peer_id: int, from_id: int) -> Draft:
        caps = self._clients.get(peer_id, _ClientCaps())
        key = update_key(update, "message_new", peer_id, message.get("conversation_message_id"))
        user = UserRef(Platform.VK, str(from_id))
        chat = ChatRef(Platform.VK, str(peer_id))
        private = peer_id < PEER_ID_OFFSET
        name = await self._display_name(from_id)
        payload = _callback_payload(message.get("payload"))
        if payload is not None:  # a text button of a client without callback buttons
            return Draft(ButtonPress(update_key=key, user=user, chat=chat, payload=payload,
                                     is_private=private, display_name=name,
                                     language_code=caps.language))
        photos: list[VKPhoto] = []
        unsupported: Unsupported | None = None
        document: IncomingDocument | None = None
        for attachment in message.get("attachments") or []:
            kind = attachment.get("type") if isinstance(attachment, dict) else None
            if kind == "photo":
                photos.append(VKPhoto(self, attachment.get("photo") or {}))
            elif kind not in _IGNORED_ATTACHMENTS and unsupported is None:
                unsupported = _UNSUPPORTED.get(str(kind), Unsupported.OTHER)
                if kind == "doc" and document is None:
                    document = self._document(attachment.get("doc") or {})
        text = (message.get("text") or "").strip() or None
        geo = message.get("geo")
        location = self._location(geo)
        problem = "location.invalid" if geo and location is None else None
        event = IncomingMessage(update_key=key, user=user, chat=chat, is_private=private,
                                text=text, location=location, unsupported=unsupported,
                                document=document, display_name=name,
                                language_code=caps.language, problem=problem)
        return Draft(event, photos)

    def _document(self, doc: dict[str, Any]) -> IncomingDocument | None:
        """A file, downloaded only if the core keeps it (a staff answer)."""
        url = doc.get("url")
        if not url:
            return None
        title = str(doc.get("title") or "document")
        extension = str(doc.get("ext") or "")
        filename = title if not extension or title.endswith(f".{extension}") else (
            f"{title}.{extension}")

        async def fetch() -> bytes:
            data = await self._download(str(url), MAX_DOCUMENT_BYTES)
            if data is None:
                raise DeliveryError("document too large", permanent=True)
            return data

        size = doc.get("size")
        return IncomingDocument(filename=filename, mime="application/octet-stream",
                                size=int(size) if isinstance(size, int) else None, fetch=fetch)

    async def _download(self, url: str, limit: int) -> bytes | None:
        """The file's bytes, or None when it is over `limit`; raises when unavailable."""
        if self._http is None:
            raise DeliveryError("VK transport is not started")
        async with self._http.request(url, method="GET") as response:
            if response.status != 200:
                raise DeliveryError(f"VK download: HTTP {response.status}")
            if (response.content_length or 0) > limit:
                return None
            data = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > limit:
                    return None
            return bytes(data)

    @staticmethod
    def _location(geo: Any) -> Location | None:
        if not isinstance(geo, dict) or not isinstance(geo.get("coordinates"), dict):
            return None
        coordinates = geo["coordinates"]
        return Location.checked(coordinates.get("latitude"), coordinates.get("longitude"))

    async def _display_name(self, user_id: int) -> str | None:
        if user_id in self._names:
            return self._names[user_id]
        if self.api is None or user_id <= 0:
            return None
        try:
            users = (await self.api.request("users.get", {"user_ids": user_id}))["response"]
        except Exception as error:  # a name is a nicety: never fail the message for it
            log.warning("VK users.get failed: %s", delivery_error(error))
            return None
        if not users:
            return None
        name = " ".join(filter(None, (users[0].get("first_name"), users[0].get("last_name"))))
        self._names[user_id] = name
        return name or None

    async def _on_button(self, update: dict[str, Any]) -> None:
        obj = update.get("object") or {}
        peer_id, user_id = _int(obj.get("peer_id")), _int(obj.get("user_id"))
        callback_id = str(obj.get("event_id") or "")
        if user_id <= 0 or peer_id <= 0:
            return
        key = update_key(update, "message_event", peer_id,
                         f"{obj.get('conversation_message_id')}:{callback_id}")
        caps = self._clients.get(peer_id, _ClientCaps())
        event = ButtonPress(
            update_key=key, user=UserRef(Platform.VK, str(user_id)),
            chat=ChatRef(Platform.VK, str(peer_id)),
            payload=_callback_payload(obj.get("payload")) or "",
            is_private=peer_id < PEER_ID_OFFSET,
            display_name=await self._display_name(user_id), language_code=caps.language)

        async def answer(response: Response) -> None:
            # Answered before the replies, so the client's spinner stops at once.
            await self._answer_button(callback_id, user_id, peer_id, response.notice)

        await self.channel.process(Draft(event), decided=answer)

    async def _answer_button(self, callback_id: str, user_id: int, peer_id: int,
                             notice: str | None) -> None:
        if not callback_id or self.api is None:
            return
        params: dict[str, Any] = {"event_id": callback_id, "user_id": user_id, "peer_id": peer_id}
        if notice:
            params["event_data"] = json.dumps(
                {"type": "show_snackbar", "text": notice[:SNACKBAR_LIMIT]}, ensure_ascii=False)
        try:
            await self.api.request("messages.sendMessageEventAnswer", params)
        except Exception as error:
            log.warning("VK event answer failed: %s", delivery_error(error))

    # ------------------------------------------------------------------ core → VK

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Render one neutral reply as VK messages and send those not yet delivered; raises
        DeliveryError. Each message's random_id comes from the outbox row and its position,
        so VK drops a repeat after a crash."""
        api = self.api
        if api is None:
            raise DeliveryError("VK transport is not started")
        try:
            peer_id = int(chat_id)
        except ValueError:
            raise DeliveryError("not a VK peer id", permanent=True) from None
        progress = progress or Progress()
        try:
            messages = await self._render(api, peer_id, reply)
        except Exception as error:
            raise delivery_error(error) from error
        for index in range(progress.start, len(messages)):
            try:
                async with progress.slot():
                    await api.request("messages.send", {
                        "peer_id": peer_id,
                        "random_id": random_id(dedupe_id, index),
                        "disable_mentions": 1,  # a citizen's "@all" must not ping a staff chat
                        **messages[index],
                    })
            except Exception as error:
                raise delivery_error(error) from error
            if progress.after_part is not None:
                await progress.after_part(index + 1)

    async def _send_direct(self, chat_id: str, replies: Sequence[Reply]) -> None:
        """Replies that could not be queued (the database was away): one attempt each."""
        for reply in replies:
            await self.send(chat_id, reply)

    async def _render(self, api: API, peer_id: int, reply: Reply) -> list[dict[str, Any]]:
        text = compose_text(reply)
        messages: list[dict[str, Any]] = [
            {"message": chunk} for chunk in split_message(text) if chunk.strip()]
        attachments = await self._upload(api, peer_id, reply)
        groups = [attachments[i:i + ATTACHMENTS_PER_MESSAGE]
                  for i in range(0, len(attachments), ATTACHMENTS_PER_MESSAGE)]
        if not messages and (groups or reply.location):
            messages.append({})
        if not messages:
            return []  # nothing VK could show (a keyboard alone is not a message)
        if groups:
            messages[-1]["attachment"] = ",".join(groups[0])
            messages += [{"attachment": ",".join(group)} for group in groups[1:]]
        if reply.location is not None:
            messages[-1]["lat"] = reply.location.latitude
            messages[-1]["long"] = reply.location.longitude
        keyboard = self._keyboard(peer_id, reply)
        if keyboard is not None:
            messages[-1]["keyboard"] = keyboard
        return messages

    def _keyboard(self, peer_id: int, reply: Reply) -> str | None:
        # A VK message carries one keyboard: choices win over the menu.
        if any(reply.buttons):
            return buttons_keyboard(reply.buttons, self._clients.get(peer_id, _ClientCaps()))
        if reply.menu:
            return menu_keyboard(reply.menu)
        if reply.remove_menu:
            return empty_keyboard()
        return None

    async def _upload(self, api: API, peer_id: int, reply: Reply) -> list[str]:
        attachments: list[str] = []
        for photo in reply.photos:
            if not photo.path.is_file():
                log.warning("photo for peer %s is gone from disk, sent without it", peer_id)
                continue
            attachments.append(await PhotoMessageUploader(api).upload(
                file_source=str(photo.path), peer_id=peer_id))
        document = reply.document
        if document is not None:
            if document.path.is_file():
                attachments.append(await DocMessagesUploader(api).upload(
                    file_source=str(document.path), peer_id=peer_id, title=document.filename))
            else:
                log.warning("document for peer %s is gone from disk", peer_id)
        return attachments


@dataclass(frozen=True)
class VKPhoto:
    """A photo attachment, downloaded only once the message has been admitted."""

    transport: VKTransport
    photo: dict[str, Any]

    async def fetch(self) -> IncomingPhoto:
        size = largest_size(self.photo)
        if size is None:
            raise DeliveryError("photo without a size")
        data = await self.transport._download(str(size["url"]), MAX_PHOTO_BYTES)
        if data is None:
            raise PhotoTooLarge
        if not data:
            raise DeliveryError("empty photo")
        return IncomingPhoto(data, mime=image_mime(data), width=size.get("width"),
                             height=size.get("height"),
                             source_id=f"photo{self.photo.get('owner_id')}_{self.photo.get('id')}")


def _int(value: Any) -> int:
    """An id from an untrusted event; 0 when it is not a sane integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return number if 0 < number < 2**53 else 0


def lane_key(update: dict[str, Any]) -> tuple[str, int]:
    """The user an event belongs to, read before anything else looks at it."""
    obj = update.get("object") if isinstance(update.get("object"), dict) else {}
    assert isinstance(obj, dict)
    message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
    assert isinstance(message, dict)
    user = _int(message.get("from_id")) or _int(obj.get("user_id"))
    return ("user", user)


def update_key(update: dict[str, Any], kind: str, peer_id: int, detail: Any) -> str:
    """VK's event_id; without one, a digest that does not spell out the user's peer id."""
    if update.get("event_id"):
        return str(update["event_id"])[:128]
    digest = hashlib.sha256(f"{kind}:{peer_id}:{detail}".encode()).hexdigest()[:40]
    return f"{kind}:{digest}"


class PollCursor:
    """The long poll's `ts`, saved only as far as the events before it were handled.

    Each batch of events starts at the `ts` it was asked for; events get local sequence
    numbers, and the saved `ts` is the start of the oldest batch with an event still under
    way (or the newest `ts` when nothing is)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.ts: str | None = None
        self._floor = AckFloor()
        self._next = 0
        self._batches: list[tuple[int, str]] = []  # (first number, ts it was asked with)
        self.group_id: int | str | None = None

    @property
    def path(self) -> Path:
        return self.state_dir / f"{self.group_id or 'default'}.json"

    def start(self, ts: str) -> None:
        self.ts = ts

    def jump(self, ts: str) -> None:
        self.ts = ts
        self._batches.clear()

    def batch(self, new_ts: str, count: int) -> range:
        first = self._next
        if count:
            assert self.ts is not None
            self._batches.append((first, self.ts))
        self._next += count
        for number in range(first, self._next):
            self._floor.received(number)
        self.ts = new_ts
        return range(first, self._next)

    def handled(self, number: int) -> None:
        self._floor.handled(number)

    def saved_ts(self) -> str | None:
        floor = self._floor.floor()
        if floor >= self._next:  # nothing under way: the newest ts
            self._batches.clear()
            return self.ts
        while len(self._batches) > 1 and self._batches[1][0] <= floor:
            self._batches.pop(0)  # wholly handled
        return self._batches[0][1]

    async def load(self) -> str | None:
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
            ts = json.loads(text).get("ts")
        except (OSError, ValueError, AttributeError):
            return None
        return str(ts) if ts is not None else None

    async def save(self) -> None:
        ts = self.saved_ts()
        if ts is None:
            return
        await asyncio.to_thread(_write_atomically, self.path, json.dumps({"ts": ts}))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


__all__ = ["VKTransport", "build_labeler", "delivery_error"]
