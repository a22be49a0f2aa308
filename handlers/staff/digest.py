"""Cards in a burst: what a digest of new-item cards says, and the mark that lets the outbox
sender merge a card into one.

When several new-item cards are due in one chat at once (fifty citizens confirming within a
second, all for one head), Telegram's one message per second per chat would hand them out one
by one. The sender (scheduler/digest.py) merges them instead into one message:

    🆕 Новые сообщения (5):
    № 2026-000123 — Энергетика; ул. Ленина, 12
    …
    [№ 2026-000123] [№ 2026-000124] …

A button opens the item's full card (`CardAction(CARD)`, the card's own «refresh» button,
handled by the staff card router), queued through the outbox as a reply. In a group chat,
where staff buttons do nothing, the digest is the list alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from handlers.context import Services
from handlers.events import Button, DigestEntry, Reply
from handlers.i18n import Translator, translator
from handlers.staff.payloads import CardAction, CardOp
from storage.models import Item

LINE_LIMIT = 100  # characters of one item's line; the text limit decides how many fit
ADDRESS_LIMIT = 48
BUTTONS_PER_ROW = 3  # «№ 2026-000123» three to a row stays readable on a phone


def entry_for(services: Services, t: Translator, item: Item, *,
              openable: bool = True) -> DigestEntry:
    """How the item is listed in a digest, in the recipient's language."""
    topic = services.org.topic_by_id[item.topic].label(t.locale)
    if item.address:
        address = (item.address if len(item.address) <= ADDRESS_LIMIT
                   else item.address[:ADDRESS_LIMIT - 1] + "…")
        line = t("digest.line_address", number=item.number, topic=topic, address=address)
    else:
        line = t("digest.line", number=item.number, topic=topic)
    line = " ".join(line.split())  # one line, whatever the address held
    if len(line) > LINE_LIMIT:
        line = line[:LINE_LIMIT - 1] + "…"
    return DigestEntry(item.id, item.number, line, t.locale, openable=openable)


def digestible(replies: Sequence[Reply], entry: DigestEntry) -> list[Reply]:
    """The card's messages, each marked as part of one card the sender may merge."""
    for index, reply in enumerate(replies):
        reply.digest = DigestEntry(entry.item_id, entry.number, entry.line, entry.locale,
                                   index, len(replies), entry.openable)
    return list(replies)


def digest_text(t: Translator, entries: Sequence[DigestEntry]) -> str:
    lines = [entry.line for entry in entries]
    if entries and entries[0].openable:
        lines += ["", t("digest.hint")]
    return "\n".join(lines)


def digest_reply(entries: Sequence[DigestEntry]) -> Reply:
    """One message for these cards (one entry per item, in the order they were queued)."""
    t = translator(entries[-1].locale)  # the recipient's latest choice of language
    buttons: list[Button] = []
    if entries[0].openable:
        buttons = [Button(t("digest.button", number=entry.number),
                          CardAction(CardOp.CARD, entry.item_id).pack()) for entry in entries]
    rows = [buttons[i:i + BUTTONS_PER_ROW] for i in range(0, len(buttons), BUTTONS_PER_ROW)]
    return Reply(digest_text(t, entries), title=t("digest.title", count=len(entries)),
                 buttons=rows)


def fitting(entries: Sequence[DigestEntry], text_limit: int) -> int:
    """How many of these entries (from the first) one message of `text_limit` characters
    holds, counted as Telegram does after escaping its HTML (never less than the
    messenger counts), with a margin for the title."""
    budget = text_limit - 200
    t = translator(entries[-1].locale) if entries else translator(None)
    used = len(t("digest.hint")) + 2
    for count, entry in enumerate(entries):
        used += _cost(entry.line) + 1
        if used > budget:
            return count
    return len(entries)


def _cost(text: str) -> int:
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return len(escaped.encode("utf-16-le")) // 2
