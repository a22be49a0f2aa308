"""The citizen's conversation: consent, the menu, reporting a problem, «Мои обращения»."""

from __future__ import annotations

from sqlalchemy import select

from handlers import payloads
from handlers.accounts import active_consent
from handlers.citizen import polls, privacy
from handlers.citizen.common import (
    MAX_PHOTOS,
    TEXT_MAX,
    TEXT_MIN,
    main_menu,
    menu_reply,
    own_item,
    store_photos,
)
from handlers.citizen.items_view import item_details, items_list
from handlers.citizen.replies import apply_clarification, apply_comment
from handlers.citizen.topic_choice import (
    best_suggestion,
    decline_guess,
    remember_suggestions,
    topic_screen,
)
from handlers.context import PRIVACY_POLICY_VERSION
from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_date, map_link
from handlers.items import NewItem
from handlers.registration import register
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import OPEN_STATES, Actor
from handlers.turn import Turn
from storage.models import Attachment, Citizen, Consent

ADDRESS_MIN, ADDRESS_MAX = 3, 500
REPORT_STATES = ("report_topic", "report_text", "report_photos", "report_place", "report_confirm",
                 "report_edit")


# ---------------------------------------------------------------------------------------------
# Keyboards

def consent_reply(turn: Turn) -> Reply:
    t = turn.t
    return Reply(
        t("consent.request"),
        title=t("start.greeting.title"),
        buttons=[[Button(t("consent.agree"), payloads.make("consent", "yes"))],
                 [Button(t("consent.policy"), payloads.make("consent", "policy"))],
                 [Button(t("consent.decline"), payloads.make("consent", "no"))]],
        remove_menu=True,
    )


def topic_buttons(turn: Turn) -> list[list[Button]]:
    topics = turn.services.org.topics
    buttons = [Button(topic.label(turn.t.locale), payloads.make("topic", topic.id))
               for topic in topics]
    return [buttons[i:i + 2] for i in range(0, len(buttons), 2)]


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), payloads.make("report", "cancel"))]


# ---------------------------------------------------------------------------------------------
# Step prompts: each says what is accepted at this step.

def prompt_for(turn: Turn) -> Reply:
    t = turn.t
    state, data = turn.dialog.state, turn.dialog.data
    if state == "report_topic":
        if data.get("text"):  # the citizen wrote first: the suggestions lead
            return topic_screen(turn, cancel_row(turn))
        return Reply(t("report.ask_topic"), buttons=[*topic_buttons(turn), cancel_row(turn)])
    if state == "report_text":
        return Reply(t("report.ask_text", min=TEXT_MIN, max=TEXT_MAX), buttons=[cancel_row(turn)])
    if state == "report_photos":
        count = len(data.get("photos", []))
        key = "report.ask_photos_more" if count else "report.ask_photos"
        action = "done" if count else "skip"
        label = t("button.done") if count else t("button.skip")
        return Reply(t(key, count=count, max=MAX_PHOTOS),
                     buttons=[[Button(label, payloads.make("photos", action))], cancel_row(turn)])
    if state == "report_place":
        return Reply(t("report.ask_place"),
                     buttons=[[Button(t("button.skip"), payloads.make("place", "skip"))],
                              cancel_row(turn)])
    if state == "report_confirm":
        return confirm_reply(turn)
    if state == "report_edit":
        return Reply(t("report.edit_what"), buttons=[
            [Button(t("report.field.topic"), payloads.make("edit", "topic")),
             Button(t("report.field.text"), payloads.make("edit", "text"))],
            [Button(t("report.field.photos"), payloads.make("edit", "photos")),
             Button(t("report.field.place"), payloads.make("edit", "place"))],
            [Button(t("button.back"), payloads.make("edit", "back"))]])
    if state == "comment":
        return Reply(t("item.comment.ask"),
                     buttons=[[Button(t("button.cancel"), payloads.make("report", "cancel"))]])
    if state == "clarify":
        return Reply(t("clarify.ask"))
    if state == "poll_comment":
        return Reply(t("poll.comment_ask"))
    if state == "forget_confirm":
        return privacy.forget_question(turn)
    return menu_reply(turn, "menu.prompt")


