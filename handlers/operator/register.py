"""/register: an operator registers an item from ПОС, «Инцидент менеджмент», «Сахалин.Онлайн»,
СМЛС, a phone call, a letter or a personal visit, step by step in chat.

Open to operators, the IM coordinator and the chairman, in both messengers (a staff Feature).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_datetime
from handlers.items import NewItem
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.operator import fields
from handlers.operator.fields import REGISTER_CHANNELS, existing_item_number
from handlers.operator.payloads import RegisterButton, RegisterOp
from handlers.operator.register_steps import (
    CONFIRM,
    EDIT,
    EDIT_FIELDS,
    PREFIX,
    STATE_PREFIX,
    STEP_BY_STATE,
    can_skip,
    first_missing,
    no_answer,
    prompt_for,
    suggestion,
)
from handlers.org import Role
from handlers.photos import discard_unsent, store_photos
from handlers.registration import register
from handlers.rules.deadlines import Kind
from handlers.staff.authz import actor_of
from handlers.staff.features import Feature
from handlers.staff.payloads import CardAction, CardOp
from handlers.topics import suggest_now
from handlers.turn import Turn
from storage.models import Citizen, Staff

# A typed time of receipt older than this is almost surely a typo in the year.
OLDEST_RECEIPT = timedelta(days=366)


def next_step(turn: Turn) -> None:
    """Ask for the first missing piece, or show the confirmation (also after an edit)."""
    data = turn.dialog.data
    step = first_missing(data)
    turn.dialog.set(step.state if step else CONFIRM, data, now=turn.now)
    turn.reply(prompt_for(turn))


def reprompt(turn: Turn) -> None:
    turn.reply(prompt_for(turn))


async def start(turn: Turn, staff: Staff, argument: str) -> None:
    # `/register pos` skips the channel question.
    data: dict[str, Any] = {"channel": argument} if argument in REGISTER_CHANNELS else {}
    turn.dialog.set("reg_channel", data, now=turn.now)
    next_step(turn)


async def cancel(turn: Turn) -> None:
    """Drop the half-done registration, including photos already saved for it."""
    await discard_unsent(turn, turn.dialog.data.get("photos", []))
    turn.dialog.reset(turn.now)
    turn.say("cancel.done")


# ---------------------------------------------------------------------------------------------
# Typed input

async def on_message(turn: Turn, staff: Staff, message: IncomingMessage) -> None:
    state = turn.dialog.state
    if message.unsupported is not None:
        turn.say("input.unsupported", what=turn.t(f"content.{message.unsupported}"))
        reprompt(turn)
        return
    step = STEP_BY_STATE.get(state)
    if message.photos and (step is None or step.key not in ("text", "photos_done")):
        await keep_photos(turn, message)  # photos are welcome at any step; kept for the item
    if step is None or step.key in ("channel", "kind", "topic"):
        if message.text or not message.photos:
            turn.say("input.use_buttons")
        reprompt(turn)
        return
    if step.key == "photos_done":
        await take_photos(turn, message)
        return
    if step.key == "text":
        await take_text(turn, message)
        return
    text = (message.text or "").strip()
    if not text:
        reprompt(turn)
        return
    await take_value(turn, step.key, text)


async def keep_photos(turn: Turn, message: IncomingMessage) -> None:
    refused = await store_photos(turn, message)
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    else:
        turn.say("register.photo_kept", count=len(turn.dialog.data.get("photos", [])),
                 max=MAX_PHOTOS)


async def take_value(turn: Turn, key: str, text: str) -> None:
    value: str | None
    if key == "external":
        value = fields.clean_external(text)
        if value is None:
            turn.say("register.external_invalid", max=fields.EXTERNAL_MAX)
        elif not await unique_external(turn, turn.dialog.data["channel"], value):
            value = None
    elif key == "received":
        value = check_received(turn, text)
    elif key == "name":
        value = fields.one_line(text)
        if not fields.NAME_MIN <= len(value) <= fields.NAME_MAX:
            turn.say("register.name_invalid", min=fields.NAME_MIN, max=fields.NAME_MAX)
            value = None
    elif key == "phone":
        value = fields.clean_phone(text)
        if value is None:
            turn.say("register.phone_invalid")
    elif key == "email":
        value = fields.clean_email(text)
        if value is None:
            turn.say("register.email_invalid")
    elif key == "postal_address":
        value = fields.one_line(text)
        if not fields.POSTAL_MIN <= len(value) <= fields.POSTAL_MAX:
            turn.say("register.postal_invalid", min=fields.POSTAL_MIN, max=fields.POSTAL_MAX)
            value = None
    else:  # post_url
        value = fields.clean_url(text)
        if value is None:
            turn.say("register.link_invalid", max=fields.URL_MAX)
    if value is None:
        reprompt(turn)
        return
    turn.dialog.update(turn.now, **{key: value})
    next_step(turn)


async def unique_external(turn: Turn, channel: str, external: str) -> bool:
    number = await existing_item_number(turn.session, channel, external)
    if number is None:
        return True
    turn.say("register.duplicate", external=external, channel=turn.t(f"channel.{channel}"),
             number=number)
    return False


def check_received(turn: Turn, text: str) -> str | None:
    tz, now = turn.services.tz, turn.now
    example = local_datetime(now, tz)
    moment = fields.parse_moment(text, tz, now=now)
    if moment is None:
        turn.say("register.received_invalid", value=text[:40], example=example)
        return None
    if fields.in_future(moment, now):
        turn.say("register.received_future", now=example)
        return None
    if moment < now - OLDEST_RECEIPT:
        turn.say("register.received_too_old")
        return None
    return moment.isoformat()


async def take_text(turn: Turn, message: IncomingMessage) -> None:
    if message.photos:
        await store_photos(turn, message)
    text = (message.text or "").strip()
    if not text:
        if message.photos:
            turn.say("report.photo_kept_need_text")
        reprompt(turn)
        return
    if len(text) < TEXT_MIN:
        turn.say("report.text_too_short", min=TEXT_MIN, length=len(text))
    elif len(text) > TEXT_MAX:
        turn.say("report.text_too_long", max=TEXT_MAX, length=len(text))
    else:
        suggestions = suggest_now(turn.services.topics, text)
        best = suggestions[0] if suggestions else None
        turn.dialog.update(turn.now, text=text,
                           suggested=[best.topic_id, best.score] if best else None)
        next_step(turn)
        return
    reprompt(turn)


async def take_photos(turn: Turn, message: IncomingMessage) -> None:
    if not message.photos:
        turn.say("register.photos_only")
        reprompt(turn)
        return
    refused = await store_photos(turn, message)
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    if len(turn.dialog.data.get("photos", [])) >= MAX_PHOTOS:
        turn.dialog.update(turn.now, photos_done=True)
        next_step(turn)
        return
    reprompt(turn)


# ---------------------------------------------------------------------------------------------
# Buttons

async def on_button(turn: Turn, staff: Staff, raw: str) -> None:
    payload = RegisterButton.unpack(raw)
    if payload is not None and payload.op is RegisterOp.CANCEL:
        await cancel(turn)
        return
    if payload is None or not await BUTTONS[payload.op](turn, staff, payload.value or ""):
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        if turn.dialog.state.startswith(STATE_PREFIX):
            reprompt(turn)


def step_key(turn: Turn) -> str | None:
    step = STEP_BY_STATE.get(turn.dialog.state)
    return step.key if step else None


def filled(turn: Turn, **values: object) -> bool:
    turn.dialog.update(turn.now, **values)
    next_step(turn)
    return True


async def choose_channel(turn: Turn, staff: Staff, value: str) -> bool:
    return step_key(turn) == "channel" and value in REGISTER_CHANNELS and filled(
        turn, channel=value)


async def choose_kind(turn: Turn, staff: Staff, value: str) -> bool:
    return step_key(turn) == "kind" and value in set(Kind) and filled(turn, kind=value)


async def received_now(turn: Turn, staff: Staff, value: str) -> bool:
    return step_key(turn) == "received" and filled(
        turn, received=turn.now.astimezone(turn.services.tz).isoformat())


async def choose_topic(turn: Turn, staff: Staff, value: str) -> bool:
    return (step_key(turn) == "topic" and value in turn.services.org.topic_by_id
            and filled(turn, topic=value))


async def skip(turn: Turn, staff: Staff, value: str) -> bool:
    step = STEP_BY_STATE.get(turn.dialog.state)
    if step is None or not can_skip(step, turn.dialog.data):
        return False
    return filled(turn, **{step.key: True if step.key == "photos_done" else None})


async def photos_done(turn: Turn, staff: Staff, value: str) -> bool:
    return step_key(turn) == "photos_done" and filled(turn, photos_done=True)


async def send(turn: Turn, staff: Staff, value: str) -> bool:
    if turn.dialog.state != CONFIRM:
        return False
    await submit(turn, staff)
    return True


async def edit(turn: Turn, staff: Staff, value: str) -> bool:
    if turn.dialog.state != CONFIRM:
        return False
    turn.dialog.set(EDIT, turn.dialog.data, now=turn.now)
    reprompt(turn)
    return True


async def edit_field(turn: Turn, staff: Staff, value: str) -> bool:
    if turn.dialog.state != EDIT or (value not in EDIT_FIELDS and value != "back"):
        return False
    data = turn.dialog.data
    for cleared in EDIT_FIELDS.get(value, ()):
        data.pop(cleared, None)
    turn.dialog.set(EDIT, data, now=turn.now)
    next_step(turn)
    return True


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
    if external and not await unique_external(turn, channel, external):
        ask_again(turn, "external")
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
        await unique_external(turn, channel, external or "")
        ask_again(turn, "external")
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


def ask_again(turn: Turn, key: str) -> None:
    data = turn.dialog.data
    data.pop(key, None)
    turn.dialog.set(CONFIRM, data, now=turn.now)
    next_step(turn)


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
