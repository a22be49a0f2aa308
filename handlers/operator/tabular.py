"""Reading exported tables (CSV in UTF-8 or cp1251 with `;` or `,`, and XLSX) and writing the
rejected rows back as CSV."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path

Cell = str | datetime | date

XLSX_MAGIC = b"PK\x03\x04"
XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary Excel format (OLE2)
DELIMITERS = (";", ",", "\t")


class TableError(Exception):
    """The file cannot be imported at all; `key` and `values` make the text for the operator."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key = key
        self.values = values


@dataclass
class Table:
    headers: list[str]
    rows: list[tuple[int, list[Cell]]]  # (row number as a spreadsheet shows it, cells)


def read_table(path: Path) -> Table:
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise TableError("import.error.not_found", path=str(path)) from exc
    except OSError as exc:
        raise TableError("import.error.unreadable", path=str(path), problem=exc.strerror) from exc
    if data.startswith(XLS_MAGIC):
        raise TableError("import.error.xls", path=str(path))
    table = read_xlsx(path) if data.startswith(XLSX_MAGIC) else read_csv(data)
    if not table.headers:
        raise TableError("import.error.no_header", path=str(path))
    return table


# ---------------------------------------------------------------------------------------------
# CSV

def decode(data: bytes) -> str:
    """UTF-8 (with or without a BOM), otherwise cp1251: what Russian exports use."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1251", errors="replace")


def sniff_delimiter(text: str) -> str:
    """The delimiter that splits the header line into the most columns (`;` wins a tie)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    widths = {d: len(next(csv.reader([first], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (widths[d], -DELIMITERS.index(d)))


def read_csv(data: bytes) -> Table:
    text = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_delimiter(text))
    records: Iterable[tuple[int, list[Cell]]] = (
        (number, list(record)) for number, record in enumerate(reader, start=1))
    return _collect(records)


def _collect(records: Iterable[tuple[int, list[Cell]]]) -> Table:
    """Header = the first non-empty row; rows are padded to the header's width."""
    headers: list[str] = []
    rows: list[tuple[int, list[Cell]]] = []
    for number, cells in records:
        if not any(_filled(c) for c in cells):
            continue
        if not headers:
            headers = [str(c).replace("\ufeff", "").strip() for c in cells]
            continue
        cells = list(cells[:len(headers)])
        rows.append((number, cells + [""] * (len(headers) - len(cells))))
    return Table(headers, rows)


def _filled(cell: Cell) -> bool:
    return str(cell).strip() != ""


# ---------------------------------------------------------------------------------------------
# XLSX

def read_xlsx(path: Path) -> Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        # read_only streams the sheet instead of building it in memory; data_only gives the
        # values of formulas as Excel last saved them.
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError) as exc:
        raise TableError("import.error.unreadable", path=str(path), problem=str(exc)) from exc
    try:
        sheet = workbook.worksheets[0]
        return _collect((number, [xlsx_cell(v) for v in values])
                        for number, values in enumerate(sheet.iter_rows(values_only=True),
                                                        start=1))
    finally:
        workbook.close()


def xlsx_cell(value: object) -> Cell:
    if value is None:
        return ""
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # numbers typed into Excel come back as 12345.0
    return str(value)


def cell_text(cell: Cell) -> str:
    if isinstance(cell, datetime):
        return cell.strftime("%d.%m.%Y %H:%M")
    if isinstance(cell, date):
        return cell.strftime("%d.%m.%Y")
    return cell


# ---------------------------------------------------------------------------------------------
# The rejected rows, next to the input, to fix and import again.

def rejected_path(source: Path) -> Path:
    return source.with_name(source.name + ".rejected.csv")


def write_rejected(target: Path, headers: list[str], line_title: str, reason_title: str,
                   rows: list[tuple[int, str, list[Cell]]]) -> None:
    """UTF-8 with a BOM and `;`, which Russian Excel opens correctly by double-click."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow([line_title, reason_title, *headers])
    for line, reason, cells in rows:
        writer.writerow([line, reason, *(cell_text(c) for c in cells)])
    temporary = target.with_name(target.name + ".part")
    temporary.write_bytes(codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8"))
    temporary.replace(target)
