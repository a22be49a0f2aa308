"""Staff in chat: joining with an invite, /tasks, cards with actions, group bindings."""

from __future__ import annotations

import logging

from sqlalchemy import select

from handlers import payloads
from handlers.citizen.dialog import parse_command
from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_date
from handlers.org import Role
from handlers.payloads import Lang, Locale
from handlers.prepare import DOCUMENT_MAX_BYTES
from handlers.rules.lifecycle import Action
from handlers.staff import actions, feature_modules, features
from handlers.staff.actions import Refused
from handlers.staff.answer_files import ANSWER_INPUT, store_document
from handlers.staff.authz import can_do, can_see, refuse
from handlers.staff.buttons import card_buttons
from handlers.staff.invites import InviteError, create_invite, redeem_invite
from handlers.staff.notify import card_for
from handlers.staff.tasks import FILTERS, tasks_reply
from handlers.turn import Turn
from storage.models import Attachment, GroupBinding, Item, Staff

ANSWER_MAX = 4000
log = logging.getLogger(__name__)
# Inputs that need a typed text after a button: the state remembers what it is for.
TEXT_INPUTS = {"redirect": "staff.ask_redirect_reason", "ask": "staff.ask_question",
               "extend": "staff.ask_extend_reason", "outside": "staff.ask_outside_reason",
               "answer": "staff.ask_answer", "remark": "staff.ask_remark",
               "rework": "staff.ask_rework", "duplicate": "staff.ask_duplicate_of"}


def staff_menu(turn: Turn) -> list[list[str]]:
    return [[turn.t("staff.menu.tasks")], [turn.t("staff.menu.help")]]


async def current_staff(turn: Turn) -> Staff | None:
    if turn.account.staff_id is None:
        return None
    staff = await turn.session.get(Staff, turn.account.staff_id)
    return staff if staff is not None and staff.revoked_at is None else None


async def handle(turn: Turn) -> bool:
    """Handle the event if it is a staff matter; False lets the citizen dialog take it."""
    message = turn.message
    text = (message.text or "").strip() if message else ""
    command = parse_command(text) if message else None
    argument = text.split(maxsplit=1)[1].strip() if command and " " in text else ""
    if command in ("start", "join") and argument:
        await join(turn, argument)
        return True
    staff = await current_staff(turn)
    if command in ("bind_summary_group", "bind_block_group"):
        await bind_group(turn, staff, command)
        return True
    if staff is None:
        if turn.press is not None and turn.press.payload.startswith("s:"):
            refuse(None, "staff button by a non-staff account", None)
            turn.notice = turn.t("staff.refused")
            turn.say("staff.refused")
            return True
        return False
    if not (message.is_private if message else turn.press.is_private):  # type: ignore[union-attr]
        return True  # staff chatting in a group: nothing for the bot to do
    if turn.press is not None:
        await on_button(turn, staff)
        return True
    assert message is not None
    await on_message(turn, staff, message, command, argument)
    return True


# ---------------------------------------------------------------------------------------------

async def join(turn: Turn, code: str) -> None:
    try:
        redeemed = await redeem_invite(turn.session, turn.account, code, turn.now)
    except InviteError as error:
        refuse(None, f"invite ({error.reason})", None)
        turn.say(f"invite.{error.reason}")
        return
    staff = redeemed.staff
    block = turn.services.org.block_by_id.get(staff.block_id or "")
    turn.dialog.reset(turn.now)
    turn.reply(Reply(turn.t("invite.welcome", role=turn.t(f"role.{staff.role}"),
                            block=block.title if block else "—"),
                     menu=staff_menu(turn)))
    turn.reply(Reply(turn.t(f"help.staff.{staff.role}")))


