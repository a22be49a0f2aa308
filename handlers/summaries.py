"""The daily summary for the chairman's group and the weekly one for the curator.

Numbers come from SQL aggregates over the shared database (new items by the date of receipt,
from the daily rollup); the chart is one PNG.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.analytics.clusters import repeated_problems
from handlers.analytics.growth import SCOPES, Growth, growth
from handlers.capabilities import MESSENGERS
from handlers.context import Services
from handlers.i18n import Translator
from handlers.org import CHANNELS
from handlers.rules.lifecycle import OPEN_STATES, Status
from storage.models import Item, ItemEvent, OutboxMessage
from storage.models import ItemDayStats as R
from storage.stats import Period

OPEN = [str(s) for s in OPEN_STATES]
# Answers to the other channels are published by an operator (ПОС, «Сахалин.Онлайн»…): an
# IN list, so the partial (channel, answer_published_at) index of answered items serves
# the count (storage/models.py).
PUBLISHED_CHANNELS = tuple(c for c in CHANNELS if c not in MESSENGERS)


@dataclass
class Summary:
    period_start: datetime
    period_end: datetime
    new_by_topic: list[tuple[str, int]] = field(default_factory=list)
    new_by_channel: list[tuple[str, int]] = field(default_factory=list)
    new_total: int = 0
    answered: int = 0
    closed: int = 0
    overdue_total: int = 0
    overdue_top: list[tuple[str, str, int]] = field(default_factory=list)  # number, block, days
    due_today: int = 0
    average_rating: float | None = None
    satisfied_share: float | None = None
    reopened: int = 0
    unpublished: int = 0
    failed_messages: int = 0
    daily_new: list[tuple[date, int]] = field(default_factory=list)
    repeated: list[tuple[str, str, int, int]] = field(default_factory=list)  # topic, place, n, open
    weekly_trend: list[tuple[date, int]] = field(default_factory=list)
    growing: list[Growth] = field(default_factory=list)  # flagged topics and blocks


def local_midnight(services: Services, day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=services.tz)


async def build_summary(session: AsyncSession, services: Services, now: datetime,
                        days: int = 1) -> Summary:
    """The `days` local days before today (yesterday for the daily summary).

    New items are counted by the date of receipt from the daily rollup, like every section;
    the rest are indexed look-ups (closed_at, poll_answered_at, unpublished answers)."""
    today = services.local(now).date()
    first_day = today - timedelta(days=days)
    start = local_midnight(services, first_day)
    end = local_midnight(services, today)
    summary = Summary(period_start=start, period_end=end)
    received = (R.day >= first_day, R.day < today)
    summary.new_by_topic = [(topic, int(count)) for topic, count in (await session.execute(
        select(R.topic, func.sum(R.item_count)).where(*received).group_by(R.topic)
        .order_by(func.sum(R.item_count).desc(), R.topic))).all() if count]
    summary.new_by_channel = [(channel, int(count)) for channel, count in (await session.execute(
        select(R.channel, func.sum(R.item_count)).where(*received).group_by(R.channel)
        .order_by(func.sum(R.item_count).desc(), R.channel))).all() if count]
    summary.new_total = sum(count for _, count in summary.new_by_topic)
    summary.answered = await _count(session, Item.answered_at >= start, Item.answered_at < end)
    summary.closed = await _count(session, Item.closed_at >= start, Item.closed_at < end,
                                  Item.status == str(Status.CLOSED))
    overdue = (await session.execute(
        select(Item.number, Item.block_id, Item.answer_due)
        .where(Item.status.in_(OPEN), Item.answer_due < now).order_by(Item.answer_due)
        .limit(10))).all()
    summary.overdue_total = await _count(session, Item.status.in_(OPEN), Item.answer_due < now)
    summary.overdue_top = [
        (number, services.org.block_by_id[block].title, (now - due).days)
        for number, block, due in overdue]
    summary.due_today = await _count(
        session, Item.status.in_(OPEN), Item.answer_due >= now,
        Item.answer_due < local_midnight(services, today + timedelta(days=1)))
    # The week's polls in one pass (it was three queries).
    rating, rated, answered_polls, satisfied = (await session.execute(
        select(func.avg(Item.rating), func.count(Item.rating), func.count(Item.satisfaction),
               func.coalesce(func.sum(case((Item.satisfaction == "yes", 1), else_=0)), 0))
        .where(Item.poll_answered_at >= now - timedelta(days=7)))).one()
    summary.average_rating = float(rating) if rated else None
    summary.satisfied_share = int(satisfied) / answered_polls if answered_polls else None
    summary.reopened = await session.scalar(
        select(func.count()).select_from(ItemEvent)
        .where(ItemEvent.action == "reopen", ItemEvent.at >= start, ItemEvent.at < end)) or 0
    summary.unpublished = await _count(
        session, Item.channel.in_(PUBLISHED_CHANNELS), Item.answer_published_at.is_(None),
        Item.answer_text.is_not(None))
    summary.failed_messages = await session.scalar(
        select(func.count()).select_from(OutboxMessage)
        .where(OutboxMessage.status == "failed", OutboxMessage.created_at >= now
               - timedelta(days=max(days, 1)))) or 0
    summary.daily_new = await daily_counts(session, services, today, 14)
    # Where reports cluster: the cluster window up to today, the largest first.
    window = services.org.analytics.cluster_window_days
    problems = await repeated_problems(session, services,
                                       Period(today - timedelta(days=window), today
                                              + timedelta(days=1)))
    summary.repeated = [(p.topic, p.label, p.count, p.open_count) for p in problems[:10]]
    summary.growing = [g for scope in SCOPES
                       for g in await growth(session, services.org.analytics, today, scope)
                       if g.flagged]
    return summary


async def daily_counts(session: AsyncSession, services: Services, today: date,
                       days: int) -> list[tuple[date, int]]:
    """New items per local day of receipt, from the rollup in one query."""
    first = today - timedelta(days=days)
    counts = dict((await session.execute(
        select(R.day, func.sum(R.item_count)).where(R.day >= first, R.day < today)
        .group_by(R.day))).all())
    return [(first + timedelta(days=i), int(counts.get(first + timedelta(days=i)) or 0))
            for i in range(days)]


async def weekly_trend(session: AsyncSession, services: Services, now: datetime,
                       weeks: int = 5) -> list[tuple[date, int]]:
    today = services.local(now).date()
    daily = await daily_counts(session, services, today, 7 * weeks)
    return [(daily[7 * i][0], sum(count for _, count in daily[7 * i:7 * i + 7]))
            for i in range(weeks)]


async def _count(session: AsyncSession, *conditions) -> int:  # type: ignore[no-untyped-def]
    return await session.scalar(select(func.count()).select_from(Item).where(*conditions)) or 0


def render(summary: Summary, services: Services, t: Translator, *, weekly: bool = False) -> str:
    org, tz = services.org, services.tz
    last_day = (summary.period_end - timedelta(seconds=1)).astimezone(tz)
    lines = [t("summary.period", start=summary.period_start.astimezone(tz).strftime("%d.%m.%Y"),
               end=last_day.strftime("%d.%m.%Y")), ""]
    lines.append(t("summary.new", count=summary.new_total))
    for topic, count in summary.new_by_topic:
        lines.append(f"  • {org.topic_by_id[topic].label(t.locale)}: {count}")
    if summary.new_by_channel:
        lines.append(t("summary.by_channel", channels=", ".join(
            f"{t(f'channel.{channel}')} {count}" for channel, count in summary.new_by_channel)))
    lines.append(t("summary.answered_closed", answered=summary.answered, closed=summary.closed))
    lines.append(t("summary.overdue", count=summary.overdue_total))
    for number, block, days in summary.overdue_top:
        lines.append(t("summary.overdue_line", number=number, block=block, days=days))
    lines.append(t("summary.due_today", count=summary.due_today))
    rating = "—" if summary.average_rating is None else f"{summary.average_rating:.1f}"
    share = "—" if summary.satisfied_share is None else f"{summary.satisfied_share:.0%}"
    lines.append(t("summary.satisfaction", rating=rating, share=share))
    lines.append(t("summary.reopened", count=summary.reopened))
    lines.append(t("summary.unpublished", count=summary.unpublished))
    if summary.failed_messages:
        lines.append(t("summary.failed", count=summary.failed_messages))
    if summary.repeated:
        lines.append(t("summary.repeated"))
        for topic, place, count, still_open in summary.repeated:
            lines.append(t("summary.repeated_line", topic=org.topic_by_id[topic].label(t.locale),
                           place=place, count=count, open=still_open))
    if summary.growing:
        lines.append(t("summary.growing"))
        for g in summary.growing:
            name = (org.topic_by_id[g.key].label(t.locale) if g.scope == "topic"
                    and g.key in org.topic_by_id else org.block_by_id[g.key].title
                    if g.key in org.block_by_id else g.key)
            lines.append(t(f"summary.growing_{g.scope}", name=name, current=g.current,
                           baseline=f"{g.baseline:.1f}"))
    if weekly and summary.weekly_trend:
        previous = [count for _, count in summary.weekly_trend[:-1]]
        average = sum(previous) / len(previous) if previous else 0
        current = summary.weekly_trend[-1][1]
        change = "—" if not average else f"{(current - average) / average:+.0%}"
        lines += ["", t("summary.trend", current=current, average=f"{average:.1f}",
                        change=change)]
        for start, count in summary.weekly_trend:
            lines.append(f"  {start:%d.%m}–{start + timedelta(days=6):%d.%m}: {count}")
    return "\n".join(lines)


def chart(summary: Summary, path: Path, t: Translator) -> Path:
    """New items per day over 14 days, as a PNG. The Figure API (no pyplot) keeps global
    state out, so scheduler jobs can render in a worker thread (asyncio.to_thread)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path.parent.mkdir(parents=True, exist_ok=True)
    labels = [day.strftime("%d.%m") for day, _ in summary.daily_new]
    values = [count for _, count in summary.daily_new]
    with matplotlib.rc_context({"font.family": "DejaVu Sans"}):
        figure = Figure(figsize=(8, 3.5), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        axes.bar(labels, values, color="#2f6fb0")
        axes.set_title(t("summary.chart_title"))
        axes.set_ylabel(t("summary.chart_axis"))
        axes.tick_params(axis="x", labelrotation=45, labelsize=8)
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, format="png")
    return path
