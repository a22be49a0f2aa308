"""Telegram's long polling: getUpdates with an offset that only passes handled updates.

aiogram's own polling confirms a batch as soon as it is dispatched, so a crash loses the
updates under way. Here the offset is the acknowledgement floor: after a crash Telegram sends
the unfinished updates again, and the database's processed-update marks drop those that were
in fact handled. Each update enters its user's lane before aiogram parses or filters it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import aiohttp
from aiogram import Bot, Dispatcher
from aiogram.types import Update

from bot.channel import failure
from bot.lanes import AckFloor, Lanes
from bot.ops_http import HEALTH
from bot.polling import Backoff

log = logging.getLogger(__name__)

POLL_TIMEOUT = 25  # long-poll seconds
POLL_PAUSE_BUSY = 1.0  # longest wait for a turn to finish before asking again
# getUpdates answers at most 100 updates from the floor on, the ones under way included: with
# a backlog, asking again after every finished turn would fetch and parse ~100 updates for one
# new one. With this many under way the poller waits until half of them are done.
BACKLOG_HIGH = 50


class TelegramPoller:
    def __init__(self, dp: Dispatcher, lanes: Lanes) -> None:
        self.dp = dp
        self.lanes = lanes
        self.floor = AckFloor()

    async def run(self, bot: Bot) -> None:
        allowed = self.dp.resolve_used_update_types()
        backoff = Backoff("telegram getUpdates")
        while True:
            try:
                raws = await get_updates(bot, self.floor.floor(), allowed)
            except Exception as error:
                await backoff.failed(error, getattr(error, "retry_after", None))
                continue
            backoff.succeeded()
            HEALTH.polled("telegram")
            if raws:
                HEALTH.update_arrived("telegram")
            fresh = 0
            for raw in raws:
                update_id = raw.get("update_id")
                if not isinstance(update_id, int) or not self.floor.fresh(update_id):
                    continue  # still under way, or handled already
                self.floor.received(update_id)
                fresh += 1
                self.lanes.submit(lane_key(raw), functools.partial(self._handle, bot, raw))
            if raws and not fresh:
                # Only updates still under way came back: wait for one to finish rather
                # than asking again at once.
                await self._wait_for_room(self.floor.in_flight() - 1)
            elif self.floor.in_flight() >= BACKLOG_HIGH:
                await self._wait_for_room(BACKLOG_HIGH // 2)

    async def _wait_for_room(self, in_flight: int) -> None:
        """Until at most `in_flight` updates are under way, or POLL_PAUSE_BUSY passed."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(POLL_PAUSE_BUSY):
                while self.floor.in_flight() > max(in_flight, 0):
                    self.floor.changed.clear()
                    await self.floor.changed.wait()

    async def _handle(self, bot: Bot, raw: dict[str, Any]) -> None:
        update_id = raw["update_id"]
        try:
            await feed(self.dp, bot, raw)
        except Exception as error:
            log.error("telegram update %s failed: %s", update_id, failure(error))
        finally:
            self.floor.handled(update_id)


async def feed(dp: Dispatcher, bot: Bot, raw: dict[str, Any]) -> None:
    """One raw update through aiogram, from inside its user's lane (polling and webhook
    alike). An unreadable update is skipped; a failed turn raises."""
    try:
        update = Update.model_validate(raw, context={"bot": bot})
    except ValueError:
        # Its fields may hold a name or a text: log the number only.
        log.warning("telegram update %s could not be read; skipped", raw.get("update_id"))
        return
    await dp.feed_update(bot, update)


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