async def bind_group(turn: Turn, staff: Staff | None, command: str) -> None:
    event = turn.event
    if event.is_private:
        turn.say("bind.in_group_only")
        return
    if command == "bind_summary_group":
        if staff is None or staff.role != Role.CHAIRMAN:
            refuse(staff.id if staff else None, command, None)
            turn.say("bind.chairman_only")
            return
        purpose, block_id = "summary", ""
    else:
        if staff is None or staff.role != Role.HEAD or not staff.block_id:
            refuse(staff.id if staff else None, command, None)
            turn.say("bind.head_only")
            return
        purpose, block_id = "block", staff.block_id
    existing = await turn.session.scalar(select(GroupBinding).where(
        GroupBinding.purpose == purpose, GroupBinding.block_id == block_id,
        GroupBinding.platform == str(event.chat.platform)))
    if existing is None:
        existing = GroupBinding(purpose=purpose, block_id=block_id,
                                platform=str(event.chat.platform), chat_id=event.chat.chat_id,
                                bound_at=turn.now)
        turn.session.add(existing)
    existing.chat_id = event.chat.chat_id
    existing.bound_by_staff_id = staff.id
    existing.bound_at = turn.now
    turn.say(f"bind.done.{purpose}")


# ---------------------------------------------------------------------------------------------

async def on_message(turn: Turn, staff: Staff, message: IncomingMessage, command: str | None,
                     argument: str) -> None:
    t = turn.t
    if command is not None:
        await on_command(turn, staff, command, argument)
        return
    text = (message.text or "").strip()
    if text in t.all_variants("staff.menu.tasks"):
        turn.reply(await tasks_reply(turn, staff, "all", 0))
        return
    if text in t.all_variants("staff.menu.help"):
        turn.reply(Reply(t(f"help.staff.{staff.role}"), menu=staff_menu(turn)))
        return
    if turn.dialog.state == ANSWER_INPUT:
        await on_input(turn, staff, message)
        return
    feature = features.by_state(turn.dialog.state)
    if feature is not None and Role(staff.role) in feature.roles:
        await feature.on_message(turn, staff, message)
        return
    if message.unsupported is not None:
        turn.say("input.unsupported", what=t(f"content.{message.unsupported}"))
    turn.reply(Reply(t("staff.menu.prompt"), menu=staff_menu(turn)))


async def on_command(turn: Turn, staff: Staff, command: str, argument: str) -> None:
    t = turn.t
    feature = features.by_command(command)
    if feature is not None:
        if Role(staff.role) not in feature.roles:
            refuse(staff.id, command, None)
            turn.say("staff.refused")
            return
        await drop_input(turn)
        await feature.start(turn, staff, argument)
        return
    if command in ("start", "help", "menu"):
        turn.reply(Reply(t(f"help.staff.{staff.role}"), menu=staff_menu(turn)))
    elif command == "cancel":
        await drop_input(turn)
        turn.reply(Reply(t("cancel.done"), menu=staff_menu(turn)))
    elif command == "tasks":
        turn.reply(await tasks_reply(turn, staff, argument if argument in FILTERS else "all", 0))
    elif command == "task":
        item = await turn.session.scalar(select(Item).where(Item.number == argument))
        if item is None or not can_see(staff, item):
            if item is not None:
                refuse(staff.id, "view", item.id)
            turn.say("staff.no_such_item", number=argument or "—")
            return
        await show_card(turn, staff, item)
    elif command == "invite":
        await invite_from_chat(turn, staff, argument)
    elif command == "lang":
        turn.reply(Reply(t("lang.choose"), buttons=[[Button("Русский", Lang(Locale.RU).pack()),
                                                     Button("English", Lang(Locale.EN).pack())]]))
    else:
        turn.say("command.unknown", command="/" + command)


async def invite_from_chat(turn: Turn, staff: Staff, argument: str) -> None:
    """`/invite ROLE [BLOCK]`: the chairman creates an invitation without the console."""
    if staff.role != Role.CHAIRMAN:
        refuse(staff.id, "invite", None)
        turn.say("staff.refused")
        return
    parts = argument.split()
    if not parts:
        turn.say("invite.usage")
        return
    try:
        invite = await create_invite(turn.session, turn.services.org, parts[0],
                                     parts[1] if len(parts) > 1 else None,
                                     " ".join(parts[2:]) or None, turn.now, staff.id)
    except InviteError as error:
        turn.say(f"invite.{error.reason}")
        turn.say("invite.usage")
        return
    link = (f"https://t.me/{turn.services.bot_username}?start={invite.code}"
            if turn.services.bot_username else "—")
    turn.say("invite.created", code=invite.code, link=link,
             until=local_date(invite.expires_at, turn.services.tz))