def confirm_reply(turn: Turn) -> Reply:
    t, data, org = turn.t, turn.dialog.data, turn.services.org
    topic = org.topic_by_id[data["topic"]].label(t.locale)
    place = data.get("address") or (
        t("report.place.location", link=map_link(data["lat"], data["lon"]))
        if data.get("lat") is not None else t("report.place.none"))
    text = t("report.confirm", topic=topic, text=data["text"],
             photos=len(data.get("photos", [])), place=place)
    return Reply(text, title=t("report.confirm.title"), buttons=[
        [Button(t("button.send"), payloads.make("confirm", "send"))],
        [Button(t("button.edit"), payloads.make("confirm", "edit")),
         Button(t("button.cancel"), payloads.make("report", "cancel"))]])


def next_step(turn: Turn) -> None:
    """Move to the first step still missing, or to the confirmation (also after an edit)."""
    data = turn.dialog.data
    if (data.get("editing") or data.get("place_done")) and "topic" in data and "text" in data:
        turn.dialog.set("report_confirm", data, now=turn.now)
        turn.reply(prompt_for(turn))
        return
    if "topic" not in data:
        state = "report_topic"
    elif "text" not in data:
        state = "report_text"
    elif not data.get("photos_done"):
        state = "report_photos"
    elif not data.get("place_done"):
        state = "report_place"
    else:
        state = "report_confirm"
    if state == "report_topic":
        remember_suggestions(turn, data)
    turn.dialog.set(state, data, now=turn.now)
    turn.reply(prompt_for(turn))


# ---------------------------------------------------------------------------------------------
# Entry point

async def handle(turn: Turn) -> None:
    consent = await active_consent(turn.session, turn.account.id)
    if turn.press is not None:
        await on_button(turn, consent is not None)
        return
    message = turn.message
    assert message is not None
    text = (message.text or "").strip()
    command = parse_command(text)
    if command is None and text.lower() in {"начать", "start"}:
        command = "start"
    if command is not None:
        await on_command(turn, command, consent is not None)
        return
    if consent is None:
        # Nothing the citizen writes is kept before consent (152-ФЗ).
        if turn.dialog.state == "consent":
            turn.say("consent.required")
        turn.dialog.set("consent", now=turn.now)
        turn.reply(consent_reply(turn))
        return
    if text and await on_menu_text(turn, text):
        return
    await on_content(turn, message)


def parse_command(text: str) -> str | None:
    if not text.startswith("/") or len(text) < 2:
        return None
    word = text.split(maxsplit=1)[0][1:]
    return word.split("@", 1)[0].lower()


async def on_command(turn: Turn, command: str, consented: bool) -> None:
    if command == "start":
        if consented:
            turn.reply(menu_reply(turn, "start.welcome_back"))
        else:
            turn.dialog.set("consent", now=turn.now)
            turn.reply(consent_reply(turn))
        return
    if command == "help":
        turn.reply(Reply(turn.t("help.citizen"), menu=main_menu(turn) if consented else None))
        return
    if command == "lang":
        turn.reply(Reply(turn.t("lang.choose"), buttons=[[
            Button("Русский", payloads.make("lang", "ru")),
            Button("English", payloads.make("lang", "en"))]]))
        return
    if command == "privacy":
        turn.reply(await privacy.describe(turn))
        return
    if not consented:
        turn.say("consent.required")
        turn.reply(consent_reply(turn))
        return
    if command == "cancel":
        await cancel_dialog(turn)
        turn.reply(menu_reply(turn, "cancel.done"))
        return
    if command == "forget":
        await cancel_dialog(turn)
        turn.dialog.set("forget_confirm", now=turn.now)
        turn.reply(privacy.forget_question(turn))
        return
    if command in {"menu", "report", "my"}:
        if command == "report":
            await start_report(turn, {})
        elif command == "my":
            turn.reply(await items_list(turn))
        else:
            turn.reply(menu_reply(turn, "menu.prompt"))
        return
    turn.say("command.unknown", command="/" + command)
    turn.reply(prompt_for(turn))


