"""How VK events arrive: the Bots Long Poll (one process polls a community) or the Callback
API (VK posts each event to our receiver). Either way each event enters its user's lane
before anything looks at it, and is acknowledged only once handled: the long poll's saved
`ts` passes only handled events; a callback is answered "ok" once it was handled.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from vkbottle import API, AiohttpClient, GroupEventType

from bot.lanes import AckFloor, Lanes
from bot.ops_http import HEALTH
from bot.polling import Backoff
from bot.settings import Settings

log = logging.getLogger(__name__)

LONG_POLL_WAIT = 25  # seconds
CALLBACK_ANSWER_WITHIN = 20.0  # seconds; VK re-sends an event it got no "ok" for

HandleEvent = Callable[[dict[str, Any], "int | None"], Awaitable[None]]
EVENT_TYPES = (GroupEventType.MESSAGE_NEW, GroupEventType.MESSAGE_EVENT)


async def long_poll(api: API, http: AiohttpClient, group_id: int | None, cursor: PollCursor,
                    lanes: Lanes, handle: HandleEvent) -> None:
    """Bots Long Poll whose saved `ts` only passes events already handled: after a crash
    the unfinished events come again, and the processed-update marks drop repeats."""
    backoff = Backoff("VK long poll")
    server: dict[str, Any] | None = None
    while True:
        try:
            if server is None:
                server = await long_poll_server(api, group_id, cursor)
                cursor.start(await cursor.load() or str(server["ts"]))
            data = await http.request_json(
                url=server["server"], method="POST",
                params={"act": "a_check", "key": server["key"], "ts": cursor.ts,
                        "wait": LONG_POLL_WAIT},
                timeout=aiohttp.ClientTimeout(total=LONG_POLL_WAIT + 15))
        except Exception as error:
            await backoff.failed(error)
            continue
        backoff.succeeded()
        HEALTH.polled("vk")
        failed = data.get("failed")
        if failed == 1:  # the history is gone: what was not fetched cannot be had
            log.error("VK long poll history lost; continuing from the newest events")
            cursor.jump(str(data.get("ts")))
            continue
        if failed in (2, 3):  # the key expired (2) or the server lost our state (3)
            server = None
            continue
        updates = [u for u in data.get("updates") or [] if isinstance(u, dict)]
        if updates:
            HEALTH.update_arrived("vk")
        for update, number in zip(updates, cursor.batch(str(data.get("ts")), len(updates)),
                                  strict=True):
            lanes.submit(lane_key(update), functools.partial(handle, update, number))
        await cursor.save()


async def long_poll_server(api: API, group_id: int | None, cursor: PollCursor
                           ) -> dict[str, Any]:
    if group_id is None:
        groups = (await api.request("groups.getById", {}))["response"]
        groups = groups.get("groups", groups) if isinstance(groups, dict) else groups
        group_id = int(groups[0]["id"])
    cursor.group_id = group_id
    return (await api.request("groups.getLongPollServer", {"group_id": group_id}))["response"]


class CallbackReceiver:
    """The Callback API: an aiohttp server that answers VK's confirmation and checks the
    secret of every event."""

    def __init__(self, settings: Settings, lanes: Lanes, handle: HandleEvent) -> None:
        self.settings = settings
        self.lanes = lanes
        self.handle = handle
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str | None:
        """Where it listens (its real port when configured as 0)."""
        if self._runner is None or not self._runner.addresses:
            return None
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}{self.settings.vk_callback_path}"

    def mount(self, app: web.Application) -> None:
        """Receive on another process's web application (`mcu serve`)."""
        app.router.add_post(self.settings.vk_callback_path, self._on_request)

    async def start(self) -> None:
        app = web.Application()
        self.mount(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.vk_callback_host,
                           self.settings.vk_callback_port)
        await site.start()
        log.info("VK Callback API receiver listens on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _on_request(self, request: web.Request) -> web.Response:
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
        if body.get("type") in EVENT_TYPES:
            HEALTH.update_arrived("vk")
            # "ok" once the event is handled (VK re-sends an event it got no "ok" for, and
            # the processed-update marks drop the repeat); a slow one is answered anyway.
            done = self.lanes.submit(lane_key(body),
                                     functools.partial(self.handle, body, None))
            try:
                await asyncio.wait_for(asyncio.shield(done), CALLBACK_ANSWER_WITHIN)
            except TimeoutError:
                pass
            except Exception:  # not committed: no "ok", so VK sends it again
                return web.Response(status=503, text="try again")
        return web.Response(text="ok")


def lane_key(update: dict[str, Any]) -> tuple[str, int]:
    """The user an event belongs to, read before anything else looks at it."""
    obj = update.get("object") if isinstance(update.get("object"), dict) else {}
    assert isinstance(obj, dict)
    message = obj.get("message") if isinstance(obj.get("message"), dict) else {}
    assert isinstance(message, dict)
    user = vk_id(message.get("from_id")) or vk_id(obj.get("user_id"))
    return ("user", user)


def vk_id(value: Any) -> int:
    """An id from an untrusted event; 0 when it is not a sane integer."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return number if 0 < number < 2**53 else 0


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
