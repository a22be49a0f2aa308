"""In-process fake of the Telegram Bot API for tests.

The bot under test talks to it over real HTTP, so aiogram's session, request
serialisation (form / multipart / ``attach://``), error mapping and long polling
are all exercised exactly as in production.  Everything lives on the instance:
several servers can run side by side in one event loop.

Typical use::

    async with FakeTelegramServer() as tg:
        bot = tg.make_bot()               # or Bot(..., session=AiohttpSession(api=...))
        tg.user_message(42, "/start")
        record = await tg.wait_for(lambda r: r.method == "sendMessage")

All injection / inspection helpers are synchronous and must be called from the
event loop thread that runs the server (the usual case inside an async test).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import html
import json
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiohttp
from aiohttp import web
from aiohttp.web_request import FileField

if TYPE_CHECKING:
    from types import TracebackType

    from aiogram import Bot
    from aiogram.client.telegram import TelegramAPIServer

__all__ = ["FailWindow", "FakeTelegramServer", "MediaItem", "SentRecord", "WebhookPost"]

JsonDict = dict[str, Any]
T = TypeVar("T")

DEFAULT_MAX_UPLOAD = 50 * 1024 * 1024  # Bot API limit for multipart uploads
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
CALLBACK_DATA_LIMIT = 64

# Form values arrive as strings; only these keys are decoded, so user text that
# happens to look like JSON or a number is never mangled.
_JSON_PARAMS = frozenset(
    {
        "reply_markup",
        "media",
        "entities",
        "caption_entities",
        "commands",
        "scope",
        "allowed_updates",
        "reply_parameters",
        "link_preview_options",
        "message_ids",
    }
)
_INT_PARAMS = frozenset(
    {
        "message_id",
        "offset",
        "limit",
        "from_chat_id",
        "user_id",
        "message_thread_id",
        "cache_time",
        "reply_to_message_id",
        "live_period",
        "heading",
        "proximity_alert_radius",
    }
)
_FLOAT_PARAMS = frozenset({"latitude", "longitude", "horizontal_accuracy", "timeout"})
_BOOL_PARAMS = frozenset(
    {
        "show_alert",
        "disable_notification",
        "protect_content",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "disable_content_type_detection",
        "has_spoiler",
        "show_caption_above_media",
    }
)

# Tags accepted by Telegram's HTML parse mode; anything else is a 400.
_HTML_TAGS = frozenset(
    {
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    }
)
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)(?:\s[^<>]*)?\s*/?>")
_ANY_TAG_RE = re.compile(r"<[^<>]*>")
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_MESSAGE_METHOD_RE = re.compile(r"^(send(?!ChatAction)|edit|delete(?!Webhook))")

_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply "
    "markup are exactly the same as a current content and reply markup of the message"
)
_DEFAULT_ERRORS: dict[int, str] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}

_FILE_FOLDERS: dict[str, tuple[str, str]] = {
    # kind -> (folder in file_path, default extension)
    "photo": ("photos", ".jpg"),
    "document": ("documents", ".bin"),
    "video": ("videos", ".mp4"),
    "audio": ("music", ".mp3"),
    "voice": ("voice", ".oga"),
    "video_note": ("video_notes", ".mp4"),
    "sticker": ("stickers", ".webp"),
}


# --------------------------------------------------------------------------- records


@dataclass
class MediaItem:
    """One element of a recorded ``sendMediaGroup`` call."""

    type: str
    media: str  # reference as sent: "attach://<part>", a file_id or a URL
    data: bytes | None  # uploaded bytes, or stored bytes for a known file_id
    filename: str | None = None
    caption: str | None = None
    parse_mode: str | None = None


@dataclass
class SentRecord:
    """One API call made by the bot (successful ones in ``sent``, errors in ``failed``)."""

    method: str
    params: JsonDict  # all decoded request parameters (uploads excluded)
    chat_id: int | str | None = None
    message_id: int | None = None  # new message id for send*, target id for edit*/delete*
    text: str | None = None  # raw text as sent (HTML tags included)
    caption: str | None = None
    parse_mode: str | None = None
    reply_markup: JsonDict | None = None
    photo: bytes | str | None = None  # bytes when uploaded, else file_id / URL
    document: bytes | str | None = None
    filename: str | None = None  # upload filename for photo / document
    media: list[MediaItem] = field(default_factory=list)
    latitude: float | None = None
    longitude: float | None = None
    callback_query_id: str | None = None
    result: Any = None  # JSON "result" returned to the bot
    error_code: int | None = None
    description: str | None = None
    timestamp: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return self.error_code is None

    @property
    def body(self) -> str | None:
        """Text or caption, whichever the call carried."""
        return self.text if self.text is not None else self.caption


# --------------------------------------------------------------------------- internals


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: JsonDict | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def payload(self) -> JsonDict:
        data: JsonDict = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            data["parameters"] = self.parameters
        return data


@dataclass
class _Upload:
    data: bytes
    filename: str | None
    content_type: str | None


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    file_path: str
    data: bytes
    kind: str
    file_name: str | None = None
    mime_type: str | None = None


@dataclass
class _StoredMessage:
    message: JsonDict
    raw_text: str | None = None  # as sent, to detect "message is not modified"
    parse_mode: str | None = None


@dataclass
class _Pending:
    update: JsonDict
    delivered: bool = False
    posting: bool = False  # webhook mode: a POST of it is under way


@dataclass
class WebhookPost:
    """One attempt to deliver an update to the webhook."""

    update_id: int
    url: str
    status: int | None  # None: no HTTP answer (connection refused, reset, timeout)
    started: float
    finished: float


@dataclass
class _FailRule:
    method: str | None
    status: int
    retry_after: int
    remaining: int
    description: str | None
    chat_id: int | str | None = None  # None: any chat

    def error(self) -> _ApiError:
        if self.status == HTTPStatus.TOO_MANY_REQUESTS:
            return _ApiError(
                self.status,
                self.description or f"Too Many Requests: retry after {self.retry_after}",
                {"retry_after": self.retry_after},
            )
        default = _DEFAULT_ERRORS.get(self.status) or HTTPStatus(self.status).phrase
        return _ApiError(self.status, self.description or default)


@dataclass(eq=False)
class FailWindow:
    """A time window in which the fake answers every matching call with one error.

    Created by ``FakeTelegramServer.fail_for``. It starts at once, or, with ``once_delivered``,
    the moment getUpdates hands out the last of those updates (so a test can cut the API off
    right after the bot received a batch, with no race). It ends after ``seconds`` or when
    ``end()`` is called, whichever comes first.
    """

    status: int
    retry_after: int
    methods: frozenset[str] | None  # lower-case names; None: every method, getUpdates included
    seconds: float | None
    description: str | None
    once_delivered: frozenset[int] | None = None
    started_at: float | None = None  # time.monotonic()
    ended_at: float | None = None
    failures: int = 0  # calls answered with the error

    def start(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()

    def end(self) -> None:
        if self.started_at is None:
            self.started_at = time.monotonic()
        if self.ended_at is None or self.ended_at > time.monotonic():
            self.ended_at = time.monotonic()

    @property
    def started(self) -> bool:
        return self.started_at is not None

    def active(self, now: float | None = None) -> bool:
        if self.started_at is None:
            return False
        now = time.monotonic() if now is None else now
        if self.seconds is not None and now >= self.started_at + self.seconds:
            return False
        return self.ended_at is None or now < self.ended_at

    @property
    def finished(self) -> bool:
        return self.started and not self.active()

    @property
    def duration(self) -> float | None:
        """How long the window lasted (or has lasted so far)."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        if self.seconds is not None:
            end = min(end, self.started_at + self.seconds)
        return end - self.started_at

    def matches(self, method: str) -> bool:
        return self.methods is None or method.lower() in self.methods

    def error(self) -> _ApiError:
        self.failures += 1
        return _FailRule(None, self.status, self.retry_after, 1, self.description).error()


