"""Commands typed in a chat: "/start", "/task 2026-000001", "/help@okha_bot"."""

from __future__ import annotations


def parse_command(text: str) -> str | None:
    """The command word, lower case, without the slash and a "@bot" suffix; None if none."""
    if not text.startswith("/") or len(text) < 2:
        return None
    word = text.split(maxsplit=1)[0][1:]
    return word.split("@", 1)[0].lower()
