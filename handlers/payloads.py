"""Button payloads: short "verb:arg:arg" strings (Telegram allows 64 bytes).

They are never trusted: a payload only says what the user asked for; the handler re-checks
the state, the role and the item before doing anything.
"""

from __future__ import annotations

MAX_BYTES = 64


def make(verb: str, *args: object) -> str:
    payload = ":".join([verb, *(str(a) for a in args)])
    if len(payload.encode()) > MAX_BYTES:
        raise ValueError(f"payload too long: {payload!r}")
    return payload


def parse(payload: str) -> tuple[str, list[str]]:
    verb, *args = payload.split(":")
    return verb, args


def int_arg(args: list[str], index: int) -> int | None:
    try:
        return int(args[index])
    except (IndexError, ValueError):
        return None