def _coerce_value(key: str, value: str) -> Any:
    try:
        if key in _JSON_PARAMS:
            return json.loads(value)
        if key == "chat_id":
            return int(value) if re.fullmatch(r"-?\d+", value) else value
        if key in _INT_PARAMS:
            return int(value)
        if key in _FLOAT_PARAMS:
            return float(value)
    except ValueError as exc:
        raise _ApiError(400, f"Bad Request: can't parse parameter {key}") from exc
    if key in _BOOL_PARAMS:
        return value.lower() in {"true", "1"}
    return value


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _html_error(text: str) -> str | None:
    """Return Telegram-style parse error for HTML parse mode, or None if valid."""
    stack: list[str] = []
    pos = 0
    while (start := text.find("<", pos)) != -1:
        offset = len(text[:start].encode())
        match = _TAG_RE.match(text, start)
        if match is None:
            return f'Unsupported start tag "" at byte offset {offset}'
        closing, name = match.group(1) == "/", match.group(2).lower()
        if name not in _HTML_TAGS:
            kind = "end" if closing else "start"
            return f'Unsupported {kind} tag "{name}" at byte offset {offset}'
        if closing:
            if not stack:
                return f"Unexpected end tag at byte offset {offset}"
            if stack[-1] != name:
                return (
                    f'Unmatched end tag at byte offset {offset}, expected "</{stack[-1]}>", '
                    f'found "</{name}>"'
                )
            stack.pop()
        else:
            stack.append(name)
        pos = match.end()
    if stack:
        return f'Can\'t find end tag corresponding to start tag "{stack[-1]}"'
    return None


def _inline_markup(markup: Any) -> JsonDict | None:
    """Telegram echoes only inline keyboards inside Message objects."""
    if isinstance(markup, dict) and "inline_keyboard" in markup:
        return copy.deepcopy(markup)
    return None


