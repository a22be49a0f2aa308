"""The buttons of /stats: they carry only a section and a period; who may see which block is
decided from the staff record on every press. Tags are the verbs of version 0 (`st:s:topics`),
so buttons already in chats still read (handlers/payloads.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from handlers.payloads import Payload


@dataclass(frozen=True)
class Sections(Payload):
    tag: ClassVar[str] = "st:menu"


@dataclass(frozen=True)
class ChooseSection(Payload):
    tag: ClassVar[str] = "st:s"
    section: str


@dataclass(frozen=True)
class ChoosePeriod(Payload):
    tag: ClassVar[str] = "st:p"
    section: str
    period: str  # a preset (handlers/analytics/periods.py) or "custom"


@dataclass(frozen=True)
class Spreadsheet(Payload):
    tag: ClassVar[str] = "st:x"
    # A forged tail (another block) was always ignored: who sees what comes from the staff
    # record, never from the button.
    extra_ignored: ClassVar[bool] = True
    section: str
    first: str  # YYYYMMDD, both days included
    last: str
