"""What staff do with an item: take, delegate, redirect, ask, extend, forward, answer, approve.

Each use case re-reads the item, checks the actor against it (authz.can_do), applies one
lifecycle transition with its history entry, and queues the notifications, all in the turn's
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.capabilities import MESSENGERS
from handlers.context import Services
from handlers.events import Button, Reply
from handlers.formatting import local_date
from handlers.i18n import Translator
from handlers.items import record_note, transition
from handlers.messaging import notice, tell
from handlers.org import Role
from handlers.outbound import ask_citizen, deliver_answer, notify_citizen
from handlers.recipients import (
    block_leader_ids,
    staff_ids_with_role,
)
from handlers.rules.deadlines import Kind, calendar_day_deadline, working_day_deadline
from handlers.rules.lifecycle import Action, Status
from handlers.staff.authz import actor_of, can_do, can_see, refuse
from handlers.staff.buttons import card_buttons
from handlers.staff.notify import send_card
from handlers.staff.payloads import Published
from storage.models import Account, Attachment, Item, ItemEvent, Staff, TopicCorrection

OFFLINE_CHANNELS = ("phone", "letter", "visit")


class Refused(Exception):
    """The action is not allowed; `key` is the text shown to the staff member."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


def require(staff: Staff, item: Item, action: Action) -> None:
    if not can_do(staff, item, action):
        refuse(staff.id, str(action), item.id)
        raise Refused("staff.refused")


def mark_reaction(item: Item, now: datetime) -> None:
    if item.first_reaction_at is None:
        item.first_reaction_at = now


async def apply(session: AsyncSession, services: Services, staff: Staff, item: Item, action: Action,
                comment: str | None = None) -> None:
    require(staff, item, action)
    await transition(session, services, item, action, actor_of(staff),
                     staff_id=staff.id, comment=comment)


# ---------------------------------------------------------------------------------------------

async def take(session: AsyncSession, services: Services, staff: Staff, item: Item) -> None:
    await apply(session, services, staff, item, Action.TAKE)
    item.taken_by_id = staff.id
    mark_reaction(item, services.now())


async def delegate(session: AsyncSession, services: Services, staff: Staff, item: Item,
                   executor_id: int) -> Staff:
    executor = await session.get(Staff, executor_id)
    if (executor is None or executor.revoked_at is not None
            or executor.role != Role.EXECUTOR or executor.block_id != item.block_id):
        refuse(staff.id, "delegate to a foreign executor", item.id)
        raise Refused("staff.refused")
    await apply(session, services, staff, item, Action.DELEGATE, comment=executor.name)
    item.executor_id = executor.id
    item.taken_by_id = item.taken_by_id or staff.id
    mark_reaction(item, services.now())
    await send_card(session, services, item, [executor.id], lead_key="staff.delegated_to_you",
                    buttons_for=card_buttons, number=item.number)
    return executor


async def redirect(session: AsyncSession, services: Services, staff: Staff, item: Item,
                   block_id: str, reason: str,
                   topic: str | None = None) -> None:
    """Move the item to another block. The right topic (`topic`, or the target block's only
    one) is recorded too: the statistics count it there, and the topic suggester gets a
    labelled example (TopicCorrection)."""
    org = services.org
    if block_id not in org.block_by_id or block_id == item.block_id:
        raise Refused("staff.redirect_bad_block")
    owned = org.block_by_id[block_id].topics
    if topic is None and len(owned) == 1:
        topic = owned[0]
    if topic is not None and topic not in owned:
        raise Refused("staff.redirect_bad_block")
    old_block = item.block_id
    await apply(session, services, staff, item, Action.REDIRECT,
                comment=f"{old_block} → {block_id}: {reason}")
    if topic is not None and topic != item.topic:
        session.add(TopicCorrection(item_id=item.id, from_topic=item.topic, to_topic=topic,
                                         staff_id=staff.id, at=services.now()))
        item.topic = topic
    item.block_id = block_id
    item.executor_id = None
    item.taken_by_id = None
    mark_reaction(item, services.now())
    leaders = await block_leader_ids(session, org, block_id)
    await send_card(session, services, item, leaders, lead_key="staff.redirected_to_you",
                    buttons_for=card_buttons, number=item.number,
                    source=org.block_by_id[old_block].title, reason=reason)
    chairmen = [c for c in await staff_ids_with_role(session, Role.CHAIRMAN)
                if c not in leaders and c != staff.id]
    await tell(session, services, chairmen, notice(
        "staff.redirect_chairman_notice", number=item.number,
        source=org.block_by_id[old_block].title, target=org.block_by_id[block_id].title,
        reason=reason), item_id=item.id)


