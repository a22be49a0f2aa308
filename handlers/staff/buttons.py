"""The buttons a staff member sees on a card: only the actions they may take right now."""

from __future__ import annotations

from handlers.events import Button
from handlers.i18n import Translator
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Action
from handlers.staff.authz import can_do
from handlers.staff.payloads import Approve, CardAction, CardOp
from storage.models import Item, Staff

# (action, card op, text key), in the order they appear on the card.
CARD_ACTIONS = (
    (Action.TAKE, CardOp.TAKE, "button.take"),
    (Action.DELEGATE, CardOp.ASSIGN, "button.assign"),
    (Action.ASK_CITIZEN, CardOp.ASK, "button.ask"),
    (Action.ANSWER, CardOp.ANSWER, "button.answer"),
    (Action.SUBMIT_ANSWER, CardOp.ANSWER, "button.answer"),
    (Action.APPROVE, None, "button.approve"),  # its own payload: approvals.py
    (Action.RETURN_WITH_REMARK, CardOp.REMARK, "button.remark"),
    (Action.EXTEND, CardOp.EXTEND, "button.extend"),
    (Action.REDIRECT, CardOp.REDIRECT, "button.redirect"),
    (Action.FORWARD_OUTSIDE, CardOp.OUTSIDE, "button.outside"),
    (Action.MARK_DUPLICATE, CardOp.DUPLICATE, "button.duplicate"),
    (Action.RETURN_FOR_REWORK, CardOp.REWORK, "button.rework"),
)


def card_buttons(t: Translator, item: Item, staff: Staff | None) -> list[list[Button]]:
    if staff is None:
        return []
    seen: set[CardOp | None] = set()
    buttons: list[Button] = []
    for action, verb, key in CARD_ACTIONS:
        if verb in seen or not can_do(staff, item, action):
            continue
        if action == Action.EXTEND and item.kind == Kind.APPEAL and item.extension_count >= 1:
            continue
        if action == Action.ASK_CITIZEN and item.reply_account_id is None:
            continue
        seen.add(verb)
        payload = CardAction(verb, item.id) if verb is not None else Approve(item.id)
        buttons.append(Button(t(key), payload.pack()))
    rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
    rows.append([Button(t("button.refresh"), CardAction(CardOp.CARD, item.id).pack())])
    return rows
