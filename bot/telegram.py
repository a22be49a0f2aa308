"""The Telegram transport: a thin translator between aiogram and the messenger-neutral core.

In: every message and callback query becomes an IncomingMessage / ButtonPress for `Core.handle`.
Out: every neutral `Reply` becomes Bot API calls (HTML parse mode, so plain text is escaped).
No decision about the dialog is taken here; the core owns all state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import aiohttp
from aiogram import Bot, Dispatcher, F, Router
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ContentType, ParseMode
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
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    Document,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    Message,
    PhotoSize,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)

from bot.channel import Channel, Draft, PhotoTooLarge, failure
from bot.lanes import AckFloor, Lanes
from bot.lease import run_while_holding
from bot.settings import Settings
from handlers.core import Core
from handlers.events import (
    ButtonPress,
    ChatRef,
    DeliveryError,
    IncomingDocument,
    IncomingMessage,
    IncomingPhoto,
    Location,
    OutgoingPhoto,
    Platform,
    Progress,
    Reply,
    Response,
    Unsupported,
    UserRef,
)
from scheduler.outbox import OutboxSender

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096  # Bot API: message text, after entity parsing
CAPTION_LIMIT = 1024
NOTICE_LIMIT = 200  # answerCallbackQuery text
ALBUM_MAX = 10  # sendMediaGroup takes 2–10 items
PHOTO_MAX_BYTES = 10 * 1024 * 1024
DOCUMENT_MAX_BYTES = 20 * 1024 * 1024
STOP_GRACE = 10.0  # seconds granted to the turns under way on stop()
POLL_TIMEOUT = 25  # long-poll seconds
POLL_PAUSE_MIN, POLL_PAUSE_MAX = 0.5, 5.0  # back-off while getUpdates fails
POLL_PAUSE_BUSY = 1.0  # longest wait for a turn to finish before asking again

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

# The command menu. Telegram-only presentation, so it lives with the transport.
COMMANDS: dict[str, list[tuple[str, str]]] = {
    "ru": [
        ("start", "Начать: согласие и главное меню"),
        ("help", "Что умеет бот"),
        ("cancel", "Отменить текущий шаг"),
        ("privacy", "Какие данные о вас хранятся"),
        ("forget", "Отозвать согласие на обработку данных"),
        ("lang", "Язык / Language"),
    ],
    "en": [
        ("start", "Start: consent and the main menu"),
        ("help", "What this bot does"),
        ("cancel", "Cancel the current step"),
        ("privacy", "What is stored about you"),
        ("forget", "Withdraw consent to data processing"),
        ("lang", "Language / Язык"),
    ],
}

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


# ---------------------------------------------------------------------------------------------
# Transport


class TelegramTransport:
    platform = Platform.TELEGRAM

    def __init__(self, settings: Settings, core: Core, outbox: OutboxSender | None = None) -> None:
        if settings.telegram_token is None:
            raise ValueError("MCU_TELEGRAM_TOKEN is not set")
        self.settings = settings
        self.core = core
        self.username: str | None = None
        self.bot: Bot | None = None
        # Built here (not in start) so tests and the wiring can add middlewares beforehand.
        # FSM is off: the dialog state lives in the core's database, not in aiogram.
        self.dp = Dispatcher(disable_fsm=True, transport=self)
        self.dp.include_router(build_router())
        self.outbox = outbox or OutboxSender(core.services, {self.platform: self})
        self.channel = Channel(core, self.outbox, self._send_direct)
        self.lanes = Lanes()
        self.floor = AckFloor()
        self._polling: asyncio.Task[None] | None = None

    def use_outbox(self, outbox: OutboxSender) -> None:
        self.outbox = self.channel.outbox = outbox

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        bot = make_bot(self.settings)
        try:
            me = await bot.get_me()
            for locale, commands in COMMANDS.items():
                await bot.set_my_commands(
                    [BotCommand(command=name, description=text) for name, text in commands],
                    language_code=None if locale == "ru" else locale)
            # Polling and a webhook exclude each other; pending updates are kept, not dropped.
            await bot.delete_webhook(drop_pending_updates=False)
        except BaseException:
            await bot.session.close()
            raise
        self.bot, self.username = bot, me.username
        # Telegram serves getUpdates to one consumer per bot: among processes sharing the
        # database, the holder of this lease polls and the others stand by.
        self._polling = asyncio.create_task(
            run_while_holding(self.core.services, f"telegram-poller:{me.id}", self._poll),
            name="telegram-polling")
        self._polling.add_done_callback(_report_polling_end)
        log.info("telegram transport started for @%s", self.username)

    async def open_for_sending(self) -> None:
        """Only deliver (a CLI flushing the outbox): no polling, no command menu."""
        self.bot = make_bot(self.settings)

    async def stop(self) -> None:
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
            self._polling = None
        # Let the turns under way finish and deliver before the session closes.
        await self.lanes.close(STOP_GRACE)
        if self.bot is not None:
            await self.bot.session.close()
            self.bot = None

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until the updates received so far are handled (tests; graceful stop)."""
        return await self.lanes.drain(timeout)

    # -- in: polling -----------------------------------------------------------------------

    async def _poll(self) -> None:
        """getUpdates with an offset that only passes updates already handled.

        aiogram's own polling confirms a batch as soon as it is dispatched, so a crash loses
        the updates under way. Here the offset is the acknowledgement floor: after a crash
        Telegram sends the unfinished updates again, and the database's processed-update
        marks drop those that were in fact handled.
        """
        bot = self.bot
        assert bot is not None
        allowed = self.dp.resolve_used_update_types()
        pause = POLL_PAUSE_MIN
        while True:
            try:
                raws = await get_updates(bot, self.floor.floor(), allowed)
            except Exception as error:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from error  # aiohttp may turn it into a timeout
                log.warning("telegram getUpdates failed (%s); retrying in %.1fs",
                            type(error).__name__, pause)
                await asyncio.sleep(getattr(error, "retry_after", None) or pause)
                pause = min(pause * 2, POLL_PAUSE_MAX)
                continue
            pause = POLL_PAUSE_MIN
            self.floor.changed.clear()
            fresh = 0
            for raw in raws:
                update_id = raw.get("update_id")
                if not isinstance(update_id, int) or not self.floor.fresh(update_id):
                    continue  # still under way, or handled already
                self.floor.received(update_id)
                fresh += 1
                # The lane is chosen from the raw update, before aiogram parses or filters it.
                self.lanes.submit(lane_key(raw), functools.partial(self._handle_raw, bot, raw))
            if raws and not fresh:
                # Only updates still under way came back: wait for one to finish rather
                # than asking again at once.
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_PAUSE_BUSY):
                        await self.floor.changed.wait()

    async def _handle_raw(self, bot: Bot, raw: dict[str, Any]) -> None:
        update_id = raw["update_id"]
        try:
            try:
                update = Update.model_validate(raw, context={"bot": bot})
            except ValueError:
                # Its fields may hold a name or a text: log the number only.
                log.warning("telegram update %s could not be read; skipped", update_id)
                return
            await self.dp.feed_update(bot, update)
        except Exception as error:
            log.error("telegram update %s failed: %s", update_id, failure(error))
        finally:
            self.floor.handled(update_id)

    # -- out ---------------------------------------------------------------------------------

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None,
                   progress: Progress | None = None) -> None:
        """Deliver one neutral reply, resuming after the parts already delivered; raises
        DeliveryError on failure. Telegram has no idempotency key: `dedupe_id` is unused."""
        bot = self.bot
        if bot is None:
            raise DeliveryError("telegram transport is not started")
        progress = progress or Progress()
        try:
            parts = await plan_parts(reply)
        except OSError as error:  # an attachment vanished from disk: retrying cannot help
            raise DeliveryError(f"attachment unreadable: {type(error).__name__}",
                                permanent=True) from error
        chat = chat_key(chat_id)
        for index in range(progress.start, len(parts)):
            try:
                async with progress.slot():
                    await send_part(bot, chat, parts[index])
            except Exception as error:
                mapped = delivery_error(error)
                if mapped is not None:
                    raise mapped from error
            if progress.after_part is not None:
                await progress.after_part(index + 1)

    async def _send_direct(self, chat_id: str, replies: Sequence[Reply]) -> None:
        """Replies that could not be queued (the database was away): one attempt each."""
        for reply in replies:
            await self.send(chat_id, reply)


