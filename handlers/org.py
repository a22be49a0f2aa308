"""The organisation file: roles, blocks, topics, working hours, deadlines, sections.

It is TOML, validated with pydantic so that an error names the field at fault.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import date, time
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from handlers.capabilities import MESSENGERS
from handlers.rules.calendar import WorkCalendar
from handlers.rules.deadlines import DEFAULT_POLICIES, DeadlinePolicy, Kind
from handlers.rules.lifecycle import Status

OTHER_TOPIC = "other"


class Role(StrEnum):
    CURATOR = "curator"
    CHAIRMAN = "chairman"
    IM_COORDINATOR = "im_coordinator"
    PRESS = "press"
    HEAD = "head"
    EXECUTOR = "executor"
    OPERATOR = "operator"


BLOCK_ROLES = frozenset({Role.HEAD, Role.EXECUTOR})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RolePosition(_Strict):
    position: str = Field(min_length=1)


class Roles(_Strict):
    curator: RolePosition
    chairman: RolePosition
    im_coordinator: RolePosition
    press: RolePosition


class Topic(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    # What the topic covers, in the residents' words, and example messages: both train the
    # topic suggester (handlers/topics), so a new topic needs no code change.
    description: str = ""
    phrases: list[str] = []

    def label(self, locale: str) -> str:
        return self.title_en if locale == "en" else self.title


class Block(_Strict):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = Field(min_length=1)
    head: str = Field(min_length=1, description="the head's position")
    head_role: Literal["head", "chairman"] = "head"
    topics: list[str] = []


class WorkingHours(_Strict):
    start: time = time(9)
    end: time = time(18)
    weekdays: list[int] = [1, 2, 3, 4, 5]

    @field_validator("weekdays")
    @classmethod
    def _iso_weekdays(cls, value: list[int]) -> list[int]:
        if not value or any(day < 1 or day > 7 for day in value):
            raise ValueError("weekdays are ISO numbers 1 (Monday) to 7 (Sunday), at least one")
        return value

    @model_validator(mode="after")
    def _start_before_end(self) -> WorkingHours:
        if self.start >= self.end:
            raise ValueError("start must be earlier than end")
        return self


class CalendarOverride(_Strict):
    extra_holidays: list[date] = []
    extra_workdays: list[date] = []


class KindDeadlines(_Strict):
    first_reaction_working_days: int | None = Field(default=None, ge=0, le=60)
    first_reaction_working_hours: float | None = Field(default=None, gt=0, le=240)
    answer_working_days: int | None = Field(default=None, ge=1, le=60)
    answer_calendar_days: int | None = Field(default=None, ge=1, le=90)
    registration_calendar_days: int | None = Field(default=None, ge=1, le=30)
    forward_calendar_days: int | None = Field(default=None, ge=1, le=30)
    extension_max_calendar_days: int | None = Field(default=None, ge=1, le=90)
    max_extension_working_days: int | None = Field(default=None, ge=0, le=60)

    def policy_fields(self) -> dict[str, float | int]:
        data = self.model_dump(exclude_none=True)
        data.pop("max_extension_working_days", None)
        return data


class DeadlineOverride(KindDeadlines):
    topic: str
    kind: Kind


class Deadlines(_Strict):
    message: KindDeadlines = KindDeadlines()
    incident: KindDeadlines = KindDeadlines()
    appeal: KindDeadlines = KindDeadlines()


class Approval(_Strict):
    appeal_requires_chairman: bool = True


class Reopen(_Strict):
    answer_working_days: int = Field(default=5, ge=1, le=60)


class Reminders(_Strict):
    before_working_days: int = Field(default=1, ge=0, le=10)  # 0 turns the early one off
    due_day_morning: bool = True


class Escalation(_Strict):
    curator_after_working_days: int = Field(default=3, ge=1, le=60)


class Polls(_Strict):
    delay_hours: float = Field(default=2, ge=0, le=240)
    window_start: time = time(9)
    window_end: time = time(21)
    reminder_after_hours: float = Field(default=24, gt=0, le=240)
    expire_after_days: int = Field(default=7, ge=1, le=60)

    @model_validator(mode="after")
    def _window(self) -> Polls:
        if self.window_start >= self.window_end:
            raise ValueError("window_start must be earlier than window_end")
        return self


class Summaries(_Strict):
    daily_time: time = time(9)
    weekly_weekday: int = Field(default=1, ge=1, le=7)  # ISO, 1 = Monday
    weekly_time: time = time(9)


GROUPINGS = ("topic", "channel", "kind", "block", "executor", "status", "day", "week", "month",
             "cluster")
METRICS = ("count", "overdue_count", "overdue_share", "median_first_reaction_hours",
           "median_answer_hours", "average_rating", "satisfied_share", "reopened_count",
           "open_count")
STATUSES = frozenset(str(s) for s in Status)
CHANNELS = (*MESSENGERS, "pos", "incident_management", "sakhalin_online", "smls", "phone",
            "letter", "visit")


class Analytics(_Strict):
    """Clusters of repeated problems ("первопричины"): how near, how recent, how many; and
    the thresholds of growing topics."""

    cluster_radius_m: float = Field(default=150, gt=0, le=5000)
    cluster_window_days: int = Field(default=30, ge=1, le=365)
    cluster_min_items: int = Field(default=3, ge=2, le=1000)
    # Growth of topics (handlers/analytics/growth.py): the last 7 days against the weekly mean
    # of the 4 weeks before; flagged when all three thresholds hold.
    growth_min_items: int = Field(default=5, ge=1, le=100_000)
    growth_ratio: float = Field(default=2.0, gt=1, le=100)
    growth_p_value: float = Field(default=0.01, gt=0, lt=1)
    growth_min_baseline: float = Field(default=0.5, gt=0, le=1000)


class SectionFilters(_Strict):
    topics: list[str] = []
    channels: list[Literal[CHANNELS]] = []  # type: ignore[valid-type]
    kinds: list[Kind] = []
    blocks: list[str] = []
    statuses: list[str] = []


class Section(_Strict):
    # Short: the name travels in button payloads (64 bytes with the period).
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    title: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    group_by: Literal[GROUPINGS]  # type: ignore[valid-type]
    metrics: list[Literal[METRICS]] = Field(min_length=1)  # type: ignore[valid-type]
    filters: SectionFilters = SectionFilters()
    # Which date puts an item in the period: the date of receipt (when the citizen wrote) for
    # every section, unless it asks for the registration or the creation (import) date.
    date: Literal["received", "registered", "created"] = "received"

    def label(self, locale: str) -> str:
        return self.title_en if locale == "en" else self.title


class Organisation(_Strict):
    version: int = 1
    name: str
    working_hours: WorkingHours = WorkingHours()
    calendar: CalendarOverride = CalendarOverride()
    roles: Roles
    topics: list[Topic] = Field(min_length=1)
    blocks: list[Block] = Field(min_length=1)
    deadlines: Deadlines = Deadlines()
    deadline_overrides: list[DeadlineOverride] = []
    approval: Approval = Approval()
    reopen: Reopen = Reopen()
    reminders: Reminders = Reminders()
    escalation: Escalation = Escalation()
    polls: Polls = Polls()
    summaries: Summaries = Summaries()
    categories: dict[str, dict[str, str]] = {}
    analytics: Analytics = Analytics()
    sections: list[Section] = []

    @model_validator(mode="after")
    def _consistent(self) -> Organisation:
        _check_unique("topics", [t.id for t in self.topics])
        _check_unique("blocks", [b.id for b in self.blocks])
        _check_unique("sections", [s.name for s in self.sections])
        topic_ids = {t.id for t in self.topics}
        block_ids = {b.id for b in self.blocks}
        if OTHER_TOPIC not in topic_ids:
            raise ValueError(f"topics: the topic {OTHER_TOPIC!r} must exist")
        owner: dict[str, str] = {}
        for i, block in enumerate(self.blocks):
            for j, topic in enumerate(block.topics):
                where = f"blocks[{i}].topics[{j}]"
                if topic not in topic_ids:
                    raise ValueError(f"{where}: unknown topic {topic!r}")
                if topic in owner:
                    raise ValueError(f"{where}: topic {topic!r} already belongs to block "
                                     f"{owner[topic]!r}")
                owner[topic] = block.id
        orphans = sorted(topic_ids - owner.keys())
        if orphans:
            raise ValueError(f"topics: no block owns {', '.join(orphans)}")
        for i, override in enumerate(self.deadline_overrides):
            if override.topic not in topic_ids:
                raise ValueError(f"deadline_overrides[{i}].topic: unknown topic {override.topic!r}")
        for channel, table in self.categories.items():
            if channel not in CHANNELS:
                raise ValueError(f"categories.{channel}: unknown channel")
            for category, topic in table.items():
                if topic not in topic_ids:
                    raise ValueError(f"categories.{channel}.{category!r}: unknown topic {topic!r}")
        for i, section in enumerate(self.sections):
            for j, topic in enumerate(section.filters.topics):
                if topic not in topic_ids:
                    raise ValueError(f"sections[{i}].filters.topics[{j}]: unknown topic {topic!r}")
            for j, block in enumerate(section.filters.blocks):
                if block not in block_ids:
                    raise ValueError(f"sections[{i}].filters.blocks[{j}]: unknown block {block!r}")
            for j, status in enumerate(section.filters.statuses):
                if status not in STATUSES:
                    raise ValueError(f"sections[{i}].filters.statuses[{j}]: unknown status "
                                     f"{status!r}")
            _check_unique(f"sections[{i}].metrics", list(section.metrics))
        return self

    # -- lookups used by routing and the deadline engine -------------------------------------
    @cached_property
    def topic_by_id(self) -> dict[str, Topic]:
        return {t.id: t for t in self.topics}

    @cached_property
    def block_by_id(self) -> dict[str, Block]:
        return {b.id: b for b in self.blocks}

    @cached_property
    def block_of_topic(self) -> dict[str, Block]:
        return {topic: block for block in self.blocks for topic in block.topics}

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)

    def work_calendar(self, tz: ZoneInfo) -> WorkCalendar:
        return WorkCalendar(
            tz=tz,
            work_start=self.working_hours.start,
            work_end=self.working_hours.end,
            workdays=frozenset(day - 1 for day in self.working_hours.weekdays),
            extra_holidays=frozenset(self.calendar.extra_holidays),
            extra_workdays=frozenset(self.calendar.extra_workdays),
        )

    def policy(self, kind: Kind, topic: str | None = None) -> DeadlinePolicy:
        policy = _apply(DEFAULT_POLICIES[kind], getattr(self.deadlines, kind).policy_fields())
        for override in self.deadline_overrides:
            if override.kind == kind and override.topic == topic:
                fields = override.policy_fields()
                fields.pop("topic")
                fields.pop("kind")
                policy = _apply(policy, fields)
        return policy

    def max_extension_working_days(self, kind: Kind) -> int:
        value = getattr(self.deadlines, kind).max_extension_working_days
        return 10 if value is None else value


# A deadline counted one way replaces the same deadline counted the other way.
_ALTERNATIVES = {
    "first_reaction_working_days": "first_reaction_working_hours",
    "first_reaction_working_hours": "first_reaction_working_days",
    "answer_working_days": "answer_calendar_days",
    "answer_calendar_days": "answer_working_days",
}


def _apply(policy: DeadlinePolicy, fields: dict[str, float | int]) -> DeadlinePolicy:
    cleared = {_ALTERNATIVES[name]: None for name in fields if name in _ALTERNATIVES}
    cleared = {name: value for name, value in cleared.items() if name not in fields}
    return replace(policy, **cleared, **fields)


def _check_unique(field: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(ids):
        if value in seen:
            raise ValueError(f"{field}[{i}]: duplicate id {value!r}")
        seen.add(value)


class OrgFileError(Exception):
    """The organisation file is missing, not TOML, or invalid; the message names the field."""


def parse_organisation(text: str, source: str = "<org>") -> Organisation:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OrgFileError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return Organisation.model_validate(data)
    except ValidationError as exc:
        raise OrgFileError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from exc


def load_organisation(path: Path) -> Organisation:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise OrgFileError(f"{path}: cannot read the organisation file ({exc.strerror})") from exc
    return parse_organisation(text, str(path))


def _describe(error: dict) -> str:  # type: ignore[type-arg]
    location = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
    ).lstrip(".")
    message = str(error["msg"]).removeprefix("Value error, ")
    if not location:
        return message
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown field"
    return f"{location}: {message}"
