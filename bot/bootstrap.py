"""The composition root: builds the services, the core, the transports and the background jobs."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.platforms import capabilities
from bot.settings import Settings
from bot.transport import Transport
from handlers.clock import Clock, SystemClock
from handlers.context import Services
from handlers.core import Core
from handlers.files import FileStore
from handlers.org import load_organisation
from handlers.topics import TopicSuggester
from scheduler.outbox import OutboxSender
from scheduler.runner import build_scheduler, catch_up
from scheduler.shared_limits import deployment_limiter
from storage.db import create_engine, session_factory

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    services: Services
    core: Core
    sender: OutboxSender
    transports: dict[str, Transport] = field(default_factory=dict)
    scheduler: AsyncIOScheduler | None = None

    async def close(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.sender.stop()
        for transport in self.transports.values():
            await transport.stop()
        await self.engine.dispose()


def build_services(settings: Settings, engine: AsyncEngine, clock: Clock | None = None) -> Services:
    from handlers.topics.suggester import LinearTopicSuggester

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    org = load_organisation(settings.org_file)
    return Services(
        sessions=session_factory(engine, tz=settings.tz),
        org=org,
        clock=clock or SystemClock(),
        files=FileStore(settings.data_dir),
        tz=settings.tz,
        default_locale=settings.locale,
        flood_limit_per_minute=settings.flood_limit_per_minute,
        capabilities=capabilities(settings),
        # Cheap to create: the model is loaded or trained on first use or by warm_up.
        topics=LinearTopicSuggester(org, cache_dir=settings.data_dir / "cache"),
    )


def build_app(settings: Settings, clock: Clock | None = None) -> App:
    engine = create_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    services = build_services(settings, engine, clock)
    core = Core(services)
    # Every process that sends counts against one window on PostgreSQL (several processes).
    sender = OutboxSender(services,
                          limiter=deployment_limiter(
                              services.sessions, settings.database_url,
                              telegram_per_second=settings.telegram_messages_per_second))
    services.on_outbox = sender.wake
    services.on_chats = sender.serve_chats
    app = App(settings=settings, engine=engine, services=services, core=core, sender=sender)
    app.transports = build_transports(settings, core, sender)
    sender.transports = app.transports
    return app


def build_transports(settings: Settings, core: Core,
                     sender: OutboxSender) -> dict[str, Transport]:
    transports: dict[str, Transport] = {}
    if settings.telegram_enabled:
        from bot.telegram import TelegramTransport

        transports["telegram"] = TelegramTransport(settings, core, sender)
    if settings.vk_enabled:
        from bot.vk import VKTransport

        transports["vk"] = VKTransport(settings, core, sender)
    return transports


async def serve(app: App, stop: asyncio.Event | None = None, *,
                with_scheduler: bool = True) -> None:
    """Run the transports, the outbox sender and the scheduler until SIGINT/SIGTERM (or `stop`
    is set)."""
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    keeper = await hold_sqlite(app)
    warm_up_calendar(app.services)
    ops = None
    if app.settings.serve_port is not None:
        from bot.ops_http import start_ops_server

        ops = await start_ops_server(app.services, app.settings.serve_host,
                                     app.settings.serve_port)
    for name, transport in app.transports.items():
        await transport.start()
        # A running transport knows more (Telegram: its @username, so a deep link).
        app.services.capabilities[name] = transport.capabilities
        log.info("%s transport started", name)
    await app.sender.start()
    warm_up_topics(app.services)
    if with_scheduler:
        app.scheduler = build_scheduler(app.services)
        app.scheduler.start()
        await catch_up(app.services)
    log.info("МЦУ assistant is running")
    try:
        await stop.wait()
    finally:
        if ops is not None:
            await ops.cleanup()
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        await app.close()


async def hold_sqlite(app: App) -> asyncio.Task[None] | None:
    """On SQLite, `mcu run` holds the one-process lease; a second process on the same file
    is told plainly (it stands by: the first one polls the messengers)."""
    from bot.lease import claim_single_process, keep_single_process
    from storage.db import is_sqlite

    if not is_sqlite(app.settings.database_url):
        return None
    if not await claim_single_process(app.services):
        log.error("another `mcu run` or `mcu serve` is using this SQLite database. SQLite "
                  "allows one process: stop one of them, or move to PostgreSQL to run "
                  "several (this one stands by and takes over when the other stops)")
    return asyncio.create_task(keep_single_process(app.services), name="sqlite-process")


def telegram_username(settings: Settings) -> str | None:
    """The bot's @username for commands that run without the transport (invite links)."""
    if settings.telegram_bot_username:
        return settings.telegram_bot_username
    if not settings.telegram_enabled:
        return None
    from bot.telegram_client import fetch_username

    try:
        return asyncio.run(fetch_username(settings))
    except Exception:  # offline or a wrong token: the code itself still works
        return None


def warm_up_calendar(services: Services) -> None:
    """Build this year's and next year's working-day tables now (some 50 ms): otherwise the
    first report registered after a start pays for them inside its turn."""
    today = services.local(services.now()).date()
    for year in (today.year, today.year + 1):
        services.calendar.is_working_day(today.replace(year=year, day=1))


def warm_up_topics(services: Services) -> None:
    """Load (or train) the topic model in a worker thread: start-up does not wait for it, and
    until it is ready the dialogs simply show no suggestion."""
    suggester = services.topics
    if suggester is None or suggester.ready:
        return
    future = asyncio.get_running_loop().run_in_executor(None, _warm_up, suggester)
    future.add_done_callback(_report_warm_up)


def _warm_up(suggester: TopicSuggester) -> None:
    try:
        suggester.warm_up()
    finally:
        # Loading (or training) frees what it only needed on the way: the file's bytes, the
        # parsed JSON, training's arrays. Hand the freed heap back to the system (3 MB of
        # idle RSS, bench/memory.py).
        release_free_memory()


def release_free_memory() -> None:
    """Collect garbage and return the allocator's free pages to the OS (glibc's
    malloc_trim); a no-op where there is no such call (macOS, musl, Windows)."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def _report_warm_up(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("topic model not built: %r", done.exception())


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def serve_scheduler(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """`mcu scheduler`: the clock alone, for deployments that separate it from the bots.
    It only queues; the process running the transports delivers the outbox."""
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    engine = create_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    services = build_services(settings, engine)
    scheduler = build_scheduler(services)
    scheduler.start()
    await catch_up(services)
    log.info("scheduler is running")
    try:
        await stop.wait()
    finally:
        scheduler.shutdown(wait=False)
        await engine.dispose()


async def flush_outbox(settings: Settings, services: Services) -> int | None:
    """`mcu jobs run …`: deliver what is due now from this process; None when no messenger
    is configured here (then the running `mcu run` delivers it)."""
    sender = OutboxSender(services,
                          limiter=deployment_limiter(
                              services.sessions, settings.database_url,
                              telegram_per_second=settings.telegram_messages_per_second))
    sender.transports = transports = build_transports(settings, Core(services), sender)
    if not transports:
        return None
    sent = 0
    try:
        for transport in transports.values():
            await transport.open_for_sending()
        while delivered := await sender.sweep():
            sent += delivered
    finally:
        for transport in transports.values():
            await transport.stop()
    return sent
