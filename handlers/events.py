"""Messenger-neutral events (what came in) and replies (what goes out).

Transports translate their updates into these and render the replies; the core never sees an
aiogram or vkbottle object. Identities are (platform, id) pairs, never bare ints.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class Platform(StrEnum):
    TELEGRAM = "telegram"
    VK = "vk"


@dataclass(frozen=True)
class UserRef:
    """A messenger account: who acted."""

    platform: Platform
    user_id: str


@dataclass(frozen=True)
class ChatRef:
    """Where to answer: a private chat or a group chat on one platform."""

    platform: Platform
    chat_id: str


@dataclass(frozen=True)
class IncomingPhoto:
    data: bytes
    mime: str = "image/jpeg"
    width: int | None = None
    height: int | None = None
    source_id: str | None = None  # the platform's own file id, kept for reference only


@dataclass(frozen=True)
class IncomingDocument:
    """A file sent by a user. Its bytes are fetched only when the core keeps it (a staff
    answer), so a citizen's refused file is never downloaded."""

    filename: str
    mime: str
    size: int | None
    fetch: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float

    @classmethod
    def checked(cls, latitude: object, longitude: object) -> Location | None:
        """A location from untrusted numbers, or None when they are not a place on Earth."""
        try:
            lat, lon = float(latitude), float(longitude)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            return None
        return cls(lat, lon)


# Kinds of content the core does not accept as a report, named so the reply can say what it got.
class Unsupported(StrEnum):
    STICKER = "sticker"
    VOICE = "voice"
    VIDEO_NOTE = "video_note"
    VIDEO = "video"
    AUDIO = "audio"
    DOCUMENT = "document"
    CONTACT = "contact"
    POLL = "poll"
    OTHER = "other"


@dataclass(frozen=True)
class IncomingMessage:
    update_key: str  # unique per platform, for at-most-once processing
    user: UserRef
    chat: ChatRef
    is_private: bool = True
    text: str | None = None
    photos: tuple[IncomingPhoto, ...] = ()
    location: Location | None = None
    unsupported: Unsupported | None = None
    document: IncomingDocument | None = None  # set with unsupported=DOCUMENT
    display_name: str | None = None
    language_code: str | None = None
    # What the transport could not take from the message, as a text key the core says
    # ("photo.too_large", "photo.unavailable", "location.invalid").
    problem: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.photos or self.location or self.unsupported)


@dataclass(frozen=True)
class ButtonPress:
    update_key: str
    user: UserRef
    chat: ChatRef
    payload: str  # never trusted: the core re-checks everything it implies
    is_private: bool = True
    display_name: str | None = None
    language_code: str | None = None


Event = IncomingMessage | ButtonPress


@dataclass(frozen=True)
class Button:
    text: str
    payload: str
    url: str | None = None  # a link button instead of a callback


@dataclass(frozen=True)
class OutgoingPhoto:
    path: Path
    caption: str | None = None


@dataclass(frozen=True)
class OutgoingDocument:
    path: Path
    filename: str


@dataclass(frozen=True)
class DigestEntry:
    """Marks a message as (a part of) an item's card that the outbox sender may merge with
    the other cards due in the same chat into one digest: «New messages (5): …», a line and
    a button per item (scheduler/digest.py). `line` is already in the recipient's language
    (`locale`); a card of several messages carries an entry on each, `part` of `parts`.
    `openable`: the digest gets a button per item that opens its card (a private chat)."""

    item_id: int
    number: str
    line: str
    locale: str
    part: int = 0
    parts: int = 1
    openable: bool = True

    def to_json(self) -> dict[str, object]:
        return {"item_id": self.item_id, "number": self.number, "line": self.line,
                "locale": self.locale, "part": self.part, "parts": self.parts,
                "openable": self.openable}

    @classmethod
    def from_json(cls, data: object) -> DigestEntry | None:
        """None for anything that is not a well-formed entry (a redacted or older row)."""
        if not isinstance(data, dict):
            return None
        try:
            entry = cls(int(data["item_id"]), str(data["number"]), str(data["line"]),
                        str(data["locale"]), int(data.get("part", 0)),
                        int(data.get("parts", 1)), bool(data.get("openable", True)))
        except (KeyError, TypeError, ValueError):
            return None
        return entry if 0 <= entry.part < entry.parts else None


