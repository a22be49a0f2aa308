"""The citizen's report: the step table (topic, text, photos, place) run by the wizard, the
confirmation with edit, the report's buttons, and the registration. Each step's prompt says what
it accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handlers.citizen.common import main_menu, menu_reply
from handlers.citizen.payloads import (
    AllTopics,
    CancelReport,
    ChooseTopic,
    Confirm,
    ConfirmAction,
    Photos,
    PhotosAction,
    ReportField,
    SkipPlace,
)
from handlers.citizen.payloads import Edit as EditField
from handlers.citizen.states import ReportState
from handlers.citizen.topic_choice import (
    best_suggestion,
    decline_guess,
    remember_suggestions,
    topic_screen,
)
from handlers.events import Button, IncomingMessage, Reply
from handlers.formatting import local_date, map_link
from handlers.items import NewItem
from handlers.limits import MAX_PHOTOS, TEXT_MAX, TEXT_MIN
from handlers.org import Organisation
from handlers.photos import store_photos
from handlers.registration import register
from handlers.routing import Router
from handlers.rules.deadlines import Kind
from handlers.rules.lifecycle import Actor
from handlers.turn import Turn
from handlers.wizard import Accepts, Edit, Step, Wizard, text_length

ADDRESS_MIN, ADDRESS_MAX = 3, 500


def topic_buttons(turn: Turn) -> list[list[Button]]:
    org, locale = turn.services.org, turn.t.locale
    cached = _topic_buttons.get((id(org), locale))
    if cached is None or cached[0] is not org:
        buttons = [Button(topic.label(locale), ChooseTopic(topic.id).pack())
                   for topic in org.topics]
        if len(_topic_buttons) > 16:
            _topic_buttons.clear()
        cached = _topic_buttons[(id(org), locale)] = (
            org, [buttons[i:i + 2] for i in range(0, len(buttons), 2)])
    return [list(row) for row in cached[1]]


# The topic keyboard of each organisation and locale, built once: most reports start with it.
_topic_buttons: dict[tuple[int, str], tuple[Organisation, list[list[Button]]]] = {}


def cancel_button(turn: Turn) -> Button:
    return Button(turn.t("button.cancel"), CancelReport().pack())


# ---------------------------------------------------------------------------------------------
# Prompts (the wizard adds the cancel row)

def ask_topic(turn: Turn) -> Reply:
    if turn.dialog.data.get("text"):  # the citizen wrote first: the suggestions lead
        return topic_screen(turn)
    return Reply(turn.t("report.ask_topic"), buttons=topic_buttons(turn))


def ask_text(turn: Turn) -> Reply:
    return Reply(turn.t("report.ask_text", min=TEXT_MIN, max=TEXT_MAX))


def ask_photos(turn: Turn) -> Reply:
    t = turn.t
    count = len(turn.dialog.data.get("photos", []))
    key = "report.ask_photos_more" if count else "report.ask_photos"
    action = PhotosAction.DONE if count else PhotosAction.SKIP
    label = t("button.done") if count else t("button.skip")
    return Reply(t(key, count=count, max=MAX_PHOTOS),
                 buttons=[[Button(label, Photos(action).pack())]])


def ask_place(turn: Turn) -> Reply:
    return Reply(turn.t("report.ask_place"),
                 buttons=[[Button(turn.t("button.skip"), SkipPlace().pack())]])


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
        [Button(t("button.edit"), Confirm(ConfirmAction.EDIT).pack()), cancel_button(turn)]])


def edit_reply(turn: Turn) -> Reply:
    t = turn.t

    def edit(key: str, field: ReportField) -> Button:
        return Button(t(key), EditField(field).pack())
    return Reply(t("report.edit_what"), buttons=[
        [edit("report.field.topic", ReportField.TOPIC),
         edit("report.field.text", ReportField.TEXT)],
        [edit("report.field.photos", ReportField.PHOTOS),
         edit("report.field.place", ReportField.PLACE)],
        [edit("button.back", ReportField.BACK)]])


# ---------------------------------------------------------------------------------------------
# Inputs

def text_fits(turn: Turn, text: str) -> bool:
    invalid = text_length(text.strip())
    if invalid is not None:
        turn.say(invalid.key, **invalid.args)
    return invalid is None


async def take_topic_step(turn: Turn, message: IncomingMessage) -> None:
    if message.text:  # a new text while the topic is asked: it replaces the text
        await take_text(turn, message)
    elif message.photos:
        # More photos of an album whose caption started the report: keep them all.
        refused = await store_photos(turn, message)
        if refused:
            turn.say("report.photos_limit", max=MAX_PHOTOS)
    else:
        turn.reply(menu_reply(turn, "menu.prompt"))


async def take_text(turn: Turn, message: IncomingMessage) -> None:
    if not message.text:
        if message.photos and turn.dialog.state == ReportState.TEXT:
            await store_photos(turn, message)
            turn.say("report.photo_kept_need_text")
            return
        WIZARD.show(turn)
        return
    if not text_fits(turn, message.text):
        WIZARD.show(turn)
        return
    turn.dialog.update(turn.now, text=message.text.strip())
    if message.photos:
        await store_photos(turn, message)
    WIZARD.advance(turn)


async def take_photos(turn: Turn, message: IncomingMessage) -> None:
    if not message.photos:
        if message.location is not None or message.text:
            # Skipping ahead is fine: treat it as the place.
            turn.dialog.update(turn.now, photos_done=True)
            turn.dialog.set(ReportState.PLACE, turn.dialog.data, now=turn.now)
            await take_place(turn, message)
            return
        WIZARD.show(turn)
        return
    refused = await store_photos(turn, message)
    count = len(turn.dialog.data.get("photos", []))
    if refused:
        turn.say("report.photos_limit", max=MAX_PHOTOS)
    if count >= MAX_PHOTOS:
        WIZARD.fill(turn, photos_done=True)
        return
    WIZARD.show(turn)


async def take_place(turn: Turn, message: IncomingMessage) -> None:
    if message.location is not None:
        WIZARD.fill(turn, lat=message.location.latitude, lon=message.location.longitude,
                    address=None, place_done=True)
        return
    address = (message.text or "").strip()
    if not address:
        WIZARD.show(turn)
        return
    if not ADDRESS_MIN <= len(address) <= ADDRESS_MAX:
        turn.say("report.address_length", min=ADDRESS_MIN, max=ADDRESS_MAX)
        WIZARD.show(turn)
        return
    WIZARD.fill(turn, address=address, lat=None, lon=None, place_done=True)


# ---------------------------------------------------------------------------------------------
# The table

def flag(key: str) -> Callable[[dict[str, Any]], bool]:
    """A step done when its key is true (photos and place are done even when skipped)."""
    return lambda data: bool(data.get(key))


WIZARD = Wizard(
    steps=(
        Step(ReportState.TOPIC, "topic", ask_topic, Accepts.TEXT | Accepts.PHOTO | Accepts.BUTTON,
             take=take_topic_step, enter=remember_suggestions),
        Step(ReportState.TEXT, "text", ask_text, Accepts.TEXT | Accepts.PHOTO, take=take_text),
        # A text or a location instead of photos is the place: photos are skipped.
        Step(ReportState.PHOTOS, "photos_done", ask_photos, Accepts.PHOTO | Accepts.BUTTON
             | Accepts.TEXT | Accepts.LOCATION,
             take=take_photos, done=flag("photos_done")),
        Step(ReportState.PLACE, "place_done", ask_place, Accepts.TEXT | Accepts.LOCATION,
             take=take_place, done=flag("place_done")),
    ),
    confirm_state=ReportState.CONFIRM, edit_state=ReportState.EDIT, confirm=confirm_reply,
    edit_screen=edit_reply, cancel_button=cancel_button,
    lost=lambda turn: menu_reply(turn, "menu.prompt"),
    edits={
        # Changing the topic: the full screen, not the question.
        ReportField.TOPIC: Edit(("topic",), {"suggestion_declined": True}, ReportState.TOPIC),
        ReportField.TEXT: Edit(("text",), goto=ReportState.TEXT),
        ReportField.PHOTOS: Edit(goto=ReportState.PHOTOS),
        ReportField.PLACE: Edit(goto=ReportState.PLACE),
        ReportField.BACK: Edit(goto=ReportState.CONFIRM),
    })


async def start_report(turn: Turn, data: dict[str, object]) -> None:
    WIZARD.start(turn, data)


async def start_with_message(turn: Turn, message: IncomingMessage) -> None:
    """A citizen who starts by writing is asked for the topic afterwards, text kept."""
    data = {"text": message.text.strip()} if message.text else {}
    turn.dialog.set(ReportState.TOPIC, data, now=turn.now)
    await store_photos(turn, message)  # a photo with a caption keeps both
    WIZARD.advance(turn)


async def cancel_dialog(turn: Turn) -> None:
    """Forget a half-done report, including photos already saved for it."""
    await WIZARD.cancel(turn)


# ---------------------------------------------------------------------------------------------
# The report's buttons

router = Router[Turn]("citizen report")


@router.on(CancelReport)
async def on_cancel(turn: Turn, payload: CancelReport) -> bool:
    await cancel_dialog(turn)
    turn.reply(menu_reply(turn, "cancel.done"))
    return True


@router.on(ChooseTopic)
async def on_topic(turn: Turn, payload: ChooseTopic) -> bool:
    return (payload.topic in turn.services.org.topic_by_id
            and WIZARD.answer(turn, "topic", payload.topic))


@router.on(AllTopics)
async def on_all_topics(turn: Turn, payload: AllTopics) -> bool:
    if turn.dialog.state != ReportState.TOPIC:
        return False
    decline_guess(turn)
    WIZARD.show(turn)
    return True


@router.on(Photos)
async def on_photos_done(turn: Turn, payload: Photos) -> bool:
    return WIZARD.answer(turn, "photos_done", True)


@router.on(SkipPlace)
async def on_skip_place(turn: Turn, payload: SkipPlace) -> bool:
    if turn.dialog.state != ReportState.PLACE:
        return False
    return WIZARD.fill(turn, address=None, lat=None, lon=None, place_done=True)


@router.on(Confirm)
async def on_confirm(turn: Turn, payload: Confirm) -> bool:
    if payload.action is ConfirmAction.EDIT:
        return WIZARD.to_edit(turn)
    if turn.dialog.state != ReportState.CONFIRM:
        return False
    await submit_report(turn)
    return True


@router.on(EditField)
async def on_edit(turn: Turn, payload: EditField) -> bool:
    return WIZARD.edit(turn, payload.field)


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
