"""Statistical sections computed in SQL, counted by the date of receipt.

Nothing here loads items into Python: every query returns one row per group (or, for a
median, one or two values). The SQL is the same on SQLite and PostgreSQL; the few spellings
that differ live in storage/sqlfuncs.py and storage/rollups.py.

Definitions (the same in the chat, the CLI, the XLSX and the daily summary):

- **count**: items in the group.
- **open_count**: items in an open state (handlers/rules/lifecycle.py OPEN_STATES).
- **overdue_count**: items that are *overdue*: open with `answer_due` already past (`now`), or
  answered after their `answer_due` (the extended one, if extended). Items without an answer
  deadline are never overdue.
- **overdue_share**: overdue_count / count, from 0 to 1.
- **median_first_reaction_hours**: the exact median of the time from receipt to the first
  reaction, over the items that had one; durations are whole seconds (both moments cut to the
  second), shown in hours.
- **median_answer_hours**: the same from receipt to the answer, over the answered items. The
  median of an even number of values is the mean of the two middle ones.
- **average_rating**: the mean of the citizens' ratings (1-5) where given.
- **satisfied_share**: among items with any feedback (a satisfaction answer or a rating), the
  share *satisfied*: `satisfaction == 'yes'` or `rating >= 4`.
- **reopened_count**: items reopened at least once (`reopened_count > 0`).

Periods are local days [start, end) of **receipt** (`received_at`) in the МЦУ time zone: an
export of last month imported today lands in last month.

Two ways to the same numbers:

- **The rollup** (groupings in ROLLUP_GROUPINGS: the total, topic, channel, kind, block,
  status, day, week, month). Counts are sums over `item_day_stats`, one row per local day and
  (topic, block, channel, kind, status), kept in the transaction of every change by
  storage/rollups.py; a year is ~100k rows instead of a million items. Open items past their
  deadline depend on `now`, so they are counted from the items (few, indexed by status and
  deadline). A median is picked by position: the rollup says how many durations the group has
  (n), and the index (group column, duration, received_at) hands them over in order, so the
  middle one or two are read after skipping (n-1)//2 entries, without sorting anything.
- **From the items** (executor and cluster sections, and `from_items=True`): one GROUP BY
  pass, plus a window pass per median that ranks the durations of each group. The period
  groupings join the items to a small list of local-day bounds (a range join, portable and
  right for any zone). tests/test_stats_rollup.py checks that both ways agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Float,
    Integer,
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, FromClause

from handlers.org import GROUPINGS, METRICS
from handlers.rules.lifecycle import OPEN_STATES
from storage.models import Item, ItemDayStats, ItemMonthStats, UTCDateTime
from storage.sqlfuncs import unindexed

PERIOD_GROUPINGS = ("day", "week", "month")
COUNT_METRICS = ("count", "overdue_count", "reopened_count", "open_count")
SHARE_METRICS = ("overdue_share", "satisfied_share")
HOUR_METRICS = ("median_first_reaction_hours", "median_answer_hours")
# SQLite refuses compound SELECTs of more than 500 terms; longer bucket lists are run in chunks
# (buckets are disjoint in time, so each chunk's groups are complete).
BUCKETS_PER_QUERY = 400
OPEN = sorted(str(s) for s in OPEN_STATES)

Value = float | int | None
Key = str | int | None


class StatsError(ValueError):
    """A request the statistics cannot answer (unknown grouping or metric)."""


@dataclass(frozen=True)
class Period:
    """Local days from `start` (included) to `end` (excluded)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise StatsError("the period must end after it starts")

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def utc_bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        return local_midnight(self.start, tz), local_midnight(self.end, tz)