async def on_menu_text(turn: Turn, text: str) -> bool:
    t = turn.t
    if text in t.all_variants("menu.report"):
        await cancel_dialog(turn)
        await start_report(turn, {})
        return True
    if text in t.all_variants("menu.my_items"):
        turn.reply(await items_list(turn))
        return True
    if text in t.all_variants("menu.help"):
        turn.reply(Reply(t("help.citizen"), menu=main_menu(turn)))
        return True
    return False


async def start_report(turn: Turn, data: dict[str, object]) -> None:
    turn.dialog.set("report_topic", data, now=turn.now)
    next_step(turn)


# ---------------------------------------------------------------------------------------------
# Content: text, photos, locations, things we do not accept

async def on_content(turn: Turn, message: IncomingMessage) -> None:
    state = turn.dialog.state
    if message.unsupported is not None:
        turn.say("input.unsupported", what=turn.t(f"content.{message.unsupported}"))
        turn.reply(prompt_for(turn))
        return
    if state == "clarify":
        await apply_clarification(turn, message)
        return
    if state == "comment":
        await apply_comment(turn, message)
        return
    if state == "poll_comment" and message.text:
        await polls.take_comment(turn, message.text.strip())
        return
    if state == "report_text" or (state == "report_topic" and message.text):
        await take_text(turn, message)
        return
    if state == "report_topic" and message.photos:
        # More photos of an album whose caption started the report: keep them all.
        refused = await store_photos(turn, message)
        if refused:
            turn.say("report.photos_limit", max=MAX_PHOTOS)
        return
    if state == "report_photos":
        await take_photos(turn, message)
        return
    if state == "report_place":
        await take_place(turn, message)
        return
    if state in ("report_confirm", "report_edit", "forget_confirm", "consent"):
        turn.say("input.use_buttons")
        turn.reply(prompt_for(turn))
        return
    # Idle: a citizen who starts by writing is asked for the topic afterwards, text kept.
    if message.text and not text_fits(turn, message.text):
        return
    if message.text or message.photos:
        data = {"text": message.text.strip()} if message.text else {}
        turn.dialog.set("report_topic", data, now=turn.now)
        await store_photos(turn, message)  # a photo with a caption keeps both
        next_step(turn)
        return
    turn.reply(menu_reply(turn, "menu.prompt"))


def text_fits(turn: Turn, text: str) -> bool:
    length = len(text.strip())
    if length < TEXT_MIN:
        turn.say("report.text_too_short", min=TEXT_MIN, length=length)
        return False
    if length > TEXT_MAX:
        turn.say("report.text_too_long", max=TEXT_MAX, length=length)
        return False
    return True


async def take_text(turn: Turn, message: IncomingMessage) -> None:
    if not message.text:
        if message.photos and turn.dialog.state == "report_text":
            await store_photos(turn, message)
            turn.say("report.photo_kept_need_text")
            return
        turn.reply(prompt_for(turn))
        return
    if not text_fits(turn, message.text):
        turn.reply(prompt_for(turn))
        return
    turn.dialog.update(turn.now, text=message.text.strip())
    if message.photos:
        await store_photos(turn, message)
    next_step(turn)


async def take_photos(turn: Turn, message: IncomingMessage) -> None:
    if not message.photos:
        if message.location is not None or message.text:
            # Skipping ahead is fine: treat it as the place.
            turn.dialog.update(turn.now, photos_done=True)
            turn.dialog.set("report_place", turn.dialog.data, now=turn.now)
            await take_place(turn, message)
            return
        turn.reply(prompt_for(turn))
        return
    refused = await store_photos(turn, message)
    count = len(turn.dialog.data.get("photos", []))
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    if count >= MAX_PHOTOS:
        turn.dialog.update(turn.now, photos_done=True)
        next_step(turn)
        return
    turn.reply(prompt_for(turn))


