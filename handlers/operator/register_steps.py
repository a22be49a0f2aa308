"""The step table of /register: each step's prompt, the input it takes and its check; the
confirmation and edit screens. The wizard (handlers/wizard.py) runs the table.

The dialog data is a dict in the persisted dialog state; a step is done when its key is present
(None means skipped), so an edit just removes keys and the wizard asks for them again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_datetime
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.operator import fields
from handlers.operator.fields import (
    NUMBERED_CHANNELS,
    REGISTER_CHANNELS,
    default_kind,
    existing_item_number,
)
from handlers.operator.payloads import RegisterButton, RegisterOp
from handlers.photos import store_photos
from handlers.rules.deadlines import Kind
from handlers.topics import suggest_now
from handlers.turn import Turn
from handlers.wizard import Accepts, Edit, Invalid, Step, Wizard, text_length


class RegisterState(StrEnum):
    """Where an operator is in /register (stored as its value)."""

    CHANNEL = "reg_channel"
    KIND = "reg_kind"
    EXTERNAL = "reg_external"
    RECEIVED = "reg_received"
    NAME = "reg_name"
    PHONE = "reg_phone"
    EMAIL = "reg_email"
    POSTAL = "reg_postal"
    LINK = "reg_link"
    TEXT = "reg_text"
    TOPIC = "reg_topic"
    PHOTOS = "reg_photos"
    CONFIRM = "reg_confirm"
    EDIT = "reg_edit"


PREFIX = RegisterButton.tag  # button payloads "r:..."
STATE_PREFIX = "reg_"
S = RegisterState
CONFIRM, EDIT = S.CONFIRM, S.EDIT
# A typed time of receipt older than this is almost surely a typo in the year.
OLDEST_RECEIPT = timedelta(days=366)


def incident(data: dict[str, Any]) -> bool:
    return data.get("channel") == "incident_management"


def no_answer(data: dict[str, Any]) -> bool:
    """59-ФЗ art. 7 and 11: an appeal without a surname or a postal address gets no answer."""
    return data.get("kind") == Kind.APPEAL and not (data.get("name") and data.get("postal_address"))


def suggestion(data: dict[str, Any]) -> tuple[str, float] | None:
    """The topic suggested for the text ("suggested": [topic, score] in the dialog data)."""
    pair = data.get("suggested")
    return (str(pair[0]), float(pair[1])) if pair else None


# ---------------------------------------------------------------------------------------------
# Keyboards

def label(turn: Turn, text: str) -> str:
    """A label that the operator's messenger shows whole or cut with an ellipsis."""
    return turn.services.capabilities_of(turn.event.chat.platform).label(text)


def button(text: str, op: RegisterOp, value: str | None = None) -> Button:
    return Button(text, RegisterButton(op, value).pack())


def rows_of(buttons: list[Button], width: int = 2) -> list[list[Button]]:
    return [buttons[i:i + width] for i in range(0, len(buttons), width)]


def cancel_button(turn: Turn) -> Button:
    return button(turn.t("button.cancel"), RegisterOp.CANCEL)


def skip_button(turn: Turn) -> Button:
    return button(turn.t("button.skip"), RegisterOp.SKIP)


def channel_buttons(turn: Turn) -> list[list[Button]]:
    return rows_of([button(label(turn, turn.t(f"channel.{c}")), RegisterOp.CHANNEL, c)
                    for c in REGISTER_CHANNELS])


def kind_buttons(turn: Turn, default: Kind) -> list[list[Button]]:
    return [[Button(label(turn, ("✓ " if kind == default else "") + turn.t(f"kind.{kind}")),
                    RegisterButton(RegisterOp.KIND, str(kind)).pack())] for kind in Kind]


def topic_buttons(turn: Turn) -> list[list[Button]]:
    """All topics; the suggestion from the text (if any) pre-selected: first and marked."""
    suggested = suggestion(turn.dialog.data)
    org = turn.services.org
    first = ([[Button(label(turn, "✓ ⭐ " + org.topic_by_id[suggested[0]].label(turn.t.locale)),
                      RegisterButton(RegisterOp.TOPIC, suggested[0]).pack())]]
             if suggested else [])
    return [*first, *rows_of([Button(label(turn, topic.label(turn.t.locale)),
                                     RegisterButton(RegisterOp.TOPIC, topic.id).pack())
                              for topic in org.topics if not suggested or
                              topic.id != suggested[0]])]


# ---------------------------------------------------------------------------------------------
# Prompts: each says what is accepted at this step.

def channel_name(turn: Turn) -> str:
    return turn.t(f"channel.{turn.dialog.data.get('channel', 'phone')}")


def appeal(turn: Turn) -> bool:
    return turn.dialog.data.get("kind") == Kind.APPEAL


def ask(key: str, **args: Any) -> Any:
    """A prompt that is one text."""
    return lambda turn: Reply(turn.t(key, **args))


def ask_channel(turn: Turn) -> Reply:
    return Reply(turn.t("register.ask_channel"), buttons=channel_buttons(turn))


