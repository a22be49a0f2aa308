"""The buttons a staff member sees on a card: only the actions they may take right now."""

from __future__ import annotations

from handlers.events import Button
from handlers.i18n import Translator
from handlers.payloads import make
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Action
from handlers.staff.authz import can_do
from storage.models import Item, Staff

# (action, payload verb, text key), in the order they appear on the card.
CARD_ACTIONS = (
    (Action.TAKE, "take", "button.take"),
    (Action.DELEGATE, "assign", "button.assign"),
    (Action.ASK_CITIZEN, "ask", "button.ask"),
    (Action.ANSWER, "answer", "button.answer"),
    (Action.SUBMIT_ANSWER, "answer", "button.answer"),
    (Action.APPROVE, "approve", "button.approve"),
    (Action.RETURN_WITH_REMARK, "remark", "button.remark"),
    (Action.EXTEND, "extend", "button.extend"),
    (Action.REDIRECT, "redirect", "button.redirect"),
    (Action.FORWARD_OUTSIDE, "outside", "button.outside"),
    (Action.MARK_DUPLICATE, "duplicate", "button.duplicate"),
    (Action.RETURN_FOR_REWORK, "rework", "button.rework"),
)


def card_buttons(t: Translator, item: Item, staff: Staff | None) -> list[list[Button]]:
    if staff is None:
        return []
    seen: set[str] = set()
    buttons: list[Button] = []
    for action, verb, key in CARD_ACTIONS:
        if verb in seen or not can_do(staff, item, action):
            continue
        if action == Action.EXTEND and item.kind == Kind.APPEAL and item.extension_count >= 1:
            continue
        if action == Action.ASK_CITIZEN and item.reply_account_id is None:
            continue
        seen.add(verb)
        buttons.append(Button(t(key), make("s", verb, item.id)))
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    rows.append([Button(t("button.refresh"), make("s", "card", item.id))])
    return rows
