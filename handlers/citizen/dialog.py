"""The citizen's conversation: consent, the menu, reporting a problem, «Мои обращения»."""

from __future__ import annotations

from handlers.accounts import active_consent
from handlers.citizen import my_items, polls, privacy
from handlers.citizen.common import main_menu, menu_reply
from handlers.citizen.items_view import items_list
from handlers.citizen.my_items import clarify_prompt, comment_prompt
from handlers.citizen.payloads import (
    AllTopics,
    CancelReport,
    ChooseTopic,
    Confirm,
    ConfirmAction,
    Consent,
    ConsentAnswer,
    Edit,
    Photos,
    PhotosAction,
    ReportField,
    SkipPlace,
)
from handlers.citizen.replies import apply_clarification, apply_comment
from handlers.citizen.states import ConsentState, ItemState, PollState, PrivacyState, ReportState
from handlers.citizen.topic_choice import (
    best_suggestion,
    decline_guess,
    remember_suggestions,
    topic_screen,
)
from handlers.commands import parse_command
from handlers.context import PRIVACY_POLICY_VERSION
from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_date, map_link
from handlers.items import NewItem
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.payloads import Lang, Locale, Payload, unpack_any
from handlers.photos import discard_unsent, store_photos
from handlers.registration import register
from handlers.routing import Router, dispatch, payload_kinds
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from handlers.turn import Turn
from storage.models import Citizen
from storage.models import Consent as ConsentRecord

ADDRESS_MIN, ADDRESS_MAX = 3, 500
REPORT_STATES = tuple(ReportState)


# ---------------------------------------------------------------------------------------------
# Keyboards

def consent_reply(turn: Turn) -> Reply:
    t = turn.t
    return Reply(
        t("consent.request"),
        title=t("start.greeting.title"),
        buttons=[[Button(t("consent.agree"), Consent(ConsentAnswer.YES).pack())],
                 [Button(t("consent.policy"), Consent(ConsentAnswer.POLICY).pack())],
                 [Button(t("consent.decline"), Consent(ConsentAnswer.NO).pack())]],
        remove_menu=True,
    )


def topic_buttons(turn: Turn) -> list[list[Button]]:
    topics = turn.services.org.topics
    buttons = [Button(topic.label(turn.t.locale), ChooseTopic(topic.id).pack())
               for topic in topics]
    return [buttons[i:i + 2] for i in range(0, len(buttons), 2)]


def cancel_row(turn: Turn) -> list[Button]:
    return [Button(turn.t("button.cancel"), CancelReport().pack())]


# ---------------------------------------------------------------------------------------------
# Step prompts: each says what is accepted at this step.

def prompt_for(turn: Turn) -> Reply:
    t = turn.t
    state, data = turn.dialog.state, turn.dialog.data
    if state == ReportState.TOPIC:
        if data.get("text"):  # the citizen wrote first: the suggestions lead
            return topic_screen(turn, cancel_row(turn))
        return Reply(t("report.ask_topic"), buttons=[*topic_buttons(turn), cancel_row(turn)])
    if state == ReportState.TEXT:
        return Reply(t("report.ask_text", min=TEXT_MIN, max=TEXT_MAX), buttons=[cancel_row(turn)])
    if state == ReportState.PHOTOS:
        count = len(data.get("photos", []))
        key = "report.ask_photos_more" if count else "report.ask_photos"
        action = PhotosAction.DONE if count else PhotosAction.SKIP
        label = t("button.done") if count else t("button.skip")
        return Reply(t(key, count=count, max=MAX_PHOTOS),
                     buttons=[[Button(label, Photos(action).pack())], cancel_row(turn)])
    if state == ReportState.PLACE:
        return Reply(t("report.ask_place"),
                     buttons=[[Button(t("button.skip"), SkipPlace().pack())], cancel_row(turn)])
    if state == ReportState.CONFIRM:
        return confirm_reply(turn)
    if state == ReportState.EDIT:
        def edit(key: str, field: ReportField) -> Button:
            return Button(t(key), Edit(field).pack())
        return Reply(t("report.edit_what"), buttons=[
            [edit("report.field.topic", ReportField.TOPIC),
             edit("report.field.text", ReportField.TEXT)],
            [edit("report.field.photos", ReportField.PHOTOS),
             edit("report.field.place", ReportField.PLACE)],
            [edit("button.back", ReportField.BACK)]])
    if state == ItemState.COMMENT:
        return comment_prompt(turn)
    if state == ItemState.CLARIFY:
        return clarify_prompt(turn)
    if state == PollState.COMMENT:
        return Reply(t("poll.comment_ask"))
    if state == PrivacyState.FORGET_CONFIRM:
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
        [Button(t("button.send"), Confirm(ConfirmAction.SEND).pack())],
        [Button(t("button.edit"), Confirm(ConfirmAction.EDIT).pack()), cancel_row(turn)[0]]])