async def ask(session: AsyncSession, services: Services, staff: Staff, item: Item,
              question: str) -> bool:
    require(staff, item, Action.ASK_CITIZEN)
    if item.reply_account_id is None:
        raise Refused("staff.citizen_unreachable")
    await apply(session, services, staff, item, Action.ASK_CITIZEN, comment=question)
    mark_reaction(item, services.now())
    return await ask_citizen(session, services, item, question)


def extension_options(services: Services, item: Item) -> list[int]:
    """Working days a message or incident may still be extended by (organisation limit)."""
    limit = services.org.max_extension_working_days(Kind(item.kind))
    calendar = services.calendar
    if item.original_answer_due is None or item.answer_due is None or limit <= 0:
        return []
    latest = working_day_deadline(calendar, item.original_answer_due, limit)
    return [days for days in (1, 3, 5, 10, 20) if days <= limit
            and working_day_deadline(calendar, item.answer_due, days) <= latest]


async def extend(session: AsyncSession, services: Services, staff: Staff, item: Item, reason: str,
                 days: int | None) -> datetime:
    calendar = services.calendar
    if item.kind == Kind.APPEAL:
        if item.extension_count >= 1:
            raise Refused("staff.extend_once")
        policy = services.org.policy(Kind.APPEAL, item.topic)
        reach = policy.extension_max_calendar_days or 60
        new_due = calendar_day_deadline(calendar, item.registered_at, reach)
    else:
        if days is None or days not in extension_options(services, item):
            raise Refused("staff.extend_limit")
        assert item.answer_due is not None
        new_due = working_day_deadline(calendar, item.answer_due, days)
    await apply(session, services, staff, item, Action.EXTEND, comment=reason)
    item.answer_due = new_due
    item.extension_count += 1
    mark_reaction(item, services.now())
    await notify_citizen(session, services, item, "citizen.extended",
                         due=local_date(new_due, services.tz), reason=reason)
    return new_due


async def forward_outside(session: AsyncSession, services: Services, staff: Staff, item: Item,
                          reason: str) -> None:
    await apply(session, services, staff, item, Action.FORWARD_OUTSIDE, comment=reason)
    mark_reaction(item, services.now())
    item.closed_at = services.now()
    key = "citizen.forwarded_appeal" if item.kind == Kind.APPEAL else "citizen.not_competent"
    await notify_citizen(session, services, item, key, reason=reason)


async def answer(session: AsyncSession, services: Services, staff: Staff, item: Item, text: str,
                 photos: list[Attachment]) -> str:
    """An executor's answer (or a head's answer to an appeal that needs the chairman) waits
    for approval; a head's or the chairman's answer goes straight to the citizen."""
    role = Role(staff.role)
    needs_chairman = (item.kind == Kind.APPEAL
                      and services.org.approval.appeal_requires_chairman
                      and role != Role.CHAIRMAN)
    for photo in photos:
        photo.item_id = item.id
        photo.purpose = "answer"
    mark_reaction(item, services.now())
    if role == Role.EXECUTOR or needs_chairman:
        await apply(session, services, staff, item, Action.SUBMIT_ANSWER, comment=text)
        item.draft_answer_text = text
        reviewers = (await staff_ids_with_role(session, Role.CHAIRMAN)
                     if role != Role.EXECUTOR and needs_chairman
                     else await block_leader_ids(session, services.org, item.block_id))
        await send_card(session, services, item, reviewers, lead_key="staff.answer_for_approval",
                        buttons_for=card_buttons, number=item.number, answer=text)
        return "submitted"
    await apply(session, services, staff, item, Action.ANSWER, comment=text)
    await finalize(session, services, staff, item, text)
    return "answered"


