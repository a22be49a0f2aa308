"""«Мои обращения»: the last items of a citizen, one item with its history and answer."""

from __future__ import annotations

from sqlalchemy import select

from handlers.citizen.payloads import AddComment, AnswerQuestion, MyItem, MyList
from handlers.events import Button, Reply
from handlers.formatting import local_date, local_datetime, split_text, status_label
from handlers.rules.lifecycle import OPEN_STATES
from handlers.turn import Turn
from storage.models import Item, ItemEvent

LIST_SIZE = 10
# History entries a citizen sees, in plain words; internal steps (who delegated to whom) are not
# theirs to read.
CITIZEN_VISIBLE = ("register", "take", "ask_citizen", "citizen_replied", "citizen_comment",
                   "redirect", "extend", "forward_outside", "answer", "approve", "close",
                   "reopen", "reject", "return_for_rework")


async def items_list(turn: Turn) -> Reply:
    t = turn.t
    if turn.account.citizen_id is None:
        return Reply(t("my.empty"))
    items = (await turn.session.scalars(
        select(Item).where(Item.citizen_id == turn.account.citizen_id)
        .order_by(Item.created_at.desc(), Item.id.desc()).limit(LIST_SIZE))).all()
    if not items:
        return Reply(t("my.empty"))
    lines = [t("my.line", number=item.number, status=status_label(t, item.status),
               due=local_date(item.answer_due, turn.services.tz)) for item in items]
    buttons = [Button(item.number, MyItem(item.id).pack()) for item in items]
    return Reply("\n".join(lines), title=t("my.title"),
                 buttons=[buttons[i:i + 2] for i in range(0, len(buttons), 2)])


async def item_details(turn: Turn, item_id: int) -> Reply | None:
    from handlers.citizen.common import own_item

    item = await own_item(turn, item_id)
    if item is None:
        return None
    t, tz = turn.t, turn.services.tz
    events = (await turn.session.scalars(
        select(ItemEvent).where(ItemEvent.item_id == item.id,
                                ItemEvent.action.in_(CITIZEN_VISIBLE))
        .order_by(ItemEvent.at, ItemEvent.id))).all()
    lines = [
        t("my.item.topic", topic=turn.services.org.topic_by_id[item.topic].label(t.locale)),
        t("my.item.status", status=status_label(t, item.status)),
        t("my.item.due", due=local_date(item.answer_due, tz)),
        "",
        t("my.item.text", text=item.text),
        "",
        t("my.item.history"),
    ]
    for event in events:
        lines.append(t("my.item.event", when=local_datetime(event.at, tz),
                       what=t(f"history.{event.action}")))
    if item.answer_text and item.status in ("answered", "closed", "reopened"):
        lines += ["", t("my.item.answer", answer=item.answer_text)]
    buttons: list[list[Button]] = []
    if item.status == "waiting_citizen":
        buttons.append([Button(t("button.answer_question"), AnswerQuestion(item.id).pack())])
    if item.status in OPEN_STATES:
        buttons.append([Button(t("button.add_comment"), AddComment(item.id).pack())])
    buttons.append([Button(t("button.back_to_list"), MyList().pack())])
    text = "\n".join(lines)
    # The history of a long-running item can be long: keep the newest part that fits.
    pieces = split_text(text)
    return Reply(pieces[0] if len(pieces) == 1 else pieces[0] + "\n…",
                 title=t("my.item.title", number=item.number), buttons=buttons)
