"""Button payloads: short "verb:arg:arg" strings (Telegram allows 64 bytes).

They are never trusted: a payload only says what the user asked for; the handler re-checks
the state, the role and the item before doing anything.
"""

from __future__ import annotations

MAX_BYTES = 64
MAX_INT = 2**31 - 1  # ids are 32-bit integers in PostgreSQL; a forged bigger one is no id


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
        value = args[index]
    except IndexError:
        return None
    # Only plain digits: int() would also take "+1", "1_000" and 4,300-digit numbers.
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if number <= MAX_INT else None
