"""The Telegram transport: a thin translator between aiogram and the messenger-neutral core.

In: every message and callback query becomes an IncomingMessage / ButtonPress for the shared
channel (bot/channel.py), in its user's lane (bot/telegram_polling.py).
Out: every neutral `Reply` becomes Bot API calls (bot/telegram_render.py); a failed call is
judged by the shared error policy (bot/errors.py). No decision about the dialog is taken
here; the core owns all state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from aiogram import Bot, Dispatcher, F, Router
from aiogram.enums import ContentType
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
)
from aiogram.types import (
    CallbackQuery,
    Document,
    Message,
    PhotoSize,
    Update,
)
from aiohttp import web

from bot import errors, telegram_webhook
from bot.channel import DOCUMENT_MAX_BYTES, PHOTO_MAX_BYTES, Draft, PhotoTooLarge
from bot.errors import Outcome, Verdict
from bot.platforms import TELEGRAM, telegram_with_username
from bot.polling import start_polling, stop_polling
from bot.settings import Settings
from bot.telegram_client import introduce, make_bot
from bot.telegram_polling import TelegramPoller
from bot.telegram_render import chat_key, plan_parts, send_part
from bot.transport import STOP_GRACE, Edge, send_parts
from handlers.core import Core
from handlers.events import (
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

# Message kinds the core can name in its "not accepted" answer.
UNSUPPORTED_KINDS: dict[str, Unsupported] = {
    ContentType.STICKER: Unsupported.STICKER,
    ContentType.VOICE: Unsupported.VOICE,
    ContentType.VIDEO_NOTE: Unsupported.VIDEO_NOTE,
    ContentType.VIDEO: Unsupported.VIDEO,
    ContentType.ANIMATION: Unsupported.VIDEO,  # a GIF is an mp4 clip for the citizen too
    ContentType.AUDIO: Unsupported.AUDIO,
    ContentType.DOCUMENT: Unsupported.DOCUMENT,
    ContentType.CONTACT: Unsupported.CONTACT,
    ContentType.POLL: Unsupported.POLL,
}
# Other things a person can send on purpose; in groups, anything else is a service message.
OTHER_USER_CONTENT = frozenset({
    ContentType.DICE, ContentType.GAME, ContentType.STORY, ContentType.PAID_MEDIA,
    ContentType.INVOICE, ContentType.CHECKLIST, ContentType.LIVE_PHOTO, ContentType.GIVEAWAY,
})



class TelegramTransport(Edge):
    platform = Platform.TELEGRAM
    capabilities = TELEGRAM

    def __init__(self, settings: Settings, core: Core, outbox: OutboxSender | None = None) -> None:
        if settings.telegram_token is None:
            raise ValueError("MCU_TELEGRAM_TOKEN is not set")
        self.settings = settings
        self.username: str | None = None
        self.bot: Bot | None = None
        # Built here (not in start) so tests and the wiring can add middlewares beforehand.
        # FSM is off: the dialog state lives in the core's database, not in aiogram.
        self.dp = Dispatcher(disable_fsm=True, transport=self)
        self.dp.include_router(build_router())
        super().__init__(core, outbox)
        self.poller = TelegramPoller(self.dp, self.lanes)
        self._polling: asyncio.Task[None] | None = None
        self._registering: asyncio.Task[None] | None = None

    async def start(self) -> None:
        bot = make_bot(self.settings)
        try:
            me = await introduce(bot)
            # Polling and a webhook exclude each other; pending updates are kept, not dropped.
            await bot.delete_webhook(drop_pending_updates=False)
        except BaseException:
            await bot.session.close()
            raise
        self.bot, self.username = bot, me.username
        self.capabilities = telegram_with_username(me.username)
        # Telegram serves getUpdates to one consumer per bot: among processes sharing the
        # database, the holder of this lease polls and the others stand by.
        self._polling = start_polling(self.core.services, f"telegram-poller:{me.id}",
                                      lambda: self.poller.run(bot), "telegram polling")
        log.info("telegram transport started for @%s", self.username)

    async def open_for_sending(self) -> None:
        """Only deliver (a CLI flushing the outbox): no polling, no command menu."""
        self.bot = make_bot(self.settings)

    async def start_webhook(self, app: web.Application) -> None:
        """`mcu serve`: receive through the webhook on `app` (bot/telegram_webhook.py).
        Returns at once; setWebhook is retried in the background until the Bot API answers."""
        self.bot = bot = make_bot(self.settings)
        self.channel.redeliver_uncommitted()
        telegram_webhook.mount(self, app, bot)
        self._registering = asyncio.create_task(
            telegram_webhook.register(self, bot), name="telegram setWebhook")

    def known_as(self, username: str | None) -> None:
        """The bot's @username is known (from getMe): deep links become possible."""
        self.username = username
        self.capabilities = telegram_with_username(username)
        self.core.services.capabilities[str(self.platform)] = self.capabilities

    async def stop(self) -> None:
        await stop_polling(self._polling)
        self._polling = None
        await stop_polling(self._registering)
        self._registering = None
        # Let the turns under way finish and deliver before the session closes.
        await self.lanes.close(STOP_GRACE)
        if self.bot is not None:
            await self.bot.session.close()
            self.bot = None

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Deliver one neutral reply, resuming after the parts already delivered; raises
        DeliveryError on failure. Telegram has no idempotency key: `dedupe_id` is unused."""
        bot = self.bot
        if bot is None:
            raise DeliveryError("telegram transport is not started")
        try:
            parts = await plan_parts(reply)
        except Exception as error:  # an attachment vanished from disk: retrying cannot help
            errors.reraise(error, classify)
            raise
        chat = chat_key(chat_id)
        await send_parts(parts, progress, lambda _, part: send_part(bot, chat, part), classify)


@dataclass(frozen=True)
class TelegramPhoto:
    """A photo, downloaded only once the update has been admitted."""

    bot: Bot
    sizes: Sequence[PhotoSize]

    async def fetch(self) -> IncomingPhoto:
        fitting = [s for s in self.sizes
                   if s.file_size is None or s.file_size <= PHOTO_MAX_BYTES]
        if not fitting:
            raise PhotoTooLarge
        best = max(fitting, key=lambda s: s.width * s.height)
        buffer = await self.bot.download(best.file_id)
        data = buffer.read() if buffer is not None else b""
        if len(data) > PHOTO_MAX_BYTES:
            raise PhotoTooLarge
        if not data:
            raise DeliveryError("empty photo")
        return IncomingPhoto(data, width=best.width, height=best.height,
                             source_id=best.file_id)


def document_of(bot: Bot, document: Document) -> IncomingDocument:
    """A file, fetched only if the core keeps it (Bot API downloads are capped at 20 MB)."""

    async def fetch() -> bytes:
        if document.file_size is not None and document.file_size > DOCUMENT_MAX_BYTES:
            raise DeliveryError("document too large", permanent=True)
        buffer = await bot.download(document.file_id)
        return buffer.read() if buffer is not None else b""

    return IncomingDocument(filename=document.file_name or "document",
                            mime=document.mime_type or "application/octet-stream",
                            size=document.file_size, fetch=fetch)


# ---------------------------------------------------------------------------------------------
# Router: two short handlers, dependencies injected by parameter name from the Dispatcher.
# They run inside the user's lane, so their order is already fixed.


def build_router() -> Router:
    router = Router(name="telegram-transport")
    router.message.register(relay_message, F.from_user)
    router.callback_query.register(relay_button, F.from_user)
    return router


async def relay_message(message: Message, event_update: Update, bot: Bot,
                        transport: TelegramTransport) -> None:
    event = message_event(message, str(event_update.update_id))
    if event is None:
        return
    if message.document is not None:
        event = replace(event, document=document_of(bot, message.document))
    photos = (TelegramPhoto(bot, message.photo),) if message.photo else ()
    await transport.channel.process(Draft(event, photos))


async def relay_button(callback: CallbackQuery, event_update: Update,
                       transport: TelegramTransport) -> None:
    event = button_event(callback, str(event_update.update_id))

    async def answer(response: Response) -> None:
        # Answered before the replies, so the client's spinner stops at once.
        notice = response.notice
        await callback.answer(text=notice[:TELEGRAM.notice_limit] if notice else None)

    await transport.channel.process(Draft(event), decided=answer)


# ---------------------------------------------------------------------------------------------
# Translation in


def message_event(message: Message, update_key: str) -> IncomingMessage | None:
    """The neutral event for a message, or None for what nobody should answer. Its photo is
    not in it yet: it is downloaded after the update was admitted."""
    user = message.from_user
    if user is None:
        return None
    is_private = message.chat.type == "private"
    kind = message.content_type
    text: str | None = message.text or message.caption
    location: Location | None = None
    unsupported: Unsupported | None = None
    problem: str | None = None
    if message.location is not None:
        # A venue carries a location too: "this place" is what the citizen means.
        location = Location.checked(message.location.latitude, message.location.longitude)
        problem = None if location is not None else "location.invalid"
    elif not message.photo and not message.text:
        unsupported = UNSUPPORTED_KINDS.get(kind)
        if unsupported is None:
            if not is_private and kind not in OTHER_USER_CONTENT:
                return None  # a service message in a group (joins, pins, titles…)
            unsupported = Unsupported.OTHER
        text = None  # a caption on a sticker or a file is not a report text
    return IncomingMessage(
        update_key=update_key,
        user=UserRef(Platform.TELEGRAM, str(user.id)),
        chat=ChatRef(Platform.TELEGRAM, str(message.chat.id)),
        is_private=is_private,
        text=text,
        location=location,
        unsupported=unsupported,
        display_name=user.full_name,
        language_code=user.language_code,
        problem=problem,
    )


def button_event(callback: CallbackQuery, update_key: str) -> ButtonPress:
    user = callback.from_user
    message = callback.message
    # Without a message (inline mode) the only place to answer is the user's private chat.
    chat_id = message.chat.id if message is not None else user.id
    is_private = message is None or message.chat.type == "private"
    return ButtonPress(
        update_key=update_key,
        user=UserRef(Platform.TELEGRAM, str(user.id)),
        chat=ChatRef(Platform.TELEGRAM, str(chat_id)),
        payload=callback.data or "",
        is_private=is_private,
        display_name=user.full_name,
        language_code=user.language_code,
    )


def delivery_error(error: BaseException) -> DeliveryError | None:
    """Map a library error to the outbox's terms; None means "nothing to retry"."""
    return errors.delivery_error(error, classify)