def ask_kind(turn: Turn) -> Reply:
    default = default_kind(turn.dialog.data["channel"])
    return Reply(turn.t("register.ask_kind", channel=channel_name(turn),
                        kind=turn.t(f"kind.{default}")), buttons=kind_buttons(turn, default))


def ask_external(turn: Turn) -> Reply:
    key = ("register.ask_external_required" if numbered(turn.dialog.data)
           else "register.ask_external_optional")
    return Reply(turn.t(key, channel=channel_name(turn)))


def ask_received(turn: Turn) -> Reply:
    now = local_datetime(turn.now, turn.services.tz)
    return Reply(turn.t("register.ask_received", example=now),
                 buttons=[[button(turn.t("register.button_now", now=now[-5:]), RegisterOp.NOW)]])


def ask_name(turn: Turn) -> Reply:
    return Reply(turn.t("register.ask_name_appeal" if appeal(turn) else "register.ask_name"))


def ask_postal(turn: Turn) -> Reply:
    return Reply(turn.t("register.ask_postal_appeal" if appeal(turn) else "register.ask_postal"))


def ask_topic(turn: Turn) -> Reply:
    suggested = suggestion(turn.dialog.data)
    text = (turn.t("register.ask_topic_suggested", score=round(suggested[1] * 100))
            if suggested else turn.t("register.ask_topic"))
    return Reply(text, buttons=topic_buttons(turn))


def ask_photos(turn: Turn) -> Reply:
    count = len(turn.dialog.data.get("photos", []))
    action, key = ((RegisterOp.DONE, "button.done") if count
                   else (RegisterOp.SKIP, "button.skip"))
    return Reply(turn.t("register.ask_photos", count=count, max=MAX_PHOTOS),
                 buttons=[[button(turn.t(key), action)]])


def lost(turn: Turn) -> Reply:
    return Reply(turn.t("register.ask_channel"),
                 buttons=[*channel_buttons(turn), [cancel_button(turn)]])


# ---------------------------------------------------------------------------------------------
# Checks of typed values: the value to store, or what is wrong with it.

def numbered(data: dict[str, Any]) -> bool:
    return data.get("channel") in NUMBERED_CHANNELS


async def duplicate(turn: Turn, channel: str, external: str) -> Invalid | None:
    number = await existing_item_number(turn.session, channel, external)
    if number is None:
        return None
    return Invalid("register.duplicate", {"external": external, "number": number,
                                          "channel": turn.t(f"channel.{channel}")})


async def check_external(turn: Turn, text: str) -> str | Invalid:
    value = fields.clean_external(text)
    if value is None:
        return Invalid("register.external_invalid", {"max": fields.EXTERNAL_MAX})
    return await duplicate(turn, turn.dialog.data["channel"], value) or value


async def check_received(turn: Turn, text: str) -> str | Invalid:
    tz, now = turn.services.tz, turn.now
    example = local_datetime(now, tz)
    moment = fields.parse_moment(text, tz, now=now)
    if moment is None:
        return Invalid("register.received_invalid", {"value": text[:40], "example": example})
    if fields.in_future(moment, now):
        return Invalid("register.received_future", {"now": example})
    if moment < now - OLDEST_RECEIPT:
        return Invalid("register.received_too_old")
    return moment.isoformat()


async def check_name(turn: Turn, text: str) -> str | Invalid:
    value = fields.one_line(text)
    if not fields.NAME_MIN <= len(value) <= fields.NAME_MAX:
        return Invalid("register.name_invalid", {"min": fields.NAME_MIN, "max": fields.NAME_MAX})
    return value


async def check_phone(turn: Turn, text: str) -> str | Invalid:
    value = fields.clean_phone(text)
    return Invalid("register.phone_invalid") if value is None else value


async def check_email(turn: Turn, text: str) -> str | Invalid:
    value = fields.clean_email(text)
    return Invalid("register.email_invalid") if value is None else value


async def check_postal(turn: Turn, text: str) -> str | Invalid:
    value = fields.one_line(text)
    if not fields.POSTAL_MIN <= len(value) <= fields.POSTAL_MAX:
        return Invalid("register.postal_invalid",
                       {"min": fields.POSTAL_MIN, "max": fields.POSTAL_MAX})
    return value


async def check_url(turn: Turn, text: str) -> str | Invalid:
    value = fields.clean_url(text)
    return Invalid("register.link_invalid", {"max": fields.URL_MAX}) if value is None else value


# ---------------------------------------------------------------------------------------------
# Inputs that are more than a typed value: the text (with photos), the photos.

async def keep_photos(turn: Turn, message: IncomingMessage) -> None:
    """Photos are welcome at any step: kept for the item."""
    refused = await store_photos(turn, message)
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    else:
        turn.say("register.photo_kept", count=len(turn.dialog.data.get("photos", [])),
                 max=MAX_PHOTOS)


