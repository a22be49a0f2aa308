"""APScheduler 3 (AsyncIOScheduler) in the МЦУ's time zone, driving the sweeps of jobs.py."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from handlers.context import Services
from handlers.org import Summaries
from scheduler.jobs import JOBS, run_job

log = logging.getLogger(__name__)


def triggers(tz: ZoneInfo, summaries: Summaries) -> dict[str, BaseTrigger]:
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[summaries.weekly_weekday - 1]
    return {
        "reminders": IntervalTrigger(minutes=5, timezone=tz),
        "escalations": IntervalTrigger(minutes=15, timezone=tz),
        "polls": IntervalTrigger(minutes=10, timezone=tz),
        "daily_summary": CronTrigger(hour=summaries.daily_time.hour,
                                     minute=summaries.daily_time.minute, timezone=tz),
        "growth": CronTrigger(hour=summaries.daily_time.hour,
                              minute=summaries.daily_time.minute, timezone=tz),
        "housekeeping": IntervalTrigger(hours=1, timezone=tz),
        "weekly_summary": CronTrigger(day_of_week=weekday, hour=summaries.weekly_time.hour,
                                      minute=summaries.weekly_time.minute, timezone=tz),
    }


def build_scheduler(services: Services) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=services.tz)
    for name, trigger in triggers(services.tz, services.org.summaries).items():
        # Jobs get only names: never Bot or Message objects (they would not survive a restart).
        scheduler.add_job(_safe_run, trigger, args=[services, name], id=name, name=name,
                          coalesce=True, max_instances=1, misfire_grace_time=3600)
    return scheduler


async def _safe_run(services: Services, name: str) -> None:
    try:
        await run_job(services, name)
    except Exception:  # one failed sweep must not stop the clock; the next one catches up
        log.exception("job %s failed", name)


async def catch_up(services: Services) -> None:
    """At start, run every sweep once: what fell due while the process was down goes out now."""
    for name in JOBS:
        await _safe_run(services, name)