async def endorsed(session: AsyncSession, services: Services, item: Item) -> bool:
    """Has a head endorsed the current draft (for appeals that need the chairman)?"""
    last_submit = await session.scalar(
        select(ItemEvent.id).where(ItemEvent.item_id == item.id,
                                   ItemEvent.action == str(Action.SUBMIT_ANSWER))
        .order_by(ItemEvent.id.desc()).limit(1))
    endorsement = await session.scalar(
        select(ItemEvent.id).where(ItemEvent.item_id == item.id, ItemEvent.action == "endorse")
        .order_by(ItemEvent.id.desc()).limit(1))
    return endorsement is not None and last_submit is not None and endorsement > last_submit


async def approve(session: AsyncSession, services: Services, staff: Staff, item: Item) -> str:
    require(staff, item, Action.APPROVE)
    role = Role(staff.role)
    needs_chairman = (item.kind == Kind.APPEAL
                      and services.org.approval.appeal_requires_chairman)
    if needs_chairman and role != Role.CHAIRMAN:
        if await endorsed(session, services, item):
            raise Refused("staff.waiting_chairman")
        await record_note(session, services, item, "endorse", actor_of(staff),
                          staff_id=staff.id)
        chairmen = await staff_ids_with_role(session, Role.CHAIRMAN)
        await send_card(session, services, item, chairmen, lead_key="staff.answer_for_approval",
                        buttons_for=card_buttons, number=item.number,
                        answer=item.draft_answer_text or "")
        return "endorsed"
    text = item.draft_answer_text or ""
    await apply(session, services, staff, item, Action.APPROVE, comment=text)
    await finalize(session, services, staff, item, text)
    return "answered"


async def return_with_remark(session: AsyncSession, services: Services, staff: Staff, item: Item,
                             remark: str) -> None:
    submitter = await session.scalar(
        select(ItemEvent.actor_staff_id).where(ItemEvent.item_id == item.id,
                                               ItemEvent.action == str(Action.SUBMIT_ANSWER))
        .order_by(ItemEvent.id.desc()).limit(1))
    await apply(session, services, staff, item, Action.RETURN_WITH_REMARK, comment=remark)
    if submitter:
        await tell(session, services, [submitter], notice(
            "staff.remark_received", number=item.number, remark=remark), item_id=item.id)


async def return_for_rework(session: AsyncSession, services: Services, staff: Staff, item: Item,
                            comment: str) -> None:
    await apply(session, services, staff, item, Action.RETURN_FOR_REWORK, comment=comment)
    leaders = await block_leader_ids(session, services.org, item.block_id)
    targets = [*leaders, *([item.executor_id] if item.executor_id else [])]
    await tell(session, services, targets, notice(
        "staff.rework_received", number=item.number, comment=comment,
        due=local_date(item.answer_due, services.tz)), item_id=item.id)


async def finalize(session: AsyncSession, services: Services, staff: Staff, item: Item,
                   text: str) -> None:
    """The answer is final: record it and send it where the item came from."""
    item.answer_text = text
    item.answer_by_id = staff.id
    item.answered_at = services.now()
    item.draft_answer_text = None
    photos = list((await session.scalars(
        select(Attachment).where(Attachment.item_id == item.id, Attachment.purpose == "answer")
        .order_by(Attachment.id))).all())
    # Linked duplicates: every citizen gets the answer in their own messenger, whatever
    # channel the main item came from.
    duplicates = (await session.scalars(
        select(Item).where(Item.duplicate_of_id == item.id))).all()
    for duplicate in duplicates:
        await deliver_answer(session, services, item, photos, to_item=duplicate)
    if item.channel in MESSENGERS:
        delivered = await deliver_answer(session, services, item, photos)
        if not delivered:
            await record_note(session, services, item, "answer_undeliverable",
                              actor_of(staff), staff_id=staff.id)
        return
    await send_for_publication(session, services, item, text)


