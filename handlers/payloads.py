"""Button payloads: small typed dataclasses, packed into short strings and unpacked again.

A payload is `VERSION:tag:field:field…`, for example `1:s:take:12`. Telegram allows 64 bytes of
callback data (VK 255): `pack()` refuses anything longer, so a too-long button fails where it
is built, not in a user's chat. Integers are plain digits within 32 bits (ids are 32-bit in
PostgreSQL; a forged bigger one is no id).

Payloads are never trusted: one only says what the user asked for; its handler re-checks the
state, the role and the item. A payload that does not unpack (garbage, a forged value, a
button of a format we no longer read) is a stale button and gets «кнопка устарела».

Version 0 is the format before the prefix existed (`s:take:12`): the same fields without
`1:`. Buttons of that format are still in users' chats, so they are read, never written.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Iterable
from typing import Any, ClassVar, Self

VERSION = "1"
MAX_BYTES = 64
MAX_INT = 2**31 - 1
SEPARATOR = ":"
_BAD = object()


@functools.cache
def _shape(cls: type) -> tuple[tuple[dataclasses.Field[Any], ...], dict[str, Any]]:
    """A payload class's fields and resolved type hints (resolving them on every button
    press cost more than the rest of unpacking)."""
    return dataclasses.fields(cls), typing.get_type_hints(cls)


class Payload:
    """Subclass as a frozen dataclass with a `tag`; fields are int, str, a str Enum, or
    `int | None` with a default (an optional trailing field)."""

    tag: ClassVar[str]
    # Fields after the last one are refused (a stale button) unless a type says otherwise.
    extra_ignored: ClassVar[bool] = False

    def pack(self) -> str:
        values = [_encode(getattr(self, f.name)) for f in _shape(type(self))[0]]
        while values and values[-1] == "":
            values.pop()  # optional trailing fields left out
        raw = SEPARATOR.join([VERSION, self.tag, *values])
        if len(raw.encode()) > MAX_BYTES:
            raise ValueError(f"payload longer than {MAX_BYTES} bytes: {raw!r}")
        return raw

    @classmethod
    def unpack(cls, raw: str) -> Self | None:
        body = raw[len(VERSION) + 1:] if raw.startswith(VERSION + SEPARATOR) else raw
        if body != cls.tag and not body.startswith(cls.tag + SEPARATOR):
            return None
        rest = body[len(cls.tag) + 1:]
        texts = rest.split(SEPARATOR) if rest else []
        fields, hints = _shape(cls)
        if len(texts) > len(fields):
            if not cls.extra_ignored:
                return None
            texts = texts[:len(fields)]
        values: dict[str, Any] = {}
        for index, field in enumerate(fields):
            if index >= len(texts):
                if field.default is dataclasses.MISSING:
                    return None
                continue
            value = _decode(hints[field.name], texts[index])
            if value is _BAD:
                return None
            values[field.name] = value
        return cls(**values)


def unpack_any(raw: str, kinds: Iterable[type[Payload]]) -> Payload | None:
    """The first of these payload types that reads `raw`, or None: a stale button."""
    for kind in kinds:
        payload = kind.unpack(raw)
        if payload is not None:
            return payload
    return None


def tag_of(raw: str) -> str:
    """The first word after the version: which feature a payload belongs to."""
    body = raw[len(VERSION) + 1:] if raw.startswith(VERSION + SEPARATOR) else raw
    return body.split(SEPARATOR, 1)[0]


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"a payload field must be int or str, not {type(value).__name__}")
    text = str(value)
    if SEPARATOR in text:
        raise ValueError(f"a payload field may not contain {SEPARATOR!r}: {text!r}")
    return text


def _decode(hint: Any, text: str) -> object:
    if isinstance(hint, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        options = [h for h in typing.get_args(hint) if h is not type(None)]
        return None if text == "" else _decode(options[0], text)
    if hint is int:
        return parse_int(text)
    if hint is str:
        return text if text else _BAD
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(text)
        except ValueError:
            return _BAD
    raise TypeError(f"unsupported payload field type {hint!r}")


def parse_int(text: str) -> object:
    # Only plain digits: int() would also take "+1", "1_000" and 4,300-digit numbers.
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return _BAD
    number = int(text)
    return number if number <= MAX_INT else _BAD


class Locale(enum.StrEnum):
    RU = "ru"
    EN = "en"


@dataclasses.dataclass(frozen=True)
class Lang(Payload):
    """/lang: the language buttons, the same for citizens and staff."""

    tag: ClassVar[str] = "lang"
    locale: Locale
