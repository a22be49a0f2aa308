"""The VK transport: a thin translator between VK community messages and the neutral core.

VK event (bot/vk_polling.py: Bots Long Poll or Callback API) → neutral event → the shared
channel (bot/channel.py) → `Response` → VK API calls (bot/vk_render.py), a failed call judged
by the shared error policy (bot/errors.py). Nothing here decides what to answer; it only
knows how VK spells things.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from vkbottle import API, AiohttpClient, GroupEventType, VKAPIError
from vkbottle.api.request_rescheduler import ABCRequestRescheduler
from vkbottle.bot import Bot, BotLabeler
from vkbottle.exception_factory import ErrorHandler

from bot import errors
from bot.channel import Draft, NotCommitted, failure
from bot.errors import Outcome, Verdict
from bot.platforms import VK
from bot.polling import start_polling, stop_polling
from bot.settings import Settings
from bot.transport import STOP_GRACE, Edge, send_parts
from bot.vk_inbound import (
    attachments_of,
    callback_payload,
    download,
    location_of,
    update_key,
)
from bot.vk_polling import CallbackReceiver, PollCursor, long_poll, vk_id
from bot.vk_render import ClientCaps, random_id, render
from handlers.core import Core
from handlers.events import (
    ButtonPress,
    ChatRef,
    DeliveryError,
    IncomingMessage,
    Platform,
    Progress,
    Reply,
    Response,
    UserRef,
)
from scheduler.outbox import OutboxSender

log = logging.getLogger(__name__)

PEER_ID_OFFSET = 2_000_000_000  # peer ids from here on are group chats

# VK error codes (https://dev.vk.com/ru/reference/errors).
TOO_MANY_REQUESTS = 6
BLOCKED_CODES = frozenset({7, 900, 901, 902})  # denied, blacklist, no permission, privacy
# 1 "unknown error, try later", 9 "flood control" and 10 "internal error" pass with time.
TRANSIENT_CODES = frozenset({1, 9, 10})

UpdateHandler = Callable[[dict[str, Any]], Awaitable[None]]


class VKUnavailable(Exception):
    """VK answered with something that is not JSON (an HTTP 5xx page from a proxy)."""


class _FailFast(ABCRequestRescheduler):
    """vkbottle's default rescheduler retries a non-JSON answer forever with growing sleeps,
    which would freeze a reply or the outbox; we fail and let our callers retry."""

    async def reschedule(self, ctx_api: Any, method: str, data: dict[str, Any],
                         recent_response: Any) -> dict[str, Any]:
        raise VKUnavailable(f"{method}: VK answered with a non-JSON response")


def delivery_error(error: BaseException) -> DeliveryError:
    """Map a failed VK call to the neutral error the outbox understands."""
    return errors.delivery_error(error, classify) or DeliveryError("VK: nothing to retry")


def classify(error: BaseException) -> Verdict | None:
    """What VK's errors mean (bot/errors.py decides what follows from each)."""
    if isinstance(error, VKAPIError):
        code = int(error.code)
        message = f"VK error {code}"
        if code == TOO_MANY_REQUESTS:
            return Verdict(Outcome.RETRY, message, retry_after=1.0)
        if code in BLOCKED_CODES:
            return Verdict(Outcome.BLOCKED, message)
        if code in TRANSIENT_CODES:
            return Verdict(Outcome.RETRY, message)
        return Verdict(Outcome.GIVE_UP, message)
    if isinstance(error, VKUnavailable):
        return Verdict(Outcome.RETRY, f"VK unreachable: {type(error).__name__}")
    return None


def build_labeler(on_update: UpdateHandler) -> BotLabeler:
    """A fresh labeler per bot: a module-level one would be shared between bots and tests."""
    labeler = BotLabeler()

    async def route(update: dict[str, Any]) -> None:
        update.pop("ctx_api", None)  # vkbottle adds its API to the raw dict
        await on_update(update)

    labeler.raw_event([GroupEventType.MESSAGE_NEW, GroupEventType.MESSAGE_EVENT],
                      dict)(route)
    return labeler