def next_step(turn: Turn) -> None:
    """Move to the first step still missing, or to the confirmation (also after an edit)."""
    data = turn.dialog.data
    if (data.get("editing") or data.get("place_done")) and "topic" in data and "text" in data:
        turn.dialog.set(ReportState.CONFIRM, data, now=turn.now)
        turn.reply(prompt_for(turn))
        return
    if "topic" not in data:
        state = ReportState.TOPIC
    elif "text" not in data:
        state = ReportState.TEXT
    elif not data.get("photos_done"):
        state = ReportState.PHOTOS
    elif not data.get("place_done"):
        state = ReportState.PLACE
    else:
        state = ReportState.CONFIRM
    if state == ReportState.TOPIC:
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
        if turn.dialog.state == ConsentState.ASKED:
            turn.say("consent.required")
        turn.dialog.set(ConsentState.ASKED, now=turn.now)
        turn.reply(consent_reply(turn))
        return
    if text and await on_menu_text(turn, text):
        return
    await on_content(turn, message)


async def on_command(turn: Turn, command: str, consented: bool) -> None:
    if command == "start":
        if consented:
            turn.reply(menu_reply(turn, "start.welcome_back"))
        else:
            turn.dialog.set(ConsentState.ASKED, now=turn.now)
            turn.reply(consent_reply(turn))
        return
    if command == "help":
        turn.reply(Reply(turn.t("help.citizen"), menu=main_menu(turn) if consented else None))
        return
    if command == "lang":
        turn.reply(language_choice(turn))
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
        turn.dialog.set(PrivacyState.FORGET_CONFIRM, now=turn.now)
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
    turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
    next_step(turn)


# ---------------------------------------------------------------------------------------------
# Content: text, photos, locations, things we do not accept

async def on_content(turn: Turn, message: IncomingMessage) -> None:
    state = turn.dialog.state
    if message.unsupported is not None:
        turn.say("input.unsupported", what=turn.t(f"content.{message.unsupported}"))
        turn.reply(prompt_for(turn))
        return
    if state == ItemState.CLARIFY:
        await apply_clarification(turn, message)
        return
    if state == ItemState.COMMENT:
        await apply_comment(turn, message)
        return
    if state == PollState.COMMENT and message.text:
        await polls.take_comment(turn, message.text.strip())
        return
    if state == ReportState.TEXT or (state == ReportState.TOPIC and message.text):
        await take_text(turn, message)
        return
    if state == ReportState.TOPIC and message.photos:
        # More photos of an album whose caption started the report: keep them all.
        refused = await store_photos(turn, message)
        if refused:
            turn.say("report.photos_limit", max=MAX_PHOTOS)
        return
    if state == ReportState.PHOTOS:
        await take_photos(turn, message)
        return
    if state == ReportState.PLACE:
        await take_place(turn, message)
        return
    if state in (ReportState.CONFIRM, ReportState.EDIT, PrivacyState.FORGET_CONFIRM,
                 ConsentState.ASKED):
        turn.say("input.use_buttons")
        turn.reply(prompt_for(turn))
        return
    # Idle: a citizen who starts by writing is asked for the topic afterwards, text kept.
    if message.text and not text_fits(turn, message.text):
        return
    if message.text or message.photos:
        data = {"text": message.text.strip()} if message.text else {}
        turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
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
        if message.photos and turn.dialog.state == ReportState.TEXT:
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
            turn.dialog.set(ReportState.PLACE, turn.dialog.data, now=turn.now)
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
    payload = unpack_any(press.payload, (*OPEN_KINDS, *payload_kinds(ROUTERS)))
    if isinstance(payload, Consent):
        await on_consent(turn, payload.answer, consented)
        return
    if isinstance(payload, Lang):
        turn.account.locale = payload.locale.value
        turn.t = type(turn.t)(payload.locale.value)
        turn.reply(Reply(turn.t("lang.changed"), menu=main_menu(turn) if consented else None))
        return
    if not consented:
        turn.notice = turn.t("consent.required_short")
        turn.reply(consent_reply(turn))
        return
    if payload is None or not await dispatch(turn, payload, ROUTERS):
        turn.notice = turn.t("button.stale")
        turn.say("button.stale_long")
        turn.reply(prompt_for(turn))


