"""The satisfaction poll after an answer: send, remind once, expire; «Нет» reopens the item.

Sending is claimed with a conditional UPDATE on the item's poll marks, so two scheduler
processes never poll a citizen twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from handlers.capabilities import MESSENGERS
from handlers.citizen.common import main_menu, own_item
from handlers.citizen.payloads import PollAnswer, PollChoice, PollComment, Rate
from handlers.citizen.states import PollState
from handlers.context import Services
from handlers.events import Button, Reply
from handlers.formatting import local_date
from handlers.items import record_note, transition
from handlers.messaging import queue
from handlers.org import Role
from handlers.outbound import citizen_chat
from handlers.recipients import block_leader_ids, staff_ids_with_role
from handlers.routing import Router
from handlers.rules.deadlines import working_day_deadline
from handlers.rules.lifecycle import Action, Actor, Status
from handlers.sweeps import notify_staff_once
from handlers.turn import Turn
from storage.models import Item

ANSWERS = tuple(PollChoice)


def in_window(services: Services, now: datetime) -> bool:
    local = services.local(now).time()
    polls = services.org.polls
    return polls.window_start <= local < polls.window_end


def poll_reply(t, item: Item, *, reminder: bool = False) -> Reply:  # type: ignore[no-untyped-def]
    return Reply(
        t("poll.question", number=item.number),
        title=t("poll.reminder_title" if reminder else "poll.title"),
        buttons=[[Button(t(f"poll.answer.{a}"), PollAnswer(item.id, a).pack())
                  for a in ANSWERS]])


def rating_reply(t, item: Item) -> Reply:  # type: ignore[no-untyped-def]
    return Reply(t("poll.rate", number=item.number), buttons=[
        [Button(str(n), Rate(item.id, n).pack()) for n in range(1, 6)],
        [Button(t("poll.add_comment"), PollComment(item.id).pack())]])


def _pollable():  # type: ignore[no-untyped-def]
    """Answered messenger items, and duplicates whose main item was answered."""
    return or_(Item.status == str(Status.ANSWERED), Item.status == str(Status.DUPLICATE))


async def answered_at_of(session: AsyncSession, item: Item) -> datetime | None:
    if item.status == Status.DUPLICATE and item.duplicate_of_id:
        main = await session.get(Item, item.duplicate_of_id)
        if main is None or main.status not in (Status.ANSWERED, Status.CLOSED):
            return None
        return main.answered_at
    return item.answered_at


async def send_polls(session: AsyncSession, services: Services, now: datetime) -> int:
    """Polls due now, reminders after 24 h, expiry after 7 days; returns messages queued."""
    polls = services.org.polls
    sent = 0
    if in_window(services, now):
        candidates = (await session.scalars(
            select(Item).where(_pollable(), Item.poll_sent_at.is_(None),
                               Item.channel.in_(MESSENGERS), Item.reply_account_id.is_not(None))
            .order_by(Item.id))).all()
        for item in candidates:
            answered_at = await answered_at_of(session, item)
            if answered_at is None or answered_at > now - timedelta(hours=polls.delay_hours):
                continue
            if answered_at < now - timedelta(days=polls.expire_after_days):
                continue  # too old to ask about
            if await _claim(session, item, Item.poll_sent_at, now):
                sent += await _send(session, services, item, now, reminder=False)
        remind_before = now - timedelta(hours=polls.reminder_after_hours)
        reminders = (await session.scalars(
            select(Item).where(_pollable(), Item.poll_sent_at.is_not(None),
                               Item.poll_sent_at <= remind_before,
                               Item.poll_reminded_at.is_(None), Item.poll_answered_at.is_(None))
        )).all()
        for item in reminders:
            if await _claim(session, item, Item.poll_reminded_at, now):
                sent += await _send(session, services, item, now, reminder=True)
    expired = (await session.scalars(
        select(Item).where(Item.status == str(Status.ANSWERED), Item.poll_sent_at.is_not(None),
                           Item.poll_sent_at <= now - timedelta(days=polls.expire_after_days),
                           Item.poll_answered_at.is_(None)).with_for_update(skip_locked=True)
    )).all()
    for item in expired:
        # Nobody complained within the poll's life: the item is closed, without a rating.
        await transition(session, services, item, Action.CLOSE, Actor.SYSTEM,
                         comment="poll expired")
        item.closed_at = now
    return sent


async def _claim(session: AsyncSession, item: Item, column, now: datetime) -> bool:  # type: ignore[no-untyped-def]
    result = await session.execute(update(Item).where(Item.id == item.id, column.is_(None))
                                   .values({column.key: now}))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def _send(session: AsyncSession, services: Services, item: Item, now: datetime, *,
                reminder: bool) -> int:
    target = await citizen_chat(session, item)
    if target is None:
        return 0
    chat, t = target
    await queue(session, services, chat, poll_reply(t, item, reminder=reminder),
                audience="citizen", item_id=item.id, now=now)
    return 1


# ---------------------------------------------------------------------------------------------
# The citizen's answers (buttons in the citizen dialog)

async def main_of(turn: Turn, item: Item) -> Item:
    if item.duplicate_of_id:
        main = await turn.session.get(Item, item.duplicate_of_id)
        if main is not None:
            return main
    return item


router: Router[Turn] = Router("polls")


@router.on(PollAnswer)
async def on_poll_answer(turn: Turn, payload: PollAnswer) -> bool:
    item = await own_item(turn, payload.item_id)
    answer = payload.choice.value
    if item is None or item.poll_sent_at is None:
        return False
    if item.poll_answered_at is not None and item.satisfaction is not None:
        turn.say("poll.already")
        return True
    item.satisfaction = answer
    item.poll_answered_at = turn.now
    main = await main_of(turn, item)
    await record_note(turn.session, turn.services, main, "poll_answer", Actor.CITIZEN,
                      comment=answer, account_id=turn.account.id)
    if answer == "no":
        await reopen(turn, main, item, reason=turn.t("poll.reason.no"))
    elif answer == "yes" and main.status == Status.ANSWERED:
        await transition(turn.session, turn.services, main, Action.CLOSE, Actor.CITIZEN,
                         account_id=turn.account.id)
        main.closed_at = turn.now
    turn.say(f"poll.thanks.{answer}", number=item.number)
    turn.reply(rating_reply(turn.t, item))
    return True


@router.on(Rate)
async def on_rating(turn: Turn, payload: Rate) -> bool:
    item, rating = await own_item(turn, payload.item_id), payload.rating
    if item is None or not 1 <= rating <= 5 or item.poll_sent_at is None:
        return False
    item.rating = rating
    item.poll_answered_at = item.poll_answered_at or turn.now
    main = await main_of(turn, item)
    if main is not item:
        main.rating = main.rating or rating
    await record_note(turn.session, turn.services, main, "rating", Actor.CITIZEN,
                      comment=str(rating), account_id=turn.account.id)
    if rating <= 2 and main.status in (Status.ANSWERED, Status.CLOSED):
        await reopen(turn, main, item, reason=turn.t("poll.reason.rating", rating=rating))
    elif main.status == Status.ANSWERED and item.satisfaction == "partly":
        await transition(turn.session, turn.services, main, Action.CLOSE, Actor.CITIZEN,
                         account_id=turn.account.id)
        main.closed_at = turn.now
    turn.reply(Reply(turn.t("poll.rated", rating=rating), menu=main_menu(turn)))
    return True


@router.on(PollComment)
async def start_comment(turn: Turn, payload: PollComment) -> bool:
    item = await own_item(turn, payload.item_id)
    if item is None or item.poll_sent_at is None:
        return False
    turn.dialog.set(PollState.COMMENT, {"item_id": item.id}, now=turn.now)
    turn.say("poll.comment_ask")
    return True


async def take_comment(turn: Turn, text: str) -> None:
    item = await own_item(turn, turn.dialog.data.get("item_id"))
    turn.dialog.reset(turn.now)
    if item is None:
        turn.reply(Reply(turn.t("menu.prompt"), menu=main_menu(turn)))
        return
    item.poll_comment = text[:4000]
    main = await main_of(turn, item)
    await record_note(turn.session, turn.services, main, "poll_comment", Actor.CITIZEN,
                      comment=text[:4000], account_id=turn.account.id)
    turn.reply(Reply(turn.t("poll.comment_thanks"), menu=main_menu(turn)))


async def reopen(turn: Turn, main: Item, answered: Item, reason: str) -> None:
    """Back to the block with a new answer deadline; the head and the chairman are told."""
    if main.status not in (Status.ANSWERED, Status.CLOSED):
        return
    services = turn.services
    await transition(turn.session, services, main, Action.REOPEN, Actor.CITIZEN,
                     account_id=turn.account.id, comment=reason)
    main.reopened_count += 1
    main.closed_at = None
    main.answer_due = working_day_deadline(services.calendar, turn.now,
                                           services.org.reopen.answer_working_days)
    leaders = await block_leader_ids(turn.session, services.org, main.block_id)
    chairmen = await staff_ids_with_role(turn.session, Role.CHAIRMAN)
    await notify_staff_once(
        turn.session, services, list(dict.fromkeys([*leaders, *chairmen])), main,
        f"reopen:{main.id}:{main.reopened_count}", "poll.reopened_staff", turn.now,
        reason=reason, due=local_date(main.answer_due, services.tz))