async def take_place(turn: Turn, message: IncomingMessage) -> None:
    if message.location is not None:
        turn.dialog.update(turn.now, lat=message.location.latitude,
                           lon=message.location.longitude, address=None, place_done=True)
        next_step(turn)
        return
    address = (message.text or "").strip()
    if not address:
        turn.reply(prompt_for(turn))
        return
    if not ADDRESS_MIN <= len(address) <= ADDRESS_MAX:
        turn.say("report.address_length", min=ADDRESS_MIN, max=ADDRESS_MAX)
        turn.reply(prompt_for(turn))
        return
    turn.dialog.update(turn.now, address=address, lat=None, lon=None, place_done=True)
    next_step(turn)


# ---------------------------------------------------------------------------------------------
# Buttons

async def on_button(turn: Turn, consented: bool) -> None:
    press = turn.press
    assert press is not None
    verb, args = payloads.parse(press.payload)
    arg = args[0] if args else ""
    if verb == "consent":
        await on_consent(turn, arg, consented)
        return
    if verb == "lang" and arg in ("ru", "en"):
        turn.account.locale = arg
        turn.t = type(turn.t)(arg)
        turn.reply(Reply(turn.t("lang.changed"), menu=main_menu(turn) if consented else None))
        return
    if not consented:
        turn.notice = turn.t("consent.required_short")
        turn.reply(consent_reply(turn))
        return
    state = turn.dialog.state
    handled = await dispatch_button(turn, verb, args, state)
    if not handled:
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        turn.reply(prompt_for(turn))


async def dispatch_button(turn: Turn, verb: str, args: list[str], state: str) -> bool:
    arg = args[0] if args else ""
    if verb == "report" and arg == "cancel":
        await cancel_dialog(turn)
        turn.reply(menu_reply(turn, "cancel.done"))
        return True
    if verb == "topic" and state in ("report_topic",):
        if arg not in turn.services.org.topic_by_id:
            return False
        turn.dialog.update(turn.now, topic=arg)
        next_step(turn)
        return True
    if verb == "topics" and state == "report_topic" and arg == "all":
        decline_guess(turn)
        turn.reply(prompt_for(turn))
        return True
    if verb == "photos" and state == "report_photos" and arg in ("skip", "done"):
        turn.dialog.update(turn.now, photos_done=True)
        next_step(turn)
        return True
    if verb == "place" and state == "report_place" and arg == "skip":
        turn.dialog.update(turn.now, address=None, lat=None, lon=None, place_done=True)
        next_step(turn)
        return True
    if verb == "confirm" and state == "report_confirm":
        if arg == "send":
            await submit_report(turn)
            return True
        if arg == "edit":
            turn.dialog.set("report_edit", turn.dialog.data, now=turn.now)
            turn.reply(prompt_for(turn))
            return True
        return False
    if verb == "edit" and state == "report_edit":
        return edit_field(turn, arg)
    if verb == "my":
        if arg == "list":
            turn.reply(await items_list(turn))
            return True
        item_id = payloads.int_arg(args, 0)
        reply = await item_details(turn, item_id) if item_id is not None else None
        if reply is None:
            return False
        turn.reply(reply)
        return True
    if verb == "comment":
        return await start_comment(turn, payloads.int_arg(args, 0))
    if verb == "poll":
        return await polls.on_poll_answer(turn, payloads.int_arg(args, 0),
                                          args[1] if len(args) > 1 else "")
    if verb == "rate":
        return await polls.on_rating(turn, payloads.int_arg(args, 0), payloads.int_arg(args, 1))
    if verb == "pollc":
        return await polls.start_comment(turn, payloads.int_arg(args, 0))
    if verb == "clarify":
        return await start_clarification(turn, payloads.int_arg(args, 0))
    if verb == "forget" and state == "forget_confirm":
        if arg == "yes":
            await privacy.forget(turn)
            return True
        turn.dialog.reset(turn.now)
        turn.reply(menu_reply(turn, "forget.kept"))
        return True
    return False


