"""152-ФЗ erasure: when a citizen withdraws consent, their personal data leaves every table,
file and queued message. What the statistics need stays: the number, kind, channel, topic,
block, dates, status, rating and satisfaction of each item, and its cluster.

One use case for every entry point: `/forget` in the chat (handlers/citizen/privacy.py) and
`mcu privacy forget` for a citizen who asked by phone or on paper (bot/privacy_cli.py). It
runs inside the caller's transaction and touches no file: the caller deletes `report.files`
after the commit (handlers/erasure_cleanup.py), so a rollback never leaves rows pointing at
deleted files.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.analytics.clusters import place_label
from handlers.context import Services
from handlers.events import Platform
from handlers.i18n import translator
from handlers.outbox import redacted_payload
from handlers.rules.lifecycle import Action, Actor, Status, check
from storage.models import (
    Account,
    Attachment,
    Citizen,
    Cluster,
    Consent,
    DialogState,
    FloodCounter,
    Item,
    ItemEvent,
    OutboxMessage,
    ProcessedUpdate,
)

log = logging.getLogger(__name__)

ERASED_TEXT = "[удалено по отзыву согласия]"

# Coordinates are coarsened to the centre of a grid cell of 0.005° of latitude by 0.008° of
# longitude: about 556 m × 528 m at Okha's latitude (53.6° N). Close enough for the statistics
# and the clusters (their radius is a few hundred metres), too coarse to point at a house.
GRID_LAT = 0.005
GRID_LON = 0.008

# History entries whose comment is written by the system, not by a person: a block id, a
# duplicate's main number, an executor's (staff) name, a poll answer or a rating.
SYSTEM_COMMENTS = ("route", "mark_duplicate", "delegate", "poll_answer", "rating")


MENTION_MIN = 5  # characters


def erased_marker(account_id: int) -> str:
    """What replaces a messenger id: unique per account, meaningless outside this database."""
    return f"erased:{account_id}"


def coarse(latitude: float, longitude: float) -> tuple[float, float]:
    """The centre of the ~500 m grid cell (see GRID_LAT, GRID_LON) nearest to the point."""
    return (round(round(latitude / GRID_LAT) * GRID_LAT, 6),
            round(round(longitude / GRID_LON) * GRID_LON, 6))


@dataclass(frozen=True)
class KeptItem:
    """What is left of one item after erasure: the facts the statistics count."""

    number: str
    topic: str
    status: str
    received_at: datetime
    answered_at: datetime | None


@dataclass
class ErasureReport:
    kept: list[KeptItem] = field(default_factory=list)
    accounts: int = 0
    attachments: int = 0
    events: int = 0
    outbox_redacted: int = 0
    outbox_cancelled: int = 0
    clusters_relabelled: int = 0
    files: list[str] = field(default_factory=list)  # to delete after the commit

    @property
    def numbers(self) -> list[str]:
        return [item.number for item in self.kept]


class NothingToErase(LookupError):
    """No account, citizen or item with that id."""


async def erase_citizen(session: AsyncSession, services: Services, now: datetime, *,
                        account_id: int | None = None, citizen_id: int | None = None,
                        item_id: int | None = None) -> ErasureReport:
    """Erase everything that identifies one person, found by exactly one of: the messenger
    account they wrote from, their citizen record, or one of their items (an item without a
    known citizen is erased alone). Runs in the caller's transaction; no file I/O."""
    if [account_id, citizen_id, item_id].count(None) != 2:
        raise ValueError("pass exactly one of account_id, citizen_id, item_id")
    accounts, citizen_ids, item_ids = await _subject(session, account_id, citizen_id, item_id)
    conditions = [Item.id.in_(item_ids)] if item_ids else []
    if citizen_ids:
        conditions.append(Item.citizen_id.in_(citizen_ids))
    if accounts:
        conditions.append(Item.reply_account_id.in_([a.id for a in accounts]))
    items = list((await session.scalars(
        select(Item).where(or_(*conditions)).order_by(Item.id))).all()) if conditions else []
    # The items' reply accounts belong to the same person even when the citizen link is gone.
    known = {a.id for a in accounts}
    extra = {i.reply_account_id for i in items if i.reply_account_id not in known} - {None}
    if extra:
        accounts += list((await session.scalars(
            select(Account).where(Account.id.in_(extra)))).all())

    report = ErasureReport()
    mentions = await _mentions(session, citizen_ids, items)
    await _erase_citizens(session, citizen_ids, now)
    report.files, report.attachments = await _drop_attachments(session, items, accounts)
    report.events = await _clear_comments(session, items, accounts)
    report.clusters_relabelled = await _relabel_clusters(session, items)
    await _erase_items(session, items, now)
    report.kept = [KeptItem(i.number, i.topic, i.status, i.received_at, i.answered_at)
                   for i in items]
    redacted, cancelled = await _redact_outbox(session, services, items, accounts)
    redacted += await _redact_mentions(session, mentions)
    report.outbox_redacted, report.outbox_cancelled = redacted, cancelled
    report.accounts = await _erase_accounts(session, accounts, now)
    log.info("erasure: %d item(s), %d account(s), %d attachment(s), %d comment(s), "
             "%d outbox row(s) redacted, %d cancelled", len(items), report.accounts,
             report.attachments, report.events, redacted, cancelled)
    return report