@dataclass
class Reply:
    """One outbound message.

    `text` is plain text; transports escape it for their markup. `title` is shown emphasised
    where the messenger can. `menu` asks for the persistent main menu (a reply keyboard in
    Telegram, a non-inline keyboard in VK); `buttons` are choices attached to the message.
    """

    text: str
    title: str | None = None
    buttons: list[list[Button]] = field(default_factory=list)
    menu: list[list[str]] | None = None
    remove_menu: bool = False
    monospace: bool = False
    photos: list[OutgoingPhoto] = field(default_factory=list)
    location: Location | None = None
    document: OutgoingDocument | None = None
    # Set on a staff card the sender may merge into a digest; transports ignore it.
    digest: DigestEntry | None = None

    def to_json(self) -> dict:  # type: ignore[type-arg]
        data = {
            "text": self.text,
            "title": self.title,
            "buttons": [[{"text": b.text, "payload": b.payload, "url": b.url} for b in row]
                        for row in self.buttons],
            "menu": self.menu,
            "remove_menu": self.remove_menu,
            "monospace": self.monospace,
            "photos": [{"path": str(p.path), "caption": p.caption} for p in self.photos],
            "location": ([self.location.latitude, self.location.longitude]
                         if self.location else None),
            "document": ({"path": str(self.document.path), "filename": self.document.filename}
                         if self.document else None),
        }
        if self.digest is not None:
            data["digest"] = self.digest.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict) -> Reply:  # type: ignore[type-arg]
        location = data.get("location")
        document = data.get("document")
        return cls(
            text=data["text"],
            title=data.get("title"),
            buttons=[[Button(b["text"], b["payload"], b.get("url")) for b in row]
                     for row in data.get("buttons", [])],
            menu=data.get("menu"),
            remove_menu=data.get("remove_menu", False),
            monospace=data.get("monospace", False),
            photos=[OutgoingPhoto(Path(p["path"]), p.get("caption"))
                    for p in data.get("photos", [])],
            location=Location(*location) if location else None,
            document=(OutgoingDocument(Path(document["path"]), document["filename"])
                      if document else None),
            digest=DigestEntry.from_json(data.get("digest")),
        )


@dataclass
class Response:
    """What the core decided for one event: replies into the same chat, and for a button press
    an optional short notice (a Telegram callback answer / a VK snackbar).

    The replies were queued in the outbox in the turn's own transaction (`queued` is true), so
    they survive a transport failure; the transport asks the sender to deliver them at once.
    A reply that could not be queued (the database was unreachable) is sent directly, once.
    """

    replies: list[Reply] = field(default_factory=list)
    notice: str | None = None
    queued: bool = False


@dataclass
class Progress:
    """Where a multi-part delivery stands. A reply may become several visible messages (an
    album, a photo, text parts); each has its own durable mark, so a retry resumes after the
    parts that arrived and never sends one twice."""

    start: int = 0  # parts already delivered
    # Pacing: held around each part's request (the rate limits count it until it is done).
    slot: Callable[[], AbstractAsyncContextManager[None]] = field(
        default=lambda: contextlib.nullcontext())
    # Marks `n` parts delivered; not called after the last part, whose mark is the caller's
    # own once the send returns (the outbox marks the row sent: one write instead of two).
    after_part: Callable[[int], Awaitable[None]] | None = None


class DeliveryError(Exception):
    """Raised by a transport when a message could not be delivered."""

    def __init__(self, message: str, *, retry_after: float | None = None,
                 permanent: bool = False, blocked: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.permanent = permanent
        self.blocked = blocked