def lane_key(raw: dict[str, Any]) -> tuple[str, int | str]:
    """The user an update belongs to, read from the raw update before anything else."""
    for kind in ("message", "callback_query", "edited_message"):
        body = raw.get(kind)
        if isinstance(body, dict):
            sender = body.get("from")
            if isinstance(sender, dict) and isinstance(sender.get("id"), int):
                return ("user", sender["id"])
    return ("other", 0)


async def get_updates(bot: Bot, offset: int, allowed: list[str]) -> list[dict[str, Any]]:
    """Raw updates, parsed one by one later: a single unreadable update must not stop the
    whole batch, and its content must not reach the log in an error message."""
    session = await bot.session.create_session()
    url = bot.session.api.api_url(token=bot.token, method="getUpdates")
    body = {"timeout": POLL_TIMEOUT, "allowed_updates": allowed}
    if offset:
        body["offset"] = offset
    timeout = aiohttp.ClientTimeout(total=POLL_TIMEOUT + 15)
    async with session.post(url, json=body, timeout=timeout) as response:
        try:
            data = await response.json(content_type=None)
        except ValueError:
            raise PollingError(f"HTTP {response.status}, not JSON") from None
    if not isinstance(data, dict) or not data.get("ok"):
        parameters = data.get("parameters") if isinstance(data, dict) else None
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        raise PollingError(f"HTTP {response.status}", retry_after=retry_after)
    result = data.get("result")
    return [raw for raw in result if isinstance(raw, dict)] if isinstance(result, list) else []


