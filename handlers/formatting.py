"""Small presentation helpers shared by the citizen and staff views."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from handlers.i18n import Translator

TELEGRAM_TEXT_LIMIT = 4096
SAFE_CHUNK = 3500  # leaves room for a title and markup added by the transport


def local_date(moment: datetime | None, tz: ZoneInfo) -> str:
    return "—" if moment is None else moment.astimezone(tz).strftime("%d.%m.%Y")


def local_datetime(moment: datetime | None, tz: ZoneInfo) -> str:
    return "—" if moment is None else moment.astimezone(tz).strftime("%d.%m.%Y %H:%M")


def status_label(t: Translator, status: str) -> str:
    return t(f"status.{status}")


def map_link(latitude: float, longitude: float) -> str:
    return f"https://yandex.ru/maps/?pt={longitude:.6f},{latitude:.6f}&z=17&l=map"


def split_text(text: str, limit: int = SAFE_CHUNK) -> list[str]:
    """Split at paragraph, line or word boundaries so that no piece exceeds `limit`."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        # The strongest boundary that still leaves a reasonably full piece.
        cut = next((position for separator in ("\n\n", "\n", " ")
                    if (position := window.rfind(separator)) >= limit // 2), limit)
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not pieces:
        pieces.append(rest)
    return pieces
