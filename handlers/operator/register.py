"""/register: an operator registers an item from ПОС, «Инцидент менеджмент», «Сахалин.Онлайн»,
СМЛС, a phone call, a letter or a personal visit, step by step in chat.

Open to operators, the IM coordinator and the chairman, in both messengers (a staff Feature).
The steps are a table (register_steps.py) run by the wizard; here are the buttons and the submit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_datetime
from handlers.items import NewItem
from handlers.operator.fields import REGISTER_CHANNELS
from handlers.operator.payloads import RegisterButton, RegisterOp
from handlers.operator.register_steps import (
    PREFIX,
    STATE_PREFIX,
    WIZARD,
    duplicate,
    no_answer,
    suggestion,
)
from handlers.org import Role
from handlers.registration import register
from handlers.rules.deadlines import Kind
from handlers.staff.authz import actor_of
from handlers.staff.features import Feature
from handlers.staff.payloads import CardAction, CardOp
from handlers.turn import Turn
from storage.models import Citizen, Staff


async def start(turn: Turn, staff: Staff, argument: str) -> None:
    # `/register pos` skips the channel question.
    data: dict[str, Any] = {"channel": argument} if argument in REGISTER_CHANNELS else {}
    WIZARD.start(turn, data)


async def on_message(turn: Turn, staff: Staff, message: IncomingMessage) -> None:
    await WIZARD.on_message(turn, message)


# ---------------------------------------------------------------------------------------------
# Buttons

async def on_button(turn: Turn, staff: Staff, raw: str) -> None:
    payload = RegisterButton.unpack(raw)
    if payload is not None and payload.op is RegisterOp.CANCEL:
        await WIZARD.cancel(turn)
        turn.say("cancel.done")
        return
    if payload is None or not await BUTTONS[payload.op](turn, staff, payload.value or ""):
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        if turn.dialog.state.startswith(STATE_PREFIX):
            WIZARD.show(turn)


async def choose_channel(turn: Turn, staff: Staff, value: str) -> bool:
    return value in REGISTER_CHANNELS and WIZARD.answer(turn, "channel", value)


async def choose_kind(turn: Turn, staff: Staff, value: str) -> bool:
    return value in set(Kind) and WIZARD.answer(turn, "kind", value)


async def received_now(turn: Turn, staff: Staff, value: str) -> bool:
    return WIZARD.answer(turn, "received", turn.now.astimezone(turn.services.tz).isoformat())


async def choose_topic(turn: Turn, staff: Staff, value: str) -> bool:
    return value in turn.services.org.topic_by_id and WIZARD.answer(turn, "topic", value)


async def skip(turn: Turn, staff: Staff, value: str) -> bool:
    return WIZARD.skip(turn)


async def photos_done(turn: Turn, staff: Staff, value: str) -> bool:
    return WIZARD.answer(turn, "photos_done", True)


async def send(turn: Turn, staff: Staff, value: str) -> bool:
    if turn.dialog.state != WIZARD.confirm_state:
        return False
    await submit(turn, staff)
    return True


async def edit(turn: Turn, staff: Staff, value: str) -> bool:
    return WIZARD.to_edit(turn)


async def edit_field(turn: Turn, staff: Staff, value: str) -> bool:
    return WIZARD.edit(turn, value)


# What each button does; False means it does not fit the current step (a stale button).
BUTTONS: dict[RegisterOp, Callable[[Turn, Staff, str], Awaitable[bool]]] = {
    RegisterOp.CHANNEL: choose_channel, RegisterOp.KIND: choose_kind,
    RegisterOp.NOW: received_now, RegisterOp.TOPIC: choose_topic, RegisterOp.SKIP: skip,
    RegisterOp.DONE: photos_done, RegisterOp.SEND: send, RegisterOp.EDIT: edit,
    RegisterOp.FIELD: edit_field,
}


# ---------------------------------------------------------------------------------------------
# Registration: the item, its citizen, its photos and the block's notification in one go.

async def submit(turn: Turn, staff: Staff) -> None:
    data = turn.dialog.data
    channel, external = data["channel"], data.get("external")
    suggested = suggestion(data)
    if external and await taken(turn, channel, external):
        WIZARD.ask_again(turn, "external")
        return
    try:
        async with turn.session.begin_nested():
            item = await register(turn.session, turn.services, NewItem(
                kind=Kind(data["kind"]), channel=channel, topic=data["topic"], text=data["text"],
                received_at=datetime.fromisoformat(data["received"]), registered_at=turn.now,
                citizen_id=await citizen_id(turn, data), external_number=external,
                post_url=data.get("post_url"), registered_by_id=staff.id,
                no_answer=no_answer(data), attachment_ids=tuple(data.get("photos", [])),
                suggested_topic=suggested[0] if suggested else None,
                suggestion_score=suggested[1] if suggested else None),
                actor_of(staff))
    except IntegrityError:
        # Somebody registered the same outside number a moment ago.
        await taken(turn, channel, external or "")
        WIZARD.ask_again(turn, "external")
        return
    turn.dialog.reset(turn.now)
    t, org, tz = turn.t, turn.services.org, turn.services.tz
    lines = [t("card.block", block=org.block_by_id[item.block_id].title),
             t("card.answer_due", when=local_datetime(item.answer_due, tz))]
    if item.no_answer:
        lines.append(t("card.no_answer"))
    lines.append(t("register.done_hint"))
    turn.reply(Reply("\n".join(lines), title=t("register.done.title", number=item.number),
                     buttons=[[Button(t("register.button_card"),
                                      CardAction(CardOp.CARD, item.id).pack())]]))


async def taken(turn: Turn, channel: str, external: str) -> bool:
    """The outside number is already registered: says so."""
    invalid = await duplicate(turn, channel, external)
    if invalid is not None:
        turn.say(invalid.key, **invalid.args)
    return invalid is not None


async def citizen_id(turn: Turn, data: dict[str, Any]) -> int | None:
    personal = {key: data.get(key) for key in ("name", "phone", "email", "postal_address")}
    if not any(personal.values()):
        return None
    citizen = Citizen(**personal, created_at=turn.now)
    turn.session.add(citizen)
    await turn.session.flush()
    return citizen.id


FEATURE = Feature(
    command="register", payload_prefix=PREFIX, state_prefix=STATE_PREFIX,
    roles=frozenset({Role.OPERATOR, Role.IM_COORDINATOR, Role.CHAIRMAN}),
    start=start, on_message=on_message, on_button=on_button)
