"""What the staff chat features share: the staff turn, the menu, the card, the cancel row, and
the typed text that a card button asks for."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from handlers import staff_features as features
from handlers.events import Button, Reply
from handlers.photos import discard_unsent
from handlers.staff.actions import Refused
from handlers.staff.answer_files import ANSWER_INPUT
from handlers.staff.authz import can_see, refuse
from handlers.staff.buttons import card_buttons
from handlers.staff.notify import card_for
from handlers.staff.payloads import CancelInput
from handlers.turn import Turn
from storage.models import Item, Staff


@dataclass(frozen=True)
class StaffTurn:
    """A turn of a staff member whose account and role were checked."""

    turn: Turn
    staff: Staff


class InputOp(StrEnum):
    """What the typed text after a card button is for (kept in the dialog data)."""

    REDIRECT = "redirect"
    ASK = "ask"
    EXTEND = "extend"
    OUTSIDE = "outside"
    ANSWER = "answer"
    REMARK = "remark"
    REWORK = "rework"
    DUPLICATE = "duplicate"


PROMPTS = {InputOp.REDIRECT: "staff.ask_redirect_reason", InputOp.ASK: "staff.ask_question",
           InputOp.EXTEND: "staff.ask_extend_reason", InputOp.OUTSIDE: "staff.ask_outside_reason",
           InputOp.ANSWER: "staff.ask_answer", InputOp.REMARK: "staff.ask_remark",
           InputOp.REWORK: "staff.ask_rework", InputOp.DUPLICATE: "staff.ask_duplicate_of"}


def staff_menu(turn: Turn) -> list[list[str]]:
    return [[turn.t("staff.menu.tasks")], [turn.t("staff.menu.help")]]


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), CancelInput().pack())]


async def show_card(turn: Turn, staff: Staff, item: Item) -> None:
    for reply in await card_for(turn.session, turn.services, item, turn.account, staff,
                                card_buttons):
        turn.reply(reply)


async def load_item(turn: Turn, staff: Staff, item_id: int | None) -> Item | None:
    item = await turn.session.get(Item, item_id) if item_id is not None else None
    if item is None or not can_see(staff, item):
        refuse(staff.id, "open", item_id)
        return None
    return item


async def require_item(st: StaffTurn, item_id: int) -> Item:
    item = await load_item(st.turn, st.staff, item_id)
    if item is None:
        raise Refused("staff.refused")
    return item


def actions_reply(turn: Turn, staff: Staff, item: Item) -> None:
    """After an action, the buttons that make sense now, so the next step is one tap away."""
    buttons = card_buttons(turn.t, item, staff)
    if len(buttons) > 1:  # more than the refresh button
        turn.reply(Reply(turn.t("card.actions", number=item.number), buttons=buttons))


async def expect_text(turn: Turn, op: InputOp, item: Item, arg: str) -> None:
    turn.dialog.set(ANSWER_INPUT, {"op": op.value, "item_id": item.id, "arg": arg, "photos": []},
                    now=turn.now)
    turn.reply(Reply(turn.t(PROMPTS[op], number=item.number), buttons=[cancel_row(turn)]))


async def drop_input(turn: Turn) -> None:
    # A feature's dialog (e.g. /register) keeps its unsent photos under the same key.
    owned = turn.dialog.state == ANSWER_INPUT or features.by_state(turn.dialog.state) is not None
    if owned:
        await discard_unsent(turn, turn.dialog.data.get("photos", []))
    turn.dialog.reset(turn.now)
