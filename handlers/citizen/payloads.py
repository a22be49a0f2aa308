"""The citizen's buttons. Tags are the verbs of version 0, so buttons sent before the
versioned format still read (handlers/payloads.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from handlers.payloads import Payload


class ConsentAnswer(StrEnum):
    YES = "yes"
    NO = "no"
    POLICY = "policy"


class YesNo(StrEnum):
    YES = "yes"
    NO = "no"


class PhotosAction(StrEnum):
    SKIP = "skip"
    DONE = "done"


class ConfirmAction(StrEnum):
    SEND = "send"
    EDIT = "edit"


class ReportField(StrEnum):
    TOPIC = "topic"
    TEXT = "text"
    PHOTOS = "photos"
    PLACE = "place"
    BACK = "back"


class PollChoice(StrEnum):
    YES = "yes"
    PARTLY = "partly"
    NO = "no"


@dataclass(frozen=True)
class Consent(Payload):
    tag: ClassVar[str] = "consent"
    answer: ConsentAnswer


@dataclass(frozen=True)
class CancelReport(Payload):
    tag: ClassVar[str] = "report:cancel"


@dataclass(frozen=True)
class ChooseTopic(Payload):
    tag: ClassVar[str] = "topic"
    topic: str


@dataclass(frozen=True)
class AllTopics(Payload):
    tag: ClassVar[str] = "topics:all"


@dataclass(frozen=True)
class Photos(Payload):
    tag: ClassVar[str] = "photos"
    action: PhotosAction


@dataclass(frozen=True)
class SkipPlace(Payload):
    tag: ClassVar[str] = "place:skip"


@dataclass(frozen=True)
class Confirm(Payload):
    tag: ClassVar[str] = "confirm"
    action: ConfirmAction


@dataclass(frozen=True)
class Edit(Payload):
    tag: ClassVar[str] = "edit"
    field: ReportField


@dataclass(frozen=True)
class MyList(Payload):
    tag: ClassVar[str] = "my:list"


@dataclass(frozen=True)
class MyItem(Payload):
    tag: ClassVar[str] = "my"
    item_id: int


@dataclass(frozen=True)
class AddComment(Payload):
    tag: ClassVar[str] = "comment"
    item_id: int


@dataclass(frozen=True)
class AnswerQuestion(Payload):
    tag: ClassVar[str] = "clarify"
    item_id: int


@dataclass(frozen=True)
class PollAnswer(Payload):
    tag: ClassVar[str] = "poll"
    item_id: int
    choice: PollChoice


@dataclass(frozen=True)
class Rate(Payload):
    tag: ClassVar[str] = "rate"
    item_id: int
    rating: int


@dataclass(frozen=True)
class PollComment(Payload):
    tag: ClassVar[str] = "pollc"
    item_id: int


@dataclass(frozen=True)
class Forget(Payload):
    tag: ClassVar[str] = "forget"
    answer: YesNo
