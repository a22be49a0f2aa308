"""The steps of /register, their prompts and the confirmation screen.

The dialog data is a dict in the persisted dialog state; a step is done when its key is present
(None means skipped), so an edit just removes keys and the dialog asks for them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers.events import Button, Reply
from handlers.formatting import local_datetime
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.operator.fields import (
    NUMBERED_CHANNELS,
    REGISTER_CHANNELS,
    default_kind,
)
from handlers.operator.payloads import RegisterButton, RegisterOp
from handlers.rules.deadlines import Kind
from handlers.turn import Turn

PREFIX = RegisterButton.tag  # button payloads "r:..."
STATE_PREFIX = "reg_"
CONFIRM = "reg_confirm"
EDIT = "reg_edit"


def _always(data: dict[str, Any]) -> bool:
    return True


def _incident(data: dict[str, Any]) -> bool:
    return data.get("channel") == "incident_management"


@dataclass(frozen=True)
class Step:
    state: str
    key: str  # the dialog data key the step fills
    applies: Callable[[dict[str, Any]], bool] = _always
    skippable: bool = True


STEPS = (
    Step("reg_channel", "channel", skippable=False),
    Step("reg_kind", "kind", skippable=False),
    Step("reg_external", "external"),  # skippable only outside NUMBERED_CHANNELS
    Step("reg_received", "received", skippable=False),
    Step("reg_name", "name"),
    Step("reg_phone", "phone"),
    Step("reg_email", "email"),
    Step("reg_postal", "postal_address"),
    Step("reg_link", "post_url", _incident),
    Step("reg_text", "text", skippable=False),
    Step("reg_topic", "topic", skippable=False),
    Step("reg_photos", "photos_done"),
)
STEP_BY_STATE = {step.state: step for step in STEPS}
# What the edit screen offers, and which keys each choice clears.
EDIT_FIELDS: dict[str, tuple[str, ...]] = {
    "channel": ("channel", "kind", "external", "post_url"),
    "kind": ("kind",),
    "external": ("external",),
    "received": ("received",),
    "citizen": ("name", "phone", "email", "postal_address"),
    "link": ("post_url",),
    "text": ("text",),
    "topic": ("topic",),
    "photos": ("photos_done",),
}


def can_skip(step: Step, data: dict[str, Any]) -> bool:
    if step.key == "external":
        return data.get("channel") not in NUMBERED_CHANNELS
    return step.skippable


def first_missing(data: dict[str, Any]) -> Step | None:
    return next((s for s in STEPS if s.applies(data) and s.key not in data), None)


def no_answer(data: dict[str, Any]) -> bool:
    """59-ФЗ art. 7 and 11: an appeal without a surname or a postal address gets no answer."""
    return data.get("kind") == Kind.APPEAL and not (data.get("name") and data.get("postal_address"))


# ---------------------------------------------------------------------------------------------
# Keyboards

def label(turn: Turn, text: str) -> str:
    """A label that the operator's messenger shows whole or cut with an ellipsis."""
    return turn.services.capabilities_of(turn.event.chat.platform).label(text)


def button(text: str, op: RegisterOp, value: str | None = None) -> Button:
    return Button(text, RegisterButton(op, value).pack())


def rows_of(buttons: list[Button], width: int = 2) -> list[list[Button]]:
    return [buttons[i:i + width] for i in range(0, len(buttons), width)]


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), RegisterButton(RegisterOp.CANCEL).pack())]


def skip_row(turn: Turn, key: str = "button.skip") -> list[Button]:
    return [Button(turn.t(key), RegisterButton(RegisterOp.SKIP).pack())]


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


def suggestion(data: dict[str, Any]) -> tuple[str, float] | None:
    """The topic suggested for the text ("suggested": [topic, score] in the dialog data)."""
    pair = data.get("suggested")
    return (str(pair[0]), float(pair[1])) if pair else None


# ---------------------------------------------------------------------------------------------
# Prompts: each says what is accepted at this step.

def prompt_for(turn: Turn) -> Reply:
    state, data = turn.dialog.state, turn.dialog.data
    if state == CONFIRM:
        return confirm_reply(turn)
    if state == EDIT:
        return edit_reply(turn)
    step = STEP_BY_STATE.get(state)
    if step is None:
        return Reply(turn.t("register.ask_channel"), buttons=[*channel_buttons(turn),
                                                              cancel_row(turn)])
    text, buttons = step_prompt(turn, step, data)
    if can_skip(step, data) and step.key != "photos_done":
        buttons.append(skip_row(turn))
    buttons.append(cancel_row(turn))
    return Reply(text, buttons=buttons, title=turn.t("register.title"))


def step_prompt(turn: Turn, step: Step, data: dict[str, Any]) -> tuple[str, list[list[Button]]]:
    t = turn.t
    channel = t(f"channel.{data.get('channel', 'phone')}")
    appeal = data.get("kind") == Kind.APPEAL
    if step.key == "channel":
        return t("register.ask_channel"), channel_buttons(turn)
    if step.key == "kind":
        default = default_kind(data["channel"])
        return (t("register.ask_kind", channel=channel, kind=t(f"kind.{default}")),
                kind_buttons(turn, default))
    if step.key == "external":
        key = ("register.ask_external_required" if data.get("channel") in NUMBERED_CHANNELS
               else "register.ask_external_optional")
        return t(key, channel=channel), []
    if step.key == "received":
        now = local_datetime(turn.now, turn.services.tz)
        return (t("register.ask_received", example=now),
                [[button(t("register.button_now", now=now[-5:]), RegisterOp.NOW)]])
    if step.key == "name":
        return t("register.ask_name_appeal" if appeal else "register.ask_name"), []
    if step.key == "phone":
        return t("register.ask_phone"), []
    if step.key == "email":
        return t("register.ask_email"), []
    if step.key == "postal_address":
        return t("register.ask_postal_appeal" if appeal else "register.ask_postal"), []
    if step.key == "post_url":
        return t("register.ask_link"), []
    if step.key == "text":
        return t("register.ask_text", min=TEXT_MIN, max=TEXT_MAX), []
    if step.key == "topic":
        suggested = suggestion(data)
        text = (t("register.ask_topic_suggested", score=round(suggested[1] * 100))
                if suggested else t("register.ask_topic"))
        return text, topic_buttons(turn)
    count = len(data.get("photos", []))
    action, key = ((RegisterOp.DONE, "button.done") if count
                   else (RegisterOp.SKIP, "button.skip"))
    return (t("register.ask_photos", count=count, max=MAX_PHOTOS),
            [[Button(t(key), RegisterButton(action).pack())]])


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
        [Button(t("register.button_register"), RegisterButton(RegisterOp.SEND).pack())],
        [Button(t("button.edit"), RegisterButton(RegisterOp.EDIT).pack()), cancel_row(turn)[0]]])


def edit_reply(turn: Turn) -> Reply:
    t = turn.t
    fields = [f for f in EDIT_FIELDS if f != "link" or _incident(turn.dialog.data)]
    buttons = [button(t(f"register.field.{f}"), RegisterOp.FIELD, f) for f in fields]
    return Reply(t("register.edit_what"), buttons=[
        *rows_of(buttons, 3), [button(t("button.back"), RegisterOp.FIELD, "back")]])
