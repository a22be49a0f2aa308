"""APScheduler 3 (AsyncIOScheduler) in the МЦУ's time zone, driving the sweeps of jobs.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from handlers.context import Services
from handlers.org import Summaries
from scheduler.jobs import JOBS, run_job
from scheduler.metrics import SCHEDULER_LEADER, SWEEP_FAILURES, SWEEP_SECONDS

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
    started = time.perf_counter()
    try:
        await run_job(services, name)
    except Exception:  # one failed sweep must not stop the clock; the next one catches up
        SWEEP_FAILURES.labels(job=name).inc()
        log.exception("job %s failed", name)
    finally:
        SWEEP_SECONDS.labels(job=name).observe(time.perf_counter() - started)


async def catch_up(services: Services) -> None:
    """At start, run every sweep once: what fell due while the process was down goes out now."""
    for name in JOBS:
        await _safe_run(services, name)


class LeaderScheduler:
    """The scheduler of the elected leader (scheduler/leader.py): built afresh with its own
    in-memory job store each time this process becomes the leader (a store is never shared
    between schedulers), and stopped at once when leadership is lost."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.scheduler: AsyncIOScheduler | None = None
        self._catch_up: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.scheduler = build_scheduler(self.services)
        self.scheduler.start()
        SCHEDULER_LEADER.set(1)
        # What fell due while nobody led goes out now; the sweeps' dedupe keys make a repeat
        # of what the previous leader already queued harmless.
        self._catch_up = asyncio.create_task(catch_up(self.services), name="catch-up")

    async def stop(self) -> None:
        SCHEDULER_LEADER.set(0)
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        task, self._catch_up = self._catch_up, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
