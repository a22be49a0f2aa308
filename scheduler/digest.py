"""Which of a chat's due rows the sender merges into one digest of new-item cards.

The rule, over the rows due in one chat, in their order:
- a digest starts at the chat's first due row, and only if that row begins a card marked as
  digestible (handlers/staff/digest.py); it takes the position of that row;
- it takes the card rows that follow without a gap: the first row that is not a card (or
  waits for its retry, or was partly delivered, or continues a card begun before) ends it,
  so nothing queued after another message is pulled ahead of it;
- it ends where every card it took is complete (all its messages), at most `CAP` cards
  of the platform, and no more than one message's text holds;
- it needs at least two cards: a card due alone goes as it is, as it always did.

The cap: Telegram allows 4,096 characters of text and about a hundred inline buttons. A
digest holds at most 50 cards (50 buttons, three to a row), and only as many lines as the
text limit holds (`fitting`: 50 typical lines of some 70 characters fit; lines of the full
100 characters, 37). A burst of 50 cards for one head then needs one card and one digest,
or two when the addresses are long. VK shows
buttons under the message only up to 10 (6 rows): a larger keyboard replaces the staff's
menu, so a VK digest holds 10; VK has no per-chat spacing, so more digests cost nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from handlers.events import DigestEntry
from handlers.staff.digest import fitting
from storage.models import OutboxMessage

CAP = {"telegram": 50, "vk": 10}
DEFAULT_CAP = 10
DIGEST_AUDIENCES = frozenset({"staff", "group"})  # never a citizen's chat


@dataclass(frozen=True)
class Digest:
    rows: list[OutboxMessage]  # every row it replaces, in queue order
    entries: list[DigestEntry]  # one per item, in the order the cards were queued


def entry_of(row: OutboxMessage) -> DigestEntry | None:
    payload = row.payload or {}
    if payload.get("redacted") or row.audience not in DIGEST_AUDIENCES:
        return None
    return DigestEntry.from_json(payload.get("digest"))


def plan(rows: Sequence[OutboxMessage], now: datetime, platform: str, text_limit: int,
         single: frozenset[int] = frozenset()) -> Digest | None:
    """The digest that replaces the first rows of this queue, or None (send the first row
    as it is). `single`: rows whose digest failed for good, sent one by one from now on."""
    digest = _take(rows, now, CAP.get(platform, DEFAULT_CAP), single)
    if digest is None:
        return None
    fits = fitting(digest.entries, text_limit)
    if fits < len(digest.entries):
        digest = _take(rows, now, fits, single)
    return digest


def _take(rows: Sequence[OutboxMessage], now: datetime, cap: int,
          single: frozenset[int]) -> Digest | None:
    taken: list[tuple[OutboxMessage, DigestEntry]] = []
    items: dict[int, DigestEntry] = {}  # item id → its entry, in order
    open_cards: set[int] = set()
    complete = 0  # how many of `taken` end where every card is complete
    for row in rows:
        entry = entry_of(row)
        if entry is None or row.id in single or row.next_attempt_at > now or row.parts_sent:
            break
        if entry.part == 0:
            if entry.item_id in open_cards:
                break  # the same card begun twice: leave it to be sent as it is
            if entry.item_id not in items:
                if len(items) >= cap:
                    break
                items[entry.item_id] = entry
            open_cards.add(entry.item_id)
        elif entry.item_id not in open_cards:
            break  # the rest of a card whose beginning went out alone
        taken.append((row, entry))
        if entry.part == entry.parts - 1:
            open_cards.discard(entry.item_id)
        if not open_cards:
            complete = len(taken)
    taken = taken[:complete]
    kept = {entry.item_id for _, entry in taken}
    if len(kept) < 2:
        return None
    return Digest([row for row, _ in taken],
                  [entry for item_id, entry in items.items() if item_id in kept])
