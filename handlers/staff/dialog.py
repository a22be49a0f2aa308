"""Staff in chat: joining with an invite, /tasks, cards with actions, group bindings."""

from __future__ import annotations

from sqlalchemy import select

from handlers import payloads
from handlers import staff_features as features
from handlers.commands import parse_command
from handlers.events import Button, IncomingMessage, Platform, Reply
from handlers.formatting import local_date
from handlers.org import Role
from handlers.payloads import Lang, Locale
from handlers.routing import Router, dispatch, unpack
from handlers.staff import approvals, card_actions
from handlers.staff.actions import Refused
from handlers.staff.answer_files import ANSWER_INPUT
from handlers.staff.authz import can_do, can_see, refuse
from handlers.staff.chat import StaffTurn, drop_input, show_card, staff_menu
from handlers.staff.invites import InviteError, create_invite, redeem_invite
from handlers.staff.payloads import CancelInput, Tasks
from handlers.staff.tasks import FILTERS, tasks_reply
from handlers.staff.text_inputs import on_input
from handlers.turn import Turn
from storage.models import GroupBinding, Item, Staff


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
        if turn.press is not None and unpack(turn.press.payload, ROUTERS) is not None:
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
    # The invitation names both messengers: Telegram opens the bot by a link.
    telegram = turn.services.capabilities_of(Platform.TELEGRAM)
    link = telegram.start_link(invite.code) or "—"
    turn.say("invite.created", code=invite.code, link=link,
             until=local_date(invite.expires_at, turn.services.tz))


async def on_button(turn: Turn, staff: Staff) -> None:
    press = turn.press
    assert press is not None
    language = Lang.unpack(press.payload)
    if language is not None:
        turn.account.locale = language.locale.value
        turn.t = type(turn.t)(language.locale.value)
        turn.reply(Reply(turn.t("lang.changed"), menu=staff_menu(turn)))
        return
    # /register and /stats own the payloads of their prefix (staff_features.py).
    feature = features.by_payload(payloads.tag_of(press.payload))
    if feature is not None:
        if Role(staff.role) not in feature.roles:
            refuse(staff.id, press.payload, None)
            turn.notice = turn.t("staff.refused")
            turn.say("staff.refused")
            return
        await feature.on_button(turn, staff, press.payload)
        return
    payload = unpack(press.payload, ROUTERS)
    try:
        handled = payload is not None and await dispatch(StaffTurn(turn, staff), payload,
                                                         ROUTERS)
    except Refused as refusal:
        turn.notice = turn.t(refusal.key, **refusal.values)
        turn.say(refusal.key, **refusal.values)
        return
    if not handled:
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")


chat = Router[StaffTurn]("staff chat")


@chat.on(Tasks)
async def on_tasks(st: StaffTurn, payload: Tasks) -> bool:
    st.turn.reply(await tasks_reply(st.turn, st.staff, payload.filter.value, payload.page))
    return True


@chat.on(CancelInput)
async def on_cancel(st: StaffTurn, payload: CancelInput) -> bool:
    await drop_input(st.turn)
    st.turn.reply(Reply(st.turn.t("cancel.done"), menu=staff_menu(st.turn)))
    return True


# The staff's button features, in one place: a new button type is routed by adding it to one.
ROUTERS: tuple[Router[StaffTurn], ...] = (chat, card_actions.router, approvals.router)

__all__ = ["can_do", "handle"]
