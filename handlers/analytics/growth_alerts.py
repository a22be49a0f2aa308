"""The `growth` job: the chairman and the press service hear of a growing topic once a week.

Read in a read-only session, render the charts in a thread with no transaction open, then
mark and queue in one short write transaction. The mark (growth_alerts: topic, day D) keeps a
topic quiet for 7 days after an alert, and the outbox dedupe key keeps a second process or a
retried run from queueing the same alert twice.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.analytics.growth import WEEK, Growth, growth, weekly_counts
from handlers.context import Services
from handlers.events import OutgoingPhoto, Reply
from handlers.i18n import Translator, translator
from handlers.messaging import tell
from handlers.org import Role
from handlers.recipients import staff_accounts, staff_ids_with_role
from storage.models import Account, GrowthAlert

CHART_WEEKS = 8
RECIPIENTS = (Role.CHAIRMAN, Role.PRESS)


@dataclass
class Due:
    growth: Growth
    weeks: list[tuple[date, int]]


async def quiet_topics(session: AsyncSession, day: date) -> set[str]:
    """Topics announced in the 7 days up to `day`: not announced again yet."""
    rows = await session.scalars(select(GrowthAlert.key).where(
        GrowthAlert.scope == "topic", GrowthAlert.day > day - timedelta(days=WEEK),
        GrowthAlert.day <= day))
    return set(rows.all())


async def recipients(session: AsyncSession) -> list[Account]:
    ids: list[int] = []
    for role in RECIPIENTS:
        ids += await staff_ids_with_role(session, role)
    return await staff_accounts(session, ids)


async def send_growth_alerts(services: Services, now: datetime) -> int:
    day = services.local(now).date()
    async with services.readers() as session:
        flagged = [g for g in await growth(session, services.org.analytics, day) if g.flagged]
        quiet = await quiet_topics(session, day) if flagged else set()
        due = [Due(g, await weekly_counts(session, day, CHART_WEEKS, key=g.key))
               for g in flagged if g.key not in quiet]
        accounts = await recipients(session) if due else []
    if not due:
        return 0
    charts: dict[tuple[str, str], Path] = {}
    for locale in sorted({services.default_locale, *(a.locale or services.default_locale
                                                     for a in accounts)}):
        t = translator(locale)
        for item in due:
            path = services.files.root / "reports" / f"growth-{item.growth.key}-{day}-{locale}.png"
            charts[(item.growth.key, locale)] = await asyncio.to_thread(
                growth_chart, item, services, t, path)
    staff_ids = [account.staff_id for account in accounts if account.staff_id is not None]
    queued = 0
    async with services.sessions() as session, session.begin():
        quiet = await quiet_topics(session, day)  # another process may have been first
        for item in due:
            g = item.growth
            if g.key in quiet:
                continue
            session.add(GrowthAlert(scope=g.scope, key=g.key, day=day, current=g.current,
                                    baseline=g.baseline, p_value=g.p_value, alerted_at=now))

            async def render(t: Translator, account: Account, g: Growth = g) -> list[Reply]:
                return [Reply(alert_text(g, services, t), title=t("growth.alert_title"),
                              photos=[OutgoingPhoto(charts.get((g.key, t.locale)) or charts[
                                  (g.key, services.default_locale)])])]

            queued += await tell(session, services, staff_ids, render,
                                 once_key=f"growth:{g.key}:{day.isoformat()}", now=now)
    return queued


def topic_label(services: Services, key: str, t: Translator) -> str:
    topic = services.org.topic_by_id.get(key)
    return topic.label(t.locale) if topic else key


def alert_text(g: Growth, services: Services, t: Translator) -> str:
    return t("growth.alert", topic=topic_label(services, g.key, t), current=g.current,
             baseline=f"{g.baseline:.1f}", p_value=f"{g.p_value:.2g}")


def growth_chart(item: Due, services: Services, t: Translator, path: Path) -> Path:
    """Items per 7-day window over the last 8 windows; the last one is the current week."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [f"{start:%d.%m}" for start, _ in item.weeks]
    values = [count for _, count in item.weeks]
    colours = ["#9bb7d4"] * (len(values) - 1) + ["#e4572e"]
    with matplotlib.rc_context({"font.family": "DejaVu Sans", "font.size": 9}):
        figure = Figure(figsize=(6, 3), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.bar(labels, values, color=colours)
        axes.set_title(t("growth.chart_title", topic=topic_label(services, item.growth.key, t)))
        axes.set_ylabel(t("summary.chart_axis"))
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, format="png")
    return path
