"""The buttons on a task card: show, take, assign, redirect, extend, and the ones that ask for
a text (a question, a reason, the answer). Each op is one small function in OPS."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select

from handlers.events import Button, Reply
from handlers.org import Role
from handlers.routing import Router
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Action
from handlers.staff import actions
from handlers.staff.actions import Refused
from handlers.staff.chat import (
    InputOp,
    StaffTurn,
    actions_reply,
    cancel_row,
    expect_text,
    require_item,
    show_card,
)
from handlers.staff.payloads import AssignTo, CardAction, CardOp, ExtendBy, RedirectTo
from handlers.turn import Turn
from storage.models import Item, Staff

router: Router[StaffTurn] = Router("staff card actions")
Op = Callable[[StaffTurn, Item], Awaitable[None]]


async def show(st: StaffTurn, item: Item) -> None:
    await show_card(st.turn, st.staff, item)


async def take(st: StaffTurn, item: Item) -> None:
    turn = st.turn
    await actions.take(turn.session, turn.services, st.staff, item)
    turn.say("staff.taken", number=item.number)
    actions_reply(turn, st.staff, item)


async def assign(st: StaffTurn, item: Item) -> None:
    actions.require(st.staff, item, Action.DELEGATE)
    st.turn.reply(await executor_choice(st.turn, item))


async def redirect(st: StaffTurn, item: Item) -> None:
    actions.require(st.staff, item, Action.REDIRECT)
    st.turn.reply(block_choice(st.turn, item))


async def extend(st: StaffTurn, item: Item) -> None:
    turn, t = st.turn, st.turn.t
    actions.require(st.staff, item, Action.EXTEND)
    if item.kind == Kind.APPEAL:
        if item.extension_count >= 1:
            raise Refused("staff.extend_once")
        await expect_text(turn, InputOp.EXTEND, item, "")
        return
    options = actions.extension_options(turn.services, item)
    if not options:
        raise Refused("staff.extend_limit")
    turn.reply(Reply(t("staff.extend_choose_days", number=item.number), buttons=[
        [Button(t("staff.extend_days", days=d), ExtendBy(item.id, d).pack()) for d in options],
        cancel_row(turn)]))


def asks_for_text(op: InputOp, action: Action) -> Op:
    """A button whose action needs a text first: check it may be done, then ask."""

    async def ask(st: StaffTurn, item: Item) -> None:
        wanted = action
        if action == Action.ANSWER and st.staff.role == Role.EXECUTOR:
            wanted = Action.SUBMIT_ANSWER  # an executor's answer goes to the head first
        actions.require(st.staff, item, wanted)
        if op is InputOp.ASK and item.reply_account_id is None:
            raise Refused("staff.citizen_unreachable")
        await expect_text(st.turn, op, item, "")

    return ask


OPS: dict[CardOp, Op] = {
    CardOp.CARD: show,
    CardOp.TAKE: take,
    CardOp.ASSIGN: assign,
    CardOp.REDIRECT: redirect,
    CardOp.EXTEND: extend,
    CardOp.ASK: asks_for_text(InputOp.ASK, Action.ASK_CITIZEN),
    CardOp.OUTSIDE: asks_for_text(InputOp.OUTSIDE, Action.FORWARD_OUTSIDE),
    CardOp.ANSWER: asks_for_text(InputOp.ANSWER, Action.ANSWER),
    CardOp.REMARK: asks_for_text(InputOp.REMARK, Action.RETURN_WITH_REMARK),
    CardOp.REWORK: asks_for_text(InputOp.REWORK, Action.RETURN_FOR_REWORK),
    CardOp.DUPLICATE: asks_for_text(InputOp.DUPLICATE, Action.MARK_DUPLICATE),
}


@router.on(CardAction)
async def on_card_action(st: StaffTurn, payload: CardAction) -> bool:
    await OPS[payload.op](st, await require_item(st, payload.item_id))
    return True


@router.on(AssignTo)
async def on_assign_to(st: StaffTurn, payload: AssignTo) -> bool:
    turn, item = st.turn, await require_item(st, payload.item_id)
    executor = await actions.delegate(turn.session, turn.services, st.staff, item,
                                      payload.executor_id)
    turn.say("staff.delegated", number=item.number, name=executor.name or f"#{executor.id}")
    actions_reply(turn, st.staff, item)
    return True


@router.on(RedirectTo)
async def on_redirect_to(st: StaffTurn, payload: RedirectTo) -> bool:
    turn, item = st.turn, await require_item(st, payload.item_id)
    actions.require(st.staff, item, Action.REDIRECT)
    block = payload.block
    if block not in turn.services.org.block_by_id or block == item.block_id:
        raise Refused("staff.redirect_bad_block")
    topics = turn.services.org.block_by_id[block].topics
    if len(topics) > 1 and payload.topic_index is None:
        turn.reply(topic_choice(turn, item, block))
        return True
    index = payload.topic_index
    topic = topics[index] if index is not None and 0 <= index < len(topics) else ""
    await expect_text(turn, InputOp.REDIRECT, item, f"{block}/{topic}" if topic else block)
    return True


@router.on(ExtendBy)
async def on_extend_by(st: StaffTurn, payload: ExtendBy) -> bool:
    turn, item = st.turn, await require_item(st, payload.item_id)
    actions.require(st.staff, item, Action.EXTEND)
    if payload.days not in actions.extension_options(turn.services, item):
        raise Refused("staff.extend_limit")
    await expect_text(turn, InputOp.EXTEND, item, str(payload.days))
    return True


# ---------------------------------------------------------------------------------------------
# The choices a card button opens

async def executor_choice(turn: Turn, item: Item) -> Reply:
    executors = (await turn.session.scalars(
        select(Staff).where(Staff.role == str(Role.EXECUTOR), Staff.block_id == item.block_id,
                            Staff.revoked_at.is_(None)).order_by(Staff.name, Staff.id))).all()
    if not executors:
        return Reply(turn.t("staff.no_executors"))
    label = turn.services.capabilities_of(turn.event.chat.platform).label
    rows = [[Button(label(e.name or f"#{e.id}"), AssignTo(item.id, e.id).pack())]
            for e in executors[:20]]
    return Reply(turn.t("staff.choose_executor", number=item.number),
                 buttons=[*rows, cancel_row(turn)])


def block_choice(turn: Turn, item: Item) -> Reply:
    blocks = [b for b in turn.services.org.blocks if b.id != item.block_id]
    label = turn.services.capabilities_of(turn.event.chat.platform).label
    rows = [[Button(label(b.title), RedirectTo(item.id, b.id).pack())] for b in blocks]
    return Reply(turn.t("staff.choose_block", number=item.number),
                 buttons=[*rows, cancel_row(turn)])


def topic_choice(turn: Turn, item: Item, block_id: str) -> Reply:
    """The right topic in the target block: a labelled example for the topic suggester."""
    org = turn.services.org
    label = turn.services.capabilities_of(turn.event.chat.platform).label
    rows = [[Button(label(org.topic_by_id[topic].label(turn.t.locale)),
                    RedirectTo(item.id, block_id, index).pack())]
            for index, topic in enumerate(org.block_by_id[block_id].topics)]
    return Reply(turn.t("staff.choose_topic", number=item.number,
                        block=org.block_by_id[block_id].title), buttons=[*rows, cancel_row(turn)])
