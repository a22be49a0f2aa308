"""«Мои обращения» buttons: the list, one item, and writing to an item (a comment, or the
answer to a staff member's question)."""

from __future__ import annotations

from handlers.citizen.common import own_item
from handlers.citizen.items_view import item_details, items_list
from handlers.citizen.payloads import AddComment, AnswerQuestion, CancelReport, MyItem, MyList
from handlers.citizen.states import ItemState
from handlers.events import Button, Reply
from handlers.routing import Router
from handlers.rules.lifecycle import OPEN_STATES
from handlers.turn import Turn

router: Router[Turn] = Router("my items")


def comment_prompt(turn: Turn) -> Reply:
    return Reply(turn.t("item.comment.ask"),
                 buttons=[[Button(turn.t("button.cancel"), CancelReport().pack())]])


def clarify_prompt(turn: Turn) -> Reply:
    return Reply(turn.t("clarify.ask"))


@router.on(MyList)
async def on_list(turn: Turn, payload: MyList) -> bool:
    turn.reply(await items_list(turn))
    return True


@router.on(MyItem)
async def on_item(turn: Turn, payload: MyItem) -> bool:
    reply = await item_details(turn, payload.item_id)
    if reply is None:
        return False
    turn.reply(reply)
    return True


@router.on(AddComment)
async def start_comment(turn: Turn, payload: AddComment) -> bool:
    item = await own_item(turn, payload.item_id)
    if item is None or item.status not in OPEN_STATES:
        return False
    turn.dialog.set(ItemState.COMMENT, {"item_id": item.id}, now=turn.now)
    turn.reply(comment_prompt(turn))
    return True


@router.on(AnswerQuestion)
async def start_clarification(turn: Turn, payload: AnswerQuestion) -> bool:
    item = await own_item(turn, payload.item_id)
    if item is None or item.status != "waiting_citizen":
        return False
    turn.dialog.set(ItemState.CLARIFY, {"item_id": item.id}, now=turn.now)
    turn.reply(clarify_prompt(turn))
    return True