def edit_field(turn: Turn, field: str) -> bool:
    data = turn.dialog.data
    data["editing"] = True
    if field == "back":
        turn.dialog.set("report_confirm", data, now=turn.now)
    elif field == "topic":
        data.pop("topic", None)
        data["suggestion_declined"] = True  # changing it: the full screen, not the question
        turn.dialog.set("report_topic", data, now=turn.now)
    elif field == "text":
        data.pop("text", None)
        turn.dialog.set("report_text", data, now=turn.now)
    elif field == "photos":
        turn.dialog.set("report_photos", data, now=turn.now)
    elif field == "place":
        turn.dialog.set("report_place", data, now=turn.now)
    else:
        return False
    turn.reply(prompt_for(turn))
    return True


async def on_consent(turn: Turn, answer: str, consented: bool) -> None:
    t = turn.t
    if answer == "policy":
        turn.reply(Reply(t("consent.policy_text", version=PRIVACY_POLICY_VERSION),
                         title=t("consent.policy_title"),
                         buttons=[[Button(t("consent.agree"), payloads.make("consent", "yes"))],
                                  [Button(t("consent.decline"), payloads.make("consent", "no"))]]))
        return
    if answer == "no":
        turn.dialog.reset(turn.now)
        turn.reply(Reply(t("consent.declined"), remove_menu=True))
        return
    if answer != "yes":
        turn.notice = t("button.stale")
        return
    if consented:
        turn.reply(menu_reply(turn, "start.welcome_back"))
        return
    turn.session.add(Consent(account_id=turn.account.id, policy_version=PRIVACY_POLICY_VERSION,
                             given_at=turn.now))
    if turn.account.citizen_id is None:
        press = turn.press
        citizen = Citizen(name=press.display_name if press else None, created_at=turn.now)
        turn.session.add(citizen)
        await turn.session.flush()
        turn.account.citizen_id = citizen.id
    turn.dialog.reset(turn.now)
    turn.notice = t("consent.thanks_short")
    turn.reply(menu_reply(turn, "consent.thanks"))


async def cancel_dialog(turn: Turn) -> None:
    """Forget a half-done report, including photos already saved for it."""
    photo_ids = turn.dialog.data.get("photos", []) if turn.dialog.state in REPORT_STATES else []
    if photo_ids:
        attachments = (await turn.session.scalars(
            select(Attachment).where(Attachment.id.in_(photo_ids),
                                     Attachment.item_id.is_(None)))).all()
        for attachment in attachments:
            turn.delete_file_after_commit(attachment.path)
            await turn.session.delete(attachment)
    turn.dialog.reset(turn.now)


# ---------------------------------------------------------------------------------------------
# Submitting: item, history and staff notification in one transaction, then the number.

async def submit_report(turn: Turn) -> None:
    data = turn.dialog.data
    now = turn.now
    suggested, score = best_suggestion(data)
    item = await register(turn.session, turn.services, NewItem(
        kind=Kind.MESSAGE, channel=str(turn.account.platform), topic=data["topic"],
        text=data["text"], received_at=now, citizen_id=turn.account.citizen_id,
        reply_account_id=turn.account.id, address=data.get("address"),
        latitude=data.get("lat"), longitude=data.get("lon"),
        attachment_ids=tuple(data.get("photos", [])), suggested_topic=suggested,
        suggestion_score=score), Actor.CITIZEN)
    turn.dialog.reset(now)
    # Make sure the notification is durable before the citizen hears anything.
    await turn.session.flush()
    org, t = turn.services.org, turn.t
    turn.reply(Reply(
        t("report.registered", number=item.number,
          topic=org.topic_by_id[item.topic].label(t.locale),
          block=org.block_by_id[item.block_id].title,
          due=local_date(item.answer_due, turn.services.tz)),
        title=t("report.registered.title"), menu=main_menu(turn)))


async def start_comment(turn: Turn, item_id: int | None) -> bool:
    item = await own_item(turn, item_id)
    if item is None or item.status not in OPEN_STATES:
        return False
    turn.dialog.set("comment", {"item_id": item.id}, now=turn.now)
    turn.reply(prompt_for(turn))
    return True


async def start_clarification(turn: Turn, item_id: int | None) -> bool:
    item = await own_item(turn, item_id)
    if item is None or item.status != "waiting_citizen":
        return False
    turn.dialog.set("clarify", {"item_id": item.id}, now=turn.now)
    turn.reply(prompt_for(turn))
    return True
