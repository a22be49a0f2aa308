"""The typed text a card button asked for (a reason, a question, the answer), and what each
one does when it arrives. Photos and a file may come with an answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy import select

from handlers.events import IncomingMessage, Reply
from handlers.formatting import local_date
from handlers.photos import store_photos
from handlers.prepare import DOCUMENT_MAX_BYTES
from handlers.staff import actions
from handlers.staff.actions import Refused
from handlers.staff.answer_files import store_document
from handlers.staff.authz import can_see
from handlers.staff.chat import (
    PROMPTS,
    InputOp,
    StaffTurn,
    actions_reply,
    cancel_row,
    drop_input,
    load_item,
)
from handlers.turn import Turn
from storage.models import Attachment, Item, Staff

ANSWER_MAX = 4000
# (staff turn, item, the button's argument, the text, the kept attachments) → done
Apply = Callable[[StaffTurn, Item, str, str, list[int]], Awaitable[None]]


async def on_input(turn: Turn, staff: Staff, message: IncomingMessage) -> None:
    data = turn.dialog.data
    try:
        op = InputOp(data.get("op", ""))
    except ValueError:
        op = None
    item = await load_item(turn, staff, data.get("item_id"))
    if item is None or op is None:
        await drop_input(turn)
        turn.say("staff.refused")
        return
    kept = False
    if op is InputOp.ANSWER and message.photos:
        await store_photos(turn, message)
        kept = True
    if op is InputOp.ANSWER and message.document is not None:
        problem = await store_document(turn)
        if problem:
            turn.say(problem, max=DOCUMENT_MAX_BYTES // (1024 * 1024))
            return
        kept = True
    text = (message.text or "").strip()
    if not text:
        key = "staff.answer_photo_kept" if kept else PROMPTS[op]
        turn.reply(Reply(turn.t(key, number=item.number), buttons=[cancel_row(turn)]))
        return
    if len(text) > ANSWER_MAX:
        turn.say("report.text_too_long", max=ANSWER_MAX, length=len(text))
        return
    try:
        await APPLY[op](StaffTurn(turn, staff), item, data.get("arg", ""), text,
                        list(turn.dialog.data.get("photos", [])))
    except Refused as refusal:
        await drop_input(turn)
        turn.say(refusal.key, **refusal.values)
        return
    turn.dialog.reset(turn.now)
    if can_see(staff, item):
        actions_reply(turn, staff, item)


async def redirect(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    turn = st.turn
    block, _sep, topic = arg.partition("/")  # "block" or "block/topic"
    await actions.redirect(turn.session, turn.services, st.staff, item, block, text,
                           topic or None)
    turn.say("staff.redirected", number=item.number,
             block=turn.services.org.block_by_id[block].title)


async def ask(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    await actions.ask(st.turn.session, st.turn.services, st.staff, item, text)
    st.turn.say("staff.question_sent", number=item.number)


async def extend(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    turn = st.turn
    due = await actions.extend(turn.session, turn.services, st.staff, item, text,
                               int(arg) if arg else None)
    turn.say("staff.extended", number=item.number, due=local_date(due, turn.services.tz))


async def outside(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    await actions.forward_outside(st.turn.session, st.turn.services, st.staff, item, text)
    st.turn.say("staff.forwarded", number=item.number)


async def answer(st: StaffTurn, item: Item, arg: str, text: str, photo_ids: list[int]) -> None:
    turn = st.turn
    photos = list((await turn.session.scalars(
        select(Attachment).where(Attachment.id.in_(photo_ids)))).all()) if photo_ids else []
    outcome = await actions.answer(turn.session, turn.services, st.staff, item, text, photos)
    turn.say(f"staff.answer_{outcome}", number=item.number)


async def remark(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    await actions.return_with_remark(st.turn.session, st.turn.services, st.staff, item, text)
    st.turn.say("staff.remark_sent", number=item.number)


async def rework(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    await actions.return_for_rework(st.turn.session, st.turn.services, st.staff, item, text)
    st.turn.say("staff.rework_sent", number=item.number)


async def duplicate(st: StaffTurn, item: Item, arg: str, text: str, _: list[int]) -> None:
    main = await actions.mark_duplicate(st.turn.session, st.turn.services, st.staff, item, text)
    st.turn.say("staff.duplicate_marked", number=item.number, main=main.number)


APPLY: dict[InputOp, Apply] = {
    InputOp.REDIRECT: redirect, InputOp.ASK: ask, InputOp.EXTEND: extend,
    InputOp.OUTSIDE: outside, InputOp.ANSWER: answer, InputOp.REMARK: remark,
    InputOp.REWORK: rework, InputOp.DUPLICATE: duplicate,
}
