"""The statistics rollup, kept in the same transaction as every change of an item.

Two things are maintained here and nowhere else:

- `item_day_stats`: per local day of receipt and (topic, block, channel, kind, status), the
  number of items and what they add to each count (answered, late, reopened, ratings…), and
  `item_month_stats`, the same per local month. A year of sections sums about 7,000 monthly
  rows (plus daily rows for a period's partial months) instead of a million items.
- `items.first_reaction_seconds` / `items.answer_seconds`: durations from receipt in whole
  seconds (both moments cut to the second). Indexes ordered by them let storage/stats.py pick
  the exact median by position instead of sorting the period.

The single place where items change is the ORM flush: `before_flush` fills the durations and
turns each inserted, updated or deleted item into a difference of rollup rows (the old
contribution out, the new one in); `after_flush`, once the items are written, upserts it on
the flush's own connection. A failed flush or a rolled-back transaction takes it back too.

Statements that bypass the ORM must say so: a Core INSERT into items must carry the execution
option `rollup_rows=<the inserted rows>` (the importer does), and a Core UPDATE that touches a
column the rollup depends on is refused. Either way it cannot be forgotten silently.

Local days need the МЦУ time zone: sessions get it from `storage.db.session_factory(engine,
tz=...)` (session.info["tz"]). The migration builds the rollup with MCU_TIMEZONE (default
Asia/Sakhalin); `mcu stats rebuild` recomputes it from the items at any time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    event,
    func,
    inspect,
    literal,
    select,
    union_all,
)
from sqlalchemy import insert as core_insert
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction
from sqlalchemy.sql import ColumnElement

from storage.models import Item, ItemDayStats, ItemMonthStats, UTCDateTime
from storage.sqlfuncs import on_conflict_insert, seconds_between

TZ_KEY = "tz"
KEY = ("day", "topic", "block_id", "channel", "kind", "status")
# ("item_count", not "items": TABLE.c.items would be the column collection's items() method.)
COUNTS = ("item_count", "answered", "reacted", "answered_late", "reopened", "rating_sum",
          "rated", "with_feedback", "satisfied")
# The item columns a contribution depends on: a Core UPDATE of one of them is refused.
SOURCE = ("received_at", "topic", "block_id", "channel", "kind", "status", "answered_at",
          "first_reaction_at", "answer_due", "reopened_count", "rating", "satisfaction")
DAYS_PER_STATEMENT = 400  # SQLite refuses compound SELECTs of more than 500 terms
TABLE = ItemDayStats.__table__
MONTHS = ItemMonthStats.__table__

Contribution = tuple[tuple[Any, ...], tuple[int, ...]]


class RollupError(RuntimeError):
    """A change of items that the rollup cannot follow (see the module docstring)."""


def whole_seconds(later: datetime | None, earlier: datetime | None) -> int | None:
    if later is None or earlier is None:
        return None
    return int(later.replace(microsecond=0).timestamp()) - int(
        earlier.replace(microsecond=0).timestamp())


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def contribution(values: Mapping[str, Any], tz: ZoneInfo) -> Contribution | None:
    """What one item adds to the rollup: its row key and its counts (None: nothing yet)."""
    received = values.get("received_at")
    if received is None:
        return None
    if received.tzinfo is None:  # a Core parameter set may carry naive UTC
        received = received.replace(tzinfo=UTC)
    answered, due = values.get("answered_at"), values.get("answer_due")
    rating, satisfaction = values.get("rating"), values.get("satisfaction")
    late = answered is not None and due is not None and _utc(answered) > _utc(due)
    key = (local_day(received, tz), values["topic"], values["block_id"], values["channel"],
           values["kind"], values["status"])
    counts = (1, int(answered is not None), int(values.get("first_reaction_at") is not None),
              int(late), int((values.get("reopened_count") or 0) > 0), rating or 0,
              int(rating is not None), int(satisfaction is not None or rating is not None),
              int(satisfaction == "yes" or (rating is not None and rating >= 4)))
    return key, counts


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Differences:
    """Rollup rows to add (and to take away), summed per key before they are written."""

    def __init__(self) -> None:
        self.rows: dict[tuple[Any, ...], list[int]] = {}

    def add(self, part: Contribution | None, sign: int) -> None:
        if part is None:
            return
        key, counts = part
        row = self.rows.setdefault(key, [0] * len(COUNTS))
        for i, value in enumerate(counts):
            row[i] += sign * value

    def write(self, connection: Connection) -> None:
        """Upsert the daily rows, then the same differences summed per month."""
        months: dict[tuple[Any, ...], list[int]] = {}
        for key, row in self.rows.items():
            month = months.setdefault((key[0].replace(day=1), *key[1:]), [0] * len(COUNTS))
            for i, value in enumerate(row):
                month[i] += value
        for table, rows in ((TABLE, self.rows), (MONTHS, months)):
            changed = [(key, row) for key, row in rows.items() if any(row)]
            if not changed:
                continue
            first = table.primary_key.columns.values()[0]
            names = (first.name, *KEY[1:])
            connection.execute(_upsert(connection.dialect.name, table),
                               [dict(zip(names, key, strict=True))
                                | dict(zip(COUNTS, row, strict=True)) for key, row in changed])
            if any(row[0] < 0 for _, row in changed):
                # A group that lost its last item is gone, not a row of zeros.
                periods = sorted({key[0] for key, row in changed if row[0] < 0})
                connection.execute(delete(table).where(first.in_(periods),
                                                       table.c.item_count == 0))


@lru_cache(maxsize=8)
def _upsert(dialect: str, table: Any) -> Any:
    """INSERT … ON CONFLICT (key) DO UPDATE SET count = count + excluded.count: the same
    construct on both databases, built by each dialect's own insert(). Built once: building
    it (`excluded` makes a new column collection on every access) cost more than running it."""
    if dialect not in ("postgresql", "sqlite"):
        raise RollupError(f"no upsert for {dialect}")
    statement = on_conflict_insert(dialect)(table)
    return statement.on_conflict_do_update(
        index_elements=[c.name for c in table.primary_key.columns],
        set_={name: table.c[name] + statement.excluded[name] for name in COUNTS})


# ---------------------------------------------------------------------------------------------
# The ORM hook: the one place where item changes reach the rollup.

def _tz(session: Session) -> ZoneInfo:
    tz = session.info.get(TZ_KEY)
    if tz is None:
        raise RollupError("items changed in a session without a time zone: create sessions "
                          "with storage.db.session_factory(engine, tz=...)")
    return tz


def _current(item: Item) -> dict[str, Any]:
    return {name: getattr(item, name) for name in SOURCE}


def _previous(item: Item) -> dict[str, Any]:
    state = inspect(item)
    values = {}
    for name in SOURCE:
        history = state.attrs[name].history
        values[name] = history.deleted[0] if history.deleted else getattr(item, name)
    return values


def _fill_durations(item: Item) -> None:
    reaction = whole_seconds(item.first_reaction_at, item.received_at)
    answer = whole_seconds(item.answered_at, item.received_at)
    if item.first_reaction_seconds != reaction:
        item.first_reaction_seconds = reaction
    if item.answer_seconds != answer:
        item.answer_seconds = answer


PENDING = "rollup_pending"


@event.listens_for(Session, "before_flush")
def _before_flush(session: Session, context: UOWTransaction, instances: object) -> None:
    """Fill the durations and work out the rollup difference while the old values are still
    there (an unloaded attribute loads its stored, old value here); after_flush writes it."""
    differences = Differences()
    for item in session.new:
        if isinstance(item, Item):
            _fill_durations(item)
            differences.add(contribution(_current(item), _tz(session)), +1)
    for item in session.dirty:
        if isinstance(item, Item) and session.is_modified(item, include_collections=False):
            _fill_durations(item)
            before, after = _previous(item), _current(item)
            if before != after:
                differences.add(contribution(before, _tz(session)), -1)
                differences.add(contribution(after, _tz(session)), +1)
    for item in session.deleted:
        if isinstance(item, Item):
            differences.add(contribution(_previous(item), _tz(session)), -1)
    session.info[PENDING] = differences if differences.rows else None


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, context: UOWTransaction) -> None:
    """The items are written: write their difference on the same connection (a failed flush
    never gets here, and a rollback takes both back)."""
    differences = session.info.pop(PENDING, None)
    if differences is not None:
        differences.write(session.connection())


@event.listens_for(Session, "do_orm_execute")
def _guard(state: ORMExecuteState) -> None:
    """Core statements on items: inserts bring their rows, updates leave the rollup alone."""
    statement = state.statement
    table = getattr(statement, "table", None)
    if getattr(table, "name", None) != Item.__tablename__:
        return
    if state.is_insert:
        rows = state.execution_options.get("rollup_rows")
        if rows is None:
            raise RollupError("a Core INSERT into items must pass execution_options("
                              "rollup_rows=...) so the statistics rollup follows it")
        differences = Differences()
        for values in rows:
            differences.add(contribution(values, _tz(state.session)), +1)
        differences.write(state.session.connection())
    elif state.is_update:
        touched = {getattr(column, "key", str(column))
                   for column in getattr(statement, "_values", None) or {}}
        if touched & set(SOURCE) or touched & {"answer_seconds", "first_reaction_seconds"}:
            raise RollupError(f"a Core UPDATE of items may not change {sorted(touched)}: "
                              "change the items through the ORM so the rollup follows")


# ---------------------------------------------------------------------------------------------
# Recomputing everything from the items: the migration and `mcu stats rebuild`.

def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=tz).astimezone(UTC)


def _rollup_select(days: list[date], tz: ZoneInfo) -> Any:
    """The rollup rows of the items received on `days`, computed in SQL (the same rules as
    `contribution`): items are joined to a small list of local-day bounds."""
    bounds = union_all(*(select(literal(day).label("day"),
                                literal(_local_midnight(day, tz), UTCDateTime()).label("s"),
                                literal(_local_midnight(day + timedelta(days=1), tz),
                                        UTCDateTime()).label("e"))
                         for day in days)).subquery("days") if len(days) > 1 else select(
        literal(days[0]).label("day"),
        literal(_local_midnight(days[0], tz), UTCDateTime()).label("s"),
        literal(_local_midnight(days[0] + timedelta(days=1), tz), UTCDateTime()).label("e"),
    ).subquery("days")
    t = Item.__table__.c

    def flag(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    counts = [func.count(), flag(t.answered_at.is_not(None)),
              flag(t.first_reaction_at.is_not(None)),
              flag(and_(t.answered_at.is_not(None), t.answer_due.is_not(None),
                        t.answered_at > t.answer_due)),
              flag(t.reopened_count > 0), func.coalesce(func.sum(t.rating), 0),
              func.count(t.rating),
              flag((t.satisfaction.is_not(None)) | (t.rating.is_not(None))),
              flag((t.satisfaction == "yes") | (t.rating >= 4))]
    return (select(bounds.c.day, t.topic, t.block_id, t.channel, t.kind, t.status, *counts)
            .select_from(bounds.join(Item.__table__, and_(t.received_at >= bounds.c.s,
                                                          t.received_at < bounds.c.e)))
            .group_by(bounds.c.day, t.topic, t.block_id, t.channel, t.kind, t.status))


def rebuild_statements(first: date, last: date, tz: ZoneInfo, *,
                       durations: bool = True) -> Iterable[Any]:
    """DELETE everything, fill the durations, then INSERT … SELECT per 400 local days."""
    yield delete(TABLE)
    yield delete(MONTHS)
    t = Item.__table__
    if durations:
        yield t.update().values(
            first_reaction_seconds=seconds_between(t.c.first_reaction_at, t.c.received_at),
            answer_seconds=seconds_between(t.c.answered_at, t.c.received_at))
    day = first
    while day <= last:
        days = [day + timedelta(days=i) for i in range(DAYS_PER_STATEMENT)
                if day + timedelta(days=i) <= last]
        yield core_insert(TABLE).from_select([*KEY, *COUNTS], _rollup_select(days, tz))
        day = days[-1] + timedelta(days=1)
    yield core_insert(MONTHS).from_select(["month", *KEY[1:], *COUNTS],
                                          _months_select(first, last))


def _months_select(first: date, last: date) -> Any:
    """The monthly rows summed from the daily ones (joined to a list of month bounds)."""
    months, month = [], first.replace(day=1)
    while month <= last:
        following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        months.append(select(literal(month).label("month"), literal(following).label("e")))
        month = following
    bounds = (union_all(*months) if len(months) > 1 else months[0]).subquery("months")
    d = TABLE.c
    return (select(bounds.c.month, d.topic, d.block_id, d.channel, d.kind, d.status,
                   *(func.sum(d[name]) for name in COUNTS))
            .select_from(bounds.join(TABLE, and_(d.day >= bounds.c.month, d.day < bounds.c.e)))
            .group_by(bounds.c.month, d.topic, d.block_id, d.channel, d.kind, d.status))


def received_span(connection: Connection, tz: ZoneInfo) -> tuple[date, date] | None:
    first, last = connection.execute(
        select(func.min(Item.__table__.c.received_at),
               func.max(Item.__table__.c.received_at))).one()
    if first is None:
        return None
    if isinstance(first, str):  # a bare connection in a migration returns SQLite's text
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return (local_day(first.replace(tzinfo=UTC), tz) - timedelta(days=1),
            local_day(last.replace(tzinfo=UTC), tz) + timedelta(days=1))


def rebuild_sync(connection: Connection, tz: ZoneInfo, *, durations: bool = True) -> None:
    """Recompute the rollup and the durations on a synchronous connection (in a transaction).
    `durations=False` keeps the stored durations (a bulk load that computed them itself)."""
    span = received_span(connection, tz)
    if span is None:
        connection.execute(delete(TABLE))
        connection.execute(delete(MONTHS))
        return
    for statement in rebuild_statements(*span, tz, durations=durations):
        connection.execute(statement)


async def rebuild(session: Any, tz: ZoneInfo) -> None:
    """`mcu stats rebuild`: the same, in the caller's transaction of an async session."""
    await session.run_sync(lambda sync: rebuild_sync(sync.connection(), tz))
