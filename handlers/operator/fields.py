"""What an outside item may carry, checked the same way in the chat dialog and in file import."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.rules.deadlines import Kind
from storage.models import Item

# The channels an operator registers in chat, in the order of the buttons.
REGISTER_CHANNELS = ("pos", "incident_management", "sakhalin_online", "smls", "phone", "letter",
                     "visit")
# Outside systems with their own numbering: the number is required and unique per channel.
NUMBERED_CHANNELS = ("pos", "incident_management", "sakhalin_online", "smls")
IMPORT_CHANNELS = NUMBERED_CHANNELS

# Column lengths of storage.models (PostgreSQL enforces them; a longer value is refused early).
EXTERNAL_MAX = 100
NAME_MIN, NAME_MAX = 2, 300
PHONE_MAX = 100
EMAIL_MAX = 200
POSTAL_MIN, POSTAL_MAX = 5, 500
ADDRESS_MAX = 500
URL_MAX = 1000

# A typed or exported time more than this ahead of the clock is a mistake, not clock skew.
FUTURE_TOLERANCE = timedelta(minutes=5)

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[\d\s()\-.]+$")
_URL = re.compile(r"^https?://\S+$", re.IGNORECASE)
_SPACES = re.compile(r"\s+")


def default_kind(channel: str) -> Kind:
    """«Инцидент менеджмент» posts are incidents, paper letters are 59-ФЗ appeals."""
    if channel == "incident_management":
        return Kind.INCIDENT
    if channel == "letter":
        return Kind.APPEAL
    return Kind.MESSAGE


# What a «Вид» cell may say; compared by the beginning of the word, case-insensitively.
_KIND_WORDS = (("обращ", Kind.APPEAL), ("appeal", Kind.APPEAL), ("инцидент", Kind.INCIDENT),
               ("incident", Kind.INCIDENT), ("сообщ", Kind.MESSAGE), ("message", Kind.MESSAGE))


def parse_kind(value: str) -> Kind | None:
    word = value.strip().casefold()
    return next((kind for prefix, kind in _KIND_WORDS if word.startswith(prefix)), None)


def one_line(value: str) -> str:
    return _SPACES.sub(" ", value).strip()


def clean_external(value: str) -> str | None:
    number = one_line(value)
    return number if 0 < len(number) <= EXTERNAL_MAX else None


def clean_phone(value: str) -> str | None:
    phone = one_line(value)
    digits = sum(ch.isdigit() for ch in phone)
    if not _PHONE.match(phone) or not 5 <= digits <= 15 or len(phone) > PHONE_MAX:
        return None
    return phone


def clean_email(value: str) -> str | None:
    email = value.strip()
    return email if _EMAIL.match(email) and len(email) <= EMAIL_MAX else None


def clean_url(value: str) -> str | None:
    url = value.strip()
    return url if _URL.match(url) and len(url) <= URL_MAX else None


# ---------------------------------------------------------------------------------------------
# Times: typed or exported as local Sakhalin time unless they carry an offset.

_DATETIME_FORMATS = ("%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y, %H:%M", "%d.%m.%y %H:%M",
                     "%d.%m.%Y %H.%M")
_DATE_FORMATS = ("%d.%m.%Y", "%d.%m.%y")
EARLIEST = datetime(2000, 1, 1)


def parse_moment(value: object, tz: tzinfo, *, now: datetime | None = None,
                 extra_formats: tuple[str, ...] = (), date_only: bool = False) -> datetime | None:
    """A time from text or a spreadsheet cell; None when it cannot be read.

    `now` allows a bare "ЧЧ:ММ" meaning today; `date_only` accepts a date without a time
    (midnight local), which some exports have.
    """
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime.combine(value, time()) if date_only else None
    else:
        moment = _parse_text(one_line(str(value)), tz, now, extra_formats, date_only)
    if moment is None or moment.replace(tzinfo=None) < EARLIEST:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _parse_text(text: str, tz: tzinfo, now: datetime | None, extra_formats: tuple[str, ...],
                date_only: bool) -> datetime | None:
    if not text:
        return None
    formats = extra_formats + _DATETIME_FORMATS + (_DATE_FORMATS if date_only else ())
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    if now is not None and re.fullmatch(r"\d{1,2}:\d{2}", text):
        hours, minutes = (int(part) for part in text.split(":"))
        if hours < 24 and minutes < 60:
            return datetime.combine(now.astimezone(tz).date(), time(hours, minutes))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if not date_only and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return None  # a bare ISO date has no time of receipt
    return moment


def in_future(moment: datetime, now: datetime) -> bool:
    return moment > now + FUTURE_TOLERANCE


# ---------------------------------------------------------------------------------------------

async def existing_item_number(session: AsyncSession, channel: str, external: str) -> str | None:
    """The registration number of the item that already has this outside number, if any."""
    return await session.scalar(select(Item.number).where(Item.channel == channel,
                                                          Item.external_number == external))
