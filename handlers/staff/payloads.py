"""Staff buttons. Tags are the verbs of version 0 (`s:take:12`), so the cards already in staff
chats keep working (handlers/payloads.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from handlers.payloads import Payload


class CardOp(StrEnum):
    """Card buttons that need only the item: show it, take it, or open a choice or a text."""

    CARD = "card"
    TAKE = "take"
    ASSIGN = "assign"
    REDIRECT = "redirect"
    EXTEND = "extend"
    ASK = "ask"
    OUTSIDE = "outside"
    ANSWER = "answer"
    REMARK = "remark"
    REWORK = "rework"
    DUPLICATE = "duplicate"


class TaskFilter(StrEnum):
    ALL = "all"
    MINE = "mine"
    BLOCK = "block"
    OVERDUE = "overdue"


@dataclass(frozen=True)
class CardAction(Payload):
    tag: ClassVar[str] = "s"
    op: CardOp
    item_id: int


@dataclass(frozen=True)
class AssignTo(Payload):
    tag: ClassVar[str] = "s:assign_to"
    item_id: int
    executor_id: int


@dataclass(frozen=True)
class RedirectTo(Payload):
    """The target block, then (for a block of several topics) the topic's place in it: an
    index, not the topic id, to stay within 64 bytes."""

    tag: ClassVar[str] = "s:redirect_to"
    item_id: int
    block: str
    topic_index: int | None = None


@dataclass(frozen=True)
class ExtendBy(Payload):
    tag: ClassVar[str] = "s:extend_by"
    item_id: int
    days: int


@dataclass(frozen=True)
class Approve(Payload):
    tag: ClassVar[str] = "s:approve"
    item_id: int


@dataclass(frozen=True)
class Published(Payload):
    """«Ответ размещён»: the answer was pasted into the outside system."""

    tag: ClassVar[str] = "s:published"
    item_id: int


@dataclass(frozen=True)
class Tasks(Payload):
    tag: ClassVar[str] = "s:tasks"
    filter: TaskFilter = TaskFilter.ALL
    page: int = 0


@dataclass(frozen=True)
class CancelInput(Payload):
    tag: ClassVar[str] = "s:cancel"
