"""Local fake of the VK API and Bots Long Poll for tests.

Runs a real aiohttp server on 127.0.0.1 so a real vkbottle ``Bot`` talks to it over
HTTP exactly as it would to VK (API 5.199). Nothing is global: every
``FakeVKServer`` owns its state, port and counters.

Usage::

    async with FakeVKServer(group_id=1) as vk:
        api = API("token", http_client=AiohttpClient())
        api.API_URL = vk.api_url  # vkbottle reads ``self.API_URL`` per request
        ...
        bot_task = asyncio.create_task(Bot(api=api, labeler=labeler).run_polling())
        await vk.wait_for_poller()  # like VK, updates injected before the bot asked
                                    # groups.getLongPollServer are never delivered
        vk.user_message(42, "hi")
        reply = await vk.wait_for(lambda r: r.peer_id == 42)
        bot_task.cancel()
        ...
        await api.http_client.close()

Deliberately strict where VK is strict (random_id required, keyboard limits, unknown
attachments, per-peer errors for ``peer_ids``) so bot bugs show up in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar

from aiohttp import web

API_VERSION = "5.199"
PEER_ID_OFFSET = 2_000_000_000

# Texts VK sends for the codes tests are likely to inject.
ERROR_MESSAGES: dict[int, str] = {
    1: "Unknown error occurred",
    3: "Unknown method passed",
    5: "User authorization failed: invalid access_token (4).",
    6: "Too many requests per second",
    8: "Invalid request: v (version) is required",
    9: "Flood control",
    10: "Internal server error",
    14: "Captcha needed",
    15: "Access denied",
    100: "One of the parameters specified was missing or invalid",
    121: "Invalid hash",
    901: "Can't send messages for users without permission",
    902: "Can't send messages to this user due to their privacy settings",
    911: "Keyboard format is invalid",
    914: "Message is too long",
    917: "You don't have access to this chat",
}

DEFAULT_CLIENT_INFO: dict[str, Any] = {
    "button_actions": [
        "text",
        "vkpay",
        "open_app",
        "location",
        "open_link",
        "callback",
        "intent_subscribe",
        "intent_unsubscribe",
    ],
    "keyboard": True,
    "inline_keyboard": True,
    "carousel": True,
    "lang_id": 0,
}

# VK keyboard limits (rows, buttons in total); 5 buttons per row for both kinds.
_KEYBOARD_LIMITS = {False: (10, 40), True: (6, 10)}
_BUTTON_TYPES = frozenset(
    {"text", "open_link", "location", "vkpay", "open_app", "callback",
     "intent_subscribe", "intent_unsubscribe"}
)  # fmt: skip
# VK photo size letters and their max side; the list ends with the original size.
_PHOTO_SIZE_TYPES = (("s", 75), ("m", 130), ("x", 604), ("y", 807), ("z", 1080), ("w", 2560))
_ATTACHMENT_RE = re.compile(r"^([a-z_]+?)(-?\d+)_(\d+)(?:_([0-9A-Za-z]+))?$")
# Media kinds this fake stores; attachments of other kinds are passed through unchecked.
_STORED_KINDS = frozenset({"photo", "doc", "audio_message", "graffiti"})


class FakeVKError(Exception):
    """Raise from a custom method handler to answer with a VK error object."""

    def __init__(self, code: int, msg: str | None = None, **extra: Any) -> None:
        self.code = code
        self.msg = msg or ERROR_MESSAGES.get(code, "Unknown error occurred")
        self.extra = extra
        super().__init__(f"VK error {code}: {self.msg}")


def _param_error(detail: str) -> FakeVKError:
    return FakeVKError(100, f"{ERROR_MESSAGES[100]}: {detail}")


@dataclass(slots=True)
class SentRecord:
    """One outgoing bot action (messages.send per peer, edit, event answer)."""

    method: str
    peer_id: int | None
    text: str | None = None
    keyboard: dict[str, Any] | None = None
    attachment: str | None = None
    lat: float | None = None
    long: float | None = None
    random_id: int | None = None
    message_id: int | None = None
    conversation_message_id: int | None = None
    user_id: int | None = None
    event_id: str | None = None
    event_data: dict[str, Any] | None = None
    sticker_id: int | None = None
    photos: list[bytes] = field(default_factory=list)
    docs: list[bytes] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.monotonic)

    @property
    def photo(self) -> bytes | None:
        return self.photos[0] if self.photos else None

    def buttons(self) -> list[dict[str, Any]]:
        """Flat list of button ``action`` dicts; string payloads are decoded to dicts."""
        if not self.keyboard:
            return []
        actions: list[dict[str, Any]] = []
        for row in self.keyboard.get("buttons", []):
            for button in row:
                action = dict(button["action"])
                if isinstance(action.get("payload"), str):
                    with contextlib.suppress(ValueError):
                        action["payload"] = json.loads(action["payload"])
                actions.append(action)
        return actions

    def button_labels(self) -> list[str]:
        return [a["label"] for a in self.buttons() if "label" in a]


@dataclass(slots=True)
class FailedCall:
    """An API call answered with an error. ``reason``: injected, rate_limit or invalid."""

    method: str
    error_code: int
    error_msg: str
    params: dict[str, str]
    reason: str
    timestamp: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class ApiCall:
    method: str
    params: dict[str, str]
    error_code: int | None = None
    timestamp: float = field(default_factory=time.monotonic)


@dataclass(slots=True)
class _Media:
    kind: str
    owner_id: int
    media_id: int
    access_key: str
    data: bytes
    title: str = ""
    ext: str = ""
    obj: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _FailRule:
    method: str | None
    code: int
    msg: str | None
    remaining: int
    extra: dict[str, Any]


@dataclass(eq=False)
class FailWindow:
    """A time window in which every matching API method answers with one VK error.

    Created by ``FakeVKServer.fail_for``; ends after ``seconds`` or on ``end()``. The Bots
    Long Poll server is not an API method and keeps serving events (VK's rate limit is on
    the token's method calls).
    """

    code: int
    msg: str | None
    methods: frozenset[str] | None  # None: every method
    seconds: float | None
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    failures: int = 0

    def end(self) -> None:
        if self.ended_at is None:
            self.ended_at = time.monotonic()

    def active(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if self.seconds is not None and now >= self.started_at + self.seconds:
            return False
        return self.ended_at is None or now < self.ended_at

    @property
    def duration(self) -> float:
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        if self.seconds is not None:
            end = min(end, self.started_at + self.seconds)
        return end - self.started_at


@dataclass(slots=True)
class _Upload:
    kind: str  # "photo" or a docs type: "doc", "audio_message", "graffiti"
    data: bytes | None = None
    filename: str = ""
    hash: str = field(default_factory=lambda: secrets.token_hex(16))


MethodHandler = Callable[[dict[str, str]], Any]
_T = TypeVar("_T")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


class FakeVKServer:
    """In-process fake of api.vk.ru + Bots Long Poll; see module docstring."""

    def __init__(
        self,
        group_id: int = 1,
        *,
        group_name: str = "Test community",
        token: str | None = None,
        users: Mapping[int, tuple[str, str]] | None = None,
        rps_limit: int | None = None,
        photo_size: tuple[int, int] = (1280, 960),
        host: str = "127.0.0.1",
    ) -> None:
        self.group_id = group_id
        self.group_name = group_name
        self.token = token  # None: any non-empty access_token is accepted
        self.users: dict[int, tuple[str, str]] = dict(users or {})
        self.rps_limit = rps_limit
        self.photo_size = photo_size
        self.host = host

        self.sent: list[SentRecord] = []
        self.failed: list[FailedCall] = []
        self.calls: list[ApiCall] = []
        self.updates: list[dict[str, Any]] = []  # long-poll history; index = ts - 1
        self.downloads: list[str] = []  # URLs of files fetched from this fake
        self.long_poll_requests = 0

        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False
        # Replaced after every state change; waiters re-check their condition on wake-up.
        self._changed = asyncio.Event()
        self._active_polls = 0
        self._lp_key = secrets.token_hex(20)
        self._lp_failures: deque[int] = deque()
        self._fail_rules: list[_FailRule] = []
        self._fail_windows: list[FailWindow] = []
        self._call_times: deque[float] = deque()
        self._custom_methods: dict[str, MethodHandler] = {}
        self._forbidden: dict[int, int] = {}  # peer_id -> error code
        self._media: dict[tuple[str, int, int], _Media] = {}
        self._uploads: dict[str, _Upload] = {}
        self._callback_ids: set[str] = set()
        self._random_ids: dict[tuple[int, int], int] = {}  # (peer, random_id) -> message_id
        self._cmids: dict[int, int] = {}
        self._message_ids = itertools.count(1)
        self._media_ids = itertools.count(457239017)
        self._methods: dict[str, MethodHandler] = {
            "groups.getById": self._groups_get_by_id,
            "groups.getLongPollServer": self._groups_get_long_poll_server,
            "messages.send": self._messages_send,
            "messages.edit": self._messages_edit,
            "messages.sendMessageEventAnswer": self._messages_send_event_answer,
            "messages.setActivity": lambda _p: 1,
            "messages.markAsRead": lambda _p: 1,
            "photos.getMessagesUploadServer": self._photos_get_messages_upload_server,
            "photos.saveMessagesPhoto": self._photos_save_messages_photo,
            "docs.getMessagesUploadServer": self._docs_get_messages_upload_server,
            "docs.save": self._docs_save,
            "users.get": self._users_get,
            "utils.getServerTime": lambda _p: int(time.time()),
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/method/{name}", self._handle_method)
        app.router.add_route("*", "/lp/{group}", self._handle_long_poll)
        app.router.add_post("/upload/{token}", self._handle_upload)
        app.router.add_get("/files/{kind}/{key}/{name}", self._handle_file)
        # handler_cancellation: a cancelled bot drops its long poll instead of leaving
        # a handler blocked for `wait` seconds; short shutdown_timeout for the same reason.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        self._closing = True
        self._notify()  # release pending long polls before the runner waits on them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        if self._port is None:
            msg = "FakeVKServer is not started"
            raise RuntimeError(msg)
        return f"http://{self.host}:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/method/"

    @property
    def long_poll_url(self) -> str:
        return f"{self.base_url}/lp/wh{self.group_id}"

    # ------------------------------------------------------------------ test helpers

    def messages_to(
        self, peer_id: int, *, method: str | None = "messages.send"
    ) -> list[SentRecord]:
        """Records for ``peer_id``; ``method=None`` includes edits and event answers."""
        return [
            r for r in self.sent if r.peer_id == peer_id and (method is None or r.method == method)
        ]

    async def wait_for(
        self,
        pred: Callable[[SentRecord], bool],
        timeout: float = 5.0,
        *,
        after: int = 0,
    ) -> SentRecord:
        """First record (from index ``after`` in ``sent``) matching ``pred``."""

        def check() -> SentRecord | None:
            return next((r for r in self.sent[after:] if pred(r)), None)

        try:
            return await self._wait_until(check, timeout)
        except TimeoutError:
            summary = [(r.method, r.peer_id, r.text) for r in self.sent[after:]]
            errors = [(f.method, f.error_code, f.error_msg) for f in self.failed]
            msg = (
                f"no matching record within {timeout}s; sent: {summary}; errors: {errors}; "
                f"updates injected: {len(self.updates)}, "
                f"long-poll requests: {self.long_poll_requests}"
            )
            raise TimeoutError(msg) from None

    async def wait_for_poller(self, timeout: float = 5.0) -> None:
        """Wait until a long-poll request is pending (the bot is listening)."""
        await self._wait_until(lambda: self._active_polls > 0 or None, timeout)

    def on_method(self, name: str, handler: MethodHandler) -> None:
        """Add/override an API method; ``handler(params)`` returns ``response`` or raises
        ``FakeVKError``."""
        self._custom_methods[name] = handler

    def set_user(self, user_id: int, first_name: str, last_name: str) -> None:
        self.users[user_id] = (first_name, last_name)

    def forbid_peer(self, peer_id: int, code: int = 901) -> None:
        """Make messages.send to ``peer_id`` fail like a user who blocked the community."""
        self._forbidden[peer_id] = code

    def allow_peer(self, peer_id: int) -> None:
        self._forbidden.pop(peer_id, None)

    def fail_next(
        self,
        method: str | None = None,
        *,
        code: int = 6,
        times: int = 1,
        msg: str | None = None,
        **extra: Any,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (any method if None) with error
        ``code``. ``extra`` goes into the error object (e.g. captcha_sid/captcha_img)."""
        if code == 14:
            extra.setdefault("captcha_sid", secrets.token_hex(6))
            extra.setdefault("captcha_img", f"{self.base_url}/files/captcha/x/1.jpg")
        self._fail_rules.append(_FailRule(method, code, msg, times, extra))

    def fail_for(
        self,
        seconds: float | None = None,
        *,
        code: int = 6,
        methods: str | list[str] | None = None,
        msg: str | None = None,
    ) -> FailWindow:
        """Answer every API method (or only ``methods``) with error ``code`` for ``seconds``
        (None: until ``end()`` / ``end_failures()``). For a count, use ``fail_next(times=N)``."""
        if isinstance(methods, str):
            methods = [methods]
        window = FailWindow(code, msg, frozenset(methods) if methods is not None else None,
                            seconds)
        self._fail_windows.append(window)
        self._notify()
        return window

    def end_failures(self) -> None:
        """End every fail window now (``fail_next`` rules are left alone)."""
        for window in self._fail_windows:
            window.end()
        self._notify()

    def fail_long_poll(self, code: int = 2, *, times: int = 1) -> None:
        """Answer the next long-poll request(s) with ``{"failed": code}``.

        2 and 3 also rotate the key, as VK does when a key expires."""
        self._lp_failures.extend([code] * times)
        self._notify()  # a poll already waiting must see the failure now

    # ------------------------------------------------------------------ injection

    def user_message(
        self,
        user_id: int,
        text: str = "",
        *,
        peer_id: int | None = None,
        payload: dict[str, Any] | None = None,
        photo: bytes | None = None,
        geo: tuple[float, float] | None = None,
        sticker: bool = False,
        audio_message: bool | bytes = False,
        doc: bool | bytes = False,
        event_id: str | None = None,
        client_info: dict[str, Any] | None = None,
    ) -> str:
        """Inject a ``message_new`` from ``user_id``; returns the update's event_id."""
        peer = peer_id if peer_id is not None else user_id
        attachments: list[dict[str, Any]] = []
        if photo is not None:
            media = self._store_photo(user_id, photo)
            attachments.append({"type": "photo", "photo": media.obj})
        if sticker:
            attachments.append({"type": "sticker", "sticker": self._sticker_obj(9014)})
        if audio_message is not False:
            data = audio_message if isinstance(audio_message, bytes) else b"OggS-fake-voice"
            media = self._store_doc(user_id, data, "audio_message", "voice.ogg")
            attachments.append({"type": "audio_message", "audio_message": media.obj})
        if doc is not False:
            data = doc if isinstance(doc, bytes) else b"%PDF-1.4 fake"
            media = self._store_doc(user_id, data, "doc", "document.pdf")
            attachments.append({"type": "doc", "doc": media.obj})

        message: dict[str, Any] = {
            "date": int(time.time()),
            "from_id": user_id,
            # Community bots see id=0 for chat messages; only cmid identifies them there.
            "id": next(self._message_ids) if peer < PEER_ID_OFFSET else 0,
            "version": 10_000_000 + len(self.updates),
            "out": 0,
            "fwd_messages": [],
            "important": False,
            "is_hidden": False,
            "attachments": attachments,
            "conversation_message_id": self._next_cmid(peer),
            "peer_id": peer,
            "random_id": 0,
            "text": text,
        }
        if payload is not None:
            message["payload"] = json.dumps(payload, ensure_ascii=False)
        if geo is not None:
            message["geo"] = {
                "type": "point",
                "coordinates": {"latitude": geo[0], "longitude": geo[1]},
            }
        obj = {"message": message, "client_info": client_info or copy.deepcopy(DEFAULT_CLIENT_INFO)}
        return self._push("message_new", obj, event_id)

    def press_callback(
        self,
        user_id: int,
        payload: dict[str, Any],
        *,
        peer_id: int | None = None,
        conversation_message_id: int = 1,
        event_id: str | None = None,
    ) -> str:
        """Inject a ``message_event`` (callback button press).

        Returns the *callback* event_id (``object.event_id``), the value the bot must
        echo in messages.sendMessageEventAnswer; the update's own event_id differs."""
        callback_id = secrets.token_hex(6)
        obj = {
            "user_id": user_id,
            "peer_id": peer_id if peer_id is not None else user_id,
            "event_id": callback_id,
            "payload": payload,
            "conversation_message_id": conversation_message_id,
        }
        self._push("message_event", obj, event_id)
        return callback_id

    def inject_raw(self, event: Mapping[str, Any]) -> None:
        """Deliver an arbitrary update dict as is (e.g. the same update twice)."""
        update = copy.deepcopy(dict(event))
        if update.get("type") == "message_event":
            self._callback_ids.add(str(update.get("object", {}).get("event_id")))
        self.updates.append(update)
        self._notify()

    def update(self, event_id: str) -> dict[str, Any]:
        """Injected update by its event_id or, for message_event, its callback event_id."""
        for upd in self.updates:
            if event_id in (upd.get("event_id"), upd.get("object", {}).get("event_id")):
                return upd
        raise KeyError(event_id)

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_until(self, check: Callable[[], _T | None], timeout: float) -> _T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError
            changed = self._changed  # captured with no await after check(): no lost wake-up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    def _push(self, event_type: str, obj: dict[str, Any], event_id: str | None) -> str:
        eid = event_id or secrets.token_hex(20)
        if event_type == "message_event":
            self._callback_ids.add(obj["event_id"])
        self.updates.append(
            {
                "group_id": self.group_id,
                "type": event_type,
                "event_id": eid,
                "v": API_VERSION,
                "object": obj,
            }
        )
        self._notify()
        return eid

    def _next_cmid(self, peer_id: int) -> int:
        self._cmids[peer_id] = self._cmids.get(peer_id, 0) + 1
        return self._cmids[peer_id]

    def _file_url(self, kind: str, owner_id: int, media_id: int, name: str) -> str:
        return f"{self.base_url}/files/{kind}/{owner_id}_{media_id}/{name}"

    def _store_photo(self, owner_id: int, data: bytes) -> _Media:
        media_id = next(self._media_ids)
        access_key = secrets.token_hex(9)
        width, height = self.photo_size
        longest = max(width, height)
        sizes: list[dict[str, Any]] = []
        # All sizes serve the original bytes (no resizing); dimensions follow VK rules.
        for size_type, max_side in _PHOTO_SIZE_TYPES:
            scale = min(1.0, max_side / longest)
            sizes.append(
                {
                    "type": size_type,
                    "width": round(width * scale),
                    "height": round(height * scale),
                    "url": self._file_url("photo", owner_id, media_id, f"{size_type}.jpg"),
                }
            )
            if scale == 1.0:
                break
        obj = {
            "album_id": -3,
            "date": int(time.time()),
            "id": media_id,
            "owner_id": owner_id,
            "access_key": access_key,
            "has_tags": False,
            "sizes": sizes,
            "text": "",
            "orig_photo": {
                "type": "base",
                "width": width,
                "height": height,
                "url": self._file_url("photo", owner_id, media_id, "base.jpg"),
            },
        }
        media = _Media("photo", owner_id, media_id, access_key, data, obj=obj)
        self._media["photo", owner_id, media_id] = media
        return media

    def _store_doc(self, owner_id: int, data: bytes, kind: str, title: str) -> _Media:
        media_id = next(self._media_ids)
        access_key = secrets.token_hex(9)
        ext = title.rsplit(".", 1)[-1].lower() if "." in title else ""
        obj: dict[str, Any]
        if kind == "audio_message":
            url = self._file_url(kind, owner_id, media_id, "voice")
            obj = {
                "id": media_id,
                "owner_id": owner_id,
                "duration": 3,
                "waveform": [0, 5, 12, 31, 12, 5, 0],
                "link_ogg": f"{url}.ogg",
                "link_mp3": f"{url}.mp3",
                "access_key": access_key,
            }
        else:
            obj = {
                "id": media_id,
                "owner_id": owner_id,
                "title": title,
                "size": len(data),
                "ext": ext,
                "date": int(time.time()),
                "type": 4 if ext in {"jpg", "jpeg", "png", "gif"} else 1,
                "url": self._file_url(kind, owner_id, media_id, title or "file"),
                "access_key": access_key,
            }
        media = _Media(kind, owner_id, media_id, access_key, data, title, ext, obj)
        self._media[kind, owner_id, media_id] = media
        return media

    @staticmethod
    def _sticker_obj(sticker_id: int) -> dict[str, Any]:
        images = [
            {"url": f"https://vk.com/sticker/1-{sticker_id}-{s}", "width": s, "height": s}
            for s in (64, 128, 256, 352, 512)
        ]
        return {
            "inner_type": "base_sticker_new",
            "product_id": 1,
            "sticker_id": sticker_id,
            "is_allowed": True,
            "images": images,
            "images_with_background": images,
        }

    def _resolve_attachments(self, attachment: str) -> tuple[list[bytes], list[bytes]]:
        photos: list[bytes] = []
        docs: list[bytes] = []
        items = [a.strip() for a in attachment.split(",") if a.strip()]
        if len(items) > 10:
            raise _param_error("too many attachments")
        for item in items:
            match = _ATTACHMENT_RE.match(item)
            if match is None:
                raise _param_error(f"attachment {item!r} is invalid")
            kind, owner, media_id, _key = match.groups()
            if kind not in _STORED_KINDS:
                continue  # wall posts, videos...: not modelled, accepted as is
            media = self._media.get((kind, int(owner), int(media_id)))
            if media is None:
                raise _param_error(f"attachment {item!r} not found")
            (photos if kind == "photo" else docs).append(media.data)
        return photos, docs

    @staticmethod
    def _parse_keyboard(raw: str) -> dict[str, Any]:
        def bad(reason: str) -> FakeVKError:
            return FakeVKError(911, f"{ERROR_MESSAGES[911]}: {reason}")

        try:
            keyboard = json.loads(raw)
        except ValueError:
            raise bad("not a JSON") from None
        if not isinstance(keyboard, dict) or not isinstance(keyboard.get("buttons"), list):
            raise bad("buttons must be an array")
        max_rows, max_total = _KEYBOARD_LIMITS[bool(keyboard.get("inline"))]
        rows = keyboard["buttons"]
        if len(rows) > max_rows:
            raise bad(f"too many rows ({len(rows)} > {max_rows})")
        total = 0
        for row in rows:
            if not isinstance(row, list) or len(row) > 5:
                raise bad("each row must be an array of at most 5 buttons")
            for button in row:
                action = button.get("action") if isinstance(button, dict) else None
                if not isinstance(action, dict) or action.get("type") not in _BUTTON_TYPES:
                    raise bad(f"invalid button {button!r}")
                if action["type"] in {"text", "callback", "open_link"} and not action.get("label"):
                    raise bad("button label is required")
                if len(str(action.get("label", ""))) > 40:
                    raise bad("button label is longer than 40 characters")
                payload = action.get("payload")
                if payload is not None:
                    size = len(payload if isinstance(payload, str) else json.dumps(payload))
                    if size > 255:
                        raise bad("payload is longer than 255 characters")
                total += 1
        if total > max_total:
            raise bad(f"too many buttons ({total} > {max_total})")
        return keyboard

    @staticmethod
    def _int(params: Mapping[str, str], name: str) -> int | None:
        value = params.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise _param_error(f"{name} not integer") from None

    @staticmethod
    def _float(params: Mapping[str, str], name: str) -> float | None:
        value = params.get(name)
        return None if value in (None, "") else float(value)

    def _require_int(self, params: Mapping[str, str], name: str) -> int:
        value = self._int(params, name)
        if value is None:
            raise _param_error(f"{name} is a required parameter")
        return value

    def _error_body(self, method: str, params: Mapping[str, str], err: FakeVKError) -> Any:
        # VK echoes method/oauth/v and the call's params (never the token).
        request_params = [
            {"key": "method", "value": method},
            {"key": "oauth", "value": "1"},
            *({"key": k, "value": v} for k, v in params.items()),
        ]
        return {
            "error": {
                "error_code": err.code,
                "error_msg": err.msg,
                "request_params": request_params,
                **err.extra,
            }
        }

    def _take_fail_rule(self, method: str) -> FakeVKError | None:
        now = time.monotonic()
        for window in self._fail_windows:
            if window.active(now) and (window.methods is None or method in window.methods):
                window.failures += 1
                return FakeVKError(window.code, window.msg)
        for rule in self._fail_rules:
            if rule.remaining > 0 and rule.method in (None, method):
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._fail_rules.remove(rule)
                return FakeVKError(rule.code, rule.msg, **rule.extra)
        return None

    def _over_rate_limit(self) -> bool:
        if self.rps_limit is None:
            return False
        now = time.monotonic()
        while self._call_times and now - self._call_times[0] >= 1.0:
            self._call_times.popleft()
        if len(self._call_times) >= self.rps_limit:
            return True
        self._call_times.append(now)
        return False

    # ------------------------------------------------------------------ HTTP handlers

    async def _handle_method(self, request: web.Request) -> web.Response:
        method = request.match_info["name"]
        raw: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            raw.update({k: v for k, v in form.items() if isinstance(v, str)})
        token = raw.pop("access_token", "")
        params = {k: v for k, v in raw.items() if k != "v"}
        call = ApiCall(method, params)
        self.calls.append(call)

        reason = "invalid"
        try:
            if not token or (self.token is not None and token != self.token):
                raise FakeVKError(5)
            if not raw.get("v"):
                raise FakeVKError(8)
            injected = self._take_fail_rule(method)
            if injected is not None:
                reason = "injected"
                raise injected
            if self._over_rate_limit():
                reason = "rate_limit"
                raise FakeVKError(6)
            handler = self._custom_methods.get(method) or self._methods.get(method)
            if handler is None:
                raise FakeVKError(3)
            try:
                body: Any = {"response": handler(params)}
            except ValueError as exc:  # malformed numbers etc.: VK answers error 100
                raise _param_error(str(exc)) from None
            except FakeVKError:
                raise
            except Exception as exc:
                # A JSON error keeps vkbottle from its 5 s "invalid response" reschedule loop.
                reason = "exception"
                raise FakeVKError(1, f"fake handler crashed: {exc!r}") from exc
        except FakeVKError as err:
            call.error_code = err.code
            self.failed.append(FailedCall(method, err.code, err.msg, params, reason))
            body = self._error_body(method, params, err)
        self._notify()
        return web.json_response(body, dumps=_dumps)

    async def _handle_long_poll(self, request: web.Request) -> web.Response:
        self.long_poll_requests += 1
        params: dict[str, str] = dict(request.query)
        if request.method == "POST":
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        current = len(self.updates) + 1

        if self._lp_failures:
            return web.json_response(self._long_poll_failure(self._lp_failures.popleft()))
        if params.get("act") != "a_check" or params.get("key") != self._lp_key:
            return web.json_response({"failed": 2})
        try:
            ts = int(params.get("ts", ""))
        except ValueError:
            return web.json_response({"failed": 1, "ts": str(current)})
        if ts < 1:
            return web.json_response({"failed": 1, "ts": str(current)})
        wait = min(max(int(params.get("wait") or 25), 0), 90)

        def ready() -> bool | None:
            if self._closing or self._lp_failures or len(self.updates) + 1 > ts:
                return True
            return None

        self._active_polls += 1
        self._notify()
        try:
            with contextlib.suppress(TimeoutError):
                await self._wait_until(ready, wait)
        finally:
            self._active_polls -= 1
        if self._lp_failures and not self._closing:
            return web.json_response(self._long_poll_failure(self._lp_failures.popleft()))
        batch = self.updates[ts - 1 :]
        return web.json_response(
            {"ts": str(len(self.updates) + 1), "updates": batch},
            dumps=_dumps,
        )

    def _long_poll_failure(self, code: int) -> dict[str, Any]:
        if code in (2, 3):
            self._lp_key = secrets.token_hex(20)
        body: dict[str, Any] = {"failed": code}
        if code == 1:
            body["ts"] = str(len(self.updates) + 1)
        if code == 4:
            body.update(min_version=0, max_version=3)
        return body

    async def _handle_upload(self, request: web.Request) -> web.Response:
        upload = self._uploads.get(request.match_info["token"])
        if upload is None:
            return web.json_response({"error": "upload_url expired"}, status=200)
        form = await request.post()
        field_name = "photo" if upload.kind == "photo" else "file"
        file_field = form.get(field_name)
        if isinstance(file_field, web.FileField):
            upload.data = file_field.file.read()
            upload.filename = file_field.filename
        token = request.match_info["token"]
        if upload.kind == "photo":
            photo = json.dumps([{"photo": token}] if upload.data is not None else [])
            return web.json_response({"server": 842137, "photo": photo, "hash": upload.hash})
        if upload.data is None:
            return web.json_response({"error": "no file"})
        return web.json_response({"file": f"{token}|{upload.hash}"})

    async def _handle_file(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        owner, _, media_id = request.match_info["key"].partition("_")
        try:
            media = self._media.get((kind, int(owner), int(media_id)))
        except ValueError:
            media = None
        if media is None:
            raise web.HTTPNotFound
        self.downloads.append(str(request.url))
        return web.Response(body=media.data, content_type="application/octet-stream")

    # ------------------------------------------------------------------ API methods

    def _groups_get_by_id(self, _params: dict[str, str]) -> dict[str, Any]:
        group = {
            "id": self.group_id,
            "name": self.group_name,
            "screen_name": f"club{self.group_id}",
            "is_closed": 0,
            "type": "group",
            "photo_50": f"https://vk.com/images/community_50.png?g={self.group_id}",
        }
        return {"groups": [group], "profiles": []}

    def _groups_get_long_poll_server(self, params: dict[str, str]) -> dict[str, Any]:
        if self._require_int(params, "group_id") != self.group_id:
            raise FakeVKError(15, "Access denied: no access to call this method")
        # Current ts: like VK, updates injected before this call are not delivered.
        return {"key": self._lp_key, "server": self.long_poll_url, "ts": str(len(self.updates) + 1)}

    def _users_get(self, params: dict[str, str]) -> list[dict[str, Any]]:
        users = []
        for raw_id in filter(None, params.get("user_ids", "").split(",")):
            user_id = int(raw_id.removeprefix("id")) if raw_id.removeprefix("id").isdigit() else 0
            if user_id <= 0:
                continue
            first, last = self.users.get(user_id, (f"User{user_id}", "Testov"))
            users.append(
                {
                    "id": user_id,
                    "first_name": first,
                    "last_name": last,
                    "can_access_closed": True,
                    "is_closed": False,
                }
            )
        return users

    def _message_fields(self, params: dict[str, str]) -> dict[str, Any]:
        """Validated content fields shared by messages.send and messages.edit."""
        text = params.get("message")
        if text is not None and len(text) > 4096:
            raise FakeVKError(914)
        keyboard = self._parse_keyboard(params["keyboard"]) if params.get("keyboard") else None
        attachment = params.get("attachment") or None
        photos, docs = self._resolve_attachments(attachment) if attachment else ([], [])
        return {
            "text": text,
            "keyboard": keyboard,
            "attachment": attachment,
            "photos": photos,
            "docs": docs,
            "lat": self._float(params, "lat"),
            "long": self._float(params, "long"),
        }

    def _messages_send(self, params: dict[str, str]) -> int | list[dict[str, Any]]:
        random_id = self._int(params, "random_id")
        if random_id is None:
            raise _param_error("random_id is a required parameter")
        list_form = "peer_ids" in params or "user_ids" in params
        if list_form:
            raw_ids = params.get("peer_ids") or params.get("user_ids") or ""
            peers = [int(p) for p in raw_ids.split(",") if p.strip()]
        elif (peer := self._int(params, "peer_id") or self._int(params, "user_id")) is not None:
            peers = [peer]
        elif (chat_id := self._int(params, "chat_id")) is not None:
            peers = [PEER_ID_OFFSET + chat_id]
        else:
            raise _param_error(
                "you should specify peer_id, user_id, domain, chat_id or user_ids param"
            )
        if len(peers) > 100:
            raise _param_error("peer_ids is too long")

        fields = self._message_fields(params)
        sticker_id = self._int(params, "sticker_id")
        has_content = (
            fields["text"] or fields["attachment"] or sticker_id
            or params.get("forward_messages") or params.get("forward")
            or fields["lat"] is not None
        )  # fmt: skip
        if not has_content:
            raise _param_error("message is empty or invalid")

        items: list[dict[str, Any]] = []
        for peer in peers:
            if peer in self._forbidden:
                code = self._forbidden[peer]
                if not list_form:
                    raise FakeVKError(code)
                # VK reports per-peer errors inside the list and omits message_id there.
                error = {"code": code, "description": ERROR_MESSAGES.get(code, "")}
                items.append({"peer_id": peer, "error": error})
                continue
            dedup_key = (peer, random_id)
            if random_id and dedup_key in self._random_ids:
                # VK silently returns the earlier message for a repeated random_id.
                message_id = self._random_ids[dedup_key]
                items.append({"peer_id": peer, "message_id": message_id,
                              "conversation_message_id": 0})  # fmt: skip
                continue
            message_id = next(self._message_ids)
            if random_id:
                self._random_ids[dedup_key] = message_id
            cmid = self._next_cmid(peer)
            self.sent.append(
                SentRecord(
                    method="messages.send",
                    peer_id=peer,
                    random_id=random_id,
                    message_id=message_id,
                    conversation_message_id=cmid,
                    sticker_id=sticker_id,
                    params=dict(params),
                    **fields,
                )
            )
            items.append(
                {"peer_id": peer, "message_id": message_id, "conversation_message_id": cmid}
            )
        if list_form:
            return items
        return int(items[0]["message_id"])

    def _messages_edit(self, params: dict[str, str]) -> int:
        peer_id = self._require_int(params, "peer_id")
        message_id = self._int(params, "message_id")
        cmid = self._int(params, "conversation_message_id")
        if message_id is None and cmid is None:
            raise _param_error("message_id or conversation_message_id is required")
        self.sent.append(
            SentRecord(
                method="messages.edit",
                peer_id=peer_id,
                message_id=message_id,
                conversation_message_id=cmid,
                params=dict(params),
                **self._message_fields(params),
            )
        )
        return 1

    def _messages_send_event_answer(self, params: dict[str, str]) -> int:
        event_id = params.get("event_id", "")
        user_id = self._require_int(params, "user_id")
        peer_id = self._require_int(params, "peer_id")
        if event_id not in self._callback_ids:
            raise _param_error("event_id is invalid")
        event_data = None
        if params.get("event_data"):
            try:
                event_data = json.loads(params["event_data"])
            except ValueError:
                raise _param_error("event_data is invalid") from None
        self.sent.append(
            SentRecord(
                method="messages.sendMessageEventAnswer",
                peer_id=peer_id,
                user_id=user_id,
                event_id=event_id,
                event_data=event_data,
                params=dict(params),
            )
        )
        return 1

    def _new_upload(self, kind: str) -> str:
        token = secrets.token_hex(12)
        self._uploads[token] = _Upload(kind)
        return f"{self.base_url}/upload/{token}"

    def _photos_get_messages_upload_server(self, _params: dict[str, str]) -> dict[str, Any]:
        return {
            "album_id": -3,
            "upload_url": self._new_upload("photo"),
            "user_id": 0,
            "group_id": self.group_id,
        }

    def _photos_save_messages_photo(self, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            photo_list = json.loads(params.get("photo") or "[]")
        except ValueError:
            photo_list = []
        token = photo_list[0].get("photo") if photo_list else None
        upload = self._uploads.get(str(token))
        if upload is None or upload.data is None:
            raise _param_error("photos_list is invalid")
        if params.get("hash") != upload.hash:
            raise FakeVKError(121)
        del self._uploads[str(token)]
        return [self._store_photo(-self.group_id, upload.data).obj]

    def _docs_get_messages_upload_server(self, params: dict[str, str]) -> dict[str, Any]:
        kind = params.get("type") or "doc"
        if kind not in {"doc", "audio_message", "graffiti"}:
            raise _param_error("type is invalid")
        return {"upload_url": self._new_upload(kind)}

    def _docs_save(self, params: dict[str, str]) -> dict[str, Any]:
        token, _, hash_ = (params.get("file") or "").partition("|")
        upload = self._uploads.get(token)
        if upload is None or upload.data is None or upload.kind == "photo":
            raise _param_error("file is invalid")
        if hash_ != upload.hash:
            raise FakeVKError(121)
        del self._uploads[token]
        title = params.get("title") or upload.filename or "file"
        media = self._store_doc(-self.group_id, upload.data, upload.kind, title)
        return {"type": upload.kind, upload.kind: media.obj}


__all__ = [
    "API_VERSION",
    "ERROR_MESSAGES",
    "PEER_ID_OFFSET",
    "ApiCall",
    "FailWindow",
    "FailedCall",
    "FakeVKError",
    "FakeVKServer",
    "SentRecord",
]