async def _subject(session: AsyncSession, account_id: int | None, citizen_id: int | None,
                   item_id: int | None) -> tuple[list[Account], set[int], list[int]]:
    """The person's accounts, citizen records and, for an item of nobody known, that item."""
    accounts: list[Account] = []
    citizen_ids: set[int] = set()
    item_ids: list[int] = []
    if item_id is not None:
        item = await session.get(Item, item_id)
        if item is None:
            raise NothingToErase(f"item {item_id}")
        item_ids.append(item.id)
        if item.citizen_id is not None:
            citizen_id = item.citizen_id
        elif item.reply_account_id is not None:
            account_id = item.reply_account_id
    if account_id is not None:
        account = await session.get(Account, account_id)
        if account is None:
            raise NothingToErase(f"account {account_id}")
        accounts.append(account)
        if account.citizen_id is not None:
            citizen_ids.add(account.citizen_id)
    if citizen_id is not None:
        if await session.get(Citizen, citizen_id) is None:
            raise NothingToErase(f"citizen {citizen_id}")
        citizen_ids.add(citizen_id)
    if citizen_ids:
        known = {a.id for a in accounts}
        accounts += [a for a in (await session.scalars(
            select(Account).where(Account.citizen_id.in_(citizen_ids)))).all()
            if a.id not in known]
    return accounts, citizen_ids, item_ids


async def _mentions(session: AsyncSession, citizen_ids: set[int], items: list[Item]) -> set[str]:
    """The person's own words and contacts, to find them in messages not tied to an item
    (e.g. the operator's confirmation of a registration, still waiting for delivery)."""
    values: list[str | None] = []
    for item in items:
        values += [item.text, item.address, item.post_url, item.answer_text,
                   item.draft_answer_text, item.poll_comment]
    if citizen_ids:
        for citizen in (await session.scalars(
                select(Citizen).where(Citizen.id.in_(citizen_ids)))).all():
            values += [citizen.name, citizen.phone, citizen.email, citizen.postal_address]
    # Short values ("12", "Да") would match unrelated messages.
    return {v.strip() for v in values if v and len(v.strip()) >= MENTION_MIN}


async def _redact_mentions(session: AsyncSession, mentions: set[str]) -> int:
    if not mentions:
        return 0
    rows = (await session.scalars(select(OutboxMessage).where(
        OutboxMessage.status.in_(("pending", "failed", "undeliverable"))))).all()
    redacted = 0
    for row in rows:
        payload = row.payload or {}
        if payload.get("redacted"):
            continue
        text = json.dumps(payload, ensure_ascii=False)
        if any(mention in text for mention in mentions):
            # Still delivered, but saying only that the content was withdrawn.
            row.payload = redacted_payload(ERASED_TEXT)
            redacted += 1
    return redacted