def _callback_datas(message: JsonDict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard") or []
    return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


def _update_type(update: JsonDict) -> str:
    return next((key for key in update if key != "update_id"), "")


def _update_chat(update: JsonDict) -> Any:
    """The chat an update belongs to (Telegram keeps each chat's webhook updates in order)."""
    body = update.get(_update_type(update))
    if isinstance(body, dict):
        message = body.get("message") if _update_type(update) == "callback_query" else body
        if isinstance(message, dict) and isinstance(message.get("chat"), dict):
            return message["chat"].get("id")
        sender = body.get("from")
        if isinstance(sender, dict):
            return sender.get("id")
    return None


# --------------------------------------------------------------------------- server


class FakeTelegramServer:
    """A local Bot API server: records outbound calls, serves injected updates."""

    def __init__(
        self,
        *,
        username: str = "mcu_okha_bot",
        bot_id: int = 1000,
        first_name: str = "МЦУ Оха",
        token: str | None = None,
        host: str = "127.0.0.1",
        max_upload_size: int = DEFAULT_MAX_UPLOAD,
        validate_html: bool = True,
        first_update_id: int = 1,
        max_per_second: int | None = None,
    ) -> None:
        self.username = username
        self.bot_id = bot_id
        self.first_name = first_name
        # None = accept any token; otherwise other tokens get 401 like the real API.
        self._required_token = token
        self.token = token or f"{bot_id}:FAKE-TEST-TOKEN"
        self._host = host
        self._max_upload_size = max_upload_size
        self.validate_html = validate_html

        self.sent: list[SentRecord] = []
        self.failed: list[SentRecord] = []
        self.delivered: list[int] = []  # update_ids in the order handed to getUpdates
        self.downloads: list[str] = []  # file_paths fetched via /file/
        self.commands: dict[tuple[str, str], list[JsonDict]] = {}  # (scope, lang) -> commands
        self.internal_errors: list[BaseException] = []  # bugs in the fake itself
        self.get_updates_calls = 0
        self.conflicts = 0  # long polls ended by a newer getUpdates (two pollers at once)
        self.injected: dict[int, JsonDict] = {}  # update_id -> the update as first queued

        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._closing = False

        self._last_update_id = first_update_id - 1
        self._pending: list[_Pending] = []
        self._allowed_updates: set[str] | None = None
        self._poll_generation = 0
        self._waiting_polls = 0
        # Replaced (not cleared) on every change so each waiter sees the wake-up.
        self._updates_event = asyncio.Event()
        self._activity_event = asyncio.Event()

        self._fail_rules: list[_FailRule] = []
        self._fail_windows: list[FailWindow] = []
        self._sent_callbacks: list[Callable[[SentRecord], None]] = []
        self._poll_callbacks: list[Callable[[JsonDict], None]] = []
        self._blocked: set[int | str] = set()
        # Telegram's total limit, when a test asks for it (``rate_limit``).
        self._rate_limit: int | None = None
        self._rate_retry_after = 1
        self._rate_stamps: collections.deque[float] = collections.deque()
        self.rate_limited = 0  # calls answered 429 by the rate limit
        if max_per_second is not None:  # Telegram's per-bot limit from the start
            self.rate_limit(max_per_second)

        self._files_by_id: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._photo_sizes: dict[str, list[JsonDict]] = {}  # any size's file_id -> all sizes
        self._file_counter = 0

        self._users: dict[int, JsonDict] = {}
        self._chats: dict[int, JsonDict] = {}
        self._username_chats: dict[str, int] = {}
        self._message_counters: dict[int, int] = {}
        self._messages: dict[tuple[int, int], _StoredMessage] = {}
        self._callback_ids: set[str] = set()
        self._callback_counter = 0
        self._media_group_counter = 0

        # Webhook mode (setWebhook): updates are POSTed instead of served to getUpdates.
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.webhook_max_connections = 40
        self.webhook_posts: list[WebhookPost] = []
        self.webhook_retry_delay = 0.2  # first pause before re-sending an unanswered update
        self.webhook_timeout = 60.0  # seconds Telegram waits for the answer
        self._spread: list[str] | None = None
        self._spread_next = 0
        self._pusher: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._in_flight_chats: set[Any] = set()
        self._retry_at: dict[Any, float] = {}  # chat -> monotonic time of its next attempt
        self._failures: dict[int, int] = {}  # update_id -> failed attempts in a row
        self._open = asyncio.Event()  # cleared by hold(): API calls wait before anything
        self._open.set()

        self._handlers: dict[str, Callable[[JsonDict, dict[str, _Upload], SentRecord], Any]] = {
            "getMe": self._get_me,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendMediaGroup": self._send_media_group,
            "sendLocation": self._send_location,
            "sendDocument": self._send_document,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "getChat": self._get_chat,
        }
        # Bot API method names are case-insensitive.
        self._canonical = {name.lower(): name for name in [*self._handlers, "getUpdates"]}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        app = web.Application(client_max_size=self._max_upload_size)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_file)
        # handler_cancellation: a long poll whose client went away must not later
        # "deliver" updates into a dead socket.
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, self._host, 0)
        await site.start()
        self._runner = runner
        self._closing = False
        port = runner.addresses[0][1]
        self._base_url = f"http://{self._host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        # Release parked long polls first so cleanup doesn't wait for their timeout.
        self._closing = True
        self._wake_pollers()
        await self._stop_pusher()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeTelegramServer is not started")
        return self._base_url

    @property
    def api_server(self) -> TelegramAPIServer:
        from aiogram.client.telegram import TelegramAPIServer

        return TelegramAPIServer.from_base(self.base_url)

    def make_bot(self, **bot_kwargs: Any) -> Bot:
        """A real aiogram Bot wired to this server; the caller closes its session."""
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession

        return Bot(token=self.token, session=AiohttpSession(api=self.api_server), **bot_kwargs)

    # ------------------------------------------------------------------ inspection

    def messages_to(self, chat_id: int | str) -> list[SentRecord]:
        """Successful send*/edit*/delete* calls for a chat (chat actions excluded)."""
        return [
            r
            for r in self.sent
            if r.chat_id == chat_id and _MESSAGE_METHOD_RE.match(r.method) is not None
        ]

    def calls(self, method: str) -> list[SentRecord]:
        return [r for r in self.sent if r.method.lower() == method.lower()]

    def clear_records(self) -> None:
        self.sent.clear()
        self.failed.clear()

    async def wait_for(
        self,
        predicate: Callable[[SentRecord], bool] | None = None,
        timeout: float = 5,
        *,
        since: int = 0,
    ) -> SentRecord:
        """First record in ``sent[since:]`` matching ``predicate`` (waits if none yet)."""

        def find() -> SentRecord | None:
            return next((r for r in self.sent[since:] if predicate is None or predicate(r)), None)

        def describe() -> str:
            seen = [(r.method, r.chat_id, r.body) for r in self.sent[since:]]
            return f"no matching sent record within {timeout}s; sent: {seen}"

        return await self._wait_until(find, timeout, describe)

    async def wait_polling(self, timeout: float = 5) -> None:
        """Wait until a getUpdates long poll is parked, i.e. all pending updates were taken."""

        def parked() -> bool | None:
            return True if self._waiting_polls > 0 else None

        await self._wait_until(parked, timeout, lambda: f"no long poll parked within {timeout}s")

    def file_bytes(self, file_id: str) -> bytes:
        return self._files_by_id[file_id].data

    def add_file(
        self,
        data: bytes,
        *,
        kind: str = "document",
        filename: str | None = None,
        mime_type: str | None = None,
    ) -> str:
        """Store a file the bot may reference by file_id; returns that file_id."""
        return self._store_file(data, kind, filename, mime_type).file_id

    # ------------------------------------------------------------------ failure injection

    def fail_next(
        self,
        method: str | None = None,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        description: str | None = None,
        chat_id: int | str | None = None,
    ) -> None:
        """Answer the next ``times`` calls with an error.

        ``method=None`` matches any method except getUpdates (the poller would
        otherwise swallow the failure at random); ``chat_id`` narrows the rule to
        calls for that chat.
        """
        self._fail_rules.append(
            _FailRule(method, status, retry_after, times, description, chat_id)
        )

    def on_get_updates(self, callback: Callable[[JsonDict], None]) -> None:
        """Call ``callback(params)`` when a getUpdates request arrives, before it confirms
        anything (its ``offset`` says which updates the bot considers handled)."""
        self._poll_callbacks.append(callback)

    def on_sent(self, callback: Callable[[SentRecord], None]) -> None:
        """Call ``callback(record)`` right after each successful call is recorded, before the
        bot gets its answer: a test can arm a failure exactly between two calls."""
        self._sent_callbacks.append(callback)

    def fail_for(
        self,
        seconds: float | None = None,
        *,
        status: int = 500,
        retry_after: int = 1,
        methods: str | list[str] | None = None,
        description: str | None = None,
        once_delivered: list[int] | None = None,
    ) -> FailWindow:
        """Answer EVERY call (getUpdates included, unless ``methods`` narrows it) with
        ``status`` for ``seconds`` (None: until ``end()`` / ``end_failures()``).

        A 429 carries ``retry_after``. A long poll parked when the window opens answers with
        the error as soon as it would return, as a server that went down would. With
        ``once_delivered=[update_ids]`` the window opens the moment the last of them was
        handed out by getUpdates: the bot has the updates, and then the API is gone.
        """
        if isinstance(methods, str):
            methods = [methods]
        window = FailWindow(
            status=status,
            retry_after=retry_after,
            methods=frozenset(m.lower() for m in methods) if methods is not None else None,
            seconds=seconds,
            description=description,
            once_delivered=frozenset(once_delivered) if once_delivered is not None else None,
        )
        self._fail_windows.append(window)
        if window.once_delivered is None or window.once_delivered <= set(self.delivered):
            self._open_window(window)
        return window

    def hold(self) -> None:
        """Hold every API call (getUpdates excepted) before it is handled or recorded, until
        ``release()``: a test can freeze the bots' sending, then act (kill a process) at a
        moment when no call is half done."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def end_failures(self) -> None:
        """End every fail window now (``fail_next`` rules are left alone)."""
        for window in self._fail_windows:
            window.end()
        self._notify_activity()

    def rate_limit(self, per_second: int | None = 30, *, retry_after: int = 1) -> None:
        """Answer 429 (``retry_after``) to a message call (send*, edit*, delete*) that would
        be the ``per_second + 1``-th accepted in any one-second window, as Telegram does past
        its ~30 messages a second; None turns it off. Refused calls are not counted."""
        self._rate_limit = per_second
        self._rate_retry_after = retry_after
        self._rate_stamps.clear()

    def _rate_error(self, method: str) -> _ApiError | None:
        if self._rate_limit is None or _MESSAGE_METHOD_RE.match(method) is None:
            return None
        now = time.monotonic()
        while self._rate_stamps and self._rate_stamps[0] <= now - 1.0:
            self._rate_stamps.popleft()
        if len(self._rate_stamps) >= self._rate_limit:
            self.rate_limited += 1
            return _FailRule(None, HTTPStatus.TOO_MANY_REQUESTS, self._rate_retry_after, 1,
                             None).error()
        self._rate_stamps.append(now)
        return None

    def block_user(self, chat_id: int | str) -> None:
        self._blocked.add(chat_id)

    def unblock_user(self, chat_id: int | str) -> None:
        self._blocked.discard(chat_id)

    # ------------------------------------------------------------------ update injection

    def user_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Ivan",
        language_code: str = "ru",
        photo: bytes | None = None,
        location: tuple[float, float] | None = None,
        sticker: bool | bytes = False,
        voice: bool | bytes = False,
        video_note: bool | bytes = False,
        document: bool | bytes = False,
        contact: bool = False,
        poll: bool = False,
        update_id: int | None = None,
    ) -> int:
        """Inject a ``message`` update from a user; returns its update_id."""
        user = self._remember_user(user_id, first_name, language_code)
        chat_id = user_id if chat_id is None else chat_id
        chat: JsonDict = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = f"Test {chat_type} {chat_id}"
        self._chats[chat_id] = chat

        message: JsonDict = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": dict(chat),
            "from": dict(user),
        }
        media: JsonDict = {}
        if photo is not None:
            media["photo"] = self._store_photo(photo)
        if location is not None:
            media["location"] = {"latitude": location[0], "longitude": location[1]}
        if sticker is not False:
            f = self._store_file(self._payload(sticker, b"RIFF fake webp"), "sticker")
            media["sticker"] = {
                **self._file_ref(f),
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "👍",
            }
        if voice is not False:
            data = self._payload(voice, b"OggS fake voice")
            f = self._store_file(data, "voice", None, "audio/ogg")
            media["voice"] = {**self._file_ref(f), "duration": 3, "mime_type": "audio/ogg"}
        if video_note is not False:
            f = self._store_file(self._payload(video_note, b"fake mp4"), "video_note")
            media["video_note"] = {**self._file_ref(f), "length": 240, "duration": 5}
        if document is not False:
            f = self._store_file(
                self._payload(document, b"%PDF-1.4 fake"), "document", "document.pdf"
            )
            media["document"] = {
                **self._file_ref(f),
                "file_name": f.file_name,
                "mime_type": f.mime_type,
            }
        if contact:
            media["contact"] = {
                "phone_number": "+79990000000",
                "first_name": first_name,
                "user_id": user_id,
            }
        if poll:
            media["poll"] = {
                "id": f"poll{self._last_update_id + 1}",
                "question": text or "Опрос?",
                "options": [
                    {"persistent_id": "0", "text": "Да", "voter_count": 0},
                    {"persistent_id": "1", "text": "Нет", "voter_count": 0},
                ],
                "total_voter_count": 0,
                "is_closed": False,
                "is_anonymous": True,
                "type": "regular",
                "allows_multiple_answers": False,
                "allows_revoting": False,
                "members_only": False,
            }
        if len(media) > 1:
            raise ValueError(f"one content kind per message, got {sorted(media)}")
        if not media and text is None:
            raise ValueError("user_message needs text or a content kind")
        message.update(media)
        if text is not None and not poll:
            if media:
                message["caption"] = text
            else:
                message["text"] = text
                if text.startswith("/"):
                    command = text.split(maxsplit=1)[0]
                    message["entities"] = [
                        {"type": "bot_command", "offset": 0, "length": _utf16_len(command)}
                    ]
        self._messages[(chat_id, message["message_id"])] = _StoredMessage(message)
        return self._enqueue({"message": message}, update_id)

    def press_button(
        self,
        user_id: int,
        data: str,
        *,
        message_id: int | None = None,
        chat_id: int | None = None,
        update_id: int | None = None,
    ) -> int:
        """Inject a ``callback_query`` update; returns its update_id.

        The attached message is the bot message ``message_id`` (KeyError if unknown);
        by default the newest bot message in the chat whose keyboard has ``data``,
        else the newest with any inline keyboard, else the newest bot message, else
        a stub bot message created on the fly so edits still work.
        """
        user = self._remember_user(user_id)
        chat = self._chat(user_id if chat_id is None else chat_id)
        stored = self._find_button_message(chat["id"], data, message_id)
        if stored is None:
            keyboard = {"inline_keyboard": [[{"text": data, "callback_data": data}]]}
            stored = self._new_bot_message(chat["id"], {"text": "…"}, keyboard)
        self._callback_counter += 1
        query_id = f"{self.bot_id}{self._callback_counter:08d}"
        self._callback_ids.add(query_id)
        query = {
            "id": query_id,
            "from": dict(user),
            "chat_instance": f"ci{chat['id']}",
            "data": data,
            "message": copy.deepcopy(stored.message),
        }
        return self._enqueue({"callback_query": query}, update_id)

    def inject_raw(self, update: JsonDict) -> int:
        """Queue an arbitrary update dict (assigns update_id if missing); returns update_id.

        An update re-injected with an already delivered update_id is delivered again
        (to test duplicate delivery), regardless of the poller's offset.
        """
        update = copy.deepcopy(update)
        update_id = update.pop("update_id", None)
        query = update.get("callback_query")
        if isinstance(query, dict):
            if "id" in query:
                self._callback_ids.add(str(query["id"]))
            msg = query.get("message")
            if isinstance(msg, dict) and "chat" in msg and "message_id" in msg:
                key = (msg["chat"]["id"], msg["message_id"])
                self._messages.setdefault(key, _StoredMessage(copy.deepcopy(msg), msg.get("text")))
        for value in update.values():
            if isinstance(value, dict) and isinstance(value.get("chat"), dict):
                self._chats.setdefault(value["chat"]["id"], dict(value["chat"]))
        return self._enqueue(update, update_id)

    def redeliver(self, update_id: int) -> int:
        """Queue an already injected update again, with the same update_id (Telegram may
        deliver an update twice, e.g. when the bot died before confirming it)."""
        return self.inject_raw(self.injected[update_id])

    # ------------------------------------------------------------------ HTTP layer

    async def _handle_api(self, request: web.Request) -> web.Response:
        if self._required_token is not None and request.match_info["token"] != self._required_token:
            return self._error_response(_ApiError(401, "Unauthorized"))
        raw_method = request.match_info["method"]
        method = self._canonical.get(raw_method.lower())
        try:
            params, files = await self._read_params(request)
        except _ApiError as exc:
            if method is not None:
                return self._fail(SentRecord(raw_method, {}), exc)
            params, files = {}, {}

        if method == "getUpdates":
            rule_error = self._window_error(method) or self._take_fail_rule(method)
            if rule_error is None and self.webhook_url is not None:
                rule_error = _ApiError(409, "Conflict: can't use getUpdates method while "
                                       "webhook is active; use deleteWebhook to delete the "
                                       "webhook first")
            if rule_error is not None:
                return self._fail(SentRecord(method, params), rule_error)
            return await self._get_updates(params)

        if not self._open.is_set():
            await self._open.wait()
        record = self._new_record(method or raw_method, params)
        try:
            if method is None:
                raise _ApiError(404, "Not Found: method not found")
            error = (
                self._window_error(method)
                or self._take_fail_rule(method, record.chat_id)
                or self._blocked_error(method, record)
                or self._rate_error(method)
            )
            if error is not None:
                raise error
            result = self._handlers[method](params, files, record)
        except _ApiError as exc:
            return self._fail(record, exc)
        except Exception as exc:  # a bug in the fake: surface it, don't hang the test
            self.internal_errors.append(exc)
            return self._fail(record, _ApiError(500, f"Internal Server Error: fake bug: {exc!r}"))
        record.result = result
        self.sent.append(record)
        for callback in list(self._sent_callbacks):
            callback(record)
        self._notify_activity()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if self._required_token is not None and request.match_info["token"] != self._required_token:
            return self._error_response(_ApiError(401, "Unauthorized"))
        path = request.match_info["file_path"]
        stored = self._files_by_path.get(path)
        if stored is None:
            return self._error_response(_ApiError(404, "Not Found"))
        self.downloads.append(path)
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> tuple[JsonDict, dict[str, _Upload]]:
        raw: JsonDict = dict(request.query)
        files: dict[str, _Upload] = {}
        if request.can_read_body:
            try:
                if request.content_type == "application/json":
                    body = await request.json()
                    if not isinstance(body, dict):
                        raise _ApiError(400, "Bad Request: JSON body must be an object")
                    raw.update(body)
                else:
                    form = await request.post()
                    for key, value in form.items():
                        if isinstance(value, FileField):
                            files[key] = _Upload(
                                value.file.read(), value.filename, value.content_type
                            )
                        elif isinstance(value, bytes | bytearray):
                            raw[key] = bytes(value).decode()
                        else:
                            raw[key] = value
            except web.HTTPRequestEntityTooLarge as exc:
                # Drain so the client reads our JSON answer instead of a reset socket.
                while await request.content.readany():
                    pass
                raise _ApiError(413, "Request Entity Too Large") from exc
            except (ValueError, UnicodeDecodeError) as exc:
                raise _ApiError(400, "Bad Request: can't parse request body") from exc
        return {k: _coerce_value(k, v) if isinstance(v, str) else v for k, v in raw.items()}, files

    def _error_response(self, error: _ApiError) -> web.Response:
        return web.json_response(error.payload(), status=error.status)

    def _fail(self, record: SentRecord, error: _ApiError) -> web.Response:
        record.error_code = error.status
        record.description = error.description
        self.failed.append(record)
        self._notify_activity()
        return self._error_response(error)

    def _new_record(self, method: str, params: JsonDict) -> SentRecord:
        markup = params.get("reply_markup")
        return SentRecord(
            method=method,
            params=params,
            chat_id=params.get("chat_id"),
            message_id=params.get("message_id"),
            text=params.get("text"),
            caption=params.get("caption"),
            parse_mode=params.get("parse_mode"),
            reply_markup=markup if isinstance(markup, dict) else None,
            latitude=params.get("latitude"),
            longitude=params.get("longitude"),
            callback_query_id=params.get("callback_query_id"),
        )

    def _take_fail_rule(self, method: str, chat_id: int | str | None = None) -> _ApiError | None:
        for rule in self._fail_rules:
            if rule.method is None and method == "getUpdates":
                continue
            if rule.method is not None and rule.method.lower() != method.lower():
                continue
            if rule.chat_id is not None and rule.chat_id != chat_id:
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._fail_rules.remove(rule)
            return rule.error()
        return None

    def _window_error(self, method: str) -> _ApiError | None:
        now = time.monotonic()
        for window in self._fail_windows:
            if window.active(now) and window.matches(method):
                return window.error()
        return None

    def _open_window(self, window: FailWindow) -> None:
        window.start()
        # A parked long poll must notice that the server "went down".
        self._wake_pollers()
        self._notify_activity()

    def _blocked_error(self, method: str, record: SentRecord) -> _ApiError | None:
        if record.chat_id in self._blocked and method != "getChat":
            return _ApiError(403, "Forbidden: bot was blocked by the user")
        return None

    # ------------------------------------------------------------------ long polling

    async def _get_updates(self, params: JsonDict) -> web.Response:
        self.get_updates_calls += 1
        for callback in list(self._poll_callbacks):
            callback(params)
        # A newer getUpdates terminates an older parked one with 409, like Telegram.
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()
        self._notify_activity()

        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = set(allowed) or None  # remembered across calls
        offset = params.get("offset")
        if isinstance(offset, int):
            self._confirm(offset)
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        timeout = max(float(params.get("timeout") or 0), 0.0)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        batch = self._deliverable(limit)
        while not batch and not self._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            event = self._updates_event
            self._waiting_polls += 1
            self._notify_activity()
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                self._waiting_polls -= 1
            if generation != self._poll_generation and not self._closing:
                self.conflicts += 1
                return self._error_response(_ApiError(409, _DEFAULT_ERRORS[409]))
            if (window_error := self._window_error("getUpdates")) is not None:
                return self._fail(SentRecord("getUpdates", params), window_error)
            batch = self._deliverable(limit)

        if batch and (window_error := self._window_error("getUpdates")) is not None:
            return self._fail(SentRecord("getUpdates", params), window_error)
        for pending in batch:
            pending.delivered = True
            self.delivered.append(pending.update["update_id"])
        if batch:
            handed_out = set(self.delivered)
            for window in self._fail_windows:
                if (
                    not window.started
                    and window.once_delivered is not None
                    and window.once_delivered <= handed_out
                ):
                    self._open_window(window)
            self._notify_activity()
        return web.json_response({"ok": True, "result": [copy.deepcopy(p.update) for p in batch]})

    def _confirm(self, offset: int) -> None:
        if offset < 0:
            self._pending = self._pending[offset:]
            return
        # Only already-delivered updates are confirmed by offset, so a re-injected
        # duplicate with an old update_id still reaches the bot.
        self._pending = [
            p for p in self._pending if not (p.delivered and p.update["update_id"] < offset)
        ]

    def _deliverable(self, limit: int) -> list[_Pending]:
        allowed = self._allowed_updates
        batch = [p for p in self._pending if allowed is None or _update_type(p.update) in allowed]
        return batch[:limit]

    def _enqueue(self, update: JsonDict, update_id: int | None) -> int:
        if update_id is None:
            self._last_update_id += 1
            update_id = self._last_update_id
        else:
            self._last_update_id = max(self._last_update_id, update_id)
        self.injected.setdefault(update_id, copy.deepcopy({"update_id": update_id, **update}))
        self._pending.append(_Pending({"update_id": update_id, **update}))
        self._wake_pollers()
        return update_id

    def _wake_pollers(self) -> None:
        self._updates_event.set()
        self._updates_event = asyncio.Event()

    def _notify_activity(self) -> None:
        self._activity_event.set()
        self._activity_event = asyncio.Event()

    async def _wait_until(
        self, check: Callable[[], T | None], timeout: float, describe: Callable[[], str]
    ) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._activity_event
            found = check()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(describe())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    # ------------------------------------------------------------------ webhook mode

    def spread_webhook(self, urls: list[str] | None) -> None:
        """Post to these URLs in turn instead of the registered one, as nginx spreads a
        webhook over several `mcu serve` processes (None: back to the registered URL).
        An attempt that fails is retried on the next URL."""
        self._spread = list(urls) if urls else None

    @property
    def webhook_pending(self) -> int:
        """Updates not yet answered with 200 by the webhook."""
        return len(self._pending)

    def acknowledged(self) -> list[int]:
        """Update ids the webhook answered with 200, in that order."""
        return [p.update_id for p in self.webhook_posts if p.status == 200]

    def _start_pusher(self) -> None:
        if self._pusher is None or self._pusher.done():
            self._pusher = asyncio.get_running_loop().create_task(self._push_loop())
        self._wake_pollers()

    async def _stop_pusher(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
            self._pusher = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _next_url(self) -> str | None:
        if self._spread:
            url = self._spread[self._spread_next % len(self._spread)]
            self._spread_next += 1
            return url
        return self.webhook_url

    async def _push_loop(self) -> None:
        """Telegram's side of a webhook: each chat's updates one at a time and in order (the
        next only after the previous was answered with 200), chats in parallel up to
        max_connections; an update not answered with 200 is sent again after a pause."""
        tasks: set[asyncio.Task[None]] = set()
        try:
            while not self._closing and self.webhook_url is not None:
                event = self._updates_event
                now = time.monotonic()
                allowed = self._allowed_updates
                wake_at: float | None = None
                for pending in list(self._pending):
                    if len(tasks) >= self.webhook_max_connections:
                        break
                    chat = _update_chat(pending.update)
                    if pending.posting or chat in self._in_flight_chats:
                        continue
                    if allowed is not None and _update_type(pending.update) not in allowed:
                        continue
                    retry_at = self._retry_at.get(chat, 0.0)
                    if retry_at > now:
                        wake_at = retry_at if wake_at is None else min(wake_at, retry_at)
                        self._in_flight_chats.add(chat)  # its later updates wait too
                        continue
                    pending.posting = True
                    self._in_flight_chats.add(chat)
                    task = asyncio.get_running_loop().create_task(self._post(pending, chat))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                # Chats only waiting for their retry time are free again for the next pass.
                self._in_flight_chats = {
                    _update_chat(p.update) for p in self._pending if p.posting}
                timeout = None if wake_at is None else max(wake_at - time.monotonic(), 0.01)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _post(self, pending: _Pending, chat: Any) -> None:
        update_id = pending.update["update_id"]
        url = self._next_url()
        status: int | None = None
        started = time.monotonic()
        headers = {}
        if self.webhook_secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook_secret
        try:
            if self._http is None:
                self._http = aiohttp.ClientSession()
            if url is not None:
                async with self._http.post(
                    url, json=copy.deepcopy(pending.update), headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.webhook_timeout),
                ) as response:
                    await response.read()
                    status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = None
        except Exception as exc:  # a bug in the fake
            self.internal_errors.append(exc)
        self.webhook_posts.append(
            WebhookPost(update_id, url or "", status, started, time.monotonic()))
        pending.posting = False
        if status == 200:
            if pending in self._pending:
                self._pending.remove(pending)
            self.delivered.append(update_id)
            self._failures.pop(update_id, None)
            self._retry_at.pop(chat, None)
        else:
            failures = self._failures[update_id] = self._failures.get(update_id, 0) + 1
            delay = min(self.webhook_retry_delay * 2 ** (failures - 1), 5.0)
            self._retry_at[chat] = time.monotonic() + delay
        self._in_flight_chats.discard(chat)
        self._wake_pollers()
        self._notify_activity()

    # ------------------------------------------------------------------ entities

    def _bot_user(self, full: bool = False) -> JsonDict:
        user: JsonDict = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }
        if full:
            user.update(
                can_join_groups=True,
                can_read_all_group_messages=False,
                supports_inline_queries=False,
                can_connect_to_business=False,
                has_main_web_app=False,
            )
        return user

    def _remember_user(
        self, user_id: int, first_name: str | None = None, language_code: str | None = None
    ) -> JsonDict:
        user = self._users.setdefault(
            user_id,
            {"id": user_id, "is_bot": False, "first_name": "Ivan", "language_code": "ru"},
        )
        if first_name is not None:
            user["first_name"] = first_name
        if language_code is not None:
            user["language_code"] = language_code
        return user

    def _chat(self, chat_id: int | str) -> JsonDict:
        """Known chat, or a plausible one synthesised from the id (the fake is lenient)."""
        if isinstance(chat_id, str):
            if chat_id not in self._username_chats:
                self._username_chats[chat_id] = -1001000000000 - len(self._username_chats)
                numeric = self._username_chats[chat_id]
                self._chats[numeric] = {
                    "id": numeric,
                    "type": "channel",
                    "title": chat_id.lstrip("@"),
                    "username": chat_id.lstrip("@"),
                }
            chat_id = self._username_chats[chat_id]
        if chat_id not in self._chats:
            if chat_id > 0:
                name = self._users.get(chat_id, {}).get("first_name", "User")
                self._chats[chat_id] = {"id": chat_id, "type": "private", "first_name": name}
            else:
                kind = "supergroup" if str(chat_id).startswith("-100") else "group"
                self._chats[chat_id] = {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}
        return self._chats[chat_id]

    def _next_message_id(self, chat_id: int) -> int:
        # Message ids are per chat in Telegram (private chats and groups).
        self._message_counters[chat_id] = self._message_counters.get(chat_id, 0) + 1
        return self._message_counters[chat_id]

    def _new_bot_message(
        self,
        chat_id: int | str,
        content: JsonDict,
        reply_markup: Any = None,
        *,
        raw_text: str | None = None,
        parse_mode: str | None = None,
    ) -> _StoredMessage:
        chat = self._chat(chat_id)
        message: JsonDict = {
            "message_id": self._next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": dict(chat),
            "from": self._bot_user(),
            **content,
        }
        markup = _inline_markup(reply_markup)
        if markup is not None:
            message["reply_markup"] = markup
        stored = _StoredMessage(message, raw_text, parse_mode)
        self._messages[(chat["id"], message["message_id"])] = stored
        return stored

    def _find_button_message(
        self, chat_key: int, data: str, message_id: int | None
    ) -> _StoredMessage | None:
        if message_id is not None:
            return self._messages[(chat_key, message_id)]
        bot_messages = [
            m
            for (cid, _), m in self._messages.items()
            if cid == chat_key and m.message.get("from", {}).get("id") == self.bot_id
        ]
        bot_messages.sort(key=lambda m: m.message["message_id"], reverse=True)
        for matches in (
            lambda m: data in _callback_datas(m.message),
            lambda m: "reply_markup" in m.message,
            lambda m: True,
        ):
            found = next((m for m in bot_messages if matches(m)), None)
            if found is not None:
                return found
        return None

    def _stored_message(self, params: JsonDict, missing: str) -> _StoredMessage:
        chat_id, message_id = params.get("chat_id"), params.get("message_id")
        if chat_id is None or message_id is None:
            raise _ApiError(400, missing)
        stored = self._messages.get((self._chat(chat_id)["id"], message_id))
        if stored is None:
            raise _ApiError(400, missing)
        return stored

    # ------------------------------------------------------------------ files

    @staticmethod
    def _payload(value: bool | bytes, default: bytes) -> bytes:
        return value if isinstance(value, bytes) else default

    def _store_file(
        self,
        data: bytes,
        kind: str,
        filename: str | None = None,
        mime_type: str | None = None,
    ) -> _StoredFile:
        self._file_counter += 1
        n = self._file_counter
        folder, default_ext = _FILE_FOLDERS.get(kind, ("documents", ".bin"))
        ext = default_ext
        if filename and "." in filename:
            ext = "." + filename.rsplit(".", 1)[1]
        if mime_type is None and filename:
            mime_type = mimetypes.guess_type(filename)[0]
        stored = _StoredFile(
            file_id=f"FAKE-{kind}-{self.bot_id}-{n}",
            file_unique_id=f"U{self.bot_id}x{n}",
            file_path=f"{folder}/file_{n}{ext}",
            data=data,
            kind=kind,
            file_name=filename,
            mime_type=mime_type,
        )
        self._files_by_id[stored.file_id] = stored
        self._files_by_path[stored.file_path] = stored
        return stored

    @staticmethod
    def _file_ref(stored: _StoredFile) -> JsonDict:
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }

    def _store_photo(self, data: bytes) -> list[JsonDict]:
        # No real resizing: the thumbnail carries the same bytes; largest is last.
        thumb = self._store_file(data, "photo")
        full = self._store_file(data, "photo")
        sizes = [
            {**self._file_ref(thumb), "width": 90, "height": 68},
            {**self._file_ref(full), "width": 1280, "height": 960},
        ]
        for size in sizes:
            self._photo_sizes[size["file_id"]] = sizes
        return copy.deepcopy(sizes)

    def _resolve_input(
        self, value: Any, files: dict[str, _Upload], field_name: str
    ) -> tuple[bytes | str, _Upload | None]:
        """Resolve an InputFile parameter to uploaded bytes or a file_id / URL string."""
        upload: _Upload | None = None
        if isinstance(value, str) and value.startswith("attach://"):
            upload = files.get(value.removeprefix("attach://"))
            if upload is None:
                raise _ApiError(400, f"Bad Request: file {value} is not attached")
        elif value is None and field_name in files:
            upload = files[field_name]  # plain multipart field, as other clients send it
        elif isinstance(value, str) and value:
            return value, None
        else:
            raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")
        if not upload.data:
            raise _ApiError(400, "Bad Request: file must be non-empty")
        return upload.data, upload

    def _photo_content(self, ref: bytes | str) -> list[JsonDict]:
        if isinstance(ref, bytes):
            return self._store_photo(ref)
        if ref in self._photo_sizes:
            return copy.deepcopy(self._photo_sizes[ref])
        # Unknown file_id / URL: accepted (lenient) with empty placeholder content.
        return self._store_photo(b"")

    def _document_content(self, ref: bytes | str, upload: _Upload | None) -> JsonDict:
        if isinstance(ref, bytes):
            filename = upload.filename if upload else None
            stored = self._store_file(ref, "document", filename)
        else:
            known = self._files_by_id.get(ref)
            stored = known if known is not None else self._store_file(b"", "document")
        doc = self._file_ref(stored)
        if stored.file_name:
            doc["file_name"] = stored.file_name
        if stored.mime_type:
            doc["mime_type"] = stored.mime_type
        return doc

    # ------------------------------------------------------------------ validation

    def _visible_text(
        self, text: Any, parse_mode: str | None, *, limit: int, empty: str | None, too_long: str
    ) -> str:
        """Text as the user will see it; ``empty=None`` allows (returns) an empty result."""
        if not isinstance(text, str):
            text = ""
        visible = text
        if parse_mode is not None and parse_mode.lower() == "html":
            if self.validate_html and (error := _html_error(text)) is not None:
                raise _ApiError(400, f"Bad Request: can't parse entities: {error}")
            visible = html.unescape(_ANY_TAG_RE.sub("", text))
        if not visible.strip():
            if empty is not None:
                raise _ApiError(400, empty)
            return ""
        if len(visible) > limit:
            raise _ApiError(400, too_long)
        return visible

    def _caption(self, caption: Any, parse_mode: str | None) -> str | None:
        visible = self._visible_text(
            caption,
            parse_mode,
            limit=CAPTION_LIMIT,
            empty=None,
            too_long="Bad Request: message caption is too long",
        )
        return visible or None  # Telegram drops whitespace-only captions

    @staticmethod
    def _check_markup(params: JsonDict) -> Any:
        markup = params.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard") or []:
            for button in row:
                if not button.get("text"):
                    raise _ApiError(400, "Bad Request: text buttons are unallowed")
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= CALLBACK_DATA_LIMIT:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    @staticmethod
    def _require_chat(params: JsonDict) -> int | str:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(chat_id, str) and not chat_id.startswith("@"):
            raise _ApiError(400, "Bad Request: chat not found")
        return chat_id

    # ------------------------------------------------------------------ methods

    def _get_me(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        return self._bot_user(full=True)

    def _delete_webhook(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        if params.get("drop_pending_updates"):
            self._pending.clear()
        self.webhook_url = self.webhook_secret = None
        return True

    def _set_webhook(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        url = params.get("url")
        if not url:  # an empty url removes the webhook, as deleteWebhook does
            return self._delete_webhook(params, files, record)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise _ApiError(400, "Bad Request: bad webhook: invalid URL")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _ApiError(400, "Bad Request: bad webhook: secret token contains "
                                 "unallowed characters")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        allowed = params.get("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = set(allowed) or None
        if params.get("max_connections"):
            self.webhook_max_connections = int(params["max_connections"])
        self.webhook_url = url
        self.webhook_secret = str(secret) if secret is not None else None
        self._start_pusher()
        return True

    def _get_webhook_info(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        info: JsonDict = {
            "url": self.webhook_url or "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
            "max_connections": self.webhook_max_connections,
        }
        failed = [p for p in self.webhook_posts if p.status != 200]
        if failed:
            info["last_error_date"] = int(time.time())
            info["last_error_message"] = (f"Wrong response from the webhook: {failed[-1].status}"
                                          if failed[-1].status else "Connection refused")
        if self._allowed_updates:
            info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    def _set_my_commands(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not _COMMAND_RE.match(str(command.get("command", ""))):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not str(command.get("description", "")).strip():
                raise _ApiError(400, "Bad Request: command description is empty")
        scope = params.get("scope") or {}
        key = (scope.get("type", "default"), params.get("language_code") or "")
        self.commands[key] = commands
        return True

    def _send_message(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        chat_id = self._require_chat(params)
        visible = self._visible_text(
            params.get("text"),
            params.get("parse_mode"),
            limit=TEXT_LIMIT,
            empty="Bad Request: message text is empty",
            too_long="Bad Request: message is too long",
        )
        markup = self._check_markup(params)
        stored = self._new_bot_message(
            chat_id,
            {"text": visible},
            markup,
            raw_text=params["text"],
            parse_mode=params.get("parse_mode"),
        )
        record.message_id = stored.message["message_id"]
        return copy.deepcopy(stored.message)

    def _send_photo(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        chat_id = self._require_chat(params)
        ref, upload = self._resolve_input(params.get("photo"), files, "photo")
        caption = self._caption(params.get("caption"), params.get("parse_mode"))
        markup = self._check_markup(params)
        record.photo = ref
        record.filename = upload.filename if upload else None
        content: JsonDict = {"photo": self._photo_content(ref)}
        if caption is not None:
            content["caption"] = caption
        stored = self._new_bot_message(chat_id, content, markup)
        record.message_id = stored.message["message_id"]
        return copy.deepcopy(stored.message)

    def _send_document(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        chat_id = self._require_chat(params)
        ref, upload = self._resolve_input(params.get("document"), files, "document")
        caption = self._caption(params.get("caption"), params.get("parse_mode"))
        markup = self._check_markup(params)
        record.document = ref
        record.filename = upload.filename if upload else None
        content: JsonDict = {"document": self._document_content(ref, upload)}
        if caption is not None:
            content["caption"] = caption
        stored = self._new_bot_message(chat_id, content, markup)
        record.message_id = stored.message["message_id"]
        return copy.deepcopy(stored.message)

    def _send_media_group(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        chat_id = self._require_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: media group must contain 2-10 items")
        self._media_group_counter += 1
        group_id = f"{self.bot_id}{self._media_group_counter:06d}"
        prepared: list[tuple[MediaItem, JsonDict]] = []
        for item in media:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in {"photo", "video", "document", "audio"}:
                raise _ApiError(400, f"Bad Request: unsupported media type {kind!r}")
            ref, upload = self._resolve_input(item.get("media"), files, "media")
            caption = self._caption(item.get("caption"), item.get("parse_mode"))
            content: JsonDict = {"media_group_id": group_id}
            if kind == "photo":
                content["photo"] = self._photo_content(ref)
            elif kind == "document":
                content["document"] = self._document_content(ref, upload)
            else:
                data = ref if isinstance(ref, bytes) else b""
                f = self._store_file(data, kind, upload.filename if upload else None)
                extra = {"width": 640, "height": 360} if kind == "video" else {}
                content[kind] = {**self._file_ref(f), "duration": 1, **extra}
            if caption is not None:
                content["caption"] = caption
            known = self._files_by_id.get(ref) if isinstance(ref, str) else None
            prepared.append(
                (
                    MediaItem(
                        type=kind,
                        media=item["media"],
                        data=ref if isinstance(ref, bytes) else (known.data if known else None),
                        filename=upload.filename if upload else None,
                        caption=item.get("caption"),
                        parse_mode=item.get("parse_mode"),
                    ),
                    content,
                )
            )
        # Validate everything before creating messages: a bad item fails the whole call.
        messages = [self._new_bot_message(chat_id, content).message for _, content in prepared]
        record.media = [media_item for media_item, _ in prepared]
        record.message_id = messages[0]["message_id"]
        return copy.deepcopy(messages)

    def _send_location(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        chat_id = self._require_chat(params)
        lat, lon = params.get("latitude"), params.get("longitude")
        if not isinstance(lat, int | float) or not isinstance(lon, int | float):
            raise _ApiError(400, "Bad Request: latitude and longitude are required")
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise _ApiError(400, "Bad Request: wrong location specified")
        markup = self._check_markup(params)
        location = {"latitude": float(lat), "longitude": float(lon)}
        stored = self._new_bot_message(chat_id, {"location": location}, markup)
        record.message_id = stored.message["message_id"]
        return copy.deepcopy(stored.message)

    def _edit_message_text(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        visible = self._visible_text(
            params.get("text"),
            params.get("parse_mode"),
            limit=TEXT_LIMIT,
            empty="Bad Request: message text is empty",
            too_long="Bad Request: MESSAGE_TOO_LONG",
        )
        markup = _inline_markup(self._check_markup(params))
        if params.get("inline_message_id"):
            return True
        stored = self._stored_message(params, "Bad Request: message to edit not found")
        message = stored.message
        if "text" not in message:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        if (
            stored.raw_text == params["text"]
            and stored.parse_mode == params.get("parse_mode")
            and message.get("reply_markup") == markup
        ):
            raise _ApiError(400, _NOT_MODIFIED)
        message["text"] = visible
        message["edit_date"] = int(time.time())
        stored.raw_text, stored.parse_mode = params["text"], params.get("parse_mode")
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        return copy.deepcopy(message)

    def _edit_message_reply_markup(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        markup = _inline_markup(self._check_markup(params))
        if params.get("inline_message_id"):
            return True
        stored = self._stored_message(params, "Bad Request: message to edit not found")
        message = stored.message
        if message.get("reply_markup") == markup:
            raise _ApiError(400, _NOT_MODIFIED)
        if markup is None:
            message.pop("reply_markup", None)
        else:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return copy.deepcopy(message)

    def _delete_message(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        stored = self._stored_message(params, "Bad Request: message to delete not found")
        message = stored.message
        del self._messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _answer_callback_query(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        if str(params.get("callback_query_id")) not in self._callback_ids:
            raise _ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        return True

    def _get_file(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        stored = self._files_by_id.get(str(params.get("file_id")))
        if stored is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return {**self._file_ref(stored), "file_path": stored.file_path}

    def _send_chat_action(
        self, params: JsonDict, files: dict[str, _Upload], record: SentRecord
    ) -> Any:
        self._require_chat(params)
        if not params.get("action"):
            raise _ApiError(400, "Bad Request: action is empty")
        return True

    def _get_chat(self, params: JsonDict, files: dict[str, _Upload], record: SentRecord) -> Any:
        chat = self._chat(self._require_chat(params))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }
