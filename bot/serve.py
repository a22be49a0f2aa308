"""`mcu serve`: a stateless web process, run as N copies behind a reverse proxy.

One aiohttp application on MCU_SERVE_HOST:MCU_SERVE_PORT answers:
- the Telegram webhook (MCU_WEBHOOK_PATH) and the VK Callback API (MCU_VK_CALLBACK_PATH), each
  update acknowledged only once its turn is committed (bot/telegram_webhook.py, the
  CallbackReceiver of bot/vk_polling.py);
- GET /healthz and GET /metrics (bot/ops_http.py).

Nothing lives in the process between requests: the dialog state, the outbox and the marks of
processed updates are in PostgreSQL, where a per-chat advisory lock (storage/chat_lock.py)
keeps one chat's turns in order across the copies. A turn's own replies are delivered at
once, as under `mcu run`; so are the other chats it queued messages for (a head's card), so
that a citizen's confirmation reaches the head without waiting for a worker's sweep. Every
other delivery (retries, the scheduler's notifications) is the work of `mcu worker`.

On SQLite there is one process only: a second `mcu run` or `mcu serve` on the same database
is refused at start-up.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from sqlalchemy import event
from sqlalchemy.orm import Session

from bot.bootstrap import (
    App,
    build_app,
    install_signal_handlers,
    warm_up_calendar,
    warm_up_topics,
)
from bot.lease import claim_single_process, keep_single_process
from bot.ops_http import add_ops_routes
from bot.settings import Settings
from handlers.outbox import QUEUED_CHATS
from scheduler.outbox import OutboxSender
from storage.db import is_sqlite

log = logging.getLogger(__name__)

DEFAULT_PORT = 8080


class ServeError(Exception):
    """A configuration that cannot serve (said to the administrator in one line)."""


def check_settings(settings: Settings) -> None:
    if not (settings.telegram_enabled or settings.vk_enabled):
        raise ServeError("mcu serve: no messenger token is set (MCU_TELEGRAM_TOKEN, or "
                         "MCU_VK_TOKEN with MCU_VK_GROUP_ID)")
    if settings.telegram_enabled:
        if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
            raise ServeError(
                "mcu serve: MCU_WEBHOOK_SECRET is not set. Telegram sends it back with every "
                "update, so only Telegram can post to the webhook; choose 1-256 characters "
                "of A-Z, a-z, 0-9, _ and -, e.g. `openssl rand -hex 32`")
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", settings.webhook_secret.get_secret_value()):
            raise ServeError("mcu serve: MCU_WEBHOOK_SECRET may hold only A-Z, a-z, 0-9, _ "
                             "and - (1-256 characters), as Telegram requires")
        if not settings.public_url:
            raise ServeError("mcu serve: MCU_PUBLIC_URL is not set: the https address at "
                             "which Telegram reaches this deployment (e.g. "
                             "https://mcu.example.ru)")
    if settings.vk_enabled and settings.vk_callback_secret is None:
        raise ServeError("mcu serve: MCU_VK_CALLBACK_SECRET is not set: the secret key of "
                         "the community's Callback API server settings")


class TurnDeliveries:
    """After a commit in this process, deliver the chats it queued messages for.

    The session factory's commits are watched (SQLAlchemy session events): the chats of new
    outbox rows (recorded by `enqueue`) are handed to the sender once the transaction has
    committed, never before, so a rolled-back turn delivers nothing. Claims keep this safe
    next to the workers: a row is sent by whoever claims it first.
    """

    def __init__(self, sender: OutboxSender) -> None:
        self.sender = sender

    def install(self, app: App) -> None:
        class Tracked(Session):
            pass

        event.listen(Tracked, "after_commit", self._committed)
        event.listen(Tracked, "after_rollback", self._rolled_back)
        app.services.sessions.configure(sync_session_class=Tracked)

    def _committed(self, session: Session) -> None:
        # `enqueue` (handlers/outbox.py) records the chats of the rows it queues.
        chats = session.info.pop(QUEUED_CHATS, None)
        if chats:
            self.sender.serve_now(chats)

    @staticmethod
    def _rolled_back(session: Session) -> None:
        session.info.pop(QUEUED_CHATS, None)


async def serve_webhooks(settings: Settings, port: int | None = None,
                         stop: asyncio.Event | None = None) -> None:
    """Run `mcu serve` until SIGINT/SIGTERM (or `stop`)."""
    check_settings(settings)
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    app = build_app(settings)
    deliveries = TurnDeliveries(app.sender)
    runner: web.AppRunner | None = None
    keeper: asyncio.Task[None] | None = None
    try:
        if is_sqlite(settings.database_url):
            if not await claim_single_process(app.services):
                raise ServeError(
                    "mcu serve: another `mcu run` or `mcu serve` is using this SQLite "
                    "database. SQLite allows one process: run one, or move to PostgreSQL "
                    "(MCU_DATABASE_URL=postgresql+asyncpg://…) to run several. If that "
                    "process was stopped just now, its claim expires within 30 s.")
            keeper = asyncio.create_task(keep_single_process(app.services),
                                         name="sqlite-process")
        web_app = web.Application()
        add_ops_routes(web_app, app.services)
        for name, transport in app.transports.items():
            await transport.start_webhook(web_app)
            log.info("%s receives through the webhook", name)
        deliveries.install(app)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        host = settings.serve_host
        port = port or settings.serve_port or DEFAULT_PORT
        await web.TCPSite(runner, host, port).start()
        warm_up_calendar(app.services)
        warm_up_topics(app.services)
        log.info("МЦУ web process is serving on http://%s:%s", host, port)
        await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()  # no new requests; those under way have finished
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await app.close()
