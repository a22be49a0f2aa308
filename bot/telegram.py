"""The Telegram transport: a thin translator between aiogram and the messenger-neutral core.

In: every message and callback query becomes an IncomingMessage / ButtonPress for `Core.handle`.
Out: every neutral `Reply` becomes Bot API calls (HTML parse mode, so plain text is escaped).
No decision about the dialog is taken here; the core owns all state.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
    TelegramObject,
    Update,
)

from bot.settings import Settings
from handlers.core import Core
from handlers.events import (
    ButtonPress,
    ChatRef,
    DeliveryError,
    Event,
    IncomingDocument,
    IncomingMessage,
    IncomingPhoto,
    Location,
    OutgoingPhoto,
    Platform,
    Reply,
    Response,
    Unsupported,
    UserRef,
)
from handlers.i18n import translator

log = logging.getLogger(__name__)

TEXT_LIMIT = 4096  # Bot API: message text, after entity parsing
CAPTION_LIMIT = 1024
NOTICE_LIMIT = 200  # answerCallbackQuery text
ALBUM_MAX = 10  # sendMediaGroup takes 2–10 items
PHOTO_MAX_BYTES = 10 * 1024 * 1024
DOCUMENT_MAX_BYTES = 20 * 1024 * 1024
DIRECT_RETRY_MAX_WAIT = 5.0  # a direct reply waits out a short 429 once, never longer
STOP_GRACE = 10.0  # seconds granted to in-flight handlers on stop()

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

    def __init__(self, settings: Settings, core: Core) -> None:
        if settings.telegram_token is None:
            raise ValueError("MCU_TELEGRAM_TOKEN is not set")
        self.settings = settings
        self.core = core
        self.username: str | None = None
        self.bot: Bot | None = None
        # Built here (not in start) so tests and the wiring can add middlewares beforehand.
        # FSM is off: the dialog state lives in the core's database, not in aiogram.
        self.dp = Dispatcher(disable_fsm=True, core=core, transport=self)
        self.dp.include_router(build_router())
        self.dp.update.outer_middleware(self._track_in_flight)
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._polling: asyncio.Task[None] | None = None
        self._turns: dict[int, _UserTurns] = {}

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
        self._polling = asyncio.create_task(
            self.dp.start_polling(bot, handle_signals=False, close_bot_session=False,
                                  allowed_updates=self.dp.resolve_used_update_types()),
            name="telegram-polling")
        self._polling.add_done_callback(_report_polling_end)
        log.info("telegram polling started for @%s", self.username)

    async def stop(self) -> None:
        if self._polling is not None:
            if not self._polling.done():
                try:
                    await self.dp.stop_polling()
                except RuntimeError:  # stopped before the task even began polling
                    self._polling.cancel()
            await asyncio.wait([self._polling])  # its failure, if any, was already logged
            self._polling = None
        if self._in_flight:
            # Let handlers that are mid-turn send their replies before the session closes.
            await asyncio.wait(set(self._in_flight), timeout=STOP_GRACE)
        if self.bot is not None:
            await self.bot.session.close()
            self.bot = None

    async def _track_in_flight(self, handler: Callable[[TelegramObject, dict[str, Any]],
                                                       Awaitable[Any]],
                               event: TelegramObject, data: dict[str, Any]) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            return await handler(event, data)
        finally:
            if task is not None:
                self._in_flight.discard(task)

    @contextlib.asynccontextmanager
    async def in_order(self, user_id: int) -> AsyncIterator[None]:
        """One update per user at a time, in arrival order, from download to the last reply.

        aiogram runs updates as concurrent tasks: without this a text could overtake a photo
        that is still downloading, and the replies of two turns could interleave in the chat.
        """
        turns = self._turns.setdefault(user_id, _UserTurns())
        turns.waiting += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.waiting -= 1
            if not turns.waiting:
                del self._turns[user_id]

    # -- out ---------------------------------------------------------------------------------

    async def send(self, chat_id: str, reply: Reply, *, dedupe_id: int | None = None) -> None:
        """Deliver one neutral reply; raises DeliveryError on failure (used by the outbox).
        Telegram has no idempotency key, so `dedupe_id` is not used here."""
        bot = self.bot
        if bot is None:
            raise DeliveryError("telegram transport is not started")
        try:
            parts = await plan_parts(reply)
        except OSError as error:  # an attachment vanished from disk: retrying cannot help
            raise DeliveryError(f"attachment unreadable: {type(error).__name__}",
                                permanent=True) from error
        chat = chat_key(chat_id)
        try:
            for part in parts:
                await send_part(bot, chat, part)
        except Exception as error:
            mapped = delivery_error(error)
            if mapped is None:
                return
            raise mapped from error

    async def answer(self, chat_id: int, response: Response) -> None:
        """Render the core's replies into the chat the event came from; never raises."""
        for reply in response.replies:
            try:
                await self._send_direct(str(chat_id), reply)
            except DeliveryError as error:
                log.warning("telegram reply to chat %s not delivered (%s)", chat_id,
                            type(error.__cause__ or error).__name__)
                if error.blocked:
                    return
            except Exception:  # a rendering bug must not kill the update handler
                log.exception("telegram reply to chat %s failed", chat_id)

    async def _send_direct(self, chat_id: str, reply: Reply) -> None:
        """A direct reply has no outbox row to retry later: wait out a short 429 once."""
        try:
            await self.send(chat_id, reply)
        except DeliveryError as error:
            if error.retry_after is None or error.retry_after > DIRECT_RETRY_MAX_WAIT:
                raise
            await asyncio.sleep(error.retry_after)
            await self.send(chat_id, reply)

    async def remove_buttons(self, message: Message) -> None:
        """Response.edit_source: take the inline keyboard off the message that was pressed."""
        if self.bot is None or message.reply_markup is None:
            return
        try:
            await self.bot.edit_message_reply_markup(chat_id=message.chat.id,
                                                     message_id=message.message_id,
                                                     reply_markup=None)
        except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as error:
            # "message is not modified" or a message too old to edit: the keyboard is harmless.
            log.info("could not remove buttons in chat %s (%s)", message.chat.id,
                     type(error).__name__)

    # -- in ----------------------------------------------------------------------------------

    async def download_photo(self, bot: Bot, sizes: Sequence[PhotoSize]) -> IncomingPhoto | None:
        """The largest size under the cap; None when it cannot be fetched."""
        fitting = [s for s in sizes if s.file_size is None or s.file_size <= PHOTO_MAX_BYTES]
        if not fitting:
            return None
        best = max(fitting, key=lambda s: s.width * s.height)
        try:
            buffer = await bot.download(best.file_id)
        except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as error:
            log.warning("telegram photo download failed (%s)", type(error).__name__)
            return None
        data = buffer.read() if buffer is not None else b""
        if not data or len(data) > PHOTO_MAX_BYTES:
            return None
        return IncomingPhoto(data, width=best.width, height=best.height, source_id=best.file_id)


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


@dataclass
class _UserTurns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


def _report_polling_end(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("telegram polling stopped: %s", type(task.exception()).__name__)


# ---------------------------------------------------------------------------------------------
# Router: two short handlers, dependencies injected by parameter name from the Dispatcher.


def build_router() -> Router:
    router = Router(name="telegram-transport")
    router.message.register(relay_message, F.from_user)
    router.callback_query.register(relay_button, F.data, F.from_user)
    return router


async def relay_message(message: Message, event_update: Update, bot: Bot, core: Core,
                        transport: TelegramTransport) -> None:
    assert message.from_user is not None  # the router's filter
    async with transport.in_order(message.from_user.id):
        photo: IncomingPhoto | None = None
        if message.photo:
            photo = await transport.download_photo(bot, message.photo)
            if photo is None:
                t = translator(message.from_user.language_code)
                await transport.answer(message.chat.id, Response([Reply(t("error.temporary"))]))
                return
        event = message_event(message, str(event_update.update_id), photo)
        if event is None:
            return
        if message.document is not None:
            event = replace(event, document=document_of(bot, message.document))
        response = await ask(core, event)
        await transport.answer(message.chat.id, response)


async def relay_button(callback: CallbackQuery, event_update: Update, core: Core,
                       transport: TelegramTransport) -> None:
    event = button_event(callback, str(event_update.update_id))
    async with transport.in_order(callback.from_user.id):
        notice: str | None = None
        try:
            response = await ask(core, event)
            notice = response.notice
        finally:
            # Always answer, so the client's spinner stops even if everything else fails.
            try:
                await callback.answer(text=notice[:NOTICE_LIMIT] if notice else None)
            except (TelegramAPIError, aiohttp.ClientError, TimeoutError) as error:
                log.info("callback answer failed (%s)", type(error).__name__)
        if response.edit_source and isinstance(callback.message, Message):
            await transport.remove_buttons(callback.message)
        await transport.answer(int(event.chat.chat_id), response)


async def ask(core: Core, event: Event) -> Response:
    """The core's answer; a bug in the core gets a polite "try again" instead of silence."""
    try:
        return await core.handle(event)
    except Exception:
        log.exception("core failed on telegram update %s", event.update_key)
        if not event.is_private:
            return Response()
        return Response([Reply(translator(event.language_code)("error.temporary"))])


# ---------------------------------------------------------------------------------------------
# Translation in


def message_event(message: Message, update_key: str,
                  photo: IncomingPhoto | None = None) -> IncomingMessage | None:
    """The neutral event for a message, or None for what nobody should answer."""
    user = message.from_user
    if user is None:
        return None
    is_private = message.chat.type == "private"
    kind = message.content_type
    text: str | None = message.text or message.caption
    location: Location | None = None
    unsupported: Unsupported | None = None
    if message.location is not None:
        # A venue carries a location too: "this place" is what the citizen means.
        location = Location(message.location.latitude, message.location.longitude)
    elif photo is None and not message.text:
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
        photos=(photo,) if photo is not None else (),
        location=location,
        unsupported=unsupported,
        display_name=user.full_name,
        language_code=user.language_code,
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