async def _erase_citizens(session: AsyncSession, citizen_ids: set[int], now: datetime) -> None:
    if citizen_ids:
        # The row stays (items keep their link, so "one person, several reports" still
        # counts), but nothing in it says who the person was.
        await session.execute(update(Citizen).where(Citizen.id.in_(citizen_ids)).values(
            name=None, phone=None, email=None, postal_address=None, anonymised_at=now))


async def _drop_attachments(session: AsyncSession, items: list[Item],
                            accounts: list[Account]) -> tuple[list[str], int]:
    """Every file of the items (report photos, comments, clarifications, answers) and the
    photos of a report still being written. Rows go now; files after the commit."""
    conditions = [Attachment.item_id.in_([i.id for i in items])] if items else []
    drafts: list[int] = []
    for state in (await session.scalars(select(DialogState).where(
            DialogState.account_id.in_([a.id for a in accounts])))).all() if accounts else []:
        drafts += [p for p in (state.data or {}).get("photos", []) if isinstance(p, int)]
    if drafts:
        conditions.append(Attachment.id.in_(drafts) & Attachment.item_id.is_(None))
    if not conditions:
        return [], 0
    attachments = (await session.scalars(select(Attachment).where(or_(*conditions)))).all()
    paths = [a.path for a in attachments]
    for attachment in attachments:
        await session.delete(attachment)
    return paths, len(paths)


async def _clear_comments(session: AsyncSession, items: list[Item],
                          accounts: list[Account]) -> int:
    """Free-text comments of the items' history, and the person's own entries on other items
    (a poll comment on the main item of a duplicate)."""
    whose = []
    if items:
        whose.append(ItemEvent.item_id.in_([i.id for i in items]))
    if accounts:
        whose.append(ItemEvent.actor_account_id.in_([a.id for a in accounts]))
    if not whose:
        return 0
    result = await session.execute(
        update(ItemEvent).where(or_(*whose), ItemEvent.comment.is_not(None),
                                ItemEvent.action.not_in(SYSTEM_COMMENTS))
        .values(comment=None))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def _relabel_clusters(session: AsyncSession, items: list[Item]) -> int:
    """A cluster named after the person's address or exact point is renamed, unless another
    live item of the cluster has the same place: then the name is that item's too."""
    erased_ids = {i.id for i in items}
    own: dict[int, set[str]] = {}
    for item in items:
        if item.cluster_id is not None:
            own.setdefault(item.cluster_id, set()).add(place_label(item))
    relabelled = 0
    for cluster_id, labels in own.items():
        cluster = await session.get(Cluster, cluster_id)
        if cluster is None or cluster.label not in labels:
            continue
        # Live items only: one erased before has no place of its own left to lend.
        others = [o for o in (await session.scalars(
            select(Item).where(Item.cluster_id == cluster_id).order_by(Item.id))).all()
            if o.id not in erased_ids and o.text != ERASED_TEXT]
        other_labels = [place_label(o) for o in others]
        if cluster.label in other_labels:
            continue
        mine = next(i for i in items if i.cluster_id == cluster_id)
        old = cluster.label
        cluster.label = next((label for label in other_labels if label != "—"), None) or (
            "≈ {:.3f}, {:.3f}".format(*coarse(mine.latitude, mine.longitude))
            if mine.latitude is not None and mine.longitude is not None else "—")
        await _rename_in_outbox(session, old, cluster.label)
        relabelled += 1
    return relabelled


async def _rename_in_outbox(session: AsyncSession, old: str, new: str) -> None:
    """Queued press alerts and summaries name clusters by their label, without an item."""
    rows = (await session.scalars(select(OutboxMessage).where(
        OutboxMessage.item_id.is_(None), OutboxMessage.audience != "citizen"))).all()
    for row in rows:
        payload = _replace_texts(row.payload, old, new)
        if payload != row.payload:
            row.payload = payload