async def show_card(turn: Turn, staff: Staff, item: Item) -> None:
    for reply in await card_for(turn.session, turn.services, item, turn.account, staff,
                                card_buttons):
        turn.reply(reply)


# ---------------------------------------------------------------------------------------------

async def load_item(turn: Turn, staff: Staff, item_id: int | None) -> Item | None:
    item = await turn.session.get(Item, item_id) if item_id is not None else None
    if item is None or not can_see(staff, item):
        refuse(staff.id, "open", item_id)
        return None
    return item


async def on_button(turn: Turn, staff: Staff) -> None:
    press = turn.press
    assert press is not None
    language = Lang.unpack(press.payload)
    if language is not None:
        turn.account.locale = language.locale.value
        turn.t = type(turn.t)(language.locale.value)
        turn.reply(Reply(turn.t("lang.changed"), menu=staff_menu(turn)))
        return
    verb, args = payloads.parse(press.payload)
    feature = features.by_payload(verb)
    if feature is not None:
        if Role(staff.role) not in feature.roles:
            refuse(staff.id, press.payload, None)
            turn.notice = turn.t("staff.refused")
            turn.say("staff.refused")
            return
        await feature.on_button(turn, staff, args)
        return
    if verb != "s" or not args:
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        return
    op, rest = args[0], args[1:]
    if op == "tasks":
        page = payloads.int_arg(rest, 1) or 0
        turn.reply(await tasks_reply(turn, staff, rest[0] if rest else "all", page))
        return
    if op == "cancel":
        await drop_input(turn)
        turn.reply(Reply(turn.t("cancel.done"), menu=staff_menu(turn)))
        return
    item = await load_item(turn, staff, payloads.int_arg(rest, 0))
    if item is None:
        turn.notice = turn.t("staff.refused")
        turn.say("staff.refused")
        return
    try:
        await on_item_button(turn, staff, item, op, rest[1:])
    except Refused as refusal:
        turn.notice = turn.t(refusal.key, **refusal.values)
        turn.say(refusal.key, **refusal.values)


async def on_item_button(turn: Turn, staff: Staff, item: Item, op: str, rest: list[str]) -> None:
    t = turn.t
    if op == "card":
        await show_card(turn, staff, item)
    elif op == "take":
        await actions.take(turn.session, turn.services, staff, item)
        turn.say("staff.taken", number=item.number)
        actions_reply(turn, staff, item)
    elif op == "assign":
        actions.require(staff, item, Action.DELEGATE)
        turn.reply(await executor_choice(turn, item))
    elif op == "assign_to":
        executor = await actions.delegate(turn.session, turn.services, staff, item,
                                          payloads.int_arg(rest, 0) or 0)
        turn.say("staff.delegated", number=item.number, name=executor.name or f"#{executor.id}")
        actions_reply(turn, staff, item)
    elif op == "redirect":
        actions.require(staff, item, Action.REDIRECT)
        turn.reply(block_choice(turn, item))
    elif op == "redirect_to":
        actions.require(staff, item, Action.REDIRECT)
        block = rest[0] if rest else ""
        if block not in turn.services.org.block_by_id or block == item.block_id:
            raise Refused("staff.redirect_bad_block")
        topics = turn.services.org.block_by_id[block].topics
        if len(topics) > 1 and len(rest) < 2:
            turn.reply(topic_choice(turn, item, block))
            return
        index = payloads.int_arg(rest, 1)
        topic = topics[index] if index is not None and 0 <= index < len(topics) else ""
        await expect_text(turn, "redirect", item, f"{block}/{topic}" if topic else block)
    elif op == "extend":
        actions.require(staff, item, Action.EXTEND)
        if item.kind == "appeal":
            if item.extension_count >= 1:
                raise Refused("staff.extend_once")
            await expect_text(turn, "extend", item, "")
        else:
            options = actions.extension_options(turn.services, item)
            if not options:
                raise Refused("staff.extend_limit")
            turn.reply(Reply(t("staff.extend_choose_days", number=item.number), buttons=[
                [Button(t("staff.extend_days", days=d), payloads.make("s", "extend_by", item.id, d))
                 for d in options], cancel_row(turn)]))
    elif op == "extend_by":
        actions.require(staff, item, Action.EXTEND)
        days = payloads.int_arg(rest, 0)
        if days not in actions.extension_options(turn.services, item):
            raise Refused("staff.extend_limit")
        await expect_text(turn, "extend", item, str(days))
    elif op in ("ask", "outside", "answer", "remark", "rework", "duplicate"):
        action = {"ask": Action.ASK_CITIZEN, "outside": Action.FORWARD_OUTSIDE,
                  "answer": Action.ANSWER if staff.role != Role.EXECUTOR
                  else Action.SUBMIT_ANSWER,
                  "remark": Action.RETURN_WITH_REMARK,
                  "rework": Action.RETURN_FOR_REWORK,
                  "duplicate": Action.MARK_DUPLICATE}[op]
        actions.require(staff, item, action)
        if op == "ask" and item.reply_account_id is None:
            raise Refused("staff.citizen_unreachable")
        await expect_text(turn, op, item, "")
    elif op == "approve":
        outcome = await actions.approve(turn.session, turn.services, staff, item)
        turn.say(f"staff.approve_{outcome}", number=item.number)
    elif op == "published":
        await actions.mark_published(turn.session, turn.services, staff, item)
        turn.say("staff.published", number=item.number)
    else:
        raise Refused("button.stale_long")