class PollingError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


def make_bot(settings: Settings) -> Bot:
    """A Bot in HTML parse mode, on the configured Bot API server (a local one in tests)."""
    token = settings.telegram_token
    if token is None:
        raise ValueError("MCU_TELEGRAM_TOKEN is not set")
    api_url = settings.telegram_api_url
    session = (AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url
               else AiohttpSession())
    return Bot(token.get_secret_value(), session=session,
               default=DefaultBotProperties(parse_mode=ParseMode.HTML))


async def fetch_username(settings: Settings) -> str | None:
    """The bot's @username, for CLI commands that run without the transport (invite links)."""
    bot = make_bot(settings)
    try:
        return (await bot.get_me()).username
    finally:
        await bot.session.close()


def _report_polling_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("telegram polling stopped: %s", type(task.exception()).__name__)


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
        await callback.answer(text=notice[:NOTICE_LIMIT] if notice else None)

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


# ---------------------------------------------------------------------------------------------
# Translation out


@dataclass
class Part:
    """One Bot API call of a rendered reply."""

    kind: Literal["text", "photo", "album", "location", "document"]
    html: str = ""
    photos: list[tuple[OutgoingPhoto, bytes]] = field(default_factory=list)
    location: Location | None = None
    document: tuple[str, bytes] | None = None
    markup: Markup | None = None


async def plan_parts(reply: Reply) -> list[Part]:
    """Order: photos, text, location, document.

    Telegram allows one reply_markup per message and none on albums. Inline buttons go on the
    last text message (or the last message that can carry them). A menu change (reply keyboard
    or its removal) rides alone on that message when there are no inline buttons; when there
    are, the menu goes on another message of the reply, or the text is cut in two at its last
    paragraph break (else after the title, else at the last line break): the menu with the
    head, the inline buttons with the tail, next to the question they answer. A one-line text
    with both keeps only the inline buttons; the menu comes back with the next menu reply.
    """
    inline = inline_keyboard(reply)
    keyboard = menu_keyboard(reply)
    parts: list[Part] = []
    loaded = [(photo, await asyncio.to_thread(photo.path.read_bytes)) for photo in reply.photos]
    for start in range(0, len(loaded), ALBUM_MAX):
        group = loaded[start:start + ALBUM_MAX]
        parts.append(Part("photo" if len(group) == 1 else "album", photos=group))
    text_parts = [Part("text", chunk) for chunk in
                  html_chunks(reply.text, title=reply.title, monospace=reply.monospace)]
    parts.extend(text_parts)
    if reply.location is not None:
        parts.append(Part("location", location=reply.location))
    if reply.document is not None:
        data = await asyncio.to_thread(reply.document.path.read_bytes)
        parts.append(Part("document", document=(reply.document.filename, data)))
    if not parts or (inline is None and keyboard is None):
        return parts
    capable = [p for p in parts if p.kind != "album"]
    if not capable:  # albums only: the buttons need a message of their own
        parts.append(Part("text", "⬆️"))
        capable = parts[-1:]
    texts = [p for p in capable if p.kind == "text"]
    holder = texts[-1] if texts else capable[-1]
    if inline is None or keyboard is None:
        holder.markup = inline or keyboard
        return parts
    holder.markup = inline
    others = [p for p in capable if p is not holder]
    if others:
        others[0].markup = keyboard
        return parts
    halves = head_and_tail(reply) if holder.kind == "text" else None
    if halves is not None:
        at = parts.index(holder)
        parts[at:at + 1] = [Part("text", halves[0], markup=keyboard),
                            Part("text", halves[1], markup=inline)]
    return parts


def head_and_tail(reply: Reply) -> tuple[str, str] | None:
    text = reply.text.strip()
    for separator in ("\n\n", "title", "\n"):
        if separator == "title":
            if reply.title and text:
                return render_html("", reply.title, False), render_html(text, None,
                                                                          reply.monospace)
            continue
        at = text.rfind(separator)
        if at > 0:
            head, tail = text[:at].rstrip(), text[at + len(separator):].lstrip()
            if head and tail:
                return (render_html(head, reply.title, reply.monospace),
                        render_html(tail, None, reply.monospace))
    return None