def _replace_texts(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_texts(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_texts(v, old, new) for k, v in value.items()}
    return value


async def _erase_items(session: AsyncSession, items: list[Item], now: datetime) -> None:
    for item in items:
        before = after = Status(item.status)
        if before == Status.WAITING_CITIZEN:
            # Nobody can answer the question any more: the item goes back to work.
            after = check(Action.CITIZEN_REPLIED, before, Actor.SYSTEM)
            item.status = str(after)
        # The history says when and that the data went, not what it was.
        session.add(ItemEvent(item_id=item.id, at=now, actor=str(Actor.SYSTEM), action="erased",
                              from_status=str(before), to_status=str(after)))
        item.text = ERASED_TEXT
        item.address = item.post_url = item.place_key = None
        item.answer_text = item.draft_answer_text = item.poll_comment = None
        item.reply_account_id = None  # nothing can be sent to the person any more
        if item.latitude is not None and item.longitude is not None:
            item.latitude, item.longitude = coarse(item.latitude, item.longitude)
        item.updated_at = now
    # external_number stays: it is the other system's reference, and it keeps a re-import of
    # the same export from registering the erased item again with the person's data.


async def _redact_outbox(session: AsyncSession, services: Services, items: list[Item],
                         accounts: list[Account]) -> tuple[int, int]:
    """Messages about the items lose their content; a pending staff card keeps its number,
    its buttons and a line saying why it is empty. Messages to the person are cancelled and
    no longer name their chat."""
    chats = {(a.platform, a.chat_id): a.id for a in accounts if a.staff_id is None}
    numbers = {i.id: i.number for i in items}
    conditions = [OutboxMessage.item_id.in_(list(numbers))] if numbers else []
    for platform, chat_id in chats:
        conditions.append((OutboxMessage.platform == platform)
                          & (OutboxMessage.chat_id == chat_id))
    if not conditions:
        return 0, 0
    t = translator(services.default_locale)
    redacted = cancelled = 0
    for row in (await session.scalars(select(OutboxMessage).where(or_(*conditions)))).all():
        owner = chats.get((row.platform, row.chat_id))
        number = numbers.get(row.item_id) if row.item_id is not None else None
        if owner is not None:
            row.chat_id = erased_marker(owner)
            row.dedupe_key = row.last_error = None
            row.payload = redacted_payload()
            if row.status == "pending":
                row.status = "cancelled"
                cancelled += 1
            redacted += 1
            continue
        text = t("erasure.card", number=number) if number else ""
        original = row.payload or {}
        keep_buttons = row.status == "pending" and bool(original.get("text"))
        if row.status == "pending" and not original.get("text"):
            row.status = "cancelled"  # a photo, a document or the location alone
            cancelled += 1
        row.payload = redacted_payload(text, original.get("buttons") if keep_buttons else None)
        redacted += 1
    return redacted, cancelled


async def _erase_accounts(session: AsyncSession, accounts: list[Account], now: datetime) -> int:
    """Messenger ids become markers (the rows stay: the history points at them), so the
    person who writes again is a new account that is asked for consent first."""
    erased = 0
    for account in accounts:
        await session.execute(update(Consent).where(Consent.account_id == account.id,
                                                    Consent.withdrawn_at.is_(None))
                              .values(withdrawn_at=now))
        state = await session.get(DialogState, account.id)
        if state is not None:
            await session.delete(state)
        account.citizen_id = None
        if account.staff_id is not None:
            continue  # a staff member's own identity is their work account, not a report's
        platform, user_id, chat_id = account.platform, account.user_id, account.chat_id
        await session.execute(delete(FloodCounter).where(FloodCounter.platform == platform,
                                                         FloodCounter.user_id == user_id))
        if platform == Platform.VK:
            # Keys of VK events without an event_id spelled out the peer id until they were
            # hashed (bot/vk_inbound.update_key); older marks may still hold it.
            for kind in ("message_new", "message_event"):
                await session.execute(delete(ProcessedUpdate).where(
                    ProcessedUpdate.platform == platform,
                    ProcessedUpdate.update_key.like(f"{kind}:{chat_id}:%")))
        account.user_id = account.chat_id = erased_marker(account.id)
        erased += 1
    return erased
