"""The clock's jobs. Each one is a sweep: ask the core what is due at `now`, act, mark.

They are safe to run at any time, any number of times, from any number of processes: marks in
the database (outbox dedupe keys, poll timestamps) make them idempotent, so a restart catches up
and never repeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update

from handlers.analytics.growth_alerts import send_growth_alerts
from handlers.citizen.polls import send_polls
from handlers.context import Services
from handlers.erasure_cleanup import remove_orphan_files
from handlers.events import OutgoingPhoto, Reply
from handlers.i18n import Translator, translator
from handlers.messaging import queue, tell
from handlers.org import Role
from handlers.outbox import redact_stale_outbox
from handlers.recipients import group_chats, staff_accounts, staff_ids_with_role
from handlers.summaries import build_summary, chart, render, weekly_trend
from handlers.sweeps import send_escalations, send_reminders
from storage.models import Account, OutboxMessage, ProcessedUpdate

log = logging.getLogger(__name__)

JobFunction = Callable[[Services, datetime, bool], Awaitable[int]]


@dataclass(frozen=True)
class Job:
    name: str
    function: JobFunction
    description: str


async def reminders(services: Services, now: datetime, force: bool = False) -> int:
    async with services.sessions() as session, session.begin():
        return await send_reminders(session, services, now)


async def escalations(services: Services, now: datetime, force: bool = False) -> int:
    async with services.sessions() as session, session.begin():
        return await send_escalations(session, services, now)


async def polls(services: Services, now: datetime, force: bool = False) -> int:
    async with services.sessions() as session, session.begin():
        return await send_polls(session, services, now)


async def daily_summary(services: Services, now: datetime, force: bool = False) -> int:
    """To the chairman's bound group(s), once a day after the configured time (catching up if
    the process was down at 09:00); `force` re-sends, for an operator's `mcu jobs run`.

    Read in a read-only session, draw the chart in a thread with no transaction open, then
    queue in a short write transaction."""
    local = services.local(now)
    if not force and local.time() < services.org.summaries.daily_time:
        return 0
    async with services.readers() as session:
        groups = await group_chats(session, "summary")
        if not groups:
            log.info("daily summary: no summary group is bound yet (/bind_summary_group)")
            return 0
        summary = await build_summary(session, services, now, days=1)
    t = translator(services.default_locale)
    image = await asyncio.to_thread(chart, summary, services.files.root / "reports"
                                    / f"daily-{local:%Y-%m-%d}.png", t)
    text = render(summary, services, t)
    queued = 0
    async with services.sessions() as session, session.begin():
        for chat in groups:
            reply = Reply(text, title=t("summary.daily_title"), photos=[OutgoingPhoto(image)])
            key = f"daily:{local:%Y-%m-%d}:{chat.platform}:{chat.chat_id}"
            if force:
                key += f":manual:{now.isoformat()}"
            if await queue(session, services, chat, reply, audience="group", once_key=key,
                           now=now):
                queued += 1
    return queued


async def weekly_summary(services: Services, now: datetime, force: bool = False) -> int:
    """To the curator(s) on the configured weekday after the configured time."""
    local = services.local(now)
    settings = services.org.summaries
    if not force and (local.isoweekday() != settings.weekly_weekday
                      or local.time() < settings.weekly_time):
        return 0
    async with services.readers() as session:
        curators = await staff_ids_with_role(session, Role.CURATOR)
        accounts = await staff_accounts(session, curators)
        if not accounts:
            return 0
        summary = await build_summary(session, services, now, days=7)
        summary.weekly_trend = await weekly_trend(session, services, now)
    images = {}
    for locale in {account.locale for account in accounts}:
        images[locale] = await asyncio.to_thread(
            chart, summary, services.files.root / "reports"
            / f"weekly-{local:%Y-%m-%d}-{locale or 'default'}.png", translator(locale))

    async def weekly(t: Translator, account: Account) -> list[Reply]:
        image = images.get(account.locale) or next(iter(images.values()))
        return [Reply(render(summary, services, t, weekly=True), title=t("summary.weekly_title"),
                      photos=[OutgoingPhoto(image)])]

    key = f"weekly:{local:%G-W%V}" + (f":manual:{now.isoformat()}" if force else "")
    async with services.sessions() as session, session.begin():
        return await tell(session, services, curators, weekly, once_key=key, now=now)


async def growth(services: Services, now: datetime, force: bool = False) -> int:
    """Growing topics to the chairman and the press service, with the daily summary; each
    topic at most once in 7 days (a database mark), however often this runs."""
    if not force and services.local(now).time() < services.org.summaries.daily_time:
        return 0
    return await send_growth_alerts(services, now)


async def housekeeping(services: Services, now: datetime, force: bool = False) -> int:
    """Forget processed update ids after 3 days: Telegram keeps updates for 24 h and may start
    a new id sequence after a quiet week, so old ids must not shadow new messages. Empty the
    outbox rows that will never be delivered once their retention is over, and delete the
    attachment files no row names (152-ФЗ)."""
    async with services.sessions() as session, session.begin():
        await session.execute(delete(ProcessedUpdate)
                              .where(ProcessedUpdate.processed_at < now - timedelta(days=3)))
        redacted = await redact_stale_outbox(session, now)
    if redacted:
        log.info("housekeeping: %d undelivered outbox row(s) redacted", redacted)
    await remove_orphan_files(services)
    return 0


JOBS: dict[str, Job] = {job.name: job for job in (
    Job("reminders", reminders, "reminders before deadlines (every 5 min)"),
    Job("escalations", escalations, "overdue and not-taken escalations (every 15 min)"),
    Job("polls", polls, "satisfaction polls, reminders, expiry (every 10 min)"),
    Job("daily_summary", daily_summary, "daily summary to the chairman's group (09:00)"),
    Job("weekly_summary", weekly_summary, "weekly summary to the curator (Monday 09:00)"),
    Job("growth", growth, "growing topics to the chairman and the press (daily, 09:00)"),
    Job("housekeeping", housekeeping, "forget processed update ids after 3 days, redact "
                                      "undelivered outbox rows after 7 days, delete orphan "
                                      "files (hourly)"),
)}


async def run_job(services: Services, name: str, now: datetime | None = None,
                  force: bool = False, *, deliver_now: bool = False) -> int:
    """Run one job as if at `now`. With `deliver_now` (an operator's `mcu jobs run --now T`)
    what it queued follows the real clock: due at once, staff messages still held for
    working hours as they would be now, never waiting for the moment T."""
    job = JOBS[name]
    moment = now or services.now()
    count = await job.function(services, moment, force)
    if count and deliver_now:
        await release_to_real_clock(services, queued_at=moment)
    if count:
        services.on_outbox()
    log.info("job %s at %s: %s message(s) queued", name, moment.isoformat(), count)
    return count


async def release_to_real_clock(services: Services, queued_at: datetime) -> None:
    real_now = services.now()
    staff_hold = services.calendar.next_working_moment(real_now)
    async with services.sessions() as session, session.begin():
        for staff, moment in ((True, staff_hold), (False, real_now)):
            audience = (OutboxMessage.audience == "staff") if staff else (
                OutboxMessage.audience != "staff")
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.created_at == queued_at,
                       OutboxMessage.status == "pending", audience)
                .values(not_before=moment, next_attempt_at=moment))