class VKTransport(Edge):
    platform = Platform.VK
    capabilities = VK

    def __init__(self, settings: Settings, core: Core, outbox: OutboxSender | None = None) -> None:
        if settings.vk_token is None:
            raise ValueError("MCU_VK_TOKEN is not set")
        self.settings = settings
        self.api: API | None = None
        self._http: AiohttpClient | None = None
        self._bot: Bot | None = None
        self._polling: asyncio.Task[None] | None = None
        self._clients: dict[int, ClientCaps] = {}  # by peer id
        self._names: dict[int, str] = {}  # by user id
        super().__init__(core, outbox)
        self.cursor = PollCursor(settings.data_dir / "vkbottle" / "bot-polling")
        self.receiver = CallbackReceiver(settings, self.lanes, self._handle_event)

    async def start(self) -> None:
        await self.open_for_sending()
        settings, api, http = self.settings, self.api, self._http
        assert api is not None and http is not None
        self._bot = Bot(api=api, labeler=build_labeler(self._on_update))
        if settings.vk_callback_enabled:
            await self.receiver.start()
        else:
            # One process polls a community at a time, so one user's events keep their order.
            self._polling = start_polling(
                self.core.services, f"vk-poller:{settings.vk_group_id}",
                lambda: long_poll(api, http, settings.vk_group_id, self.cursor, self.lanes,
                                  self._handle_event), "VK long polling")

    async def start_webhook(self, app: web.Application) -> None:
        """`mcu serve`: the Callback API on `app` (the community's server settings point
        VK at MCU_PUBLIC_URL + MCU_VK_CALLBACK_PATH); nothing to register at start."""
        await self.open_for_sending()
        assert self.api is not None
        # vkbottle's router would log and swallow a turn's failure; it is raised to
        # _handle_event instead, so an uncommitted event is not answered "ok".
        self._bot = Bot(api=self.api, labeler=build_labeler(self._on_update),
                        error_handler=ErrorHandler(raise_exceptions=True))
        self.channel.redeliver_uncommitted()
        self.receiver.mount(app)

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
        # vkbottle logs request data (message texts, names) at DEBUG: its own level, not the
        # root's, so that turning on debug logs (mcu -v) never lets them through.
        vk_logger = logging.getLogger("vkbottle")
        if vk_logger.level < logging.INFO:
            vk_logger.setLevel(logging.INFO)

    async def stop(self) -> None:
        await stop_polling(self._polling)
        self._polling = None
        await self.receiver.stop()
        await self.lanes.close(STOP_GRACE)
        await self.cursor.save()
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def callback_url(self) -> str | None:
        return self.receiver.url

    async def _handle_event(self, update: dict[str, Any], number: int | None) -> None:
        try:
            assert self._bot is not None
            await self._bot.process_event(update, self.api)
        except Exception as error:
            log.error("VK %s event failed: %s", update.get("type"), failure(error))
            if number is None and isinstance(error, NotCommitted):
                raise  # a callback left unanswered: VK sends it again
        finally:
            if number is not None:
                self.cursor.handled(number)

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
        peer_id, from_id = vk_id(message.get("peer_id")), vk_id(message.get("from_id"))
        if from_id <= 0 or peer_id <= 0 or message.get("action"):
            return  # other communities and chat service messages (joins, renames...)
        if isinstance(obj.get("client_info"), dict):
            self._clients[peer_id] = ClientCaps.from_info(obj["client_info"])
        await self.channel.process(await self._message_draft(update, message, peer_id,
                                                             from_id))

    async def _message_draft(self, update: dict[str, Any], message: dict[str, Any],
                             peer_id: int, from_id: int) -> Draft:
        caps = self._clients.get(peer_id, ClientCaps())
        key = update_key(update, "message_new", peer_id, message.get("conversation_message_id"))
        user = UserRef(Platform.VK, str(from_id))
        chat = ChatRef(Platform.VK, str(peer_id))
        private = peer_id < PEER_ID_OFFSET
        name = await self._display_name(from_id)
        payload = callback_payload(message.get("payload"))
        if payload is not None:  # a text button of a client without callback buttons
            return Draft(ButtonPress(update_key=key, user=user, chat=chat, payload=payload,
                                     is_private=private, display_name=name,
                                     language_code=caps.language))
        photos, unsupported, document = attachments_of(message, self._download)
        text = (message.get("text") or "").strip() or None
        geo = message.get("geo")
        location = location_of(geo)
        problem = "location.invalid" if geo and location is None else None
        event = IncomingMessage(update_key=key, user=user, chat=chat, is_private=private,
                                text=text, location=location, unsupported=unsupported,
                                document=document, display_name=name,
                                language_code=caps.language, problem=problem)
        return Draft(event, photos)

    async def _download(self, url: str, limit: int) -> bytes | None:
        return await download(self._http, url, limit)

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
        peer_id, user_id = vk_id(obj.get("peer_id")), vk_id(obj.get("user_id"))
        callback_id = str(obj.get("event_id") or "")
        if user_id <= 0 or peer_id <= 0:
            return
        key = update_key(update, "message_event", peer_id,
                         f"{obj.get('conversation_message_id')}:{callback_id}")
        caps = self._clients.get(peer_id, ClientCaps())
        event = ButtonPress(
            update_key=key, user=UserRef(Platform.VK, str(user_id)),
            chat=ChatRef(Platform.VK, str(peer_id)),
            payload=callback_payload(obj.get("payload")) or "",
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
                {"type": "show_snackbar", "text": notice[:VK.notice_limit]}, ensure_ascii=False)
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
        try:
            messages = await render(api, peer_id, reply,
                                    self._clients.get(peer_id, ClientCaps()))
        except Exception as error:  # an upload failed
            errors.reraise(error, classify)
            raise

        async def send_message(index: int, message: dict[str, Any]) -> None:
            await api.request("messages.send", {
                "peer_id": peer_id,
                "random_id": random_id(dedupe_id, index),
                "disable_mentions": 1,  # a citizen's "@all" must not ping a staff chat
                **message,
            })

        await send_parts(messages, progress, send_message, classify)


__all__ = ["VKTransport", "build_labeler", "delivery_error"]
