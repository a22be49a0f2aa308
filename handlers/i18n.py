"""User-facing texts from the gettext catalogs in locales/ (Russian primary, English second).

Message ids are stable keys (e.g. "citizen.menu.report"); both catalogs translate every key.
Translate first, then format: the placeholders are filled after the lookup.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel.messages.pofile import read_po

import locales

LOCALES_DIR = Path(locales.__file__).parent
DOMAIN = "mcu"
SUPPORTED = ("ru", "en")
DEFAULT = "ru"


@cache
def catalog(locale: str) -> dict[str, str]:
    path = LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as handle:
        parsed = read_po(handle, locale=locale)
    return {str(m.id): str(m.string) for m in parsed if m.id and m.string}


def normalise_locale(value: str | None) -> str:
    if value and value.split("-")[0].lower() in SUPPORTED:
        return value.split("-")[0].lower()
    return DEFAULT


class Translator:
    def __init__(self, locale: str) -> None:
        self.locale = normalise_locale(locale)
        self._own = catalog(self.locale)
        self._fallback = catalog(DEFAULT)

    def __call__(self, key: str, **values: object) -> str:
        text = self._own.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text

    def all_variants(self, key: str) -> set[str]:
        """The text of a key in every locale, to recognise menu buttons whatever the language."""
        return {catalog(loc).get(key, key) for loc in SUPPORTED}


def translator(locale: str | None) -> Translator:
    return Translator(normalise_locale(locale))