async def mark_duplicate(session: AsyncSession, services: Services, staff: Staff, item: Item,
                         main_item_number: str) -> Item:
    """Link `item` to the main item with that number: it is closed as a duplicate, and its
    citizen gets the main item's answer (now, if it is already answered, or when it is)."""
    require(staff, item, Action.MARK_DUPLICATE)
    number = main_item_number.strip().lstrip("№#").strip()
    main = await session.scalar(select(Item).where(Item.number == number))
    if main is None or not can_see(staff, main):
        if main is not None:
            refuse(staff.id, "duplicate of an item out of sight", main.id)
        raise Refused("staff.no_such_item", number=number or "—")
    # Link to the root of a chain, so one answer reaches everybody.
    for _ in range(10):
        if main.duplicate_of_id is None:
            break
        parent = await session.get(Item, main.duplicate_of_id)
        if parent is None:
            break
        main = parent
    if main.id == item.id:
        raise Refused("staff.duplicate_of_itself", number=item.number)
    if main.status in (Status.FORWARDED, Status.REJECTED):
        raise Refused("staff.duplicate_main_closed", number=main.number)
    await apply(session, services, staff, item, Action.MARK_DUPLICATE, comment=main.number)
    item.duplicate_of_id = main.id
    item.closed_at = services.now()
    mark_reaction(item, services.now())
    # Items already linked to this one follow it to the main item.
    await session.execute(update(Item).where(Item.duplicate_of_id == item.id)
                               .values(duplicate_of_id=main.id))
    if main.answer_text and main.status in (Status.ANSWERED, Status.CLOSED):
        photos = list((await session.scalars(
            select(Attachment).where(Attachment.item_id == main.id,
                                     Attachment.purpose == "answer")
            .order_by(Attachment.id))).all())
        await deliver_answer(session, services, main, photos, to_item=item)
    else:
        await notify_citizen(session, services, item, "citizen.duplicate_linked",
                             main=main.number)
    return main


async def send_for_publication(session: AsyncSession, services: Services, item: Item,
                               text: str) -> None:
    """Outside channels: whoever registered the item pastes the answer into that system."""
    if item.channel == "incident_management":
        targets = await staff_ids_with_role(session, Role.IM_COORDINATOR)
    else:
        targets = [item.registered_by_id] if item.registered_by_id else []
    targets = targets or await staff_ids_with_role(session, Role.CHAIRMAN)

    async def render(t: Translator, account: Account) -> Sequence[Reply]:
        system = t(f"channel.{item.channel}")
        if item.channel in OFFLINE_CHANNELS:
            # Phone, letter, visit: the answer is handed over by the operator, not "published".
            text_key, button = "staff.hand_over_answer", t("button.handed_over")
        else:
            text_key, button = "staff.publish_answer", t("button.published", system=system)
        return [Reply(t(text_key, number=item.number, system=system,
                        external=item.external_number or "—", answer=text),
                      buttons=[[Button(services.capabilities_of(account.platform).label(button),
                                     Published(item.id).pack())]])]

    await tell(session, services, targets, render, item_id=item.id)


async def mark_published(session: AsyncSession, services: Services, staff: Staff,
                         item: Item) -> None:
    role = Role(staff.role)
    allowed_roles = (Role.CHAIRMAN, Role.IM_COORDINATOR, Role.OPERATOR)
    if (role not in allowed_roles or item.channel in MESSENGERS
            or item.status_enum not in (Status.ANSWERED, Status.CLOSED)
            or (role == Role.OPERATOR and item.registered_by_id != staff.id)):
        refuse(staff.id, "publish", item.id)
        raise Refused("staff.refused")
    if item.answer_published_at is not None:
        raise Refused("staff.already_published")
    item.answer_published_at = services.now()
    await record_note(session, services, item, "published", actor_of(staff),
                      staff_id=staff.id)