def inline_keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    rows = [[InlineKeyboardButton(text=b.text, url=b.url) if b.url
             else InlineKeyboardButton(text=b.text, callback_data=b.payload) for b in row]
            for row in reply.buttons if row]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def menu_keyboard(reply: Reply) -> ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    if reply.menu:
        rows = [[KeyboardButton(text=label) for label in row] for row in reply.menu if row]
        return ReplyKeyboardMarkup(keyboard=rows, resize_keyboard=True, is_persistent=True)
    if reply.remove_menu:
        return ReplyKeyboardRemove()
    return None


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def render_html(text: str, title: str | None, monospace: bool) -> str:
    body = escape(text)
    if monospace and text:
        body = f"<pre>{body}</pre>"
    if title:
        head = f"<b>{escape(title)}</b>"
        return f"{head}\n{body}" if body else head
    return body


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def html_chunks(text: str, *, title: str | None = None, monospace: bool = False,
                limit: int = TEXT_LIMIT) -> list[str]:
    """Escaped messages of at most `limit` UTF-16 units of markup, cut at line breaks.

    Cutting the plain text before escaping never splits an entity or a tag. The limit is
    applied to the markup, which is never shorter than what Telegram counts, so it is safe.
    """
    chunks: list[str] = []
    rest = text
    first = True
    while True:
        own_title = title if first else None
        whole = render_html(rest, own_title, monospace)
        if utf16_len(whole) <= limit:
            if rest.strip() or own_title:
                chunks.append(whole)
            return chunks
        overhead = (utf16_len(f"<b>{escape(own_title)}</b>\n") if own_title else 0) + (
            len("<pre></pre>") if monospace else 0)
        end, resume = cut_point(rest, max(limit - overhead, 8))
        piece = rest[:end]
        if piece.strip() or own_title:
            chunks.append(render_html(piece, own_title, monospace))
        rest = rest[resume:]
        first = False


def cut_point(text: str, budget: int) -> tuple[int, int]:
    """(end of this piece, start of the next) so that the escaped piece fits `budget`."""
    used = end = 0
    for char in text:
        cost = utf16_len(escape(char))
        if used + cost > budget:
            break
        used += cost
        end += 1
    window = text[:end]
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at >= end // 2 and at > 0:
            return at, at + len(separator)
    return end, end


def caption_html(caption: str | None) -> str | None:
    if not caption:
        return None
    rendered = escape(caption)
    if utf16_len(rendered) <= CAPTION_LIMIT:
        return rendered
    end, _ = cut_point(caption, CAPTION_LIMIT - 1)
    return escape(caption[:end].rstrip()) + "…"


async def send_part(bot: Bot, chat: int | str, part: Part) -> None:
    if part.kind == "text":
        await bot.send_message(chat, part.html, reply_markup=part.markup)
    elif part.kind == "photo":
        photo, data = part.photos[0]
        await bot.send_photo(chat, BufferedInputFile(data, photo.path.name),
                             caption=caption_html(photo.caption), reply_markup=part.markup)
    elif part.kind == "album":
        await bot.send_media_group(chat, [
            InputMediaPhoto(media=BufferedInputFile(data, photo.path.name),
                            caption=caption_html(photo.caption))
            for photo, data in part.photos])
    elif part.kind == "location":
        assert part.location is not None
        await bot.send_location(chat, part.location.latitude, part.location.longitude,
                                reply_markup=part.markup)
    else:
        assert part.document is not None
        filename, data = part.document
        await bot.send_document(chat, BufferedInputFile(data, filename),
                                reply_markup=part.markup)


def chat_key(chat_id: str) -> int | str:
    """Telegram chat ids are integers; '@channel' names stay strings."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


def delivery_error(error: BaseException) -> DeliveryError | None:
    """Map a library error to the outbox's terms; None means "nothing to retry"."""
    name = type(error).__name__
    if isinstance(error, TelegramRetryAfter):
        return DeliveryError(f"{name}: retry after {error.retry_after}s",
                             retry_after=error.retry_after)
    if isinstance(error, TelegramForbiddenError):
        return DeliveryError(f"{name}: {error.message}", blocked=True)
    if isinstance(error, TelegramMigrateToChat):
        # The group became a supergroup; its registration must be updated by a person.
        log.warning("telegram group migrated to chat %s", error.migrate_to_chat_id)
        return DeliveryError(f"{name}: migrated to {error.migrate_to_chat_id}", permanent=True)
    if isinstance(error, TelegramBadRequest):
        if "message is not modified" in error.message:
            return None
        return DeliveryError(f"{name}: {error.message}", permanent=True)
    if isinstance(error, TelegramNotFound | TelegramEntityTooLarge):
        return DeliveryError(f"{name}: {error.message}", permanent=True)
    if isinstance(error, TelegramAPIError | ClientDecodeError | aiohttp.ClientError
                  | TimeoutError):
        # Server errors, network errors, timeouts, a revoked token: worth another try later.
        return DeliveryError(name)
    raise error
