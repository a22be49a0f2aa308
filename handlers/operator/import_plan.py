"""Checking an exported table row by row, before anything touches the database.

A bad row never stops the import: it is set aside with its row number and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from handlers.operator import fields
from handlers.operator.mapping import CategoryMap, ColumnMapping
from handlers.operator.tabular import Cell, Table, cell_text
from handlers.org import Organisation
from handlers.rules.deadlines import Kind
from handlers.topics import TopicSuggester

IMPORT_TEXT_MAX = 20000  # the chat dialog's 4000 is a messenger limit; cards split long texts
# Optional text columns: (field, the Item/Citizen attribute, the longest value that fits).
OPTIONAL = (("address", "address", fields.ADDRESS_MAX), ("name", "name", fields.NAME_MAX),
            ("phone", "phone", fields.PHONE_MAX), ("email", "email", fields.EMAIL_MAX),
            ("postal_address", "postal_address", fields.POSTAL_MAX),
            ("link", "post_url", fields.URL_MAX))


@dataclass
class ImportRow:
    line: int
    external: str
    received_at: datetime
    text: str
    kind: Kind
    topic: str
    address: str | None = None
    name: str | None = None
    phone: str | None = None
    email: str | None = None
    postal_address: str | None = None
    post_url: str | None = None
    # Set when the topic came from the text, not from the outside category.
    suggested_topic: str | None = None
    suggestion_score: float | None = None

    @property
    def no_answer(self) -> bool:
        """59-ФЗ art. 7 and 11: an appeal without a surname or a postal address."""
        return self.kind == Kind.APPEAL and not (self.name and self.postal_address)

    @property
    def has_personal_data(self) -> bool:
        return any((self.name, self.phone, self.email, self.postal_address))


@dataclass
class Rejection:
    line: int
    key: str  # the reason, a text key under "import.reason."
    values: dict[str, object]
    cells: list[Cell]


class Rejected(Exception):
    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass
class ImportPlan:
    channel: str
    headers: list[str]
    total: int = 0  # non-empty data rows
    rows: list[ImportRow] = field(default_factory=list)  # valid and first of their number
    rejected: list[Rejection] = field(default_factory=list)
    file_duplicates: list[tuple[int, str, int]] = field(default_factory=list)  # line, no, first
    unknown_categories: dict[str, list[int]] = field(default_factory=dict)
    suggested: bool = False  # rows of unknown or empty categories got a topic from their text

    @property
    def no_answer(self) -> int:
        return sum(row.no_answer for row in self.rows)

    @property
    def suggested_rows(self) -> list[ImportRow]:
        return [row for row in self.rows if row.suggested_topic is not None]


def prepare(table: Table, channel: str, mapping: ColumnMapping, org: Organisation, tz: tzinfo,
            now: datetime, suggester: TopicSuggester | None = None) -> ImportPlan:
    """Validate every row; raises TableError when a required column is missing.

    A row whose outside category is unknown or empty gets the topic the suggester finds in
    its text, if there is a suggester; without one it goes to «другое» as before."""
    columns = mapping.resolve(table.headers)
    categories = CategoryMap(org, channel)
    plan = ImportPlan(channel=channel, headers=table.headers, total=len(table.rows))
    first_line: dict[str, int] = {}
    for line, cells in table.rows:
        try:
            row = check_row(line, cells, columns, table.headers, mapping, channel, tz, now)
        except Rejected as reason:
            plan.rejected.append(Rejection(line, reason.key, reason.values, cells))
            continue
        if row.external in first_line:
            plan.file_duplicates.append((line, row.external, first_line[row.external]))
            continue
        first_line[row.external] = line
        category = cell_text(_cell(cells, columns, "category")).strip()
        topic = categories.topic(category)
        if topic is None:
            plan.unknown_categories.setdefault(category, []).append(line)
            topic = categories.fallback
        row.topic = topic
        plan.rows.append(row)
    if suggester is not None:
        suggest_topics(plan, suggester, {line for lines in plan.unknown_categories.values()
                                         for line in lines})
    return plan


def suggest_topics(plan: ImportPlan, suggester: TopicSuggester, lines: set[int]) -> None:
    rows = [row for row in plan.rows if row.line in lines]
    for row, suggestions in zip(rows, suggester.suggest_many([r.text for r in rows]),
                                strict=True):
        row.topic, row.suggested_topic = suggestions[0].topic_id, suggestions[0].topic_id
        row.suggestion_score = suggestions[0].score
    plan.suggested = True


def _cell(cells: list[Cell], columns: dict[str, int], name: str) -> Cell:
    index = columns.get(name)
    return cells[index] if index is not None and index < len(cells) else ""


def check_row(line: int, cells: list[Cell], columns: dict[str, int], headers: list[str],
              mapping: ColumnMapping, channel: str, tz: tzinfo, now: datetime) -> ImportRow:
    def text_of(name: str) -> str:
        return cell_text(_cell(cells, columns, name)).strip()

    raw_number = text_of("number")
    if not raw_number:
        raise Rejected("import.reason.no_number")
    external = fields.clean_external(raw_number)
    if external is None:
        raise Rejected("import.reason.number_too_long", max=fields.EXTERNAL_MAX)
    received_cell = _cell(cells, columns, "received")
    if not text_of("received"):
        raise Rejected("import.reason.no_date")
    extra = (mapping.date_format,) if mapping.date_format else ()
    received = fields.parse_moment(received_cell, tz, extra_formats=extra, date_only=True)
    if received is None:
        raise Rejected("import.reason.bad_date", value=text_of("received")[:40])
    if fields.in_future(received, now):
        raise Rejected("import.reason.future_date", value=text_of("received")[:40])
    text = text_of("text")
    if not text:
        raise Rejected("import.reason.empty_text")
    if len(text) > IMPORT_TEXT_MAX:
        raise Rejected("import.reason.text_too_long", max=IMPORT_TEXT_MAX)
    kind_text = text_of("kind")
    kind = fields.parse_kind(kind_text) if kind_text else fields.default_kind(channel)
    if kind is None:
        raise Rejected("import.reason.bad_kind", value=kind_text[:40])
    row = ImportRow(line=line, external=external, received_at=received, text=text, kind=kind,
                    topic="")
    for name, attribute, longest in OPTIONAL:
        value = fields.one_line(text_of(name))
        if len(value) > longest:
            raise Rejected("import.reason.too_long", column=headers[columns[name]], max=longest)
        setattr(row, attribute, value or None)
    return row
