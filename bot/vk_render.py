"""VK rendering: a neutral `Reply` as `messages.send` calls.

VK has no markup: a title is a line of its own. A message carries one keyboard (choices win
over the menu), at most ten attachments, and text up to VK's limit; photos and documents are
uploaded first. The transport (bot/vk.py) sends what this plans and maps the errors.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

from vkbottle import (
    API,
    Callback,
    DocMessagesUploader,
    Keyboard,
    OpenLink,
    PhotoMessageUploader,
    Text,
)

from bot.platforms import VK
from handlers.events import Button, Reply
from handlers.formatting import split_text

log = logging.getLogger(__name__)
T = TypeVar("T")

TEXT_LIMIT = VK.text_limit
ATTACHMENTS_PER_MESSAGE = 10
INLINE_LIMITS = (6, 10)  # rows, buttons
KEYBOARD_LIMITS = (10, 40)
ROW_LIMIT = VK.buttons_per_row
LANG_IDS = {0: "ru", 3: "en"}  # VK client_info.lang_id → our locales


@dataclass(frozen=True)
class ClientCaps:
    """What the user's VK client said it can show (client_info of message_new)."""

    callbacks: bool = True
    inline: bool = True
    language: str | None = None

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> ClientCaps:
        actions = info.get("button_actions")
        return cls(
            callbacks=True if actions is None else "callback" in actions,
            inline=bool(info.get("inline_keyboard", True)),
            language=LANG_IDS.get(info["lang_id"]) if isinstance(info.get("lang_id"), int)
            else None,
        )


_label = VK.label


def _rows_of_five(rows: list[list[T]]) -> list[list[T]]:
    return [row[i:i + ROW_LIMIT] for row in rows for i in range(0, len(row), ROW_LIMIT)]


def buttons_keyboard(rows: list[list[Button]], caps: ClientCaps) -> str:
    """Inline when it fits VK's inline limits, otherwise a one-time keyboard under the input."""
    rows = _rows_of_five([row for row in rows if row])
    total = sum(len(row) for row in rows)
    inline = caps.inline and len(rows) <= INLINE_LIMITS[0] and total <= INLINE_LIMITS[1]
    if not inline and (len(rows) > KEYBOARD_LIMITS[0] or total > KEYBOARD_LIMITS[1]):
        flat = [button for row in rows for button in row]
        if len(flat) > KEYBOARD_LIMITS[1]:
            log.warning("VK keyboard of %d buttons cut to %d", len(flat), KEYBOARD_LIMITS[1])
        flat = flat[:KEYBOARD_LIMITS[1]]
        rows = [flat[i:i + ROW_LIMIT] for i in range(0, len(flat), ROW_LIMIT)]
    keyboard = Keyboard(one_time=not inline, inline=inline)
    for row in rows:
        keyboard.row()
        for button in row:
            label = _label(button.text)
            if button.url:
                keyboard.add(OpenLink(button.url, label))
            elif caps.callbacks:
                keyboard.add(Callback(label, {"p": button.payload}))
            else:  # old clients: a text button whose payload comes back with the message
                keyboard.add(Text(label, {"p": button.payload}))
    return keyboard.get_json()


def menu_keyboard(menu: list[list[str]]) -> str:
    keyboard = Keyboard(one_time=False, inline=False)
    for row in _rows_of_five(menu)[:KEYBOARD_LIMITS[0]]:
        keyboard.row()
        for text in row:
            keyboard.add(Text(_label(text)))
    return keyboard.get_json()


def empty_keyboard() -> str:
    return Keyboard(one_time=True).get_json()


def compose_text(reply: Reply) -> str:
    """VK has no markup: the title is a line of its own, monospace stays as is."""
    parts = [part for part in (reply.title, reply.text) if part]
    parts += [photo.caption for photo in reply.photos if photo.caption]
    return "\n\n".join(parts)


async def render(api: API, peer_id: int, reply: Reply, caps: ClientCaps) -> list[dict[str, Any]]:
    """The `messages.send` parameters of each message a reply becomes, in order."""
    text = compose_text(reply)
    messages: list[dict[str, Any]] = [
        {"message": chunk} for chunk in split_text(text, TEXT_LIMIT) if chunk.strip()]
    attachments = await upload(api, peer_id, reply)
    groups = [attachments[i:i + ATTACHMENTS_PER_MESSAGE]
              for i in range(0, len(attachments), ATTACHMENTS_PER_MESSAGE)]
    if not messages and (groups or reply.location):
        messages.append({})
    if not messages:
        return []  # nothing VK could show (a keyboard alone is not a message)
    if groups:
        messages[-1]["attachment"] = ",".join(groups[0])
        messages += [{"attachment": ",".join(group)} for group in groups[1:]]
    if reply.location is not None:
        messages[-1]["lat"] = reply.location.latitude
        messages[-1]["long"] = reply.location.longitude
    keyboard = keyboard_of(reply, caps)
    if keyboard is not None:
        messages[-1]["keyboard"] = keyboard
    return messages


def keyboard_of(reply: Reply, caps: ClientCaps) -> str | None:
    # A VK message carries one keyboard: choices win over the menu.
    if any(reply.buttons):
        return buttons_keyboard(reply.buttons, caps)
    if reply.menu:
        return menu_keyboard(reply.menu)
    if reply.remove_menu:
        return empty_keyboard()
    return None


async def upload(api: API, peer_id: int, reply: Reply) -> list[str]:
    attachments: list[str] = []
    for photo in reply.photos:
        if not photo.path.is_file():
            log.warning("photo for peer %s is gone from disk, sent without it", peer_id)
            continue
        attachments.append(await PhotoMessageUploader(api).upload(
            file_source=str(photo.path), peer_id=peer_id))
    document = reply.document
    if document is not None:
        if document.path.is_file():
            attachments.append(await DocMessagesUploader(api).upload(
                file_source=str(document.path), peer_id=peer_id, title=document.filename))
        else:
            log.warning("document for peer %s is gone from disk", peer_id)
    return attachments


def random_id(dedupe_id: int | None, part: int) -> int:
    """VK drops a repeated random_id for the same peer: an outbox row retried after a crash
    between the send and the mark is then delivered once. Direct replies get a random one."""
    if dedupe_id is None:
        return secrets.randbelow(2**31 - 1) + 1
    return (dedupe_id * 16 + part) % (2**31 - 1) + 1
