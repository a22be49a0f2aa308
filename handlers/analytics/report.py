"""A section computed for one audience and period, with readable labels.

The numbers come from storage/stats.py; this module names the groups (topics, blocks,
executors, clusters…) in the reader's language and decides what the reader may see: a head
only their block, the press service no names at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.i18n import Translator
from handlers.org import Organisation, Role, Section
from storage.models import Cluster, Staff
from storage.stats import PERIOD_GROUPINGS, Key, Period, StatsQuery, Value, section_stats

# Roles that see every block in the statistics; a head sees their own block only.
ALL_BLOCKS = frozenset({Role.CHAIRMAN, Role.CURATOR, Role.IM_COORDINATOR, Role.PRESS})
STATS_ROLES = ALL_BLOCKS | {Role.HEAD}


@dataclass(frozen=True)
class Audience:
    """Who reads the report: derived from the staff record on the server, never a payload."""

    block_scope: str | None = None
    names: bool = True  # False for the press service: no names of people, ever

    @classmethod
    def of(cls, staff: Staff) -> Audience:
        role = Role(staff.role)
        if role == Role.HEAD:
            # A head without a block sees nothing rather than everything.
            return cls(block_scope=staff.block_id or "", names=True)
        if role in ALL_BLOCKS:
            return cls(block_scope=None, names=role != Role.PRESS)
        raise PermissionError(f"role {role} has no statistics")


@dataclass
class ReportRow:
    key: Key
    label: str
    values: dict[str, Value]


@dataclass
class Report:
    section: Section
    period: Period
    title: str
    group_title: str
    metrics: tuple[str, ...]
    rows: list[ReportRow]
    total: ReportRow | None
    filters: str  # the filters and the scope, in words
    generated_at: datetime
    tz: ZoneInfo

    @property
    def period_text(self) -> str:
        return f"{self.period.start:%d.%m.%Y} – {self.period.last_day:%d.%m.%Y}"

    @property
    def file_stem(self) -> str:
        return f"{self.section.name}_{self.period.start:%Y%m%d}-{self.period.last_day:%Y%m%d}"

    @property
    def has_data(self) -> bool:
        return any(v not in (None, 0) for row in self.rows for v in row.values.values())


def query_for(org: Organisation, section: Section, period: Period, audience: Audience,
              metrics: tuple[str, ...] | None = None, *, total: bool = False) -> StatsQuery:
    f = section.filters
    return StatsQuery(
        group_by=None if total else section.group_by,
        metrics=metrics or tuple(section.metrics), topics=tuple(f.topics),
        channels=tuple(f.channels), kinds=tuple(str(k) for k in f.kinds),
        blocks=tuple(f.blocks), statuses=tuple(f.statuses), period=period,
        block_scope=audience.block_scope,
        min_cluster_items=org.analytics.cluster_min_items, counted_by=section.date)


async def build_report(session: AsyncSession, org: Organisation, tz: ZoneInfo, now: datetime,
                       section: Section, period: Period, audience: Audience, t: Translator, *,
                       metrics: tuple[str, ...] | None = None,
                       from_items: bool = False) -> Report:
    """`from_items` skips the rollup (bench/stats.py compares both ways)."""
    query = query_for(org, section, period, audience, metrics)
    groups = await section_stats(session, query, tz=tz, now=now, from_items=from_items)
    labels = await _labels(session, org, section.group_by, [g.key for g in groups], audience, t)
    rows = [ReportRow(g.key, labels.get(g.key, str(g.key)), g.values) for g in groups]
    total = None
    if section.group_by != "cluster":  # clusters overlap nothing else: a sum says little
        (whole,) = await section_stats(session, query_for(org, section, period, audience,
                                                          metrics, total=True), tz=tz, now=now,
                                      from_items=from_items)
        total = ReportRow(None, t("stats.total"), whole.values)
    return Report(section=section, period=period, title=section.label(t.locale),
                  group_title=t(f"stats.group.{section.group_by}"), metrics=query.metrics,
                  rows=rows, total=total, filters=describe_filters(org, section, audience, t),
                  generated_at=now, tz=tz)


async def _labels(session: AsyncSession, org: Organisation, grouping: str, keys: list[Key],
                  audience: Audience, t: Translator) -> dict[Key, str]:
    if grouping == "topic":
        return {k: org.topic_by_id[k].label(t.locale) if k in org.topic_by_id else str(k)
                for k in keys}
    if grouping == "block":
        return {k: org.block_by_id[k].title if k in org.block_by_id else str(k) for k in keys}
    if grouping in ("channel", "kind", "status"):
        return {k: t(f"{grouping}.{k}") for k in keys}
    if grouping in PERIOD_GROUPINGS:
        return {k: period_label(grouping, str(k), t) for k in keys}
    if grouping == "executor":
        return await _executor_labels(session, keys, audience, t)
    if grouping == "cluster":
        ids = [int(k) for k in keys if k is not None]
        # Plain columns: thousands of clusters over a year, and ORM objects cost 10× more.
        clusters = (await session.execute(select(Cluster.id, Cluster.topic, Cluster.label)
                                          .where(Cluster.id.in_(ids)))).all()
        return {key: t("stats.cluster_label", topic=org.topic_by_id[topic].label(t.locale)
                       if topic in org.topic_by_id else topic, place=label)
                for key, topic, label in clusters}
    return {k: str(k) for k in keys}


async def _executor_labels(session: AsyncSession, keys: list[Key], audience: Audience,
                           t: Translator) -> dict[Key, str]:
    labels: dict[Key, str] = {None: t("stats.unassigned")}
    ids = [int(k) for k in keys if k is not None]
    if not audience.names:
        # The press service: a number stands for the person.
        labels.update({k: t("stats.executor_anonymous", id=k) for k in ids})
        return labels
    rows = (await session.execute(select(Staff.id, Staff.name).where(Staff.id.in_(ids)))).all()
    names: dict[int, str | None] = {row[0]: row[1] for row in rows}
    labels.update({k: names.get(k) or t("stats.executor_anonymous", id=k) for k in ids})
    return labels


def period_label(grouping: str, key: str, t: Translator) -> str:
    if grouping == "month":
        year, month = key.split("-")
        return f"{month}.{year}"
    day = date.fromisoformat(key)
    if grouping == "week":
        return t("stats.week_of", date=f"{day:%d.%m.%Y}")
    return f"{day:%d.%m.%Y}"


def describe_filters(org: Organisation, section: Section, audience: Audience,
                     t: Translator) -> str:
    f = section.filters
    parts = []
    if f.topics:
        parts.append(t("stats.filter.topics", values=", ".join(
            org.topic_by_id[x].label(t.locale) for x in f.topics)))
    if f.channels:
        parts.append(t("stats.filter.channels", values=", ".join(
            t(f"channel.{x}") for x in f.channels)))
    if f.kinds:
        parts.append(t("stats.filter.kinds", values=", ".join(t(f"kind.{x}") for x in f.kinds)))
    if f.blocks:
        parts.append(t("stats.filter.blocks", values=", ".join(
            org.block_by_id[x].title for x in f.blocks)))
    if f.statuses:
        parts.append(t("stats.filter.statuses", values=", ".join(
            t(f"status.{x}") for x in f.statuses)))
    if section.date != "received":
        parts.append(t(f"stats.filter.date_{section.date}"))
    if audience.block_scope is not None:
        block = org.block_by_id.get(audience.block_scope)
        parts.append(t("stats.filter.own_block", block=block.title if block else "—"))
    return "; ".join(parts) if parts else t("stats.filter.none")
