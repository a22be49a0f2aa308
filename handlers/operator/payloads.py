"""The buttons of /register. The tag is the prefix of version 0 (`r:ch:pos`), so buttons
already in operators' chats still read (handlers/payloads.py)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from handlers.payloads import Payload


class RegisterOp(StrEnum):
    CANCEL = "cancel"
    SKIP = "skip"
    CHANNEL = "ch"
    KIND = "kind"
    TOPIC = "topic"
    NOW = "now"  # the moment of receipt is now
    DONE = "done"  # no more photos
    SEND = "send"
    EDIT = "edit"
    FIELD = "field"  # which field to edit, or "back"


@dataclass(frozen=True)
class RegisterButton(Payload):
    tag: ClassVar[str] = "r"
    op: RegisterOp
    value: str | None = None  # the channel, kind, topic or field