async def take_text(turn: Turn, message: IncomingMessage) -> None:
    if message.photos:
        await store_photos(turn, message)
    text = (message.text or "").strip()
    if not text:
        if message.photos:
            turn.say("report.photo_kept_need_text")
        WIZARD.show(turn)
        return
    invalid = text_length(text)
    if invalid is not None:
        turn.say(invalid.key, **invalid.args)
        WIZARD.show(turn)
        return
    suggestions = suggest_now(turn.services.topics, text)
    best = suggestions[0] if suggestions else None
    WIZARD.fill(turn, text=text, suggested=[best.topic_id, best.score] if best else None)


async def take_photos(turn: Turn, message: IncomingMessage) -> None:
    if not message.photos:
        turn.say("register.photos_only")
        WIZARD.show(turn)
        return
    refused = await store_photos(turn, message)
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    if len(turn.dialog.data.get("photos", [])) >= MAX_PHOTOS:
        WIZARD.fill(turn, photos_done=True)
        return
    WIZARD.show(turn)


# ---------------------------------------------------------------------------------------------
# The table

def optional(data: dict[str, Any]) -> bool:
    return True


BUTTON = Accepts.BUTTON
STEPS = (
    Step(S.CHANNEL, "channel", ask_channel, BUTTON),
    Step(S.KIND, "kind", ask_kind, BUTTON),
    Step(S.EXTERNAL, "external", ask_external, check=check_external,
         skippable=lambda data: not numbered(data)),
    Step(S.RECEIVED, "received", ask_received, Accepts.TEXT | BUTTON, check=check_received),
    Step(S.NAME, "name", ask_name, check=check_name, skippable=optional),
    Step(S.PHONE, "phone", ask("register.ask_phone"), check=check_phone, skippable=optional),
    Step(S.EMAIL, "email", ask("register.ask_email"), check=check_email, skippable=optional),
    Step(S.POSTAL, "postal_address", ask_postal, check=check_postal, skippable=optional),
    Step(S.LINK, "post_url", ask("register.ask_link"), check=check_url, applies=incident,
         skippable=optional),
    Step(S.TEXT, "text", ask("register.ask_text", min=TEXT_MIN, max=TEXT_MAX),
         Accepts.TEXT | Accepts.PHOTO, take=take_text),
    Step(S.TOPIC, "topic", ask_topic, BUTTON),
    Step(S.PHOTOS, "photos_done", ask_photos, Accepts.PHOTO | BUTTON, take=take_photos,
         skippable=optional, skip_value=True, offer_skip=False),
)
# What the edit screen offers, and which keys each choice clears.
EDITS = {
    "channel": Edit(("channel", "kind", "external", "post_url")),
    "kind": Edit(("kind",)),
    "external": Edit(("external",)),
    "received": Edit(("received",)),
    "citizen": Edit(("name", "phone", "email", "postal_address")),
    "link": Edit(("post_url",)),
    "text": Edit(("text",)),
    "topic": Edit(("topic",)),
    "photos": Edit(("photos_done",)),
    "back": Edit(),
}


# ---------------------------------------------------------------------------------------------
# The confirmation and the edit screen

def summary_lines(turn: Turn, data: dict[str, Any]) -> list[str]:
    t, org, tz = turn.t, turn.services.org, turn.services.tz
    topic = org.topic_by_id[data["topic"]]
    lines = [t("card.kind_channel", kind=t(f"kind.{data['kind']}"),
               channel=t(f"channel.{data['channel']}")),
             t("card.external_number", number=data.get("external") or "—"),
             t("card.received", when=local_datetime(datetime.fromisoformat(data["received"]),
                                                    tz)),
             t("card.citizen", name=data.get("name") or t("card.citizen_unnamed"))]
    for key in ("phone", "email", "postal_address"):
        if data.get(key):
            lines.append(t(f"card.citizen_{key}", value=data[key]))
    if data.get("post_url"):
        lines.append(t("card.post_url", url=data["post_url"]))
    lines += [t("card.topic", topic=topic.label(t.locale)),
              t("card.block", block=org.block_of_topic[topic.id].title),
              t("register.photos", count=len(data.get("photos", [])))]
    if no_answer(data):
        lines.append(t("card.no_answer"))
    return lines


def confirm_reply(turn: Turn) -> Reply:
    t, data = turn.t, turn.dialog.data
    text = "\n".join([*summary_lines(turn, data), "", data["text"]])
    return Reply(text, title=t("register.confirm.title"), buttons=[
        [button(t("register.button_register"), RegisterOp.SEND)],
        [button(t("button.edit"), RegisterOp.EDIT), cancel_button(turn)]])


def edit_reply(turn: Turn) -> Reply:
    t = turn.t
    choices = [f for f in EDITS if f != "back" and (f != "link" or incident(turn.dialog.data))]
    buttons = [button(t(f"register.field.{f}"), RegisterOp.FIELD, f) for f in choices]
    return Reply(t("register.edit_what"), buttons=[
        *rows_of(buttons, 3), [button(t("button.back"), RegisterOp.FIELD, "back")]])


WIZARD = Wizard(
    STEPS, confirm_state=CONFIRM, edit_state=EDIT, confirm=confirm_reply, edit_screen=edit_reply,
    edits=EDITS, cancel_button=cancel_button, lost=lost, title="register.title",
    skip_button=skip_button, stray_photos=keep_photos, discard_anywhere=True)