def language_choice(turn: Turn) -> Reply:
    return Reply(turn.t("lang.choose"), buttons=[[Button("Русский", Lang(Locale.RU).pack()),
                                                  Button("English", Lang(Locale.EN).pack())]])


# ---------------------------------------------------------------------------------------------
# The report's buttons

report = Router[Turn]("citizen report")


@report.on(CancelReport)
async def on_cancel(turn: Turn, payload: CancelReport) -> bool:
    await cancel_dialog(turn)
    turn.reply(menu_reply(turn, "cancel.done"))
    return True


@report.on(ChooseTopic)
async def on_topic(turn: Turn, payload: ChooseTopic) -> bool:
    if turn.dialog.state != ReportState.TOPIC or payload.topic not in turn.services.org.topic_by_id:
        return False
    turn.dialog.update(turn.now, topic=payload.topic)
    next_step(turn)
    return True


@report.on(AllTopics)
async def on_all_topics(turn: Turn, payload: AllTopics) -> bool:
    if turn.dialog.state != ReportState.TOPIC:
        return False
    decline_guess(turn)
    turn.reply(prompt_for(turn))
    return True


@report.on(Photos)
async def on_photos_done(turn: Turn, payload: Photos) -> bool:
    if turn.dialog.state != ReportState.PHOTOS:
        return False
    turn.dialog.update(turn.now, photos_done=True)
    next_step(turn)
    return True


@report.on(SkipPlace)
async def on_skip_place(turn: Turn, payload: SkipPlace) -> bool:
    if turn.dialog.state != ReportState.PLACE:
        return False
    turn.dialog.update(turn.now, address=None, lat=None, lon=None, place_done=True)
    next_step(turn)
    return True


@report.on(Confirm)
async def on_confirm(turn: Turn, payload: Confirm) -> bool:
    if turn.dialog.state != ReportState.CONFIRM:
        return False
    if payload.action is ConfirmAction.SEND:
        await submit_report(turn)
    else:
        turn.dialog.set(ReportState.EDIT, turn.dialog.data, now=turn.now)
        turn.reply(prompt_for(turn))
    return True


@report.on(Edit)
async def on_edit(turn: Turn, payload: Edit) -> bool:
    if turn.dialog.state != ReportState.EDIT:
        return False
    data = turn.dialog.data
    data["editing"] = True
    field = payload.field
    if field is ReportField.BACK:
        turn.dialog.set(ReportState.CONFIRM, data, now=turn.now)
    elif field is ReportField.TOPIC:
        data.pop("topic", None)
        data["suggestion_declined"] = True  # changing it: the full screen, not the question
        turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
    elif field is ReportField.TEXT:
        data.pop("text", None)
        turn.dialog.set(ReportState.TEXT, data, now=turn.now)
    elif field is ReportField.PHOTOS:
        turn.dialog.set(ReportState.PHOTOS, data, now=turn.now)
    else:
        turn.dialog.set(ReportState.PLACE, data, now=turn.now)
    turn.reply(prompt_for(turn))
    return True


async def on_consent(turn: Turn, answer: ConsentAnswer, consented: bool) -> None:
    t = turn.t
    if answer is ConsentAnswer.POLICY:
        turn.reply(Reply(t("consent.policy_text", version=PRIVACY_POLICY_VERSION),
                         title=t("consent.policy_title"),
                         buttons=[[Button(t("consent.agree"), Consent(ConsentAnswer.YES).pack())],
                                  [Button(t("consent.decline"),
                                          Consent(ConsentAnswer.NO).pack())]]))
        return
    if answer is ConsentAnswer.NO:
        turn.dialog.reset(turn.now)
        turn.reply(Reply(t("consent.declined"), remove_menu=True))
        return
    if consented:
        turn.reply(menu_reply(turn, "start.welcome_back"))
        return
    turn.session.add(ConsentRecord(account_id=turn.account.id,
                                   policy_version=PRIVACY_POLICY_VERSION, given_at=turn.now))
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
    if turn.dialog.state in REPORT_STATES:
        await discard_unsent(turn, turn.dialog.data.get("photos", []))
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


# Consent and the language work before consent is given (on_button); everything else needs it.
OPEN_KINDS: tuple[type[Payload], ...] = (Consent, Lang)
# The citizen's features, in one place: a new button type is routed by adding it to one of them.
ROUTERS: tuple[Router[Turn], ...] = (report, my_items.router, privacy.router, polls.router)