def classify(error: BaseException) -> Verdict | None:
    """What aiogram's errors mean (bot/errors.py decides what follows from each)."""
    name = type(error).__name__
    if isinstance(error, TelegramRetryAfter):
        return Verdict(Outcome.RETRY, f"{name}: retry after {error.retry_after}s",
                       retry_after=error.retry_after)
    if isinstance(error, TelegramForbiddenError):
        return Verdict(Outcome.BLOCKED, f"{name}: {error.message}")
    if isinstance(error, TelegramMigrateToChat):
        # The group became a supergroup; its registration must be updated by a person.
        log.warning("telegram group migrated to chat %s", error.migrate_to_chat_id)
        return Verdict(Outcome.GIVE_UP, f"{name}: migrated to {error.migrate_to_chat_id}")
    if isinstance(error, TelegramBadRequest):
        if "message is not modified" in error.message:
            return Verdict(Outcome.DONE)
        return Verdict(Outcome.GIVE_UP, f"{name}: {error.message}")
    if isinstance(error, TelegramNotFound | TelegramEntityTooLarge):
        return Verdict(Outcome.GIVE_UP, f"{name}: {error.message}")
    if isinstance(error, TelegramAPIError | ClientDecodeError):
        # Server errors, a revoked token: worth another try later.
        return Verdict(Outcome.RETRY, name)
    return None
