"""Which column of an exported file holds what, and which topic an outside category means.

Each channel has default Russian headers (documented in the README); a mapping file renames
them:

    [columns]
    number = "№ обращения"
    text = ["Текст обращения", "Описание"]   # the first one found in the file is used

    [options]
    date_format = "%d/%m/%Y %H:%M"           # tried before the usual formats
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from handlers.operator.tabular import TableError
from handlers.org import OTHER_TOPIC, Organisation

FIELDS = ("number", "received", "text", "category", "address", "name", "phone", "email",
          "postal_address", "link", "kind")
REQUIRED = ("number", "received", "text")

COMMON_HEADERS: dict[str, tuple[str, ...]] = {
    "number": ("Номер",),
    "received": ("Дата поступления",),
    "text": ("Текст",),
    "category": ("Категория",),
    "address": ("Адрес",),
    "name": ("ФИО",),
    "phone": ("Телефон",),
    "email": ("Email", "E-mail"),
    "postal_address": ("Почтовый адрес",),
    "link": ("Ссылка",),
    "kind": ("Вид",),
}
# What each system's own export tends to call the same columns (accepted as well).
CHANNEL_HEADERS: dict[str, dict[str, tuple[str, ...]]] = {
    "pos": {"number": ("Номер сообщения",), "received": ("Дата создания",),
            "text": ("Текст сообщения",)},
    "incident_management": {"number": ("Номер инцидента",), "received": ("Дата публикации",),
                            "text": ("Текст публикации",), "category": ("Тема",),
                            "name": ("Автор",), "link": ("Ссылка на публикацию",)},
    "sakhalin_online": {"number": ("Номер заявки",), "text": ("Текст заявки",),
                        "category": ("Рубрика",)},
    "smls": {"number": ("Номер обращения",), "text": ("Текст обращения",),
             "category": ("Тематика",)},
}


def norm(text: str) -> str:
    """Headers and categories compare without case, extra spaces, a BOM or «ё»."""
    return " ".join(text.replace("\ufeff", "").replace("ё", "е").replace("Ё", "Е")
                    .casefold().split())


@dataclass(frozen=True)
class ColumnMapping:
    headers: dict[str, tuple[str, ...]]
    date_format: str | None = None

    def resolve(self, file_headers: list[str]) -> dict[str, int]:
        """Field → column index; the required columns must be there."""
        positions: dict[str, int] = {}
        for index, header in enumerate(file_headers):
            positions.setdefault(norm(header), index)
        found = {}
        for name, candidates in self.headers.items():
            index = next((positions[norm(c)] for c in candidates if norm(c) in positions), None)
            if index is not None:
                found[name] = index
        missing = [f"«{self.headers[f][0]}»" for f in REQUIRED if f not in found]
        if missing:
            raise TableError("import.error.missing_columns", columns=", ".join(missing),
                             found=", ".join(f"«{h}»" for h in file_headers if h) or "—")
        return found


def default_mapping(channel: str) -> ColumnMapping:
    extra = CHANNEL_HEADERS.get(channel, {})
    return ColumnMapping({name: (*COMMON_HEADERS[name], *extra.get(name, ()))
                          for name in FIELDS})


def load_mapping(path: Path, channel: str) -> ColumnMapping:
    """The channel's defaults with the columns named in the mapping file replaced."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise TableError("import.error.not_found", path=str(path)) from exc
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TableError("import.error.mapping", path=str(path), problem=str(exc)) from exc
    unknown = sorted(set(data) - {"columns", "options"})
    if unknown:
        raise TableError("import.error.mapping", path=str(path),
                         problem=f"unknown table(s) {', '.join(unknown)}; use [columns], [options]")
    headers = dict(default_mapping(channel).headers)
    for name, value in dict(data.get("columns", {})).items():
        if name not in FIELDS:
            raise TableError("import.error.mapping", path=str(path),
                             problem=f"columns.{name}: unknown field; fields: {', '.join(FIELDS)}")
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(
                isinstance(n, str) and n.strip() for n in names):
            raise TableError("import.error.mapping", path=str(path),
                             problem=f"columns.{name}: a column name or a list of names")
        headers[name] = tuple(names)
    options = dict(data.get("options", {}))
    date_format = options.pop("date_format", None)
    if options or (date_format is not None and not isinstance(date_format, str)):
        raise TableError("import.error.mapping", path=str(path),
                         problem="options: only date_format = \"…\" (strptime codes)")
    return ColumnMapping(headers, date_format)


@dataclass
class CategoryMap:
    """An outside category → a topic id: the organisation's `[categories.<channel>]` table,
    then a topic's own title or id; None when unknown (the caller files it under «другое»)."""

    org: Organisation
    channel: str
    _table: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        table = {norm(t.id): t.id for t in self.org.topics}
        for topic in self.org.topics:
            table[norm(topic.title)] = topic.id
            table[norm(topic.title_en)] = topic.id
        for category, topic_id in self.org.categories.get(self.channel, {}).items():
            table[norm(category)] = topic_id
        self._table = table

    def topic(self, category: str) -> str | None:
        return self._table.get(norm(category)) if category.strip() else None

    @property
    def fallback(self) -> str:
        return OTHER_TOPIC
