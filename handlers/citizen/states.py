"""The citizen's dialog states, one Enum per feature. The database keeps `state.value`."""

from __future__ import annotations

from enum import StrEnum


class ConsentState(StrEnum):
    ASKED = "consent"


class ReportState(StrEnum):
    TOPIC = "report_topic"
    TEXT = "report_text"
    PHOTOS = "report_photos"
    PLACE = "report_place"
    CONFIRM = "report_confirm"
    EDIT = "report_edit"


class ItemState(StrEnum):
    """Writing to one of the citizen's items (handlers/citizen/replies.py)."""

    COMMENT = "comment"
    CLARIFY = "clarify"  # answering a staff member's question


class PollState(StrEnum):
    COMMENT = "poll_comment"


class PrivacyState(StrEnum):
    FORGET_CONFIRM = "forget_confirm"