def actions_reply(turn: Turn, staff: Staff, item: Item) -> None:
    """After an action, the buttons that make sense now, so the next step is one tap away."""
    buttons = card_buttons(turn.t, item, staff)
    if len(buttons) > 1:  # more than the refresh button
        turn.reply(Reply(turn.t("card.actions", number=item.number), buttons=buttons))


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), payloads.make("s", "cancel"))]


async def executor_choice(turn: Turn, item: Item) -> Reply:
    executors = (await turn.session.scalars(
        select(Staff).where(Staff.role == str(Role.EXECUTOR), Staff.block_id == item.block_id,
                            Staff.revoked_at.is_(None)).order_by(Staff.name, Staff.id))).all()
    if not executors:
        return Reply(turn.t("staff.no_executors"))
    rows = [[Button((e.name or f"#{e.id}")[:40], payloads.make("s", "assign_to", item.id, e.id))]
            for e in executors[:20]]
    return Reply(turn.t("staff.choose_executor", number=item.number),
                 buttons=[*rows, cancel_row(turn)])


def block_choice(turn: Turn, item: Item) -> Reply:
    blocks = [b for b in turn.services.org.blocks if b.id != item.block_id]
    rows = [[Button(b.title[:40], payloads.make("s", "redirect_to", item.id, b.id))]
            for b in blocks]
    return Reply(turn.t("staff.choose_block", number=item.number),
                 buttons=[*rows, cancel_row(turn)])


def topic_choice(turn: Turn, item: Item, block_id: str) -> Reply:
    """The right topic in the target block: a labelled example for the topic suggester.
    Buttons carry the topic's place in the block, not its id, to stay within 64 bytes."""
    org = turn.services.org
    rows = [[Button(org.topic_by_id[topic].label(turn.t.locale)[:40],
                    payloads.make("s", "redirect_to", item.id, block_id, index))]
            for index, topic in enumerate(org.block_by_id[block_id].topics)]
    return Reply(turn.t("staff.choose_topic", number=item.number,
                        block=org.block_by_id[block_id].title), buttons=[*rows, cancel_row(turn)])


async def expect_text(turn: Turn, op: str, item: Item, arg: str) -> None:
    turn.dialog.set(ANSWER_INPUT, {"op": op, "item_id": item.id, "arg": arg, "photos": []},
                    now=turn.now)
    turn.reply(Reply(turn.t(TEXT_INPUTS[op], number=item.number), buttons=[cancel_row(turn)]))


