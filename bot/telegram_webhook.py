"""Telegram's webhook (`mcu serve`): updates posted to us, answered only once committed.

aiogram's request handler checks the secret token in constant time (401 otherwise); each
update then enters its user's lane and goes through the same path as a polled one
(bot/telegram_polling.py `feed`). The answer waits for the turn, never in the background:
Telegram holds back a chat's next update until we answer, and a 5xx (or a process that died
before answering) makes it send the update again. The processed-update marks drop a repeat
of a turn that did commit.

Registration (`setWebhook` with the secret) is retried in the background while the Bot API
cannot be reached; the process serves /healthz meanwhile and reports it there.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from typing import TYPE_CHECKING, Any

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

from bot.channel import failure
from bot.lanes import Lanes
from bot.ops_http import HEALTH
from bot.polling import Backoff
from bot.telegram_client import introduce
from bot.telegram_polling import feed, lane_key

if TYPE_CHECKING:
    from bot.telegram import TelegramTransport

log = logging.getLogger(__name__)

REGISTER_PAUSE_MAX = 10.0  # seconds between attempts while the Bot API is unreachable


class WebhookHandler(SimpleRequestHandler):
    def __init__(self, dp: Dispatcher, bot: Bot, lanes: Lanes, secret: str) -> None:
        super().__init__(dp, bot, handle_in_background=False, secret_token=secret)
        self.lanes = lanes

    def verify_secret(self, telegram_secret_token: str, bot: Bot) -> bool:
        """In constant time, and as bytes: a forged header with any characters is a 401."""
        expected = (self.secret_token or "").encode()
        return bool(expected) and hmac.compare_digest(
            telegram_secret_token.encode("utf-8", "surrogateescape"), expected)

    async def _handle_request(self, bot: Bot, request: web.Request) -> web.Response:
        try:
            raw = await request.json()
        except ValueError:
            return web.Response(status=400, text="bad request")
        if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
            return web.Response(status=400, text="bad request")
        HEALTH.update_arrived("telegram")
        done = self.lanes.submit(lane_key(raw), functools.partial(feed, self.dispatcher, bot,
                                                                    raw))
        try:
            # Shielded: a caller that went away must not cancel a turn under way.
            await asyncio.shield(done)
        except Exception as error:
            log.warning("telegram update %s not acknowledged: %s", raw["update_id"],
                        failure(error))
            return web.Response(status=503, text="try again")
        return web.json_response({})

    async def close(self) -> None:
        """The transport owns the bot's session and closes it on stop."""


def mount(transport: TelegramTransport, app: web.Application, bot: Bot) -> None:
    settings = transport.settings
    assert settings.webhook_secret is not None
    handler = WebhookHandler(transport.dp, bot, transport.lanes,
                             settings.webhook_secret.get_secret_value())
    handler.register(app, path=settings.webhook_path)


def webhook_url(transport: TelegramTransport) -> str:
    settings = transport.settings
    assert settings.public_url is not None
    return settings.public_url.rstrip("/") + "/" + settings.webhook_path.lstrip("/")


async def register(transport: TelegramTransport, bot: Bot) -> None:
    """getMe, the command menu and setWebhook, until they succeed (each process does it;
    setWebhook is idempotent)."""
    settings = transport.settings
    assert settings.webhook_secret is not None
    backoff = Backoff("telegram setWebhook", high=REGISTER_PAUSE_MAX)
    while True:
        try:
            me = await introduce(bot)
            await bot.set_webhook(
                webhook_url(transport),
                secret_token=settings.webhook_secret.get_secret_value(),
                allowed_updates=transport.dp.resolve_used_update_types(),
                drop_pending_updates=False)
        except Exception as error:
            HEALTH.webhook_failed("telegram", type(error).__name__)
            await backoff.failed(error, _retry_after(error))
            continue
        HEALTH.webhook_registered("telegram")
        transport.known_as(me.username)
        log.info("telegram webhook registered for @%s", me.username)
        return


def _retry_after(error: Exception) -> float | None:
    value: Any = getattr(error, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None
