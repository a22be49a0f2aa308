"""The VK transport: a thin translator between VK community messages and the neutral core.

VK update (Bots Long Poll or Callback API) → neutral event → `core.handle` → `Response` →
VK API calls. Nothing here decides what to answer; it only knows how VK spells things.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import weakref
from collections.abc import Awaitable, Callable
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
from vkbottle.polling import BotPolling

from bot.settings import Settings
from handlers.core import Core
from handlers.events import (
    Button,
    ButtonPress,
    ChatRef,
    DeliveryError,
    Event,
    IncomingDocument,
    IncomingMessage,
    IncomingPhoto,
    Location,
    Platform,
    Reply,
    Response,
    Unsupported,
    UserRef,
)

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


class _DataDirPolling(BotPolling):
    """BotPolling keeps its `ts` under the current directory; ours lives in the data dir."""

    def __init__(self, api: API, group_id: int | None, state_dir: Path) -> None:
        super().__init__(api, group_id=group_id, skip_old_events=False)
        self.state_dir = state_dir

    @property
    def ts_state_path(self) -> Path:
        return self.state_dir / "bot-polling" / f"{self.group_id}.json"


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


def _error_code(error: DeliveryError) -> str:
    return str(error)  # our DeliveryError messages carry only the code or the error type


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

    def __init__(self, settings: Settings, core: Core) -> None:
        if settings.vk_token is None:
            raise ValueError("MCU_VK_TOKEN is not set")
        self.settings = settings
        self.core = core
        self.api: API | None = None
        self._http: AiohttpClient | None = None
        self._bot: Bot | None = None
        self._polling: _DataDirPolling | None = None
        self._polling_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._clients: dict[int, _ClientCaps] = {}  # by peer id
        self._names: dict[int, str] = {}  # by user id
        self._peer_locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
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
        self._polling = _DataDirPolling(api, settings.vk_group_id, settings.data_dir / "vkbottle")
        self._bot = Bot(api=api, labeler=build_labeler(self._on_update), polling=self._polling,
                        skip_old_events=False)
        self._closing = False
        if settings.vk_callback_enabled:
            await self._start_callback_server()
        else:
            self._polling_task = asyncio.create_task(self._bot.run_polling(), name="vk-polling")
            self._polling_task.add_done_callback(self._polling_ended)

    async def stop(self) -> None:
        self._closing = True
        if self._polling is not None:
            self._polling.stop()
        if self._polling_task is not None:
            self._polling_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling_task
            self._polling_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.drain(timeout=10.0)
        for task in list(self._inflight):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait until the updates being processed are answered (tests; graceful stop)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._inflight and loop.time() < deadline:
            await asyncio.wait(set(self._inflight), timeout=deadline - loop.time())

    @staticmethod
    def _polling_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("VK long polling stopped", exc_info=task.exception())

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
                and not self._closing and self._bot is not None:
            # Answer "ok" at once; VK re-sends slow events, and the core drops repeats by
            # event_id, so processing in the background is at most once.
            task = asyncio.create_task(self._bot.process_event(body, self.api))
            self._track(task)
        return web.Response(text="ok")

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # ------------------------------------------------------------------ VK → core

    async def _on_update(self, update: dict[str, Any]) -> None:
        if self._closing:
            return
        task = asyncio.current_task()
        if task is not None and task not in self._inflight:
            self._track(task)
        kind = update.get("type")
        try:
            if kind == GroupEventType.MESSAGE_NEW:
                await self._on_message(update)
            elif kind == GroupEventType.MESSAGE_EVENT:
                await self._on_button(update)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("VK %s update %s failed", kind, update.get("event_id"))

    def _lock(self, peer_id: int) -> asyncio.Lock:
        lock = self._peer_locks.get(peer_id)
        if lock is None:
            lock = self._peer_locks[peer_id] = asyncio.Lock()
        return lock

    async def _on_message(self, update: dict[str, Any]) -> None:
        obj = update.get("object") or {}
        message = obj.get("message") or {}
        peer_id, from_id = int(message.get("peer_id") or 0), int(message.get("from_id") or 0)
        if from_id <= 0 or message.get("action"):
            return  # other communities and chat service messages (joins, renames...)
        if isinstance(obj.get("client_info"), dict):
            self._clients[peer_id] = _ClientCaps.from_info(obj["client_info"])
        lock = self._lock(peer_id)  # one update of a peer at a time keeps the order
        async with lock:
            event = await self._message_event(update, message, peer_id, from_id)
            response = await self.core.handle(event)
            await self._answer(peer_id, response)

    async def _message_event(self, update: dict[str, Any], message: dict[str, Any],
                             peer_id: int, from_id: int) -> Event:
        caps = self._clients.get(peer_id, _ClientCaps())
        key = str(update.get("event_id") or
                  f"message_new:{peer_id}:{message.get('conversation_message_id')}")
        user = UserRef(Platform.VK, str(from_id))
        chat = ChatRef(Platform.VK, str(peer_id))
        private = peer_id < PEER_ID_OFFSET
        name = await self._display_name(from_id)
        payload = _callback_payload(message.get("payload"))
        if payload is not None:  # a text button of a client without callback buttons
            return ButtonPress(update_key=key, user=user, chat=chat, payload=payload,
                               is_private=private, display_name=name,
                               language_code=caps.language)
        photos: list[IncomingPhoto] = []
        unsupported: Unsupported | None = None
        document: IncomingDocument | None = None
        failed_photo = False
        for attachment in message.get("attachments") or []:
            kind = attachment.get("type")
            if kind == "photo":
                photo = await self._download_photo(attachment.get("photo") or {})
                if photo is None:
                    failed_photo = True
                else:
                    photos.append(photo)
            elif kind not in _IGNORED_ATTACHMENTS and unsupported is None:
                unsupported = _UNSUPPORTED.get(str(kind), Unsupported.OTHER)
                if kind == "doc" and document is None:
                    document = self._document(attachment.get("doc") or {})
        text = (message.get("text") or "").strip() or None
        location = self._location(message.get("geo"))
        if failed_photo and not (photos or text or location or unsupported):
            unsupported = Unsupported.OTHER  # say it did not arrive rather than stay silent
        return IncomingMessage(update_key=key, user=user, chat=chat, is_private=private,
                               text=text, photos=tuple(photos), location=location,
                               unsupported=unsupported, document=document,
                               display_name=name, language_code=caps.language)

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
            if self._http is None:
                raise DeliveryError("VK transport is not started")
            async with self._http.request(str(url), method="GET") as response:
                if response.status != 200:
                    raise DeliveryError(f"VK document download: HTTP {response.status}")
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_DOCUMENT_BYTES:
                        raise DeliveryError("document too large", permanent=True)
                return bytes(data)

        size = doc.get("size")
        return IncomingDocument(filename=filename, mime="application/octet-stream",
                                size=int(size) if isinstance(size, int) else None, fetch=fetch)

    @staticmethod
    def _location(geo: Any) -> Location | None:
        if not isinstance(geo, dict):
            return None
        coordinates = geo.get("coordinates") or {}
        try:
            return Location(float(coordinates["latitude"]), float(coordinates["longitude"]))
        except (KeyError, TypeError, ValueError):
            return None

    async def _download_photo(self, photo: dict[str, Any]) -> IncomingPhoto | None:
        size = largest_size(photo)
        if size is None or self._http is None:
            return None
        source_id = f"photo{photo.get('owner_id')}_{photo.get('id')}"
        try:
            async with self._http.request(str(size["url"]), method="GET") as response:
                if response.status != 200 or (response.content_length or 0) > MAX_PHOTO_BYTES:
                    log.warning("VK photo %s not taken: HTTP %s, %s bytes", source_id,
                                response.status, response.content_length)
                    return None
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data += chunk
                    if len(data) > MAX_PHOTO_BYTES:
                        log.warning("VK photo %s is over %d bytes", source_id, MAX_PHOTO_BYTES)
                        return None
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("VK photo %s download failed: %s", source_id, type(error).__name__)
            return None
        data_bytes = bytes(data)
        return IncomingPhoto(data_bytes, mime=image_mime(data_bytes), width=size.get("width"),
                             height=size.get("height"), source_id=source_id)

    async def _display_name(self, user_id: int) -> str | None:
        if user_id in self._names:
            return self._names[user_id]
        if self.api is None or user_id <= 0:
            return None
        try:
            users = (await self.api.request("users.get", {"user_ids": user_id}))["response"]
        except Exception as error:  # a name is a nicety: never fail the message for it
            log.warning("VK users.get for %s failed: %s", user_id, delivery_error(error))
            return None
        if not users:
            return None
        name = " ".join(filter(None, (users[0].get("first_name"), users[0].get("last_name"))))
        self._names[user_id] = name
        return name or None

    async def _on_button(self, update: dict[str, Any]) -> None:
        obj = update.get("object") or {}
        peer_id, user_id = int(obj.get("peer_id") or 0), int(obj.get("user_id") or 0)
        callback_id = str(obj.get("event_id") or "")
        if user_id <= 0:
            return
        key = str(update.get("event_id") or
                  f"message_event:{peer_id}:{obj.get('conversation_message_id')}:{callback_id}")
        caps = self._clients.get(peer_id, _ClientCaps())
        async with self._lock(peer_id):
            event = ButtonPress(
                update_key=key, user=UserRef(Platform.VK, str(user_id)),
                chat=ChatRef(Platform.VK, str(peer_id)),
                payload=_callback_payload(obj.get("payload")) or "",
                is_private=peer_id < PEER_ID_OFFSET,
                display_name=await self._display_name(user_id), language_code=caps.language)
            try:
                response = await self.core.handle(event)
            except Exception:
                # Answer anyway, so the client's spinner stops even when handling failed.
                await self._answer_button(callback_id, user_id, peer_id, None)
                raise
            await self._answer_button(callback_id, user_id, peer_id, response.notice)
            await self._answer(peer_id, response)

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
            log.warning("VK event answer to peer %s failed: %s", peer_id, delivery_error(error))

    async def _answer(self, peer_id: int, response: Response) -> None:
        # Direct replies go out one after another; the outbox paces queued messages.
        for reply in response.replies:
            try:
                await self._deliver(peer_id, reply)
            except DeliveryError as error:
                log.warning("VK reply to peer %s failed: %s", peer_id, _error_code(error))

    # ------------------------------------------------------------------ core → VK

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None) -> None:
        try:
            peer_id = int(chat_id)
        except ValueError:
            raise DeliveryError(f"not a VK peer id: {chat_id!r}", permanent=True) from None
        await self._deliver(peer_id, reply, dedupe_id)

    async def _deliver(self, peer_id: int, reply: Reply, dedupe_id: int | None = None) -> None:
        """Render one neutral reply as one or more VK messages; raises DeliveryError."""
        api = self.api
        if api is None:
            raise DeliveryError("VK transport is not started")
        try:
            for index, params in enumerate(await self._render(api, peer_id, reply)):
                await api.request("messages.send", {
                    "peer_id": peer_id,
                    "random_id": random_id(dedupe_id, index),
                    "disable_mentions": 1,  # a citizen's "@all" must not ping a staff chat
                    **params,
                })
        except DeliveryError:
            raise
        except Exception as error:
            raise delivery_error(error) from error

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


__all__ = ["VKTransport", "build_labeler", "delivery_error"]
