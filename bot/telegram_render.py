"""Telegram rendering: a neutral `Reply` as Bot API calls (HTML parse mode).

Pure presentation: which parts a reply becomes, where the keyboards ride, how text is
escaped and cut. The transport (bot/telegram.py) sends the parts and maps the errors.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass, field
from typing import Literal

from aiogram import Bot
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.platforms import TELEGRAM
from handlers.events import Location, OutgoingPhoto, Reply
from handlers.formatting import cut_point

TEXT_LIMIT = TELEGRAM.text_limit
CAPTION_LIMIT = 1024
ALBUM_MAX = 10  # sendMediaGroup takes 2–10 items

Markup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove


@dataclass
class Part:
    """One Bot API call of a rendered reply."""

    kind: Literal["text", "photo", "album", "location", "document"]
    html: str = ""
    photos: list[tuple[OutgoingPhoto, bytes]] = field(default_factory=list)
    location: Location | None = None
    document: tuple[str, bytes] | None = None
    markup: Markup | None = None


async def plan_parts(reply: Reply) -> list[Part]:
    """Order: photos, text, location, document.

    Telegram allows one reply_markup per message and none on albums. Inline buttons go on the
    last text message (or the last message that can carry them). A menu change (reply keyboard
    or its removal) rides alone on that message when there are no inline buttons; when there
    are, the menu goes on another message of the reply, or the text is cut in two at its last
    paragraph break (else after the title, else at the last line break): the menu with the
    head, the inline buttons with the tail, next to the question they answer. A one-line text
    with both keeps only the inline buttons; the menu comes back with the next menu reply.
    """
    inline = inline_keyboard(reply)
    keyboard = menu_keyboard(reply)
    parts: list[Part] = []
    loaded = [(photo, await asyncio.to_thread(photo.path.read_bytes)) for photo in reply.photos]
    for start in range(0, len(loaded), ALBUM_MAX):
        group = loaded[start:start + ALBUM_MAX]
        parts.append(Part("photo" if len(group) == 1 else "album", photos=group))
    text_parts = [Part("text", chunk) for chunk in
                  html_chunks(reply.text, title=reply.title, monospace=reply.monospace)]
    parts.extend(text_parts)
    if reply.location is not None:
        parts.append(Part("location", location=reply.location))
    if reply.document is not None:
        data = await asyncio.to_thread(reply.document.path.read_bytes)
        parts.append(Part("document", document=(reply.document.filename, data)))
    if not parts or (inline is None and keyboard is None):
        return parts
    capable = [p for p in parts if p.kind != "album"]
    if not capable:  # albums only: the buttons need a message of their own
        parts.append(Part("text", "⬆️"))
        capable = parts[-1:]
    texts = [p for p in capable if p.kind == "text"]
    holder = texts[-1] if texts else capable[-1]
    if inline is None or keyboard is None:
        holder.markup = inline or keyboard
        return parts
    holder.markup = inline
    others = [p for p in capable if p is not holder]
    if others:
        others[0].markup = keyboard
        return parts
    halves = head_and_tail(reply) if holder.kind == "text" else None
    if halves is not None:
        at = parts.index(holder)
        parts[at:at + 1] = [Part("text", halves[0], markup=keyboard),
                            Part("text", halves[1], markup=inline)]
    return parts


def head_and_tail(reply: Reply) -> tuple[str, str] | None:
    text = reply.text.strip()
    for separator in ("\n\n", "title", "\n"):
        if separator == "title":
            if reply.title and text:
                return render_html("", reply.title, False), render_html(text, None,
                                                                          reply.monospace)
            continue
        at = text.rfind(separator)
        if at > 0:
            head, tail = text[:at].rstrip(), text[at + len(separator):].lstrip()
            if head and tail:
                return (render_html(head, reply.title, reply.monospace),
                        render_html(tail, None, reply.monospace))
    return None


def inline_keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    rows = [[InlineKeyboardButton(text=b.text, url=b.url) if b.url
             else InlineKeyboardButton(text=b.text, callback_data=b.payload) for b in row]
            for row in reply.buttons if row]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def menu_keyboard(reply: Reply) -> ReplyKeyboardMarkup | ReplyKeyboardRemove | None:
    if reply.menu:
        rows = [[KeyboardButton(text=label) for label in row] for row in reply.menu if row]
        return ReplyKeyboardMarkup(keyboard=rows, resize_keyboard=True, is_persistent=True)
    if reply.remove_menu:
        return ReplyKeyboardRemove()
    return None


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def render_html(text: str, title: str | None, monospace: bool) -> str:
    body = escape(text)
    if monospace and text:
        body = f"<pre>{body}</pre>"
    if title:
        head = f"<b>{escape(title)}</b>"
        return f"{head}\n{body}" if body else head
    return body


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def html_cost(char: str) -> int:
    """What one character of plain text costs in a message: its escape, in UTF-16 units."""
    return utf16_len(escape(char))


def html_chunks(text: str, *, title: str | None = None, monospace: bool = False,
                limit: int = TEXT_LIMIT) -> list[str]:
    """Escaped messages of at most `limit` UTF-16 units of markup, cut at line breaks.

    Cutting the plain text before escaping never splits an entity or a tag. The limit is
    applied to the markup, which is never shorter than what Telegram counts, so it is safe.
    """
    chunks: list[str] = []
    rest = text
    first = True
    while True:
        own_title = title if first else None
        whole = render_html(rest, own_title, monospace)
        if utf16_len(whole) <= limit:
            if rest.strip() or own_title:
                chunks.append(whole)
            return chunks
        overhead = (utf16_len(f"<b>{escape(own_title)}</b>\n") if own_title else 0) + (
            len("<pre></pre>") if monospace else 0)
        end, resume = cut_point(rest, max(limit - overhead, 8), html_cost)
        piece = rest[:end]
        if piece.strip() or own_title:
            chunks.append(render_html(piece, own_title, monospace))
        rest = rest[resume:]
        first = False


def caption_html(caption: str | None) -> str | None:
    if not caption:
        return None
    rendered = escape(caption)
    if utf16_len(rendered) <= CAPTION_LIMIT:
        return rendered
    end, _ = cut_point(caption, CAPTION_LIMIT - 1, html_cost)
    return escape(caption[:end].rstrip()) + "…"


async def send_part(bot: Bot, chat: int | str, part: Part) -> None:
    if part.kind == "text":
        await bot.send_message(chat, part.html, reply_markup=part.markup)
    elif part.kind == "photo":
        photo, data = part.photos[0]
        await bot.send_photo(chat, BufferedInputFile(data, photo.path.name),
                             caption=caption_html(photo.caption), reply_markup=part.markup)
    elif part.kind == "album":
        await bot.send_media_group(chat, [
            InputMediaPhoto(media=BufferedInputFile(data, photo.path.name),
                            caption=caption_html(photo.caption))
            for photo, data in part.photos])
    elif part.kind == "location":
        assert part.location is not None
        await bot.send_location(chat, part.location.latitude, part.location.longitude,
                                reply_markup=part.markup)
    else:
        assert part.document is not None
        filename, data = part.document
        await bot.send_document(chat, BufferedInputFile(data, filename),
                                reply_markup=part.markup)


def chat_key(chat_id: str) -> int | str:
    """Telegram chat ids are integers; '@channel' names stay strings."""
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