async def drop_input(turn: Turn) -> None:
    # A feature's dialog (e.g. /register) keeps its unsent photos under the same key.
    owned = turn.dialog.state == ANSWER_INPUT or features.by_state(turn.dialog.state) is not None
    photo_ids = turn.dialog.data.get("photos", []) if owned else []
    if photo_ids:
        rows = (await turn.session.scalars(select(Attachment).where(
            Attachment.id.in_(photo_ids), Attachment.item_id.is_(None)))).all()
        for row in rows:
            turn.delete_file_after_commit(row.path)
            await turn.session.delete(row)
    turn.dialog.reset(turn.now)


async def on_input(turn: Turn, staff: Staff, message: IncomingMessage) -> None:
    """The typed text that a button asked for: a reason, a question, an answer."""
    from handlers.citizen.common import store_photos

    data = turn.dialog.data
    op = data.get("op", "")
    item = await load_item(turn, staff, data.get("item_id"))
    if item is None:
        await drop_input(turn)
        turn.say("staff.refused")
        return
    kept = False
    if op == "answer" and message.photos:
        await store_photos(turn, message)
        kept = True
    if op == "answer" and message.document is not None:
        problem = await store_document(turn)
        if problem:
            turn.say(problem, max=DOCUMENT_MAX_BYTES // (1024 * 1024))
            return
        kept = True
    text = (message.text or "").strip()
    if not text:
        key = "staff.answer_photo_kept" if kept else TEXT_INPUTS[op]
        turn.reply(Reply(turn.t(key, number=item.number), buttons=[cancel_row(turn)]))
        return
    if len(text) > ANSWER_MAX:
        turn.say("report.text_too_long", max=ANSWER_MAX, length=len(text))
        return
    try:
        await apply_input(turn, staff, item, op, data.get("arg", ""), text,
                          list(turn.dialog.data.get("photos", [])))
    except Refused as refusal:
        await drop_input(turn)
        turn.say(refusal.key, **refusal.values)
        return
    turn.dialog.reset(turn.now)
    if can_see(staff, item):
        actions_reply(turn, staff, item)


async def apply_input(turn: Turn, staff: Staff, item: Item, op: str, arg: str, text: str,
                      photo_ids: list[int]) -> None:
    number = item.number
    if op == "redirect":
        block, _, topic = arg.partition("/")  # "block" or "block/topic"
        await actions.redirect(turn.session, turn.services, staff, item, block, text, topic or None)
        turn.say("staff.redirected", number=number,
                 block=turn.services.org.block_by_id[block].title)
    elif op == "ask":
        await actions.ask(turn.session, turn.services, staff, item, text)
        turn.say("staff.question_sent", number=number)
    elif op == "extend":
        due = await actions.extend(turn.session, turn.services, staff, item, text,
                                   int(arg) if arg else None)
        turn.say("staff.extended", number=number, due=local_date(due, turn.services.tz))
    elif op == "outside":
        await actions.forward_outside(turn.session, turn.services, staff, item, text)
        turn.say("staff.forwarded", number=number)
    elif op == "answer":
        photos = list((await turn.session.scalars(
            select(Attachment).where(Attachment.id.in_(photo_ids)))).all()) if photo_ids else []
        outcome = await actions.answer(turn.session, turn.services, staff, item, text, photos)
        turn.say(f"staff.answer_{outcome}", number=number)
    elif op == "remark":
        await actions.return_with_remark(turn.session, turn.services, staff, item, text)
        turn.say("staff.remark_sent", number=number)
    elif op == "rework":
        await actions.return_for_rework(turn.session, turn.services, staff, item, text)
        turn.say("staff.rework_sent", number=number)
    elif op == "duplicate":
        main = await actions.mark_duplicate(turn.session, turn.services, staff, item, text)
        turn.say("staff.duplicate_marked", number=number, main=main.number)
    else:
        raise Refused("button.stale_long")


__all__ = ["can_do", "feature_modules", "handle"]