@dataclass(frozen=True)
class StatsQuery:
    group_by: str | None  # None: one row for everything selected (the total)
    metrics: tuple[str, ...] = METRICS
    topics: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    blocks: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    period: Period | None = None
    # A head sees their own block only: the restriction is applied here, in the query, from the
    # staff record; nothing a button carries can widen it.
    block_scope: str | None = None
    min_cluster_items: int = 3
    # Which date puts an item in the period: the date of receipt, unless a section explicitly
    # asks for the registration or the creation (import) date (handlers/org.py Section.date).
    counted_by: str = "received"

    def __post_init__(self) -> None:
        if self.group_by is not None and self.group_by not in GROUPINGS:
            raise StatsError(f"unknown grouping {self.group_by!r}")
        if self.counted_by not in DATE_COLUMNS:
            raise StatsError(f"unknown date {self.counted_by!r}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise StatsError(f"unknown metrics {unknown!r}" if unknown else "no metrics")


@dataclass
class Group:
    key: Key
    values: dict[str, Value]


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# The period groupings: local days, ISO weeks (labelled by their Monday) and months.

def buckets(group_by: str, period: Period, tz: ZoneInfo) -> list[tuple[str, datetime, datetime]]:
    """(label, UTC start, UTC end) of each day, week or month of the period, clipped to it."""
    result = []
    day = period.start
    while day < period.end:
        if group_by == "day":
            label, following = day.isoformat(), day + timedelta(days=1)
        elif group_by == "week":
            monday = day - timedelta(days=day.weekday())
            label, following = monday.isoformat(), monday + timedelta(days=7)
        elif group_by == "month":
            label = f"{day.year:04d}-{day.month:02d}"
            following = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        else:
            raise StatsError(f"{group_by!r} is not a period grouping")
        following = min(following, period.end)
        result.append((label, local_midnight(day, tz), local_midnight(following, tz)))
        day = following
    return result


def _bucket_table(chunk: Sequence[tuple[str, datetime, datetime]]) -> FromClause:
    rows = [select(literal(label, String(16)).label("label"),
                   literal(start, UTCDateTime()).label("start_at"),
                   literal(end, UTCDateTime()).label("end_at"))
            for label, start, end in chunk]
    table = rows[0] if len(rows) == 1 else union_all(*rows)
    return table.subquery("buckets")


# ---------------------------------------------------------------------------------------------
# What each item contributes: 0/1 flags and durations, summed or ranked per group.

def is_overdue(now: datetime) -> ColumnElement[bool]:
    return or_(
        and_(Item.status.in_(OPEN), Item.answer_due.is_not(None), Item.answer_due < _inline(now)),
        and_(Item.answered_at.is_not(None), Item.answer_due.is_not(None),
             Item.answered_at > Item.answer_due),
    )


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


def _share(part: ColumnElement[Any], whole: ColumnElement[Any]) -> ColumnElement[float]:
    return cast(part, Float) / func.nullif(whole, 0)


def _aggregates(now: datetime) -> dict[str, ColumnElement[Any]]:
    overdue = func.sum(_flag(is_overdue(now)))
    has_feedback = or_(Item.satisfaction.is_not(None), Item.rating.is_not(None))
    satisfied = or_(Item.satisfaction == "yes", Item.rating >= 4)
    return {
        "count": func.count(),
        "overdue_count": func.coalesce(overdue, 0),
        "overdue_share": _share(overdue, func.count()),
        "average_rating": cast(func.avg(Item.rating), Float),
        "satisfied_share": _share(func.sum(_flag(satisfied)), func.sum(_flag(has_feedback))),
        "reopened_count": func.coalesce(func.sum(_flag(Item.reopened_count > 0)), 0),
        "open_count": func.coalesce(func.sum(_flag(Item.status.in_(OPEN))), 0),
    }


# The median metrics: durations from receipt in whole seconds, kept on each item by
# storage/rollups.py (shown in hours).
MEDIANS = {
    "median_first_reaction_hours": Item.first_reaction_seconds,
    "median_answer_hours": Item.answer_seconds,
}


def _conditions(query: StatsQuery, tz: ZoneInfo, *, with_period: bool = True,
                period_index: bool = True) -> list[Any]:
    """The query's filters as conditions on items; `period_index=False` keeps SQLite from
    choosing a received_at index for the period (see storage.sqlfuncs.unindexed)."""
    conditions: list[Any] = []
    for column, values in ((Item.topic, query.topics), (Item.channel, query.channels),
                           (Item.kind, query.kinds), (Item.block_id, query.blocks),
                           (Item.status, query.statuses)):
        if values:
            conditions.append(column.in_(sorted(set(values))))
    if query.block_scope is not None:
        conditions.append(Item.block_id == query.block_scope)
    if with_period and query.period is not None:
        start, end = query.period.utc_bounds(tz)
        moment = DATE_COLUMNS[query.counted_by]
        moment = moment if period_index else unindexed(moment)
        conditions += [moment >= _inline(start), moment < _inline(end)]
    if query.group_by == "cluster":
        conditions.append(Item.cluster_id.is_not(None))
    return conditions


DATE_COLUMNS: dict[str, Any] = {"received": Item.received_at, "registered": Item.registered_at,
                                "created": Item.created_at}
KEY_COLUMNS: dict[str, Any] = {
    "topic": Item.topic, "channel": Item.channel, "kind": Item.kind, "block": Item.block_id,
    "executor": Item.executor_id, "status": Item.status, "cluster": Item.cluster_id,
}


def _items_source(query: StatsQuery,
                  chunk: Sequence[tuple[str, datetime, datetime]] | None) -> tuple[FromClause,
                                                                                    list[Any]]:
    """The items (joined to the local-day buckets of a period grouping) and the group key."""
    if chunk is None:
        key = KEY_COLUMNS.get(query.group_by or "")
        return Item.__table__, [key] if key is not None else []
    table = _bucket_table(chunk)
    moment = DATE_COLUMNS[query.counted_by]
    source = table.join(Item.__table__, and_(moment >= table.c.start_at,
                                             moment < table.c.end_at))
    return source, [table.c.label]


async def _compute(session: AsyncSession, query: StatsQuery, tz: ZoneInfo, now: datetime,
                   chunk: Sequence[tuple[str, datetime, datetime]] | None) -> dict[Key, Group]:
    """Every metric from the items themselves: the executor and cluster sections, and the
    reference the rollup is checked against (tests/test_stats_rollup.py)."""
    # Clustered items are few (cluster_id index); a year of received_at is not.
    conditions = _conditions(query, tz, period_index=query.group_by != "cluster")
    source, keys = _items_source(query, chunk)
    aggregates = _aggregates(now)
    wanted = [m for m in METRICS if m in aggregates and (m in query.metrics or m == "count")]
    statement = (select(*(k.label("k") for k in keys),
                        *(aggregates[m].label(m) for m in wanted))
                 .select_from(source).where(*conditions).group_by(*keys))
    if query.group_by == "cluster":
        statement = statement.having(func.count() >= query.min_cluster_items)
    groups: dict[Key, Group] = {}
    for row in (await session.execute(statement)).mappings():
        group_key = row["k"] if keys else None
        groups[group_key] = Group(group_key, {m: _number(row[m]) for m in wanted})
    for metric, seconds in MEDIANS.items():
        if metric not in query.metrics:
            continue
        medians = await _medians(session, keys, source, [*conditions, seconds.is_not(None)],
                                 seconds)
        for group_key, value in medians.items():
            if group_key in groups:
                groups[group_key].values[metric] = value
    return groups


async def _medians(session: AsyncSession, keys: list[Any], source: FromClause,
                   conditions: list[Any], seconds: ColumnElement[int]) -> dict[Key, Value]:
    """Exact medians with window functions: rank the values in each group and average the
    middle one (odd count) or two (even count): the rows where 2·rank is n, n+1 or n+2."""
    partition = keys or None
    ranked = (select(*(k.label("k") for k in keys), seconds.label("v"),
                     func.row_number().over(partition_by=partition, order_by=seconds).label("rn"),
                     func.count().over(partition_by=partition).label("n"))
              .select_from(source).where(*conditions).subquery("ranked"))
    rank = cast(ranked.c.rn, Integer)
    statement = (select(*([ranked.c.k] if keys else []), cast(func.avg(ranked.c.v), Float))
                 .where((2 * rank).between(ranked.c.n, ranked.c.n + 2)))
    if keys:
        statement = statement.group_by(ranked.c.k)
    rows = (await session.execute(statement)).all()
    return {(row[0] if keys else None): _hours(row[-1]) for row in rows}


def _inline(value: Any) -> Any:
    """A value written into the SQL when it is run. The statistics' statements are few and
    repeated with new values; on PostgreSQL a prepared statement's generic plan (after five
    runs) cannot see that a period or a moment selects a few rows, and scans everything."""
    kind = UTCDateTime() if isinstance(value, datetime) else None
    return bindparam(None, value, type_=kind, literal_execute=True)


def _hours(seconds: Any) -> float | None:
    return None if seconds is None else float(seconds) / 3600


def _number(value: Any) -> Value:
    if value is None or isinstance(value, int | float):
        return value
    return float(value)  # Decimal from PostgreSQL's numeric


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


async def data_period(session: AsyncSession, query: StatsQuery, tz: ZoneInfo) -> Period | None:
    """The local days that hold the selected items, when no period was asked for."""
    first, last = (await session.execute(
        select(func.min(DATE_COLUMNS[query.counted_by]),
               func.max(DATE_COLUMNS[query.counted_by]))
        .where(*_conditions(query, tz, with_period=False)))).one()
    if first is None:
        return None
    # min() and max() keep the column type, so these are aware UTC datetimes already.
    return Period(first.astimezone(tz).date(), last.astimezone(tz).date() + timedelta(days=1))


def _empty(metrics: Sequence[str]) -> dict[str, Value]:
    return {m: (0 if m in COUNT_METRICS else None) for m in metrics}


async def section_stats(session: AsyncSession, query: StatsQuery, *, tz: ZoneInfo,
                        now: datetime, from_items: bool = False) -> list[Group]:
    """One row per group: the largest first; periods in time order, empty ones included.

    Groupings the rollup knows (ROLLUP_GROUPINGS) are read from it; `from_items` computes
    everything from the items instead (the reference the rollup is tested against)."""
    metrics = [m for m in METRICS if m in query.metrics]
    fast = (not from_items and (query.group_by or "") in ROLLUP_GROUPINGS
            and query.counted_by == "received")  # the rollup is filed by the date of receipt
    if query.group_by in PERIOD_GROUPINGS:
        assert query.group_by is not None
        period = query.period or await data_period(session, query, tz)
        if period is None:
            return []
        every = buckets(query.group_by, period, tz)
        found: dict[Key, Group] = {}
        if fast:
            found = await _from_rollup(session, replace(query, period=period), tz, now)
        else:
            for chunk in _chunks(every, BUCKETS_PER_QUERY):
                found.update(await _compute(session, query, tz, now, chunk))
        labels = list(dict.fromkeys(label for label, _, _ in every))
        return [_ordered(found.get(label) or Group(label, _empty(metrics)), metrics)
                for label in labels]
    if fast:
        groups = await _from_rollup(session, query, tz, now)
    else:
        groups = await _compute(session, query, tz, now, None)
    if query.group_by is None:
        return [_ordered(groups.get(None) or Group(None, _empty(metrics)), metrics)]
    largest_first = sorted(groups.values(),
                           key=lambda g: (-int(g.values.get("count") or 0), str(g.key)))
    return [_ordered(g, metrics) for g in largest_first]


# ---------------------------------------------------------------------------------------------
# The fast path: counts from the daily rollup (item_day_stats, storage/rollups.py), overdue
# items that are still open from the items (they depend on `now`; there are few), and the
# medians picked by position from an index ordered by duration.

ROLLUP_GROUPINGS = ("", "topic", "channel", "kind", "block", "status", "day", "week", "month")
R, M = ItemDayStats, ItemMonthStats
ROLLUP_KEYS: dict[str, Any] = {"topic": R.topic, "channel": R.channel, "kind": R.kind,
                               "block": R.block_id, "status": R.status}
# Groupings whose medians walk an index (group column, duration, received_at); the others
# (kind, status, the periods) rank their values with window functions.
ORDERED_MEDIANS = ("", "topic", "channel", "block")


def _rollup_conditions(query: StatsQuery, table: Any) -> list[Any]:
    conditions: list[Any] = []
    for column, values in ((table.topic, query.topics), (table.channel, query.channels),
                           (table.kind, query.kinds), (table.block_id, query.blocks),
                           (table.status, query.statuses)):
        if values:
            conditions.append(column.in_(sorted(set(values))))
    if query.block_scope is not None:
        conditions.append(table.block_id == query.block_scope)
    return conditions


def _segments(query: StatsQuery) -> list[tuple[Any, Any, date | None, date | None]]:
    """(rollup, its date column, from, to): whole months from the monthly rows, the days
    before and after them from the daily ones. Days and weeks read daily rows only."""
    period = query.period
    if period is None:
        return [(R, R.day, None, None)]
    if query.group_by in ("day", "week"):
        return [(R, R.day, period.start, period.end)]
    first = period.start if period.start.day == 1 else _next_month(period.start)
    last = period.end.replace(day=1)
    if first >= last:
        return [(R, R.day, period.start, period.end)]
    segments = [(M, M.month, first, last)]
    if period.start < first:
        segments.append((R, R.day, period.start, first))
    if last < period.end:
        segments.append((R, R.day, last, period.end))
    return segments


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _day_label(group_by: str, day: date) -> str:
    if group_by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    if group_by == "month":
        return f"{day.year:04d}-{day.month:02d}"
    return day.isoformat()


async def _from_rollup(session: AsyncSession, query: StatsQuery, tz: ZoneInfo,
                       now: datetime) -> dict[Key, Group]:
    grouping = query.group_by or ""
    periodic = grouping in PERIOD_GROUPINGS
    totals: dict[Key, list[int]] = {}
    for table, moment, start, end in _segments(query):
        key = moment if periodic else ROLLUP_KEYS.get(grouping)
        if key is not None and not periodic:
            key = getattr(table, key.key)  # the same column of this rollup
        keys = [key] if key is not None else []
        is_open = table.status.in_(OPEN)
        sums = (func.sum(table.item_count), func.sum(case((is_open, table.item_count),
                                                          else_=0)),
                func.sum(table.answered), func.sum(table.reacted), func.sum(table.answered_late),
                func.sum(table.reopened), func.sum(table.rating_sum), func.sum(table.rated),
                func.sum(table.with_feedback), func.sum(table.satisfied))
        bounds = [] if start is None else [moment >= start, moment < end]
        statement = (select(*(k.label("k") for k in keys), *sums)
                     .where(*_rollup_conditions(query, table), *bounds).group_by(*keys))
        for row in (await session.execute(statement)).all():
            group_key = ((_day_label(grouping, row[0]) if periodic else row[0]) if keys
                         else None)
            values = [int(v or 0) for v in row[len(keys):]]
            if group_key in totals:  # days of one week or month, or another segment
                totals[group_key] = [a + b for a, b in zip(totals[group_key], values,
                                                           strict=True)]
            else:
                totals[group_key] = values
    wants_overdue = {"overdue_count", "overdue_share"} & set(query.metrics)
    late_open = await _open_overdue(session, query, tz, now) if wants_overdue else {}
    groups: dict[Key, Group] = {}
    for group_key, (count, open_, answered, reacted, late, reopened, rating_sum, rated,
                    feedback, satisfied) in totals.items():
        if count <= 0:
            continue
        overdue = late + late_open.get(group_key, 0)
        groups[group_key] = Group(group_key, {
            "count": count, "open_count": open_, "overdue_count": overdue,
            "overdue_share": overdue / count, "reopened_count": reopened,
            "average_rating": rating_sum / rated if rated else None,
            "satisfied_share": satisfied / feedback if feedback else None,
            "_answered": answered, "_reacted": reacted})
    await _rollup_medians(session, query, tz, groups)
    return groups


async def _open_overdue(session: AsyncSession, query: StatsQuery, tz: ZoneInfo,
                        now: datetime) -> dict[Key, int]:
    """Open items past their answer deadline and not already counted as answered late.

    One row per such item, counted here: a GROUP BY would tempt SQLite into walking a whole
    (topic, …) index for its order instead of the (status, answer_due) one; these items are
    few (an open backlog, not the year)."""
    grouping = query.group_by or ""
    late = and_(Item.answered_at.is_not(None), Item.answer_due.is_not(None),
                Item.answered_at > Item.answer_due)
    column = Item.received_at if grouping in PERIOD_GROUPINGS else KEY_COLUMNS.get(grouping)
    statement = (select(column if column is not None else literal(None))
                 .where(Item.status.in_(OPEN), Item.answer_due < _inline(now), ~late,
                        *_conditions(query, tz, period_index=False)))
    counts: dict[Key, int] = {}
    for (value,) in (await session.execute(statement)).all():
        key = (_day_label(grouping, value.astimezone(tz).date())
               if grouping in PERIOD_GROUPINGS else value)
        counts[key] = counts.get(key, 0) + 1
    return counts


async def _rollup_medians(session: AsyncSession, query: StatsQuery, tz: ZoneInfo,
                          groups: dict[Key, Group]) -> None:
    grouping = query.group_by or ""
    for metric, seconds in MEDIANS.items():
        counted = "_reacted" if seconds is Item.first_reaction_seconds else "_answered"
        if metric in query.metrics and grouping in ORDERED_MEDIANS:
            for group_key, group in groups.items():
                group.values[metric] = await _median_by_position(
                    session, query, tz, seconds, group_key, int(group.values[counted] or 0))
        elif metric in query.metrics:
            source, keys = _items_source(query, buckets(grouping, query.period, tz)
                                         if grouping in PERIOD_GROUPINGS and query.period
                                         else None)
            medians = await _medians(session, keys, source,
                                     [*_conditions(query, tz), seconds.is_not(None)], seconds)
            for group_key, value in medians.items():
                if group_key in groups:
                    groups[group_key].values[metric] = value
    for group in groups.values():
        group.values.pop("_answered", None)
        group.values.pop("_reacted", None)


async def _median_by_position(session: AsyncSession, query: StatsQuery, tz: ZoneInfo,
                              seconds: Any, group_key: Key, n: int) -> float | None:
    """The middle one (n odd) or two (n even) of the group's n durations: the index on
    (group column, duration, received_at) hands them over in order, so nothing is sorted.
    n comes from the rollup, which counts exactly the items this query walks."""
    if n <= 0:
        return None
    column = KEY_COLUMNS.get(query.group_by or "")
    conditions = [*_conditions(query, tz, period_index=False), seconds.is_not(None)]
    if column is not None:
        conditions.append(column == _inline(group_key))
    # The key and the position are written into the SQL: a plan made for unknown values (a
    # prepared statement's generic plan on PostgreSQL) sorts the whole period instead.
    statement = (select(seconds).where(*conditions).order_by(seconds)
                 .offset(_inline((n - 1) // 2)).limit(_inline(1 if n % 2 else 2)))
    middle = [int(v) for v in (await session.scalars(statement)).all()]
    return sum(middle) / len(middle) / 3600 if middle else None


def _ordered(group: Group, metrics: Sequence[str]) -> Group:
    """The requested metrics only, in the canonical order (count is always computed)."""
    values = {m: group.values.get(m, 0 if m in COUNT_METRICS else None) for m in metrics}
    return Group(group.key, values)
