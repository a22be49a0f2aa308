"""`mcu worker`: the outbox sender and the scheduler, in any number of copies on one database.

Each worker opens the messengers for sending only (no polling, no webhook: `mcu serve` or
`mcu run` receives), delivers the outbox (scheduler/outbox.py: claims that never let two
workers send one row or reorder a chat), counts every send against the deployment's shared
rate limits (scheduler/shared_limits.py), and competes for the scheduler's leadership
(scheduler/leader.py): exactly one worker runs the sweeps, and another takes over within
seconds when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.bootstrap import build_services, build_transports, install_signal_handlers
from bot.lease import process_identity
from bot.settings import Settings
from handlers.clock import Clock
from handlers.core import Core
from scheduler.leader import election_for, lead
from scheduler.outbox import OutboxSender
from scheduler.runner import LeaderScheduler
from scheduler.shared_limits import deployment_limiter
from storage.db import create_engine, is_sqlite

log = logging.getLogger(__name__)


async def serve_worker(settings: Settings, stop: asyncio.Event | None = None, *,
                       clock: Clock | None = None) -> None:
    """Run until SIGINT/SIGTERM (or `stop` is set)."""
    stop = stop or asyncio.Event()
    install_signal_handlers(stop)
    engine = create_engine(settings.database_url, busy_timeout=settings.sqlite_busy_timeout)
    services = build_services(settings, engine, clock)
    sender = OutboxSender(services,
                          limiter=deployment_limiter(
                              services.sessions, settings.database_url,
                              telegram_per_second=settings.telegram_messages_per_second))
    # What the leader's sweeps queue goes out from here at once; the other workers find it
    # on their next sweep.
    services.on_outbox = sender.wake
    transports = build_transports(settings, Core(services), sender)
    sender.transports = transports
    scheduler = LeaderScheduler(services)
    election = election_for(services, settings.database_url, process_identity())
    leadership: asyncio.Task[None] | None = None
    metrics = _serve_metrics(settings)
    if is_sqlite(settings.database_url):
        log.warning("SQLite: rate limits are counted in this process only; run one worker "
                    "(or `mcu run`) per database, or move to PostgreSQL for several")
    try:
        for name, transport in transports.items():
            await transport.open_for_sending()
            log.info("%s: open for sending", name)
        await sender.start()
        leadership = asyncio.create_task(lead(election, scheduler.start, scheduler.stop),
                                         name="scheduler-leadership")
        log.info("worker is running (outbox sender; scheduler when elected)")
        await _until(stop, leadership)
    finally:
        if leadership is not None:
            leadership.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leadership
        await scheduler.stop()
        await election.close()
        await sender.stop()
        for transport in transports.values():
            await transport.stop()
        await engine.dispose()
        if metrics is not None:
            metrics.shutdown()
        log.info("worker stopped")


async def _until(stop: asyncio.Event, leadership: asyncio.Task[None]) -> None:
    """Wait for the stop; a leadership loop that ended by an error is reported, not hidden."""
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopped, leadership}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if leadership.done() and not leadership.cancelled() and leadership.exception():
        raise leadership.exception()  # type: ignore[misc]


def _serve_metrics(settings: Settings):  # type: ignore[no-untyped-def]
    """/metrics on MCU_SERVE_HOST:MCU_SERVE_PORT when the port is set (a worker receives
    nothing, so it needs no web application of its own)."""
    if settings.serve_port is None:
        return None
    from prometheus_client import start_http_server

    server, _thread = start_http_server(settings.serve_port, settings.serve_host)
    log.info("metrics on http://%s:%s/metrics", settings.serve_host, settings.serve_port)
    return server
