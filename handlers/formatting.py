"""Small presentation helpers shared by the citizen and staff views."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from handlers.i18n import Translator

# Cards and tables are cut by the core below every messenger's text limit, leaving room for
# the title and markup a transport adds; a transport cuts again at its own limit if need be.
SAFE_CHUNK = 3500


def local_date(moment: datetime | None, tz: ZoneInfo) -> str:
    return "—" if moment is None else moment.astimezone(tz).strftime("%d.%m.%Y")


def local_datetime(moment: datetime | None, tz: ZoneInfo) -> str:
    return "—" if moment is None else moment.astimezone(tz).strftime("%d.%m.%Y %H:%M")


def status_label(t: Translator, status: str) -> str:
    return t(f"status.{status}")


def map_link(latitude: float, longitude: float) -> str:
    return f"https://yandex.ru/maps/?pt={longitude:.6f},{latitude:.6f}&z=17&l=map"


def cut_point(text: str, budget: int, cost: Callable[[str], int] = len) -> tuple[int, int]:
    """Where the first piece of `text` ends and the next begins, so that the piece's summed
    per-character `cost` fits `budget`: at a paragraph break, else a line break, else a space
    in the second half of what fits; else inside a word. Only the separator is dropped, so
    a monospace layout survives. (len(text), len(text)) when all of it fits."""
    used = end = 0
    for char in text:
        used += cost(char)
        if used > budget:
            break
        end += 1
    if end == len(text):
        return end, end
    window = text[:end + 1]  # a separator just past what fits is a clean cut too
    for separator in ("\n\n", "\n", " "):
        at = window.rfind(separator)
        if at > 0 and at >= end // 2:
            return at, at + len(separator)
    end = max(end, 1)  # always progress, even when one character is over the budget
    return end, end


def split_text(text: str, limit: int = SAFE_CHUNK, *,
               cost: Callable[[str], int] = len) -> list[str]:
    """The one text splitter, for the core and both transports: pieces of at most `limit`
    (counted by `cost` per character), cut as `cut_point` says. Empty text is one piece."""
    pieces: list[str] = []
    rest = text
    while rest:
        end, resume = cut_point(rest, limit, cost)
        pieces.append(rest[:end])
        rest = rest[resume:]
    return pieces or [""]
